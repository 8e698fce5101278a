/**
 * @file chat/server.h
 * @brief The REST front end and its services (users, chats, messages) as
 *        one embeddable server. `chatd` is a thin main around this.
 *
 * Thread rules: chat_server_new/run/free from one thread; run blocks and
 * serves until chat_server_stop(), which any thread (e.g. a signal-waiting
 * thread) may call. Requests are handled on internal worker threads.
 */
#ifndef CHAT_SERVER_H
#define CHAT_SERVER_H

#include <chat/bus.h>
#include <chat/presence.h>
#include <chat/common.h>
#include <chat/store.h>

CHAT_BEGIN_DECLS

/** Services a server mounts (edge prefixes /api/users, /api/chats,
 *  /api/messages). */
enum {
    CHAT_SERVICE_USERS = 1u << 0,
    CHAT_SERVICE_CHATS = 1u << 1,
    CHAT_SERVICE_MESSAGES = 1u << 2,
    /** Socket.IO at /socket.io/ and /ws/socket.io/ (docs/realtime.md) */
    CHAT_SERVICE_REALTIME = 1u << 3,
    CHAT_SERVICE_ALL = 15u,
    /** None of the above: only /healthz, /readyz and /metrics (a worker
     *  process such as the fanout-worker); no store needed. */
    CHAT_SERVICE_NONE = 1u << 4,
};

typedef struct chat_server chat_server;

typedef struct chat_server_opts {
    unsigned version;          /**< CHAT_SERVER_OPTS_VERSION */
    const char *listen_host;   /**< NULL = all interfaces */
    int port;                  /**< 0 = an ephemeral port */
    chat_store *store;         /**< borrowed; must outlive the server */
    chat_log *log;             /**< borrowed; needed for MESSAGES */
    const uint8_t *jwt_secret; /**< >= CHAT_JWT_SECRET_MIN bytes; copied */
    size_t jwt_secret_len;
    int access_ttl_s;         /**< 0 = CHAT_ACCESS_TTL_DEFAULT */
    int refresh_ttl_s;        /**< 0 = CHAT_REFRESH_TTL_DEFAULT */
    unsigned services;        /**< CHAT_SERVICE_* bits; 0 = all */
    int workers;              /**< request workers; 0 = 4 */
    size_t max_body;          /**< 0 = CHAT_HTTP_BODY_MAX_DEFAULT */
    const char *cors_origins; /**< "*" or "https://a,https://b"; NULL off */
    int trust_proxy; /**< client IP from X-Forwarded-For (behind nginx) */
    /** Rate limits as "N/s", "N/m", "N/h" or "off"; NULL = default. */
    const char *rate_login_ip;      /**< login+register per IP: "30/m" */
    const char *rate_login_account; /**< login per account: "10/m" */
    const char *rate_send;          /**< sends per user: "20/s" */
    const char *rate_token;         /**< requests per token: "100/s" */
    /** Where services publish events and the gateway listens; borrowed.
     *  NULL = an in-process bus the server owns. */
    chat_bus *bus;
    /* realtime (CHAT_SERVICE_REALTIME); 0 = the default */
    int rt_ping_interval_ms; /**< Engine.IO pingInterval: 25000 */
    int rt_ping_timeout_ms;  /**< Engine.IO pingTimeout: 20000 */
    int rt_auth_timeout_ms;  /**< authenticate within: 10000 */
    int rt_max_per_user;     /**< sockets per user: 20 (-1 = no limit) */
    int rt_max_per_ip;       /**< sockets per address: 1000 (-1 = none) */
    const char *rate_events; /**< events per socket: "20/s" */
    /** A realtime-gateway among several: the registry where it records
     *  which users have sockets on it (chat/presence.h), and which it asks
     *  before telling peers that a user went offline; borrowed. NULL: the
     *  only gateway (chatd). */
    chat_presence *presence;
    /** Since version 2. Share the rate limits (rate_*, but not the
     *  per-socket rate_events) with every server given the same Redis,
     *  redis://[:password@]host[:port]: a user's sends, an address's
     *  logins count once across all instances, give or take what each
     *  instance lets through in one 50 ms round. A take never waits for
     *  Redis; while Redis is unreachable each instance keeps its own
     *  limits. NULL = this process's limits only. */
    const char *rate_redis_url;
    /** Since version 2. GET /readyz asks the store, the log, the bus
     *  given in @c bus (chat_bus_ping) and the presence registry; then
     *  this, if set, for what only the application knows (the
     *  fanout-worker: its Kafka input). It runs on a request worker and
     *  may block; it returns CHAT_OK when ready, else sets @p backend to
     *  a static name for the answer. */
    int (*ready)(void *ready_ud, const char **backend);
    void *ready_ud; /**< passed to ready */
} chat_server_opts;

#define CHAT_SERVER_OPTS_VERSION 2
#define CHAT_SERVER_OPTS_INIT                                                  \
    {                                                                          \
        .version = CHAT_SERVER_OPTS_VERSION                                    \
    }

/** Fill @p o with defaults (for FFI callers). */
CHAT_API void chat_server_opts_init(chat_server_opts *o);

/**
 * Check the options that need no backend (the rate strings,
 * rate_redis_url's syntax, the connection caps) without building
 * anything, so that a daemon can refuse bad configuration before it opens
 * its backends. @return CHAT_OK or CHAT_EINVAL with a message naming the
 * option.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_server_opts_check(const chat_server_opts *opts);

/**
 * Build the server and bind its listening socket.
 * @return CHAT_OK and *out; CHAT_EINVAL for bad options (a bad rate string,
 *         short secret, missing store/log, bad rate_redis_url); CHAT_EIO
 *         if it cannot listen; CHAT_EUNAVAIL if rate_redis_url does not
 *         answer.
 */
CHAT_API CHAT_WARN_UNUSED int chat_server_new(chat_server **out,
                                              const chat_server_opts *opts);

/** The port actually bound (useful with port 0). */
CHAT_API int chat_server_port(const chat_server *s);

/**
 * Serve until chat_server_stop(). On stop, new requests get 503 and
 * requests in flight are answered (up to 10 s) before it returns, so no
 * acknowledged write is lost.
 */
CHAT_API int chat_server_run(chat_server *s);

/** Ask chat_server_run() to return. Thread-safe; idempotent. */
CHAT_API void chat_server_stop(chat_server *s);

/** Free a stopped server; NULL is accepted. The store and log stay open. */
CHAT_API void chat_server_free(chat_server *s);

CHAT_END_DECLS

#endif /* CHAT_SERVER_H */
