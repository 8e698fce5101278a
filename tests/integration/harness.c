#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include "harness.h"

#ifndef CHATD_PATH
#error "CHATD_PATH must point at the chatd binary"
#endif

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void spawn(th_server *s)
{
    char listen[64], log[300];
    int i;

    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(log, sizeof log, "%s/chatd.log", s->dir);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        for (i = 0; s->env && s->env[i]; i++)
            putenv((char *)s->env[i]);
        setenv("JWT_SECRET", "integration-test-secret-0123456789abcdef", 0);
        setenv("CHAT_SYNC", "normal", 0);
        setenv("CHAT_LOG_LEVEL", "warn", 0);
        execl(CHATD_PATH, "chatd", "--listen", listen, "--data-dir", s->dir,
              (char *)NULL);
        _exit(127);
    }
    /* wait for /healthz */
    for (i = 0; i < 200; i++) {
        th_resp r = th_req(s, "GET", "/healthz", NULL, NULL, NULL);
        long st = r.status;
        th_resp_free(&r);
        if (st == 200)
            return;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
            ck_abort_msg("chatd exited at start (see %s)", log);
        usleep(50 * 1000);
    }
    ck_abort_msg("chatd did not become healthy");
}

void th_start(th_server *s, const char *const *env)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/chat-it-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    s->port = free_port();
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    s->env = env;
    spawn(s);
}

int th_stop(th_server *s, int sig)
{
    int st;

    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    if (waitpid(s->pid, &st, 0) != s->pid)
        return -1;
    s->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void th_restart(th_server *s)
{
    ck_assert_int_eq(th_stop(s, SIGTERM), 0);
    spawn(s);
}

void th_restart_after_crash(th_server *s)
{
    spawn(s);
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void th_cleanup(th_server *s)
{
    if (s->pid > 0)
        th_stop(s, SIGKILL);
    if (s->dir[0])
        nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

struct sink {
    char *p;
    size_t n;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct sink *b = ud;
    size_t n = size * nmemb;
    char *q = realloc(b->p, b->n + n + 1);

    if (q == NULL)
        return 0;
    memcpy(q + b->n, ptr, n);
    b->n += n;
    q[b->n] = '\0';
    b->p = q;
    return n;
}

static void header_value(const char *line, size_t n, const char *name,
                         char *out, size_t size)
{
    size_t k = strlen(name), v;

    if (n <= k || strncasecmp(line, name, k))
        return;
    line += k;
    n -= k;
    while (n && *line == ' ') {
        line++;
        n--;
    }
    while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        n--;
    v = n < size - 1 ? n : size - 1;
    memcpy(out, line, v);
    out[v] = '\0';
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    th_resp *r = ud;
    size_t n = size * nmemb;

    header_value(ptr, n, "retry-after:", r->retry_after, sizeof r->retry_after);
    header_value(ptr, n, "allow:", r->allow, sizeof r->allow);
    header_value(ptr, n, "content-type:", r->content_type,
                 sizeof r->content_type);
    header_value(ptr, n, "access-control-allow-origin:", r->cors_origin,
                 sizeof r->cors_origin);
    return n;
}

th_resp th_req_raw(th_server *s, const char *method, const char *path,
                   const char *token, const char *body, size_t len,
                   const char *const *extra)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct sink b = {NULL, 0};
    th_resp r;
    char url[4096], *auth = NULL;
    int i;

    memset(&r, 0, sizeof r);
    snprintf(url, sizeof url, "%s%s", s->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (token) {
        size_t n = strlen(token) + 32;
        auth = malloc(n);
        snprintf(auth, n, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
        free(auth);
    }
    if (body) {
        int typed = 0;
        for (i = 0; extra && extra[i]; i++)
            typed |= !strncasecmp(extra[i], "Content-Type:", 13);
        if (!typed)
            h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    h = curl_slist_append(h, "Expect:");
    for (i = 0; extra && extra[i]; i++)
        h = curl_slist_append(h, extra[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.body = b.p;
    r.body_len = b.n;
    if (b.p)
        r.json = cJSON_Parse(b.p);
    return r;
}

th_resp th_req(th_server *s, const char *method, const char *path,
               const char *token, const char *body, const char *const *extra)
{
    return th_req_raw(s, method, path, token, body, body ? strlen(body) : 0,
                      extra);
}

void th_resp_free(th_resp *r)
{
    cJSON_Delete(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *th_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double th_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *th_err(const th_resp *r)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const char *code = th_str(e, "code");
    return code ? code : "";
}

const char *th_fmt(const char *fmt, ...)
{
    static __thread char bufs[32][1024];
    static __thread int next;
    char *b = bufs[next++ % 32];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b, 1024, fmt, ap);
    va_end(ap);
    return b;
}

void th_user_new(th_server *s, const char *name, th_user *u)
{
    th_resp r;
    const cJSON *user;

    memset(u, 0, sizeof *u);
    snprintf(u->username, sizeof u->username, "%s", name);
    snprintf(u->email, sizeof u->email, "%s@test.io", name);
    r = th_req(s, "POST", "/api/users/auth/register", NULL,
               th_fmt("{\"email\":\"%s\",\"password\":\"password-%s\","
                      "\"username\":\"%s\"}",
                      u->email, name, name),
               NULL);
    ck_assert_msg(r.status == 201, "register %s: %ld %s", name, r.status,
                  r.body ? r.body : "");
    th_resp_free(&r);
    r = th_req(s, "POST", "/api/users/auth/login", NULL,
               th_fmt("{\"email\":\"%s\",\"password\":\"password-%s\"}",
                      u->email, name),
               NULL);
    ck_assert_msg(r.status == 200, "login %s: %ld %s", name, r.status,
                  r.body ? r.body : "");
    user = cJSON_GetObjectItemCaseSensitive(r.json, "user");
    snprintf(u->id, sizeof u->id, "%s", th_str(user, "id"));
    snprintf(u->token, sizeof u->token, "%s", th_str(r.json, "access_token"));
    snprintf(u->refresh, sizeof u->refresh, "%s",
             th_str(r.json, "refresh_token"));
    th_resp_free(&r);
}
