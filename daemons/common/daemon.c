/* Daemon plumbing shared by chatd and the service daemons. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <chat/chat.h>

#include "common/daemon.h"

static int g_json;
static const char *g_name = "chatd";
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_min_level = CHAT_LOG_INFO;

/* JSON-escape s into out (size bytes). */
static void json_escape(char *out, size_t size, const char *s)
{
    size_t o = 0;

    for (; *s && o + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void sink(int level, const char *line, void *ud)
{
    char ts[CHAT_TIME_LEN + 1];
    (void)ud;

    chat_time_format(chat_time_now_ms(), ts);
    pthread_mutex_lock(&g_log_lock);
    if (g_json) {
        char esc[2048];
        json_escape(esc, sizeof esc, line);
        fprintf(stderr,
                "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\","
                "\"msg\":\"%s\"}\n",
                ts, chat_log_level_name(level), g_name, esc);
    } else {
        fprintf(stderr, "ts=%s level=%s service=%s %s\n", ts,
                chat_log_level_name(level), g_name, line);
    }
    pthread_mutex_unlock(&g_log_lock);
}

int chatd_log_setup(const char *level, const char *format, const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error",
                                        "off"};
    int i, lv = -1;

    for (i = 0; i < 5; i++)
        if (!strcmp(level, names[i]))
            lv = i;
    if (lv < 0)
        return -1;
    if (!strcmp(format, "json"))
        g_json = 1;
    else if (strcmp(format, "text"))
        return -1;
    g_name = name;
    g_min_level = lv;
    chat_log_set(sink, lv, NULL);
    return 0;
}

void chatd_log(int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (level < g_min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sink(level, line, NULL);
}

struct sigctx {
    void (*stop)(void *);
    void *arg;
    sigset_t set;
};

static void *signal_thread(void *p)
{
    struct sigctx *c = p;
    int sig;

    for (;;) {
        if (sigwait(&c->set, &sig) != 0)
            continue;
        chatd_log(CHAT_LOG_INFO, "event=signal signal=%s action=stop",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT");
        c->stop(c->arg);
    }
    return NULL;
}

int chatd_signals_start(void (*stop)(void *arg), void *arg)
{
    static struct sigctx c;
    pthread_t t;

    signal(SIGPIPE, SIG_IGN);
    c.stop = stop;
    c.arg = arg;
    sigemptyset(&c.set);
    sigaddset(&c.set, SIGINT);
    sigaddset(&c.set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &c.set, NULL) != 0 ||
        pthread_create(&t, NULL, signal_thread, &c) != 0)
        return -1;
    pthread_detach(t);
    return 0;
}

const char *chatd_opt(int argc, char **argv, const char *name,
                      const char *envname, const char *def)
{
    size_t n = strlen(name);
    const char *env;
    int i;

    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], name, n) != 0)
            continue;
        if (argv[i][n] == '=')
            return argv[i] + n + 1;
        if (argv[i][n] == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    env = envname ? getenv(envname) : NULL;
    return env && env[0] ? env : def;
}

int chatd_flag(int argc, char **argv, const char *name, const char *envname)
{
    const char *env = envname ? getenv(envname) : NULL;
    int i;

    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return env &&
           (!strcmp(env, "1") || !strcmp(env, "true") || !strcmp(env, "yes"));
}

static int in_list(const char *arg, const char *const *list, size_t *len)
{
    for (; list && *list; list++) {
        size_t n = strlen(*list);
        if (!strncmp(arg, *list, n) && (arg[n] == '\0' || arg[n] == '=')) {
            *len = n;
            return 1;
        }
    }
    return 0;
}

int chatd_check_args(int argc, char **argv, const char *const *with_value,
                     const char *const *bools, const char *prog)
{
    size_t n;
    int i;

    for (i = 1; i < argc; i++) {
        if (in_list(argv[i], with_value, &n)) {
            if (argv[i][n] == '\0' && ++i >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", prog, argv[i - 1]);
                return -1;
            }
        } else if (!in_list(argv[i], bools, &n) || argv[i][n] != '\0') {
            fprintf(stderr, "%s: unknown argument '%s' (see --help)\n", prog,
                    argv[i]);
            return -1;
        }
    }
    return 0;
}

int chatd_parse_listen(const char *s, char *host, size_t size, int *port)
{
    const char *colon;
    char *end;
    long p;

    if (s[0] == '[') { /* [v6]:port */
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= size)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        colon = rb + 1;
    } else if ((colon = strrchr(s, ':')) != NULL) {
        if ((size_t)(colon - s) >= size)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    } else {
        snprintf(host, size, "0.0.0.0");
        colon = s - 1;
    }
    p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

uint8_t *chatd_jwt_secret(const char *dir, size_t *len)
{
    const char *env = getenv("JWT_SECRET");
    char path[4096];
    uint8_t *key = NULL;
    char hex[129];
    FILE *f;
    int fd;

    if (env && env[0]) {
        if (strlen(env) < CHAT_JWT_SECRET_MIN) {
            fprintf(stderr, "JWT_SECRET must be at least %d bytes\n",
                    CHAT_JWT_SECRET_MIN);
            return NULL;
        }
        *len = strlen(env);
        key = malloc(*len);
        if (key)
            memcpy(key, env, *len);
        return key;
    }
    if (dir == NULL) {
        fprintf(stderr, "JWT_SECRET is not set\n");
        return NULL;
    }
    snprintf(path, sizeof path, "%s/jwt.secret", dir);
    key = malloc(64);
    if (key == NULL)
        return NULL;
    f = fopen(path, "r");
    if (f) {
        size_t got = fread(hex, 1, 128, f);
        fclose(f);
        hex[got] = '\0';
        if (got == 128 &&
            sodium_hex2bin(key, 64, hex, 128, NULL, len, NULL) == 0 &&
            *len == 64)
            return key;
        fprintf(stderr, "%s is damaged; remove it to make a new secret\n",
                path);
        free(key);
        return NULL;
    }
    if (sodium_init() < 0) {
        free(key);
        return NULL;
    }
    randombytes_buf(key, 64);
    sodium_bin2hex(hex, sizeof hex, key, 64);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, hex, 128) != 128 || fsync(fd) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(key);
        return NULL;
    }
    close(fd);
    *len = 64;
    return key;
}
