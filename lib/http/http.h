/*
 * Internal HTTP front end on libwebsockets.
 *
 * Threads: one lws service thread accepts connections, parses requests,
 * matches routes and writes responses. Route handlers run on worker pools
 * (never on the service thread) and finish a request with
 * chat__req_finish(), from any thread; the response is handed back through
 * a queue and lws_cancel_service().
 */
#ifndef CHAT_HTTP_H
#define CHAT_HTTP_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/internal.h"
#include "core/pool.h"

typedef struct chat__http chat__http;
typedef struct chat__req chat__req;
typedef struct chat__metrics chat__metrics;
typedef struct chat__ratelimit chat__ratelimit;

enum {
    CHAT__GET = 1u << 0,
    CHAT__POST = 1u << 1,
    CHAT__PUT = 1u << 2,
    CHAT__DELETE = 1u << 3,
    CHAT__PATCH = 1u << 4,
    CHAT__OPTIONS = 1u << 5,
    CHAT__HEAD = 1u << 6,
};

/* Route flags. */
#define CHAT__ROUTE_AUTH 1u /* requires a valid access token */
#define CHAT__ROUTE_SLOW 2u /* CPU-heavy (argon2id): the slow pool */
/* Never blocks: runs on the service thread (health, metrics, and sends
 * when the log checks membership itself). The handler may defer. */
#define CHAT__ROUTE_INLINE 4u

typedef void (*chat__route_fn)(chat__req *r, void *userdata);

#define CHAT__MAX_PARAMS   4
#define CHAT__MAX_QUERY    16
#define CHAT__MAX_ROUTES   64
#define CHAT__MAX_SEGMENTS 12

typedef struct chat__route {
    unsigned methods;
    unsigned flags;
    const char *pattern; /* "/api/x/{id}/y"; also the metrics label */
    int nseg;
    const char *seg[CHAT__MAX_SEGMENTS]; /* NULL = a {param} */
    chat__route_fn fn;
    void *userdata;
    int index;     /* position in the table, for metrics */
    char *storage; /* the pattern copy the literal segments point into */
} chat__route;

typedef struct chat__kv {
    char *key;
    char *val;
} chat__kv;

struct chat__req {
    chat__task task; /* pool linkage; first */
    chat__http *http;
    const chat__route *route;

    /* request (read-only for handlers) */
    unsigned method;
    char *path;
    char *params[CHAT__MAX_PARAMS];
    int nparams;
    chat__kv query[CHAT__MAX_QUERY];
    int nquery;
    chat__buf body;
    char *authz; /* Authorization header value, or NULL */
    char *origin;
    char ip[64];
    char request_id[40];
    char user_id[CHAT_ID_LEN + 1]; /* set for CHAT__ROUTE_AUTH routes */
    char token_id[CHAT_ID_LEN + 1];
    int64_t start_us;

    /* response (written by the handler): the body follows
     * CHAT__OUT_RESERVE bytes kept free for the status line and headers,
     * so the response goes out without another copy */
    int status;
    chat__buf out;
    const char *content_type; /* static string; default JSON */
    int retry_after;          /* seconds; > 0 adds Retry-After */
    unsigned allow;           /* for 405: the methods allowed */

    /* service-thread bookkeeping */
    void *conn; /* the connection, NULL once it closed */
    int deferred;
    chat__req *done_next;
};

/* Server options. */
typedef struct chat__http_opts {
    const char *host;         /* NULL = all interfaces */
    int port;                 /* 0 = ephemeral */
    int workers;              /* request workers; 0 = 4 */
    int slow_workers;         /* argon2id workers; 0 = 2 */
    size_t max_body;          /* 0 = CHAT_HTTP_BODY_MAX_DEFAULT */
    const char *cors_origins; /* "*" or comma list; NULL = no CORS */
    int trust_proxy;          /* take the client IP from X-Forwarded-For */
    /* access-token verification for CHAT__ROUTE_AUTH */
    const uint8_t *jwt_key;
    size_t jwt_key_len;
    /* requests per token: bucket size and refill per second; 0 = off */
    double token_rate, token_burst;
} chat__http_opts;

int chat__http_new(chat__http **out, const chat__http_opts *opts);
int chat__http_route(chat__http *h, unsigned methods, const char *pattern,
                     unsigned flags, chat__route_fn fn, void *userdata);
/* Bind and listen; after this chat__http_port() is the real port. */
int chat__http_listen(chat__http *h);
int chat__http_port(const chat__http *h);
/* Serve until chat__http_stop(); then drain in-flight requests. */
int chat__http_run(chat__http *h);
/* Thread-safe and async-signal-safe enough for a signal-watching thread. */
void chat__http_stop(chat__http *h);
void chat__http_free(chat__http *h);
chat__metrics *chat__http_metrics(chat__http *h);
/* Prometheus text for this server's routes and counters into out. */
int chat__http_metrics_render(chat__http *h, chat__buf *out);
chat__ratelimit *chat__http_ratelimit(chat__http *h);

/* ---- raw endpoints (realtime transports) ----------------------------------
 */

/* A handler that takes over every request and WebSocket whose path starts
 * with a prefix, with lws's own callback arguments (wsi, reason, in, len);
 * *state is a per-connection slot it owns. Runs on the service thread.
 * Return as an lws callback does (non-zero closes the connection). */
typedef int (*chat__http_raw_fn)(void *wsi, int reason, void **state, void *in,
                                 size_t len, void *userdata);
/* Also called for LWS_CALLBACK_EVENT_WAIT_CANCELLED (state NULL), and
 * with CHAT__HTTP_RAW_STOP (wsi and state NULL) once chat__http_run has
 * stopped serving, while lws still runs: the time to close sessions. */
#define CHAT__HTTP_RAW_STOP (-1)
int chat__http_raw(chat__http *h, const char *prefix, chat__http_raw_fn fn,
                   void *userdata);
/* 1 when the client asked to close after this response (Connection:
 * close): the response must then say "connection: close",
 * or a keep-alive client pool reuses a socket the server is closing. */
int chat__http_client_closes(void *wsi);
/* Call fn(userdata) on the service thread after chat__http_wake() (from
 * any thread; wakes coalesce). At most 4 hooks. */
int chat__http_on_wake(chat__http *h, void (*fn)(void *), void *userdata);
void chat__http_wake(chat__http *h);
/* The lws context (for timers), once listening. */
void *chat__http_lws_context(chat__http *h);

/* ---- for handlers -------------------------------------------------------- */
#define CHAT__OUT_RESERVE 1536
/* Empty the response body (keeping the header reserve). */
int chat__req_body_reset(chat__req *r);
/* The response body and its length. */
#define CHAT__REQ_BODY(r)     ((r)->out.data + CHAT__OUT_RESERVE)
#define CHAT__REQ_BODY_LEN(r) ((r)->out.len - CHAT__OUT_RESERVE)
const char *chat__req_param(const chat__req *r, int i);
/* Query value by key, or NULL (last one wins). */
const char *chat__req_query(const chat__req *r, const char *key);
/* Parse the body as a JSON object; on failure answers 400/415 and
 * returns NULL. The caller frees the result with cJSON_Delete. */
cJSON *chat__req_json(chat__req *r);
/* Answer with a JSON value (consumed) and status. */
void chat__req_reply(chat__req *r, int status, cJSON *body);
/* Answer {"error":{"code":code,"message":...}}. */
void chat__req_error(chat__req *r, int status, const char *code,
                     const char *fmt, ...) CHAT__PRINTF(4, 5);
/* Answer the error for a libchat code with the thread's last message. */
void chat__req_fail(chat__req *r, int rc);
/* Keep the request open after the handler returns; someone must call
 * chat__req_finish() later, from any thread. Call it before handing the
 * request to that someone, and do not touch the request after the hand-off
 * succeeded. chat__req_undefer() takes it back if the hand-off failed. */
void chat__req_defer(chat__req *r);
void chat__req_undefer(chat__req *r);
void chat__req_finish(chat__req *r);

/* Verify "Bearer <jwt>" and fill user_id/token_id. CHAT_OK or an error
 * already answered (401). */
int chat__req_authenticate(chat__req *r);

/* ---- metrics ------------------------------------------------------------- */
enum {
    CHAT__C_MESSAGES_STORED,
    CHAT__C_MESSAGES_DEDUPED,
    CHAT__C_AUTH_FAIL_LOGIN,
    CHAT__C_AUTH_FAIL_TOKEN,
    CHAT__C_AUTH_FAIL_REFRESH,
    CHAT__C_AUTH_REFRESH_REUSE,
    CHAT__C_RATE_LOGIN,
    CHAT__C_RATE_SEND,
    CHAT__C_RATE_TOKEN,
    CHAT__C_USERS_REGISTERED,
    CHAT__C_RATE_EVENTS,      /* Socket.IO events over a socket's rate */
    CHAT__C_RT_AUTHENTICATED, /* Socket.IO sockets that authenticated */
    CHAT__C_RT_UNAUTHORIZED,  /* ... refused (bad token, timeout, caps) */
    CHAT__C_RT_CLOSED,        /* authenticated sockets that went */
    CHAT__C_RT_SLOW,          /* sessions closed as slow consumers */
    CHAT__C_RT_DELIVERIES,    /* event packets queued to sockets */
    CHAT__C_COUNT
};
int chat__metrics_new(chat__metrics **out, int nroutes);
void chat__metrics_free(chat__metrics *m);
void chat__metrics_inc(chat__metrics *m, int counter);
void chat__metrics_add(chat__metrics *m, int counter, unsigned long long n);
void chat__metrics_request(chat__metrics *m, int route, int status,
                           int64_t micros);
/* Prometheus text exposition; route names by index. */
int chat__metrics_render(chat__metrics *m, const chat__route *routes,
                         int nroutes, chat__buf *out);

/* ---- rate limiting (token buckets keyed by string) ----------------------- */
typedef struct chat__rate {
    double per_second; /* refill; 0 = unlimited */
    double burst;      /* bucket size */
} chat__rate;

/* Parse "N/s", "N/m", "N/h" (burst N) or "0"/"off". */
int chat__rate_parse(const char *s, chat__rate *out);
int chat__ratelimit_new(chat__ratelimit **out);
void chat__ratelimit_free(chat__ratelimit *rl);
/* Take one token from bucket "key" under rate. CHAT_OK, or CHAT_ERATE
 * with *retry_after_s (>= 1) until one is available. Thread-safe. */
int chat__ratelimit_take(chat__ratelimit *rl, const chat__rate *rate,
                         const char *key, int *retry_after_s);
/* Share the limits with every instance that names the same Redis
 * (redis://[:password@]host[:port]): see ratelimit.c. Call once, before
 * any take. CHAT_OK; CHAT_EINVAL (bad URL); CHAT_EUNAVAIL (no Redis). */
int chat__ratelimit_share(chat__ratelimit *rl, const char *redis_url);
/* Wait (10 s at most) until a round that began after the call ended: what
 * was taken before is in Redis, and Redis's answer in the buckets. For
 * tests. CHAT_OK, CHAT_ETIMEDOUT, or CHAT_EINVAL when not shared. */
int chat__ratelimit_share_wait(chat__ratelimit *rl);
/* Live buckets (for tests: memory stays bounded). */
size_t chat__ratelimit_size(chat__ratelimit *rl);

#endif /* CHAT_HTTP_H */
