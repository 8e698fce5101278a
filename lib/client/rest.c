/*
 * REST transport of the client: one thread driving a libcurl multi handle.
 * The application's thread queues requests (chat__rest_http) and wakes the
 * thread with curl_multi_wakeup; the thread adds them as easy handles,
 * runs transfers, and hands every finished one to the sink as a
 * CHAT__NET_HTTP_DONE input. Connections are reused across requests
 * (HTTP keep-alive), so a catch-up of many pages costs one TCP handshake.
 */
#include <pthread.h>
#include <string.h>

#include <curl/curl.h>

#include "client/net.h"

#define REST_BODY_MAX (16u * 1024 * 1024) /* larger answers are an error */

typedef struct rest_req {
    struct rest_req *next;
    int64_t id;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    char *method;
    char *body;
    chat__buf answer;
    int too_big;
} rest_req;

typedef struct chat__rest {
    CURLM *multi;
    pthread_t thread;
    int started;
    int curl_init;
    pthread_mutex_t lock;
    int quit;          /* under lock */
    rest_req *pending; /* under lock: queued by the application */
    rest_req *active;  /* thread only: handles in the multi */
    chat__net_config cfg;
    char *base_url, *ca_file, *user_agent;
} chat__rest;

static void req_free(rest_req *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    chat__free(r->url);
    chat__free(r->method);
    chat__free(r->body);
    chat__buf_free(&r->answer);
    chat__free(r);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    rest_req *r = ud;
    size_t len = size * n;
    if (r->answer.len + len > REST_BODY_MAX) {
        r->too_big = 1;
        return 0; /* aborts the transfer */
    }
    return chat__buf_append(&r->answer, p, len) == CHAT_OK ? len : 0;
}

static int req_setup(chat__rest *t, rest_req *r)
{
    CURL *e = curl_easy_init();
    if (!e)
        return CHAT_ENOMEM;
    r->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)t->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->cfg.request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (t->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, t->user_agent);
    if (t->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
    if (t->cfg.insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    return CHAT_OK;
}

static void deliver(chat__rest *t, rest_req *r, CURLcode res)
{
    chat__net_input *in = chat__calloc(1, sizeof *in);
    long status = 0;
    if (!in)
        return; /* the engine times the request out */
    in->kind = CHAT__NET_HTTP_DONE;
    in->id = r->id;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res == CURLE_OK) {
        in->status = (int)status;
        in->body = chat__buf_detach(&r->answer, &in->len);
    } else {
        in->error = res == CURLE_OPERATION_TIMEDOUT ? CHAT_ETIMEDOUT : CHAT_EIO;
        in->name = chat__strdup(r->too_big ? "answer too large"
                                           : curl_easy_strerror(res));
        CHAT_LOG(CHAT_LOG_DEBUG, "client: %s %s: %s", r->method, r->url,
                 curl_easy_strerror(res));
    }
    t->cfg.sink(in, t->cfg.sink_userdata);
}

static void take_pending(chat__rest *t)
{
    rest_req *list, *r;
    pthread_mutex_lock(&t->lock);
    list = t->pending;
    t->pending = NULL;
    pthread_mutex_unlock(&t->lock);
    /* pending is a stack; reverse it so requests start in call order */
    rest_req *rev = NULL;
    while (list) {
        r = list;
        list = r->next;
        r->next = rev;
        rev = r;
    }
    while ((r = rev)) {
        rev = r->next;
        if (req_setup(t, r) != CHAT_OK ||
            curl_multi_add_handle(t->multi, r->easy) != CURLM_OK) {
            deliver(t, r, CURLE_OUT_OF_MEMORY);
            req_free(r);
            continue;
        }
        r->next = t->active;
        t->active = r;
    }
}

static void unlink_active(chat__rest *t, rest_req *r)
{
    for (rest_req **p = &t->active; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            return;
        }
}

static void *rest_thread(void *arg)
{
    chat__rest *t = arg;
    chat__log_scope_set(t->cfg.log);
    for (;;) {
        int running = 0, left = 0, quit;
        CURLMsg *m;
        pthread_mutex_lock(&t->lock);
        quit = t->quit;
        pthread_mutex_unlock(&t->lock);
        if (quit)
            break;
        take_pending(t);
        curl_multi_perform(t->multi, &running);
        while ((m = curl_multi_info_read(t->multi, &left))) {
            rest_req *r = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode res = m->data.result;
            curl_multi_remove_handle(t->multi, m->easy_handle);
            deliver(t, r, res);
            unlink_active(t, r);
            req_free(r);
        }
        curl_multi_poll(t->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

int chat__rest_new(void **out, const chat__net_config *cfg)
{
    chat__rest *t = chat__calloc(1, sizeof *t);
    int rc = CHAT_ENOMEM;
    if (!t)
        return CHAT_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->cfg = *cfg;
    t->base_url = chat__strdup(cfg->base_url);
    t->ca_file = cfg->ca_file ? chat__strdup(cfg->ca_file) : NULL;
    t->user_agent = cfg->user_agent ? chat__strdup(cfg->user_agent) : NULL;
    if (!t->base_url || (cfg->ca_file && !t->ca_file) ||
        (cfg->user_agent && !t->user_agent))
        goto fail;
    t->cfg.base_url = t->base_url;
    /* Reference-counted; balanced in chat__rest_free. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto fail;
    t->curl_init = 1;
    if (!(t->multi = curl_multi_init()))
        goto fail;
    curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 6L);
    if (pthread_create(&t->thread, NULL, rest_thread, t) != 0) {
        rc = chat__error(CHAT_ERROR, "client: cannot start the REST thread");
        goto fail;
    }
    t->started = 1;
    *out = t;
    return CHAT_OK;
fail:
    chat__rest_free(t);
    return rc;
}

int chat__rest_http(void *rest, int64_t id, const char *method,
                    const char *path, const char *bearer, const char *body)
{
    chat__rest *t = rest;
    rest_req *r = chat__calloc(1, sizeof *r);
    chat__buf url = CHAT__BUF_INIT, auth = CHAT__BUF_INIT;
    struct curl_slist *h;
    if (!r)
        return CHAT_ENOMEM;
    r->id = id;
    chat__buf_puts(&url, t->base_url);
    chat__buf_puts(&url, path);
    r->url = chat__buf_detach(&url, NULL);
    r->method = chat__strdup(method);
    r->body = body ? chat__strdup(body) : NULL;
    h = curl_slist_append(NULL, "Accept: application/json");
    if (h && body)
        h = curl_slist_append(h, "Content-Type: application/json");
    if (h && bearer) {
        chat__buf_printf(&auth, "Authorization: Bearer %s", bearer);
        if (auth.failed || !(h = curl_slist_append(h, auth.data)))
            h = NULL;
    }
    chat__buf_free(&auth);
    r->headers = h;
    if (!r->url || !r->method || (body && !r->body) || !h) {
        req_free(r);
        return CHAT_ENOMEM;
    }
    pthread_mutex_lock(&t->lock);
    r->next = t->pending;
    t->pending = r;
    pthread_mutex_unlock(&t->lock);
    curl_multi_wakeup(t->multi);
    return CHAT_OK;
}

void chat__rest_free(void *rest)
{
    chat__rest *t = rest;
    rest_req *r;
    if (!t)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->quit = 1;
        pthread_mutex_unlock(&t->lock);
        curl_multi_wakeup(t->multi);
        pthread_join(t->thread, NULL);
    }
    while ((r = t->active)) {
        t->active = r->next;
        curl_multi_remove_handle(t->multi, r->easy);
        req_free(r);
    }
    while ((r = t->pending)) {
        t->pending = r->next;
        req_free(r);
    }
    if (t->multi)
        curl_multi_cleanup(t->multi);
    pthread_mutex_destroy(&t->lock);
    chat__free(t->base_url);
    chat__free(t->ca_file);
    chat__free(t->user_agent);
    if (t->curl_init)
        curl_global_cleanup();
    chat__free(t);
}
