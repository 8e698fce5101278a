/*
 * The client's public face: construction, the loop (eventfd + inbox),
 * requests with one transparent token refresh, the session, and the
 * calls that are plain REST. The sync engine (catch-up, live events, the
 * outbox) is in sync.c.
 */
#include "client/client_int.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include <chat/core.h>
#include <chat/version.h>

#define ACCESS_REFRESH_MARGIN_MS 60000 /* refresh a minute before expiry */
#define BACKOFF_MIN_MS           250
#define BACKOFF_MAX_MS           30000

void chat_client_opts_init(chat_client_opts *opts)
{
    if (opts) {
        chat_client_opts d = CHAT_CLIENT_OPTS_INIT;
        *opts = d;
    }
}

/* ---- the real net: REST thread + Socket.IO thread ------------------------ */

typedef struct realnet {
    void *rest;
    chat__sioc *sioc; /* NULL with no_realtime */
} realnet;

static int rn_http(void *n, int64_t id, const char *method, const char *path,
                   const char *bearer, const char *body)
{
    return chat__rest_http(((realnet *)n)->rest, id, method, path, bearer,
                           body);
}

static int rn_ws_start(void *n, const char *token)
{
    realnet *rn = n;
    return rn->sioc ? chat__sioc_start(rn->sioc, token) : CHAT_OK;
}

static void rn_ws_stop(void *n)
{
    realnet *rn = n;
    if (rn->sioc)
        chat__sioc_stop(rn->sioc);
}

static int rn_ws_emit(void *n, const char *event, const cJSON *data,
                      int64_t ack_id)
{
    realnet *rn = n;
    return rn->sioc ? chat__sioc_emit(rn->sioc, event, data, ack_id)
                    : CHAT_ECLOSED;
}

static void rn_free(void *n)
{
    realnet *rn = n;
    if (!rn)
        return;
    chat__sioc_free(rn->sioc);
    chat__rest_free(rn->rest);
    chat__free(rn);
}

static const chat__net_ops realnet_ops = {rn_http, rn_ws_start, rn_ws_stop,
                                          rn_ws_emit, rn_free};

/* ---- inbox -----------------------------------------------------------------
 */

void chat__client_post(chat__net_input *in, void *client)
{
    chat_client *c = client;
    uint64_t one = 1;
    in->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->inbox_tail)
        c->inbox_tail->next = in;
    else
        c->inbox = in;
    c->inbox_tail = in;
    pthread_mutex_unlock(&c->lock);
    (void)!write(c->efd, &one, sizeof one);
}

void chat_client_wakeup(chat_client *c)
{
    uint64_t one = 1;
    if (c)
        (void)!write(c->efd, &one, sizeof one);
}

void chat_client_stop(chat_client *c)
{
    if (c) {
        c->stop_flag = 1;
        chat_client_wakeup(c);
    }
}

int chat_client_fd(const chat_client *c)
{
    return c ? c->efd : -1;
}

/* ---- session ---------------------------------------------------------------
 */

static void session_clear(chat_client *c)
{
    chat__free(c->user_id);
    chat__free(c->access);
    chat__free(c->refresh);
    c->user_id = c->access = c->refresh = NULL;
    c->access_exp_ms = 0;
}

static int session_store(chat_client *c)
{
    char exp[24];
    int rc;
    snprintf(exp, sizeof exp, "%lld", (long long)c->access_exp_ms);
    if ((rc = chat__cache_begin(c->cache)) != CHAT_OK)
        return rc;
    if ((rc = chat__cache_meta_set(c->cache, "base_url", c->base_url)) ||
        (rc = chat__cache_meta_set(c->cache, "user_id", c->user_id)) ||
        (rc = chat__cache_meta_set(c->cache, "access_token", c->access)) ||
        (rc = chat__cache_meta_set(c->cache, "refresh_token", c->refresh)) ||
        (rc = chat__cache_meta_set(c->cache, "access_expires", exp))) {
        chat__cache_rollback(c->cache);
        return rc;
    }
    return chat__cache_commit(c->cache);
}

/* Take the tokens of a login or refresh answer. */
static int session_take(chat_client *c, const cJSON *j)
{
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(j, "refresh_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(user, "id");
    char *a, *r, *u;
    if (!cJSON_IsString(at) || !cJSON_IsString(rt) || !cJSON_IsString(uid) ||
        !chat_uuid_valid(uid->valuestring))
        return chat__error(CHAT_EPROTO, "login answer without tokens");
    a = chat__strdup(at->valuestring);
    r = chat__strdup(rt->valuestring);
    u = chat__strdup(uid->valuestring);
    if (!a || !r || !u) {
        chat__free(a);
        chat__free(r);
        chat__free(u);
        return CHAT_ENOMEM;
    }
    session_clear(c);
    c->access = a;
    c->refresh = r;
    c->user_id = u;
    c->access_exp_ms =
        chat_time_now_ms() +
        (int64_t)(cJSON_IsNumber(exp) ? exp->valuedouble : 900) * 1000;
    return session_store(c);
}

static void go_online(chat_client *c)
{
    if (c->opts.no_realtime)
        chat__sync_start(c);
    else
        c->ops->ws_start(c->net, c->access);
    chat__outbox_kick(c);
    chat__read_kick(c);
}

static void go_offline(chat_client *c)
{
    c->ops->ws_stop(c->net);
    if (c->online) {
        chat_client_event ev = {0};
        c->online = 0;
        ev.type = CHAT_CLIENT_EVENT_DISCONNECTED;
        chat__client_emit(c, &ev);
    }
    chat__sync_reset(c);
}

static void session_restore(chat_client *c)
{
    char *url = NULL, *exp = NULL;
    chat__cache_meta_get(c->cache, "base_url", &url);
    if (url && strcmp(url, c->base_url) == 0 &&
        chat__cache_meta_get(c->cache, "refresh_token", &c->refresh) == 0 &&
        c->refresh &&
        chat__cache_meta_get(c->cache, "access_token", &c->access) == 0 &&
        chat__cache_meta_get(c->cache, "user_id", &c->user_id) == 0 &&
        chat__cache_meta_get(c->cache, "access_expires", &exp) == 0 &&
        c->access && c->user_id && exp) {
        c->access_exp_ms = strtoll(exp, NULL, 10);
    } else {
        session_clear(c);
    }
    chat__free(url);
    chat__free(exp);
}

const char *chat_client_user_id(const chat_client *c)
{
    return c ? c->user_id : NULL;
}

int chat_client_online(const chat_client *c)
{
    return c ? c->online : 0;
}

/* ---- construction ----------------------------------------------------------
 */

static int client_alloc(chat_client **out, const chat_client_opts *o)
{
    chat_client *c;
    int rc;
    CHAT_ASSERT_ARG(
        out && o &&
        (o->version == 1 || o->version == CHAT_CLIENT_OPTS_VERSION));
    if (!o->base_url || (strncmp(o->base_url, "http://", 7) != 0 &&
                         strncmp(o->base_url, "https://", 8) != 0))
        return chat__error(CHAT_EINVAL, "base_url must start with http:// "
                                        "or https://");
    CHAT_ASSERT_ARG(o->history_depth >= CHAT_CLIENT_HISTORY_NONE);
    if (!(c = chat__calloc(1, sizeof *c)))
        return CHAT_ENOMEM;
    c->efd = -1;
    pthread_mutex_init(&c->lock, NULL);
    if (o->version == 1) /* without the log fields */
        memcpy(&c->opts, o, offsetof(chat_client_opts, log_fn));
    else
        c->opts = *o;
    c->opts.version = CHAT_CLIENT_OPTS_VERSION;
    if (c->opts.log_fn) {
        c->log_scope.fn = c->opts.log_fn;
        c->log_scope.min = c->opts.log_level;
        c->log_scope.userdata = c->opts.log_userdata;
    }
    c->next_id = 1;
    c->base_url = chat__strdup(o->base_url);
    c->cache_path = o->cache_path ? chat__strdup(o->cache_path) : NULL;
    c->ca_file = o->ca_file ? chat__strdup(o->ca_file) : NULL;
    if (!c->base_url || (o->cache_path && !c->cache_path) ||
        (o->ca_file && !c->ca_file)) {
        rc = CHAT_ENOMEM;
        goto fail;
    }
    /* "http://host:port/" and "http://host:port" are the same server. */
    for (size_t n = strlen(c->base_url); n > 8 && c->base_url[n - 1] == '/';)
        c->base_url[--n] = '\0';
    c->opts.base_url = c->base_url;
    c->opts.cache_path = c->cache_path;
    c->opts.ca_file = c->ca_file;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = 10000;
    if (c->opts.request_timeout_ms <= 0)
        c->opts.request_timeout_ms = 30000;
    c->outbox_backoff_ms = BACKOFF_MIN_MS;
    c->refresh_backoff_ms = BACKOFF_MIN_MS;
    c->read_backoff_ms = BACKOFF_MIN_MS;
    if ((c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = chat__error(CHAT_EIO, "client: eventfd: %s", strerror(errno));
        goto fail;
    }
    if ((rc = chat__sodium_init()) != CHAT_OK ||
        (rc = chat__cache_open(&c->cache, c->cache_path)) != CHAT_OK)
        goto fail;
    *out = c;
    return CHAT_OK;
fail:
    chat_client_free(c);
    return rc;
}

static void client_begin(chat_client *c)
{
    session_restore(c);
    if (c->refresh)
        go_online(c);
}

int chat__client_new_with_net(chat_client **out, const chat_client_opts *opts,
                              const chat__net_ops *ops, void *net)
{
    chat_client *c;
    int rc = client_alloc(&c, opts);
    if (rc)
        return rc;
    c->ops = ops;
    c->net = net;
    client_begin(c);
    *out = c;
    return CHAT_OK;
}

int chat_client_new(chat_client **out, const chat_client_opts *opts)
{
    chat_client *c;
    realnet *rn;
    chat__net_config cfg;
    int rc = client_alloc(&c, opts);
    if (rc)
        return rc;
    if (!(rn = chat__calloc(1, sizeof *rn))) {
        chat_client_free(c);
        return CHAT_ENOMEM;
    }
    c->ops = &realnet_ops;
    c->net = rn;
    memset(&cfg, 0, sizeof cfg);
    cfg.base_url = c->base_url;
    cfg.ca_file = c->ca_file;
    cfg.insecure = c->opts.tls_insecure;
    cfg.connect_timeout_ms = c->opts.connect_timeout_ms;
    cfg.request_timeout_ms = c->opts.request_timeout_ms;
    cfg.user_agent = "libchat/" CHAT_VERSION_STRING;
    cfg.sink = chat__client_post;
    cfg.sink_userdata = c;
    cfg.log = c->log_scope.fn ? &c->log_scope : NULL;
    if ((rc = chat__rest_new(&rn->rest, &cfg)) != CHAT_OK ||
        (!c->opts.no_realtime &&
         (rc = chat__sioc_new(&rn->sioc, &cfg)) != CHAT_OK)) {
        chat_client_free(c);
        return rc;
    }
    client_begin(c);
    *out = c;
    return CHAT_OK;
}

static void req_free(creq *r)
{
    chat__free(r->method);
    chat__free(r->path);
    chat__free(r->body);
    chat__free(r);
}

static void req_finish(chat_client *c, creq *r, chat_client_result *res);

void chat_client_free(chat_client *c)
{
    chat__net_input *in;
    if (!c)
        return;
    /* Network threads first: after this no input arrives. */
    if (c->ops && c->ops->free)
        c->ops->free(c->net);
    while (c->reqs) {
        creq *r = c->reqs;
        chat_client_result res;
        memset(&res, 0, sizeof res);
        res.code = CHAT_ECLOSED;
        res.reason = "client closed";
        c->reqs = r->next;
        r->next = NULL;
        req_finish(c, r, &res);
    }
    while ((in = c->inbox)) {
        c->inbox = in->next;
        chat__net_input_free(in);
    }
    chat__sync_reset(c);
    chat__cache_close(c->cache);
    session_clear(c);
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->lock);
    chat__free(c->base_url);
    chat__free(c->cache_path);
    chat__free(c->ca_file);
    chat__free(c);
}

/* ---- requests --------------------------------------------------------------
 */

int chat__client_http_code(int status, const char *error_code)
{
    if (status >= 200 && status < 300)
        return CHAT_OK;
    switch (status) {
    case 400:
        return CHAT_EINVAL;
    case 401:
        return strcmp(error_code, "token_expired") == 0 ||
                       strcmp(error_code, "refresh_expired") == 0
                   ? CHAT_EEXPIRED
                   : CHAT_EAUTH;
    case 403:
        return CHAT_EPERM;
    case 404:
        return CHAT_ENOTFOUND;
    case 409:
        return CHAT_ECONFLICT;
    case 413:
        return CHAT_ELIMIT;
    case 422:
        return strcmp(error_code, "limit_exceeded") == 0 ? CHAT_ELIMIT
                                                         : CHAT_EINVAL;
    case 429:
        return CHAT_ERATE;
    case 503:
        return CHAT_EUNAVAIL;
    default:
        return status >= 500 ? CHAT_EUNAVAIL : CHAT_EPROTO;
    }
}

void chat__client_jitter_backoff(int *backoff_ms, int64_t *at)
{
    /* Full jitter: anywhere in [0, backoff], then the window doubles. */
    *at = chat__mono_us() / 1000 +
          (int64_t)randombytes_uniform((uint32_t)*backoff_ms + 1);
    *backoff_ms =
        *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
}

static int req_send(chat_client *c, creq *r)
{
    return c->ops->http(c->net, r->id, r->method, r->path,
                        r->auth ? c->access : NULL, r->body);
}

static void start_refresh(chat_client *c);

int64_t chat__client_request(chat_client *c, int kind, const char *method,
                             const char *path, const cJSON *body, int auth,
                             chat_client_done_fn done, void *ud, creq **out)
{
    creq *r = chat__calloc(1, sizeof *r);
    int rc;
    if (out)
        *out = NULL;
    if (!r)
        return CHAT_ENOMEM;
    r->id = c->next_id++;
    r->kind = kind;
    r->auth = auth;
    r->done = done;
    r->ud = ud;
    r->method = chat__strdup(method);
    r->path = chat__strdup(path);
    r->body = body ? cJSON_PrintUnformatted(body) : NULL;
    if (!r->method || !r->path || (body && !r->body)) {
        req_free(r);
        return CHAT_ENOMEM;
    }
    if (auth && !c->access) {
        req_free(r);
        return chat__error(CHAT_EAUTH, "not logged in");
    }
    /* While a refresh runs, new authenticated requests wait for it. */
    if (auth && c->refreshing)
        r->parked = 1;
    else if ((rc = req_send(c, r)) != CHAT_OK) {
        req_free(r);
        return rc;
    }
    r->next = c->reqs;
    c->reqs = r;
    if (out)
        *out = r;
    return r->id;
}

static void req_finish(chat_client *c, creq *r, chat_client_result *res)
{
    res->request_id = r->id;
    if (!res->error_code)
        res->error_code = "";
    if (!res->reason)
        res->reason = res->code ? chat_strerror(res->code) : "";
    if (!res->id)
        res->id = "";
    if (!res->json)
        res->json = "";
    c->done_ring[c->done_pos % CLIENT_DONE_RING].id = r->id;
    c->done_ring[c->done_pos % CLIENT_DONE_RING].code = res->code;
    c->done_pos++;
    if (r->done) {
        c->callbacks++;
        r->done(c, res, r->ud);
    }
    req_free(r);
}

static creq *req_take(chat_client *c, int64_t id)
{
    for (creq **p = &c->reqs; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            creq *r = *p;
            *p = r->next;
            r->next = NULL;
            return r;
        }
    return NULL;
}

static void release_parked(chat_client *c, int code)
{
    creq **p = &c->reqs;
    while (*p) {
        creq *r = *p;
        if (!r->parked || (code == CHAT_OK && req_send(c, r) == CHAT_OK)) {
            r->parked = 0;
            p = &r->next;
            continue;
        }
        *p = r->next;
        r->next = NULL;
        if (code == CHAT_OK)
            code = CHAT_EIO;
        {
            chat_client_result res;
            memset(&res, 0, sizeof res);
            res.code = code;
            if (r->kind >= CREQ_SYNC_LIST || r->kind == CREQ_READ)
                chat__sync_answer(c, r, code, NULL);
            req_finish(c, r, &res);
        }
    }
}

static void end_session(chat_client *c, int code)
{
    chat_client_event ev = {0};
    c->refreshing = 0;
    go_offline(c);
    session_clear(c);
    chat__cache_meta_set(c->cache, "access_token", NULL);
    chat__cache_meta_set(c->cache, "refresh_token", NULL);
    release_parked(c, code);
    ev.type = CHAT_CLIENT_EVENT_SESSION_ENDED;
    ev.code = code;
    chat__client_emit(c, &ev);
}

static void start_refresh(chat_client *c)
{
    cJSON *body;
    if (c->refreshing || !c->refresh)
        return;
    body = cJSON_CreateObject();
    if (!body || !cJSON_AddStringToObject(body, "refresh_token", c->refresh)) {
        cJSON_Delete(body);
        return;
    }
    c->refreshing = 1;
    if (chat__client_request(c, CREQ_REFRESH, "POST", "/api/users/auth/refresh",
                             body, 0, NULL, NULL, NULL) < 0) {
        c->refreshing = 0;
        chat__client_jitter_backoff(&c->refresh_backoff_ms,
                                    &c->refresh_retry_at);
    }
    cJSON_Delete(body);
}

static void on_refresh(chat_client *c, int code, int status, const cJSON *j)
{
    c->refreshing = 0;
    if (code == CHAT_OK && session_take(c, j) == CHAT_OK) {
        c->refresh_backoff_ms = BACKOFF_MIN_MS;
        c->refresh_retry_at = 0;
        release_parked(c, CHAT_OK);
        if (!c->opts.no_realtime)
            c->ops->ws_start(c->net, c->access); /* next attempt's token */
        return;
    }
    if (status == 401 || status == 400) {
        end_session(c, code ? code : CHAT_EAUTH);
        return;
    }
    /* Unreachable or 5xx: parked requests keep waiting; try again later. */
    chat__client_jitter_backoff(&c->refresh_backoff_ms, &c->refresh_retry_at);
}

/* Fill users[] from an array of user objects (or one). */
static size_t users_from(const cJSON *arr, chat_client_user *users, size_t max)
{
    size_t n = 0;
    const cJSON *u;
    if (cJSON_IsObject(arr)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(arr, "id");
        if (!cJSON_IsString(id) || max == 0)
            return 0;
        memset(&users[0], 0, sizeof users[0]);
        chat__strlcpy(users[0].id, id->valuestring, sizeof users[0].id);
        u = cJSON_GetObjectItemCaseSensitive(arr, "username");
        if (cJSON_IsString(u))
            chat__strlcpy(users[0].username, u->valuestring,
                          sizeof users[0].username);
        u = cJSON_GetObjectItemCaseSensitive(arr, "email");
        if (cJSON_IsString(u))
            chat__strlcpy(users[0].email, u->valuestring,
                          sizeof users[0].email);
        return 1;
    }
    cJSON_ArrayForEach(u, arr)
    {
        if (n == max)
            break;
        n += users_from(u, &users[n], max - n);
    }
    return n;
}

static void handle_http(chat_client *c, chat__net_input *in)
{
    creq *r = req_take(c, in->id);
    cJSON *j = NULL;
    chat_client_result res;
    const char *ecode = "", *emsg = "";
    chat_client_user users[CHAT_SEARCH_MAX];
    chat_client_message_list msg = {0, NULL};
    if (!r)
        return;
    if (in->body && in->len)
        j = cJSON_ParseWithLength(in->body, in->len);
    if (in->status >= 400 && j) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (cJSON_IsString(ec))
            ecode = ec->valuestring;
        if (cJSON_IsString(em))
            emsg = em->valuestring;
    }
    memset(&res, 0, sizeof res);
    res.http_status = in->status;
    res.error_code = ecode;
    res.reason = emsg[0] ? emsg : (in->name ? in->name : NULL);
    res.json = in->body;
    res.code = in->status ? chat__client_http_code(in->status, ecode)
                          : (in->error ? in->error : CHAT_EIO);
    if (res.code == CHAT_OK && in->status != 204 && !j)
        res.code = chat__error(CHAT_EPROTO, "answer is not JSON");

    /* An expired or rejected access token: refresh once and replay. */
    if (in->status == 401 && r->auth && !r->retried && c->refresh) {
        r->retried = 1;
        r->parked = 1;
        r->next = c->reqs;
        c->reqs = r;
        start_refresh(c);
        goto out;
    }

    switch (r->kind) {
    case CREQ_REFRESH:
        on_refresh(c, res.code, in->status, j);
        req_finish(c, r, &res);
        goto out;
    case CREQ_LOGIN:
        if (res.code == CHAT_OK) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "user");
            const cJSON *uid = cJSON_GetObjectItemCaseSensitive(u, "id");
            char *old = NULL, *url = NULL;
            chat__cache_meta_get(c->cache, "user_id", &old);
            chat__cache_meta_get(c->cache, "base_url", &url);
            /* Another account or server: nothing cached may leak over. */
            if (cJSON_IsString(uid) &&
                ((old && strcmp(old, uid->valuestring) != 0) ||
                 (url && strcmp(url, c->base_url) != 0))) {
                go_offline(c);
                chat__cache_wipe(c->cache);
            }
            chat__free(old);
            chat__free(url);
            if ((res.code = session_take(c, j)) == CHAT_OK) {
                res.user_count = users_from(u, users, 1);
                res.users = users;
                res.id = c->user_id;
                if (res.user_count)
                    chat__cache_user_put(c->cache, users[0].id,
                                         users[0].username, users[0].email);
                go_online(c);
            }
        }
        break;
    case CREQ_REGISTER:
        if (res.code == CHAT_OK) {
            res.user_count = users_from(j, users, 1);
            res.users = users;
            res.id = res.user_count ? users[0].id : "";
        }
        break;
    case CREQ_USERS:
    case CREQ_USER:
        if (res.code == CHAT_OK) {
            const cJSON *list =
                r->kind == CREQ_USERS
                    ? cJSON_GetObjectItemCaseSensitive(j, "users")
                    : j;
            res.user_count = users_from(list, users, CHAT__ARRAY_LEN(users));
            res.users = users;
            for (size_t i = 0; i < res.user_count; i++)
                chat__cache_user_put(c->cache, users[i].id, users[i].username,
                                     NULL);
        }
        break;
    case CREQ_CONTENT:
        if (res.code == CHAT_OK) {
            const cJSON *mid =
                cJSON_GetObjectItemCaseSensitive(j, "message_id");
            if (!cJSON_IsString(mid))
                res.code = chat__error(CHAT_EPROTO, "message without an id");
            else if ((res.code = chat__cache_msg_put(c->cache, j, NULL)) ==
                         CHAT_OK &&
                     (res.code = chat__cache_msg_get(c->cache, mid->valuestring,
                                                     &msg)) == CHAT_OK &&
                     msg.count) {
                res.message = &msg.items[0];
                res.id = msg.items[0].message_id;
            }
        }
        break;
    default:
        res.code = chat__sync_answer(c, r, res.code, j);
        if (r->kind >= CREQ_SYNC_LIST) {
            req_free(r);
            goto out;
        }
        if (res.code == CHAT_OK && (r->kind == CREQ_CONV_CREATE))
            res.id = r->conv;
        if (r->kind == CREQ_HISTORY)
            res.fetched = (size_t)r->n;
        break;
    }
    req_finish(c, r, &res);
out:
    chat_client_message_list_free(&msg);
    cJSON_Delete(j);
}

void chat__client_emit(chat_client *c, const chat_client_event *ev)
{
    chat_client_event e = *ev;
    if (!c->opts.on_event)
        return;
    if (!e.conversation_id)
        e.conversation_id = "";
    if (!e.user_id)
        e.user_id = "";
    if (!e.actor_id)
        e.actor_id = "";
    if (!e.action)
        e.action = "";
    if (!e.error_code)
        e.error_code = "";
    c->callbacks++;
    c->opts.on_event(c, &e, c->opts.userdata);
}

/* ---- the loop
 * ---------------------------------------------------------------- */

static int64_t now_ms(void)
{
    return chat__mono_us() / 1000;
}

/* The wall-clock expiry of the access token, seen from the monotonic
 * clock the timers use. */
/* When the access token should be renewed; 0 = no renewal to start (none
 * needed, one running, or a failed one waiting for its backoff: then
 * refresh_retry_at decides, or the loop would retry at once, forever). */
static int64_t refresh_due(const chat_client *c)
{
    if (!c->refresh || c->refreshing || c->refresh_retry_at ||
        !c->access_exp_ms)
        return 0;
    return now_ms() +
           (c->access_exp_ms - ACCESS_REFRESH_MARGIN_MS - chat_time_now_ms());
}

int chat_client_timeout_ms(const chat_client *c)
{
    int64_t next = 0, t, now = now_ms();
    if (!c)
        return -1;
    if (c->refresh_retry_at && !c->refreshing)
        next = c->refresh_retry_at;
    if ((t = refresh_due(c)) && (!next || t < next))
        next = t;
    if ((t = chat__sync_next_timer(c)) && (!next || t < next))
        next = t;
    if (!next)
        return -1;
    if (next <= now)
        return 0;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

static int process(chat_client *c);

int chat_client_process(chat_client *c)
{
    const chat__log_scope *outer;
    int rc;
    if (!c)
        return CHAT_EINVAL;
    if (!c->log_scope.fn)
        return process(c);
    outer = chat__log_scope_set(&c->log_scope); /* this client's hook */
    rc = process(c);
    chat__log_scope_set(outer);
    return rc;
}

static int process(chat_client *c)
{
    chat__net_input *in, *list;
    uint64_t v, calls;
    int64_t now, due;
    calls = c->callbacks;
    (void)!read(c->efd, &v, sizeof v);
    pthread_mutex_lock(&c->lock);
    list = c->inbox;
    c->inbox = c->inbox_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    while ((in = list)) {
        list = in->next;
        if (in->kind == CHAT__NET_HTTP_DONE)
            handle_http(c, in);
        else if (in->kind == CHAT__NET_WS_EVENT && in->name &&
                 strcmp(in->name, "unauthorized") == 0)
            start_refresh(c); /* the socket's token expired: renew it */
        else
            chat__sync_ws(c, in);
        chat__net_input_free(in);
    }
    now = now_ms();
    if (c->refresh_retry_at && c->refresh_retry_at <= now) {
        c->refresh_retry_at = 0;
        start_refresh(c);
    }
    if ((due = refresh_due(c)) && due <= now)
        start_refresh(c);
    chat__sync_timers(c, now);
    calls = c->callbacks - calls;
    return calls > INT32_MAX ? INT32_MAX : (int)calls;
}

static int loop_once(chat_client *c, int max_ms)
{
    struct pollfd p = {c->efd, POLLIN, 0};
    int t = chat_client_timeout_ms(c);
    if (t < 0 || (max_ms >= 0 && t > max_ms))
        t = max_ms;
    if (poll(&p, 1, t) < 0 && errno != EINTR)
        return chat__error(CHAT_EIO, "client: poll: %s", strerror(errno));
    return chat_client_process(c);
}

int chat_client_run(chat_client *c)
{
    CHAT_ASSERT_ARG(c);
    /* A stop that came before run (a signal during login) still counts. */
    while (!c->stop_flag) {
        int rc = loop_once(c, -1);
        if (rc < 0)
            return rc;
    }
    c->stop_flag = 0;
    return CHAT_OK;
}

static int done_code(const chat_client *c, int64_t id, int *code)
{
    for (unsigned i = 0; i < CLIENT_DONE_RING; i++)
        if (c->done_ring[i].id == id) {
            *code = c->done_ring[i].code;
            return 1;
        }
    return 0;
}

int chat_client_wait(chat_client *c, int64_t request_id, int timeout_ms)
{
    int64_t end = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
    int code;
    CHAT_ASSERT_ARG(c && request_id > 0);
    for (;;) {
        int known = 0, rc;
        if (done_code(c, request_id, &code))
            return code;
        for (creq *r = c->reqs; r; r = r->next)
            known |= r->id == request_id;
        if (!known && request_id < c->next_id)
            return chat__error(CHAT_EINVAL,
                               "request %lld finished more than %u requests"
                               " ago; its code is no longer kept",
                               (long long)request_id, CLIENT_DONE_RING);
        if (!known)
            return chat__error(CHAT_EINVAL, "unknown request id");
        int left = -1;
        if (end) {
            int64_t l = end - now_ms();
            if (l <= 0)
                return chat__error(CHAT_ETIMEDOUT, "request still running");
            left = (int)l;
        }
        if ((rc = loop_once(c, left)) < 0)
            return rc;
    }
}

/* ---- the calls
 * ----------------------------------------------------------------- */

/* A JSON body with string fields (NULL-terminated key, value pairs). */
static cJSON *body_of(const char *const *kv)
{
    cJSON *o = cJSON_CreateObject();
    for (; o && kv[0]; kv += 2)
        if (!cJSON_AddStringToObject(o, kv[0], kv[1] ? kv[1] : "")) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

static int64_t post(chat_client *c, int kind, const char *path,
                    const char *const *kv, int auth, chat_client_done_fn done,
                    void *ud, creq **out)
{
    cJSON *body = body_of(kv);
    int64_t id;
    if (!body)
        return CHAT_ENOMEM;
    id = chat__client_request(c, kind, "POST", path, body, auth, done, ud, out);
    cJSON_Delete(body);
    return id;
}

static int valid_id(const char *s)
{
    return s && chat_uuid_valid(s);
}

int64_t chat_client_register(chat_client *c, const char *email,
                             const char *username, const char *password,
                             chat_client_done_fn done, void *ud)
{
    const char *kv[] = {"email",    email,    "username", username,
                        "password", password, NULL};
    CHAT_ASSERT_ARG(c && email && username && password);
    return post(c, CREQ_REGISTER, "/api/users/auth/register", kv, 0, done, ud,
                NULL);
}

int64_t chat_client_login(chat_client *c, const char *login,
                          const char *password, chat_client_done_fn done,
                          void *ud)
{
    const char *kv[] = {"login", login, "password", password, NULL};
    CHAT_ASSERT_ARG(c && login && password);
    return post(c, CREQ_LOGIN, "/api/users/auth/login", kv, 0, done, ud, NULL);
}

int64_t chat_client_logout(chat_client *c, chat_client_done_fn done, void *ud)
{
    const char *kv[] = {"refresh_token", NULL, NULL};
    int64_t id;
    CHAT_ASSERT_ARG(c);
    if (!c->refresh)
        return chat__error(CHAT_EAUTH, "not logged in");
    kv[1] = c->refresh;
    id = post(c, CREQ_LOGOUT, "/api/users/auth/logout", kv, 0, done, ud, NULL);
    if (id < 0)
        return id;
    /* Forget the session now: the server's answer changes nothing here. */
    go_offline(c);
    session_clear(c);
    chat__cache_meta_set(c->cache, "access_token", NULL);
    chat__cache_meta_set(c->cache, "refresh_token", NULL);
    return id;
}

int64_t chat_client_users_search(chat_client *c, const char *query, int limit,
                                 chat_client_done_fn done, void *ud)
{
    char path[512], *q;
    int64_t id;
    CHAT_ASSERT_ARG(c && query && strlen(query) < 200);
    if (limit <= 0 || limit > CHAT_SEARCH_MAX)
        limit = 20;
    if (!(q = curl_easy_escape(NULL, query, 0)))
        return CHAT_ENOMEM;
    snprintf(path, sizeof path, "/api/users/users?query=%s&limit=%d", q, limit);
    curl_free(q);
    id = chat__client_request(c, CREQ_USERS, "GET", path, NULL, 1, done, ud,
                              NULL);
    return id;
}

int64_t chat_client_user_get(chat_client *c, const char *user_id,
                             chat_client_done_fn done, void *ud)
{
    char path[96];
    CHAT_ASSERT_ARG(c && valid_id(user_id));
    snprintf(path, sizeof path, "/api/users/users/%s", user_id);
    return chat__client_request(c, CREQ_USER, "GET", path, NULL, 1, done, ud,
                                NULL);
}

int64_t chat_client_dm(chat_client *c, const char *user_id,
                       chat_client_done_fn done, void *ud)
{
    const char *kv[] = {"user_id", user_id, NULL};
    CHAT_ASSERT_ARG(c && valid_id(user_id));
    return post(c, CREQ_CONV_CREATE, "/api/chats/conversations/dm", kv, 1, done,
                ud, NULL);
}

int64_t chat_client_group_create(chat_client *c, const char *title,
                                 const char *const *member_ids, size_t n,
                                 chat_client_done_fn done, void *ud)
{
    cJSON *body, *ids;
    int64_t id;
    CHAT_ASSERT_ARG(c && title && (n == 0 || member_ids));
    if (n > CHAT_GROUP_MAX_MEMBERS)
        return chat__error(CHAT_ELIMIT, "more than %d members",
                           CHAT_GROUP_MAX_MEMBERS);
    for (size_t i = 0; i < n; i++)
        CHAT_ASSERT_ARG(valid_id(member_ids[i]));
    body = cJSON_CreateObject();
    ids = cJSON_AddArrayToObject(body, "member_ids");
    if (!body || !ids || !cJSON_AddStringToObject(body, "title", title)) {
        cJSON_Delete(body);
        return CHAT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(member_ids[i]));
    id = chat__client_request(c, CREQ_CONV_CREATE, "POST",
                              "/api/chats/conversations/group", body, 1, done,
                              ud, NULL);
    cJSON_Delete(body);
    return id;
}

int64_t chat_client_invite(chat_client *c, const char *conversation_id,
                           const char *user_id, chat_client_done_fn done,
                           void *ud)
{
    const char *kv[] = {"user_id", user_id, NULL};
    char path[128];
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && valid_id(user_id));
    snprintf(path, sizeof path, "/api/chats/conversations/%s/invite",
             conversation_id);
    return post(c, CREQ_INVITE, path, kv, 1, done, ud, NULL);
}

int64_t chat_client_remove(chat_client *c, const char *conversation_id,
                           const char *user_id, chat_client_done_fn done,
                           void *ud)
{
    char path[160];
    creq *r;
    int64_t id;
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && valid_id(user_id));
    snprintf(path, sizeof path, "/api/chats/conversations/%s/members/%s",
             conversation_id, user_id);
    id = chat__client_request(c, CREQ_REMOVE, "DELETE", path, NULL, 1, done, ud,
                              &r);
    if (r) {
        chat__strlcpy(r->conv, conversation_id, sizeof r->conv);
        chat__strlcpy(r->arg, user_id, sizeof r->arg);
    }
    return id;
}

int chat_client_user_cached(chat_client *c, const char *user_id,
                            chat_client_user *out)
{
    CHAT_ASSERT_ARG(c && user_id && out);
    return chat__cache_user_get(c->cache, user_id, out);
}

int chat_client_conversations(chat_client *c,
                              chat_client_conversation_list *out)
{
    CHAT_ASSERT_ARG(c && out);
    return chat__cache_conversations(c->cache, out);
}

int chat_client_conversation_get(chat_client *c, const char *conversation_id,
                                 chat_client_conversation **out)
{
    CHAT_ASSERT_ARG(c && conversation_id && out);
    return chat__cache_conversation(c->cache, conversation_id, out);
}

int chat_client_send(chat_client *c, const char *conversation_id,
                     const char *text, char client_msg_id[CHAT_ID_LEN + 1])
{
    char cmid[CHAT_ID_LEN + 1];
    chat__conv_pos pos;
    size_t len;
    int rc;
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && text);
    len = strlen(text);
    if (len == 0 || len > CHAT_MESSAGE_MAX_BYTES || !chat_utf8_valid(text, len))
        return chat__error(CHAT_EINVAL, "text must be 1 to %d bytes of UTF-8",
                           CHAT_MESSAGE_MAX_BYTES);
    if (!c->user_id)
        return chat__error(CHAT_EAUTH, "not logged in");
    if ((rc = chat__cache_conv_pos(c->cache, conversation_id, &pos)) != CHAT_OK)
        return rc == CHAT_ENOTFOUND
                   ? chat__error(rc, "conversation not in the cache")
                   : rc;
    if (pos.left)
        return chat__error(CHAT_EPERM, "not a member of the conversation");
    /* The id is made and stored in one transaction: once this returns,
     * every retry after any crash carries the same id. */
    if ((rc = chat_uuid_v7(cmid)) != CHAT_OK ||
        (rc = chat__cache_begin(c->cache)) != CHAT_OK)
        return rc;
    if ((rc = chat__cache_outbox_add(c->cache, conversation_id, text, cmid,
                                     chat_time_now_ms())) != CHAT_OK) {
        chat__cache_rollback(c->cache);
        return rc;
    }
    if ((rc = chat__cache_commit(c->cache)) != CHAT_OK)
        return rc;
    if (client_msg_id)
        memcpy(client_msg_id, cmid, sizeof cmid);
    chat__outbox_kick(c);
    return CHAT_OK;
}

int chat_client_discard(chat_client *c, const char *client_msg_id)
{
    CHAT_ASSERT_ARG(c && client_msg_id);
    return chat__cache_outbox_done(c->cache, client_msg_id);
}

int chat_client_history(chat_client *c, const char *conversation_id,
                        int64_t before_seq, int limit,
                        chat_client_message_list *out)
{
    CHAT_ASSERT_ARG(c && conversation_id && out && before_seq >= 0);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_PAGE_MAX);
    return chat__cache_history(c->cache, conversation_id, before_seq, limit,
                               out);
}

int chat_client_history_after(chat_client *c, const char *conversation_id,
                              int64_t after_seq, int limit,
                              chat_client_message_list *out)
{
    CHAT_ASSERT_ARG(c && conversation_id && out && after_seq >= 0);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_PAGE_MAX);
    return chat__cache_history_after(c->cache, conversation_id, after_seq,
                                     limit, out);
}

int64_t chat_client_fetch_history(chat_client *c, const char *conversation_id,
                                  int64_t before_seq, int limit,
                                  chat_client_done_fn done, void *ud)
{
    char path[192];
    chat__conv_pos pos;
    creq *r;
    int64_t id;
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && before_seq >= 0);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_PAGE_MAX);
    if (before_seq == 0) {
        /* "The newest": just past the newest seq known, or past any. */
        before_seq = (int64_t)1 << 53;
        if (chat__cache_conv_pos(c->cache, conversation_id, &pos) == CHAT_OK &&
            pos.server_seq > 0)
            before_seq = pos.server_seq + 1;
    }
    snprintf(path, sizeof path,
             "/api/messages/conversations/%s/messages?before_seq=%lld"
             "&limit=%d",
             conversation_id, (long long)before_seq, limit);
    id = chat__client_request(c, CREQ_HISTORY, "GET", path, NULL, 1, done, ud,
                              &r);
    if (r)
        chat__strlcpy(r->conv, conversation_id, sizeof r->conv);
    return id;
}

int64_t chat_client_fetch_content(chat_client *c, const char *conversation_id,
                                  const char *message_id,
                                  chat_client_done_fn done, void *ud)
{
    char path[192];
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && valid_id(message_id));
    snprintf(path, sizeof path,
             "/api/messages/conversations/%s/messages/%s?fields=full",
             conversation_id, message_id);
    return chat__client_request(c, CREQ_CONTENT, "GET", path, NULL, 1, done, ud,
                                NULL);
}

int chat_client_search(chat_client *c, const char *query,
                       const char *conversation_id, int limit,
                       chat_client_message_list *out)
{
    CHAT_ASSERT_ARG(c && query && out);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_PAGE_MAX);
    if (!chat_utf8_valid(query, strlen(query)) || !query[0])
        return chat__error(CHAT_EINVAL, "empty or invalid query");
    return chat__cache_search(c->cache, query, conversation_id, limit, out);
}

int64_t chat_client_mark_read(chat_client *c, const char *conversation_id,
                              int64_t seq, chat_client_done_fn done, void *ud)
{
    int64_t id;
    int rc;
    CHAT_ASSERT_ARG(c && valid_id(conversation_id) && seq >= 0);
    if (!c->access)
        return chat__error(CHAT_EAUTH, "not logged in");
    /* The marker and the push it owes the server are stored first: if
     * the request fails, or the process dies before it is answered, the
     * push goes again after the next (re)connect. */
    if ((rc = chat__cache_read_mark(c->cache, conversation_id, seq)) != CHAT_OK)
        return rc;
    id = chat__read_send(c, CREQ_READ, conversation_id, seq, done, ud);
    if (id < 0)
        chat__read_retry_later(c);
    return id;
}

int chat_client_typing(chat_client *c, const char *conversation_id,
                       int is_typing)
{
    cJSON *data;
    int rc;
    CHAT_ASSERT_ARG(c && valid_id(conversation_id));
    if (!c->online)
        return chat__error(CHAT_ECLOSED, "offline");
    data = cJSON_CreateObject();
    if (!data ||
        !cJSON_AddStringToObject(data, "conversation_id", conversation_id) ||
        !cJSON_AddBoolToObject(data, "is_typing", is_typing != 0)) {
        cJSON_Delete(data);
        return CHAT_ENOMEM;
    }
    rc = c->ops->ws_emit(c->net, "typing", data, 0);
    cJSON_Delete(data);
    return rc;
}
