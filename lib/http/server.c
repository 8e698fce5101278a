/*
 * HTTP front end on libwebsockets: one service thread parses requests and
 * writes responses; handlers run on worker pools. See http.h for the
 * thread rules.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libwebsockets.h>
#include <sodium.h>

#include <chat/auth.h>

#include "http/http.h"

#define CHAT__DRAIN_TIMEOUT_US (10 * 1000000)

enum req_state {
    REQ_RECEIVING, /* service thread: reading the body */
    REQ_QUEUED,    /* a worker (or a deferred completion) owns it */
    REQ_RESPONDING /* service thread: waiting to write */
};

#define CHAT__MAX_RAW 4
/* Most bytes lws passes to one send(): a websocket burst (64 KiB of frames
 * at most) or a page of history goes out in one call. */
#define TX_PACKET_MAX (128 * 1024)

typedef struct raw_endpoint {
    char *prefix;
    size_t len;
    chat__http_raw_fn fn;
    void *userdata;
} raw_endpoint;

struct chat__http {
    chat__http_opts opts;
    uint8_t *jwt_key;
    char *cors_origins;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    int port;

    chat__route routes[CHAT__MAX_ROUTES];
    int nroutes;
    raw_endpoint raw[CHAT__MAX_RAW];
    int nraw;
    struct {
        void (*fn)(void *);
        void *userdata;
    } wake[CHAT__MAX_RAW];
    int nwake;

    chat__pool *pool;
    chat__pool *slow;
    chat__metrics *metrics;
    chat__ratelimit *rl;
    chat__rate token_rate;

    pthread_mutex_t done_lock;
    chat__req *done_head;

    atomic_int stop;
    int draining;
    int open_reqs; /* requests accepted and not yet answered or dropped;
                      service thread only */
    atomic_uint_fast64_t next_id;
    unsigned id_salt;
};

struct pss {
    const raw_endpoint *raw; /* this connection belongs to a raw handler */
    void *raw_state;
    chat__req *req;
    int state;
    int too_large;
    int close_after;
};

static const struct {
    unsigned bit;
    const char *name;
} g_methods[] = {
    {CHAT__GET, "GET"},     {CHAT__POST, "POST"},
    {CHAT__PUT, "PUT"},     {CHAT__DELETE, "DELETE"},
    {CHAT__PATCH, "PATCH"}, {CHAT__OPTIONS, "OPTIONS"},
    {CHAT__HEAD, "HEAD"},
};

static const char *method_name(unsigned m)
{
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(g_methods); i++)
        if (g_methods[i].bit == m)
            return g_methods[i].name;
    return "?";
}

/* ---- routes ----------------------------------------------------------------
 */

int chat__http_route(chat__http *h, unsigned methods, const char *pattern,
                     unsigned flags, chat__route_fn fn, void *userdata)
{
    chat__route *rt;
    char *copy, *save = NULL, *tok;

    CHAT_ASSERT_ARG(h && pattern && pattern[0] == '/' && fn);
    if (h->nroutes == CHAT__MAX_ROUTES)
        return chat__error(CHAT_ELIMIT, "too many routes");
    rt = &h->routes[h->nroutes];
    memset(rt, 0, sizeof *rt);
    /* segments point into one long-lived copy of the pattern */
    copy = chat__strdup(pattern);
    if (copy == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    rt->pattern = chat__strdup(pattern);
    if (rt->pattern == NULL) {
        chat__free(copy);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    for (tok = strtok_r(copy, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save)) {
        if (rt->nseg == CHAT__MAX_SEGMENTS) {
            chat__free(copy);
            chat__free((void *)rt->pattern);
            return chat__error(CHAT_ELIMIT, "route has too many segments");
        }
        rt->seg[rt->nseg++] = tok[0] == '{' ? NULL : tok;
    }
    rt->storage = copy;
    rt->methods = methods;
    rt->flags = flags;
    rt->fn = fn;
    rt->userdata = userdata;
    rt->index = h->nroutes++;
    return CHAT_OK;
}

/* Split the request path into r->params by matching the route table.
 * Returns the route, or NULL with *allow set to the methods of any route
 * whose path matched (405) or 0 (404). */
static const chat__route *route_match(chat__http *h, chat__req *r,
                                      unsigned *allow)
{
    const char *segs[CHAT__MAX_SEGMENTS];
    size_t lens[CHAT__MAX_SEGMENTS];
    const char *p = r->path;
    int nseg = 0, i, k;

    *allow = 0;
    while (*p) {
        const char *s;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        s = p;
        while (*p && *p != '/')
            p++;
        if (nseg == CHAT__MAX_SEGMENTS)
            return NULL;
        segs[nseg] = s;
        lens[nseg++] = (size_t)(p - s);
    }
    for (i = 0; i < h->nroutes; i++) {
        const chat__route *rt = &h->routes[i];
        int ok = rt->nseg == nseg;
        for (k = 0; ok && k < nseg; k++) {
            if (rt->seg[k] == NULL)
                continue;
            ok = strlen(rt->seg[k]) == lens[k] &&
                 !memcmp(rt->seg[k], segs[k], lens[k]);
        }
        if (!ok)
            continue;
        if (!(rt->methods & r->method)) {
            *allow |= rt->methods;
            continue;
        }
        r->nparams = 0;
        for (k = 0; k < nseg; k++) {
            if (rt->seg[k] != NULL || r->nparams == CHAT__MAX_PARAMS)
                continue;
            r->params[r->nparams] = chat__strndup(segs[k], lens[k]);
            if (r->params[r->nparams] == NULL)
                return NULL;
            r->nparams++;
        }
        return rt;
    }
    return NULL;
}

/* ---- requests --------------------------------------------------------------
 */

static void req_free(chat__req *r)
{
    int i;

    if (r == NULL)
        return;
    r->http->open_reqs--;
    chat__free(r->path);
    for (i = 0; i < r->nparams; i++)
        chat__free(r->params[i]);
    for (i = 0; i < r->nquery; i++)
        chat__free(r->query[i].key); /* key and value share one block */
    chat__buf_free(&r->body);
    chat__buf_free(&r->out);
    chat__free(r->authz);
    chat__free(r->origin);
    chat__free(r);
}

int chat__req_authenticate(chat__req *r)
{
    chat__http *h = r->http;
    chat_jwt_claims c;
    const char *tok;
    int rc;

    if (r->authz == NULL || strncasecmp(r->authz, "Bearer ", 7) != 0) {
        chat__metrics_inc(h->metrics, CHAT__C_AUTH_FAIL_TOKEN);
        chat__req_error(r, 401, "unauthorized", "missing bearer token");
        return CHAT_EAUTH;
    }
    tok = r->authz + 7;
    while (*tok == ' ')
        tok++;
    rc = chat_jwt_verify(h->jwt_key, h->opts.jwt_key_len, tok, strlen(tok),
                         chat_time_now_ms() / 1000, &c);
    if (rc != CHAT_OK) {
        chat__metrics_inc(h->metrics, CHAT__C_AUTH_FAIL_TOKEN);
        if (rc == CHAT_EEXPIRED)
            chat__req_error(r, 401, "token_expired", "access token expired");
        else
            chat__req_error(r, 401, "invalid_token", "invalid access token");
        return CHAT_EAUTH;
    }
    memcpy(r->user_id, c.sub, sizeof r->user_id);
    memcpy(r->token_id, c.jti, sizeof r->token_id);
    return CHAT_OK;
}

/* The request the current worker deferred. Once a handler hands its
 * request to another thread, that thread may finish and free it at any
 * moment, so the worker must not read it again: it compares pointers. */
static _Thread_local chat__req *t_deferred;

void chat__req_defer(chat__req *r)
{
    r->deferred = 1;
    t_deferred = r;
}

void chat__req_undefer(chat__req *r)
{
    r->deferred = 0;
    if (t_deferred == r)
        t_deferred = NULL;
}

void chat__req_finish(chat__req *r)
{
    chat__http *h = r->http;
    int wake;

    pthread_mutex_lock(&h->done_lock);
    /* Only the first completion after a drain wakes the service thread:
     * it takes the whole list, so one wake-up (a pipe write) serves a
     * burst of completions, e.g. a group-committed batch. */
    wake = h->done_head == NULL;
    r->done_next = h->done_head;
    h->done_head = r;
    pthread_mutex_unlock(&h->done_lock);
    if (wake)
        lws_cancel_service(h->ctx);
}

/* Authenticate and rate-limit a CHAT__ROUTE_AUTH request, then run its
 * handler. Returns 1 if the handler deferred the request (it may already
 * be finished and freed by another thread: do not touch it), else 0 with
 * the response in r. Any thread. */
static int req_handle(chat__req *r)
{
    chat__http *h = r->http;
    int retry;

    if (r->route->flags & CHAT__ROUTE_AUTH) {
        if (chat__req_authenticate(r) != CHAT_OK)
            return 0;
        if (chat__ratelimit_take(h->rl, &h->token_rate, r->token_id, &retry) !=
            CHAT_OK) {
            chat__metrics_inc(h->metrics, CHAT__C_RATE_TOKEN);
            r->retry_after = retry;
            chat__req_error(r, 429, "rate_limited",
                            "too many requests for this token");
            return 0;
        }
    }
    t_deferred = NULL;
    r->route->fn(r, r->route->userdata);
    return t_deferred == r;
}

/* Worker side: handle, then hand the response back. */
static void req_run(chat__task *t)
{
    chat__req *r = (chat__req *)t;

    if (!req_handle(r))
        chat__req_finish(r);
}

/* ---- the service thread ----------------------------------------------------
 */

static int origin_allowed(const chat__http *h, const char *origin)
{
    const char *p;
    size_t n;

    if (h->cors_origins == NULL || origin == NULL)
        return 0;
    if (!strcmp(h->cors_origins, "*"))
        return 1;
    n = strlen(origin);
    for (p = h->cors_origins; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, origin, n))
            return 1;
        p += k + (e != NULL);
    }
    return 0;
}

static int add_header(struct lws *wsi, const char *name, const char *val,
                      unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)val,
                                       (int)strlen(val), p, end);
}

static void methods_list(unsigned m, char *out, size_t size)
{
    size_t i, o = 0;

    out[0] = '\0';
    for (i = 0; i < CHAT__ARRAY_LEN(g_methods); i++) {
        if (!(m & g_methods[i].bit))
            continue;
        o += (size_t)snprintf(out + o, size - o, "%s%s", o ? ", " : "",
                              g_methods[i].name);
        if (o >= size)
            break;
    }
}

static void log_request(chat__http *h, const chat__req *r)
{
    int64_t us = chat__mono_us() - r->start_us;

    chat__metrics_request(h->metrics, r->route ? r->route->index : -1,
                          r->status, us);
    CHAT_LOG(r->status >= 500 ? CHAT_LOG_ERROR : CHAT_LOG_INFO,
             "req=%s method=%s path=%s status=%d ms=%.3f ip=%s user=%s",
             r->request_id, method_name(r->method), r->path, r->status,
             (double)us / 1000.0, r->ip, r->user_id[0] ? r->user_id : "-");
}

/* Write the whole response in one lws_write: headers built by lws, body
 * appended. lws buffers what the socket does not take at once. */
static int write_response(chat__http *h, struct lws *wsi, struct pss *pss)
{
    chat__req *r = pss->req;
    unsigned char hdr[LWS_PRE + CHAT__OUT_RESERVE], *p, *end, *start;
    size_t blen, hlen, total;
    char tmp[128];

    if (r->out.len < CHAT__OUT_RESERVE && chat__req_body_reset(r) != CHAT_OK)
        return -1;
    blen = CHAT__REQ_BODY_LEN(r);
    p = hdr + LWS_PRE;
    end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)r->status,
                                    r->content_type ? r->content_type
                                                    : "application/json",
                                    blen, &p, end) ||
        add_header(wsi, "x-request-id:", r->request_id, &p, end) ||
        add_header(wsi, "cache-control:", "no-store", &p, end))
        return -1;
    if (r->retry_after > 0) {
        snprintf(tmp, sizeof tmp, "%d", r->retry_after);
        if (add_header(wsi, "retry-after:", tmp, &p, end))
            return -1;
    }
    if (r->status == 405 && r->allow) {
        methods_list(r->allow, tmp, sizeof tmp);
        if (add_header(wsi, "allow:", tmp, &p, end))
            return -1;
    }
    if (r->status == 401 &&
        add_header(wsi, "www-authenticate:", "Bearer realm=\"chat\"", &p, end))
        return -1;
    if (origin_allowed(h, r->origin)) {
        if (add_header(wsi, "access-control-allow-origin:", r->origin, &p,
                       end) ||
            add_header(wsi, "vary:", "Origin", &p, end) ||
            add_header(wsi, "access-control-expose-headers:",
                       "Retry-After, X-Request-Id", &p, end))
            return -1;
        if (r->method == CHAT__OPTIONS &&
            (add_header(wsi, "access-control-allow-methods:",
                        "GET, POST, PUT, DELETE, PATCH, OPTIONS", &p, end) ||
             add_header(wsi, "access-control-allow-headers:",
                        "Authorization, Content-Type, X-Request-Id", &p, end) ||
             add_header(wsi, "access-control-max-age:", "600", &p, end)))
            return -1;
    }
    if (pss->close_after && add_header(wsi, "connection:", "close", &p, end))
        return -1;
    if (lws_finalize_http_header(wsi, &p, end))
        return -1;
    /* headers go just before the body, in the reserve, so headers and body
     * leave in one write without copying the body */
    hlen = (size_t)(p - (hdr + LWS_PRE));
    if (hlen > CHAT__OUT_RESERVE - LWS_PRE)
        return -1;
    start = (unsigned char *)CHAT__REQ_BODY(r) - hlen;
    memcpy(start, hdr + LWS_PRE, hlen);
    total = hlen + blen;
    return lws_write(wsi, start, total, LWS_WRITE_HTTP_HEADERS) < (int)total
               ? -1
               : 0;
}

static void respond_now(chat__http *h, struct lws *wsi, struct pss *pss)
{
    (void)h;
    pss->state = REQ_RESPONDING;
    lws_callback_on_writable(wsi);
}

static void dispatch(chat__http *h, struct lws *wsi, struct pss *pss)
{
    chat__req *r = pss->req;
    chat__pool *pool;

    if (pss->too_large) {
        chat__req_error(r, 413, "payload_too_large", "body exceeds %zu bytes",
                        h->opts.max_body);
        pss->close_after = 1;
        respond_now(h, wsi, pss);
        return;
    }
    if (r->route->flags & CHAT__ROUTE_INLINE) {
        /* Owned elsewhere while the handler runs: if it defers, the
         * completion arrives through the done queue like a worker's, and a
         * close meanwhile must orphan the request, not free it. */
        pss->state = REQ_QUEUED;
        if (!req_handle(r))
            respond_now(h, wsi, pss);
        return;
    }
    pool = (r->route->flags & CHAT__ROUTE_SLOW) ? h->slow : h->pool;
    r->task.fn = req_run;
    pss->state = REQ_QUEUED;
    if (chat__pool_submit(pool, &r->task) != CHAT_OK) {
        chat__req_error(r, 503, "unavailable", "shutting down");
        respond_now(h, wsi, pss);
    }
}

static char *hdr_dup(struct lws *wsi, enum lws_token_indexes tok)
{
    int n = lws_hdr_total_length(wsi, tok);
    char *s;

    if (n <= 0)
        return NULL;
    s = chat__malloc((size_t)n + 1);
    if (s && lws_hdr_copy(wsi, s, n + 1, tok) < 0) {
        chat__free(s);
        return NULL;
    }
    return s;
}

static unsigned req_method(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        unsigned m;
    } map[] = {
        {WSI_TOKEN_GET_URI, CHAT__GET},
        {WSI_TOKEN_POST_URI, CHAT__POST},
        {WSI_TOKEN_PUT_URI, CHAT__PUT},
        {WSI_TOKEN_DELETE_URI, CHAT__DELETE},
        {WSI_TOKEN_PATCH_URI, CHAT__PATCH},
        {WSI_TOKEN_OPTIONS_URI, CHAT__OPTIONS},
        {WSI_TOKEN_HEAD_URI, CHAT__HEAD},
    };
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(map); i++)
        if (lws_hdr_total_length(wsi, map[i].tok) > 0)
            return map[i].m;
    return 0;
}

static void req_query(struct lws *wsi, chat__req *r)
{
    char frag[1024];
    int i, n;

    for (i = 0; r->nquery < CHAT__MAX_QUERY; i++) {
        char *eq, *kv;
        n = lws_hdr_copy_fragment(wsi, frag, sizeof frag,
                                  WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        kv = chat__strndup(frag, (size_t)n);
        if (kv == NULL)
            break;
        eq = strchr(kv, '=');
        r->query[r->nquery].key = kv;
        if (eq) {
            *eq = '\0';
            r->query[r->nquery].val = eq + 1;
        } else {
            r->query[r->nquery].val = kv + strlen(kv);
        }
        r->nquery++;
    }
}

static void req_identity(chat__http *h, struct lws *wsi, chat__req *r)
{
    char rid[64];
    int n, ok = 0, i;

    lws_get_peer_simple(wsi, r->ip, sizeof r->ip);
    if (h->opts.trust_proxy) {
        char *xff = hdr_dup(wsi, WSI_TOKEN_X_FORWARDED_FOR);
        if (xff) {
            /* the proxy appends the address it saw: take the last one */
            char *last = strrchr(xff, ',');
            last = last ? last + 1 : xff;
            while (*last == ' ')
                last++;
            if (*last)
                chat__strlcpy(r->ip, last, sizeof r->ip);
            chat__free(xff);
        }
    }
    n = lws_hdr_custom_length(wsi, "x-request-id:", 13);
    if (n > 0 && n < (int)sizeof r->request_id &&
        lws_hdr_custom_copy(wsi, rid, sizeof rid, "x-request-id:", 13) > 0) {
        ok = 1;
        for (i = 0; rid[i]; i++) {
            char c = rid[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
                ok = 0;
        }
    }
    if (ok)
        chat__strlcpy(r->request_id, rid, sizeof r->request_id);
    else
        snprintf(r->request_id, sizeof r->request_id, "%08x%012llx", h->id_salt,
                 (unsigned long long)atomic_fetch_add(&h->next_id, 1));
}

static const raw_endpoint *raw_find(const chat__http *h, const char *path)
{
    int i;

    for (i = 0; path && i < h->nraw; i++)
        if (!strncmp(path, h->raw[i].prefix, h->raw[i].len))
            return &h->raw[i];
    return NULL;
}

static int raw_call(struct lws *wsi, struct pss *pss, int reason, void *in,
                    size_t len)
{
    return pss->raw->fn(wsi, reason, &pss->raw_state, in, len,
                        pss->raw->userdata);
}

int chat__http_raw(chat__http *h, const char *prefix, chat__http_raw_fn fn,
                   void *userdata)
{
    CHAT_ASSERT_ARG(h && prefix && prefix[0] == '/' && fn);
    if (h->nraw == CHAT__MAX_RAW)
        return chat__error(CHAT_ELIMIT, "too many raw endpoints");
    h->raw[h->nraw].prefix = chat__strdup(prefix);
    if (h->raw[h->nraw].prefix == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    h->raw[h->nraw].len = strlen(prefix);
    h->raw[h->nraw].fn = fn;
    h->raw[h->nraw].userdata = userdata;
    h->nraw++;
    return CHAT_OK;
}

int chat__http_on_wake(chat__http *h, void (*fn)(void *), void *userdata)
{
    CHAT_ASSERT_ARG(h && fn);
    if (h->nwake == CHAT__MAX_RAW)
        return chat__error(CHAT_ELIMIT, "too many wake hooks");
    h->wake[h->nwake].fn = fn;
    h->wake[h->nwake].userdata = userdata;
    h->nwake++;
    return CHAT_OK;
}

void chat__http_wake(chat__http *h)
{
    if (h->ctx)
        lws_cancel_service(h->ctx);
}

int chat__http_client_closes(void *vwsi)
{
    struct lws *wsi = vwsi;
    char v[64];
    int n = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_CONNECTION);

    /* "close" among the Connection header's tokens (RFC 9112 9.6) */
    if (n > 0) {
        char *tok, *save = NULL;
        for (tok = strtok_r(v, ", \t", &save); tok;
             tok = strtok_r(NULL, ", \t", &save))
            if (!strcasecmp(tok, "close"))
                return 1;
    }
    return 0;
}

void *chat__http_lws_context(chat__http *h)
{
    return h->ctx;
}

static int on_http(chat__http *h, struct lws *wsi, struct pss *pss,
                   const char *uri)
{
    chat__req *r;
    const chat__route *rt;
    char *ctype;
    unsigned allow;
    int64_t clen = -1;
    char tmp[32];

    r = chat__calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    h->open_reqs++;
    if (chat__req_body_reset(r) != CHAT_OK) {
        chat__free(r);
        h->open_reqs--;
        return -1;
    }
    memset(pss, 0, sizeof *pss);
    pss->req = r;
    pss->state = REQ_RECEIVING;
    pss->close_after = chat__http_client_closes(wsi);
    r->http = h;
    r->conn = wsi;
    r->start_us = chat__mono_us();
    r->method = req_method(wsi);
    r->path = chat__strdup(uri ? uri : "/");
    if (r->path == NULL)
        return -1;
    req_identity(h, wsi, r);
    r->authz = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    r->origin = hdr_dup(wsi, WSI_TOKEN_ORIGIN);
    req_query(wsi, r);

    if (lws_hdr_copy(wsi, tmp, sizeof tmp, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        clen = strtoll(tmp, NULL, 10);

    if (h->draining) {
        pss->close_after = 1;
        chat__req_error(r, 503, "unavailable", "server is shutting down");
        respond_now(h, wsi, pss);
        return 0;
    }
    if (r->method == CHAT__OPTIONS && origin_allowed(h, r->origin)) {
        r->status = 204; /* CORS preflight */
        respond_now(h, wsi, pss);
        return 0;
    }
    rt = route_match(h, r, &allow);
    if (rt == NULL) {
        if (allow) {
            r->allow = allow;
            chat__req_error(r, 405, "method_not_allowed",
                            "%s is not allowed here", method_name(r->method));
        } else {
            chat__req_error(r, 404, "not_found", "no such endpoint");
        }
        respond_now(h, wsi, pss);
        return 0;
    }
    r->route = rt;
    if (clen > (int64_t)h->opts.max_body) {
        pss->too_large = 1;
        dispatch(h, wsi, pss);
        return 0;
    }
    ctype = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
    if (ctype && clen > 0 && strncasecmp(ctype, "application/json", 16) != 0) {
        chat__free(ctype);
        pss->close_after = 1; /* we will not read the body */
        chat__req_error(r, 415, "unsupported_media_type",
                        "send application/json");
        respond_now(h, wsi, pss);
        return 0;
    }
    chat__free(ctype);
    if (clen < 0 &&
        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        /* lws does not decode chunked request bodies: refuse rather than
         * wait for a body that never completes */
        pss->close_after = 1;
        chat__req_error(r, 411, "length_required",
                        "send the body with a Content-Length");
        respond_now(h, wsi, pss);
        return 0;
    }
    if (clen > 0)
        return 0; /* the body follows */
    dispatch(h, wsi, pss);
    return 0;
}

static void detach(chat__http *h, struct pss *pss)
{
    chat__req *r = pss->req;

    if (r == NULL)
        return;
    pss->req = NULL;
    if (pss->state == REQ_QUEUED) {
        r->conn = NULL; /* freed when its completion arrives */
        return;
    }
    (void)h;
    req_free(r);
}

static void drain_done(chat__http *h)
{
    chat__req *r, *next;

    pthread_mutex_lock(&h->done_lock);
    r = h->done_head;
    h->done_head = NULL;
    pthread_mutex_unlock(&h->done_lock);
    for (; r; r = next) {
        struct lws *wsi = r->conn;
        next = r->done_next;
        if (wsi == NULL) { /* the client went away */
            log_request(h, r);
            req_free(r);
            continue;
        }
        ((struct pss *)lws_wsi_user(wsi))->state = REQ_RESPONDING;
        lws_callback_on_writable(wsi);
    }
}

/* Reasons whose `user` is the connection's pss (others pass other
 * pointers there, or nothing). */
static int conn_reason(enum lws_callback_reasons reason)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLOSED:
        return 1;
    default:
        return 0;
    }
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    chat__http *h = ctx ? lws_context_user(ctx) : NULL;
    struct pss *pss = user;

    /* connections of raw endpoints (realtime transports) go straight to
     * their handler, for every callback after they were claimed */
    if (pss && conn_reason(reason) && pss->raw) {
        int rc = raw_call(wsi, pss, (int)reason, in, len);
        if (reason == LWS_CALLBACK_CLOSED ||
            reason == LWS_CALLBACK_CLOSED_HTTP ||
            reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL)
            pss->raw = NULL;
        return rc;
    }
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const raw_endpoint *raw = raw_find(h, in);
        if (raw) {
            memset(pss, 0, sizeof *pss);
            pss->raw = raw;
            return raw_call(wsi, pss, (int)reason, in, len);
        }
        return on_http(h, wsi, pss, in);
    }

    case LWS_CALLBACK_ESTABLISHED: {
        /* a WebSocket: only raw endpoints take them */
        char path[256];
        const raw_endpoint *raw = NULL;
        if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) > 0)
            raw = raw_find(h, path);
        if (raw == NULL)
            return -1;
        memset(pss, 0, sizeof *pss);
        pss->raw = raw;
        return raw_call(wsi, pss, (int)reason, in, len);
    }

    case LWS_CALLBACK_HTTP_BODY:
        /* bodies of requests already answered (413, 415) are dropped */
        if (pss->req == NULL || pss->state != REQ_RECEIVING)
            return 0;
        if (pss->too_large || pss->req->body.len + len > h->opts.max_body) {
            pss->too_large = 1; /* keep reading, drop the bytes */
            return 0;
        }
        return chat__buf_append(&pss->req->body, in, len) ? -1 : 0;

    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss->req == NULL || pss->state != REQ_RECEIVING)
            return 0;
        dispatch(h, wsi, pss);
        return 0;

    case LWS_CALLBACK_HTTP_WRITEABLE: {
        int close_after;
        if (pss == NULL || pss->req == NULL || pss->state != REQ_RESPONDING)
            return 0;
        if (write_response(h, wsi, pss) < 0)
            return -1;
        log_request(h, pss->req);
        close_after = pss->close_after;
        req_free(pss->req);
        pss->req = NULL;
        if (close_after || h->draining)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }

    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss)
            detach(h, pss);
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (h) {
            int i;
            drain_done(h);
            for (i = 0; i < h->nraw; i++)
                h->raw[i].fn(wsi, (int)reason, NULL, in, len,
                             h->raw[i].userdata);
            for (i = 0; i < h->nwake; i++)
                h->wake[i].fn(h->wake[i].userdata);
        }
        return 0;

    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- lifecycle --------------------------------------------------------------
 */

static void lws_log_hook(int level, const char *line)
{
    chat__log_line(level == LLL_ERR ? CHAT_LOG_ERROR : CHAT_LOG_WARN, "lws",
                   line);
}

int chat__http_new(chat__http **out, const chat__http_opts *opts)
{
    chat__http *h;
    int rc;

    CHAT_ASSERT_ARG(out && opts);
    CHAT_ASSERT_ARG(opts->jwt_key && opts->jwt_key_len >= CHAT_JWT_SECRET_MIN);
    h = chat__calloc(1, sizeof *h);
    if (h == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    h->opts = *opts;
    if (h->opts.workers <= 0)
        h->opts.workers = 4;
    if (h->opts.slow_workers <= 0)
        h->opts.slow_workers = 2;
    if (h->opts.max_body == 0)
        h->opts.max_body = CHAT_HTTP_BODY_MAX_DEFAULT;
    h->token_rate.per_second = opts->token_rate;
    h->token_rate.burst = opts->token_burst;
    pthread_mutex_init(&h->done_lock, NULL);
    h->jwt_key = chat__malloc(opts->jwt_key_len);
    h->cors_origins = opts->cors_origins && opts->cors_origins[0]
                          ? chat__strdup(opts->cors_origins)
                          : NULL;
    h->opts.cors_origins = NULL;
    if (h->jwt_key == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(h->jwt_key, opts->jwt_key, opts->jwt_key_len);
    h->opts.jwt_key = h->jwt_key;
    if ((rc = chat__sodium_init()) != CHAT_OK)
        goto fail;
    h->id_salt = randombytes_random();
    if ((rc = chat__ratelimit_new(&h->rl)) != CHAT_OK)
        goto fail;
    *out = h;
    return CHAT_OK;
fail:
    chat__http_free(h);
    return rc;
}

int chat__http_listen(chat__http *h)
{
    struct lws_context_creation_info info;
    int rc;

    CHAT_ASSERT_ARG(h && h->ctx == NULL);
    if ((rc = chat__metrics_new(&h->metrics, h->nroutes)) != CHAT_OK)
        return rc;
    if ((rc = chat__pool_new(&h->pool, h->opts.workers, "http")) != CHAT_OK ||
        (rc = chat__pool_new(&h->slow, h->opts.slow_workers, "auth")) !=
            CHAT_OK)
        return rc;

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_hook);
    h->protocols[0].name = "http";
    h->protocols[0].callback = callback_http;
    h->protocols[0].per_session_data_size = sizeof(struct pss);
    /* lws hands the kernel at most this much per send() and keeps the
     * rest, sending it a chunk per service-loop turn; its default (4 KiB)
     * split every larger response or websocket burst into many turns */
    h->protocols[0].tx_packet_size = TX_PACKET_MAX;
    memset(&info, 0, sizeof info);
    info.port = h->opts.port;
    info.iface = h->opts.host;
    info.protocols = h->protocols;
    info.user = h;
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 1024;
    info.keepalive_timeout = 60;
    info.timeout_secs = 30;
    /* an IPv4 literal to bind to: don't ask for a dual-stack socket */
    if (h->opts.host && strchr(h->opts.host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    h->ctx = lws_create_context(&info);
    if (h->ctx == NULL)
        return chat__error(CHAT_EIO, "cannot listen on %s:%d",
                           h->opts.host ? h->opts.host : "*", h->opts.port);
    h->port =
        lws_get_vhost_listen_port(lws_get_vhost_by_name(h->ctx, "default"));
    return CHAT_OK;
}

int chat__http_port(const chat__http *h)
{
    return h->port;
}

chat__metrics *chat__http_metrics(chat__http *h)
{
    return h->metrics;
}

int chat__http_metrics_render(chat__http *h, chat__buf *out)
{
    return chat__metrics_render(h->metrics, h->routes, h->nroutes, out);
}

chat__ratelimit *chat__http_ratelimit(chat__http *h)
{
    return h->rl;
}

int chat__http_run(chat__http *h)
{
    int64_t deadline;
    int i;

    CHAT_ASSERT_ARG(h && h->ctx);
    while (!atomic_load(&h->stop))
        if (lws_service(h->ctx, 0) < 0)
            break;
    /* Drain: answer what is in flight (new requests get 503), so every
     * write a client saw acknowledged is one we finished. */
    h->draining = 1;
    deadline = chat__mono_us() + CHAT__DRAIN_TIMEOUT_US;
    while (h->open_reqs > 0 && chat__mono_us() < deadline)
        if (lws_service(h->ctx, 0) < 0)
            break;
    if (h->open_reqs > 0)
        CHAT_LOG(CHAT_LOG_WARN, "component=http event=drain_timeout open=%d",
                 h->open_reqs);
    for (i = 0; i < h->nraw; i++)
        h->raw[i].fn(NULL, CHAT__HTTP_RAW_STOP, NULL, NULL, 0,
                     h->raw[i].userdata);
    /* let close frames and final polls leave */
    for (i = 0; i < 5; i++)
        lws_service(h->ctx, -1);
    return CHAT_OK;
}

void chat__http_stop(chat__http *h)
{
    atomic_store(&h->stop, 1);
    if (h->ctx)
        lws_cancel_service(h->ctx);
}

void chat__http_free(chat__http *h)
{
    int i;

    if (h == NULL)
        return;
    /* Workers first: tasks still queued run and post completions, which
     * the destroyed context then frees through CLOSED_HTTP. */
    chat__pool_free(h->pool);
    chat__pool_free(h->slow);
    if (h->ctx)
        lws_context_destroy(h->ctx);
    while (h->done_head) {
        chat__req *r = h->done_head;
        h->done_head = r->done_next;
        req_free(r);
    }
    for (i = 0; i < h->nraw; i++)
        chat__free(h->raw[i].prefix);
    for (i = 0; i < h->nroutes; i++) {
        chat__free((void *)h->routes[i].pattern);
        chat__free(h->routes[i].storage);
    }
    chat__metrics_free(h->metrics);
    chat__ratelimit_free(h->rl);
    if (h->jwt_key)
        sodium_memzero(h->jwt_key, h->opts.jwt_key_len);
    chat__free(h->jwt_key);
    chat__free(h->cors_origins);
    pthread_mutex_destroy(&h->done_lock);
    chat__free(h);
}
