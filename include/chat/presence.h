/**
 * @file chat/presence.h
 * @brief Which realtime gateways a user is connected to, and routing an
 *        event to exactly those gateways.
 *
 * Distributed deployments run several realtime-gateways. Each one records
 * the users with a socket on it in a presence registry (user -> gateway
 * ids, each entry with a time to live that the gateway renews by
 * heartbeats); the fanout-worker looks the recipients of an event up and
 * publishes it on those gateways' own channels only
 * (chat_bus_publish_to()), instead of every gateway receiving every event.
 *
 * The registry is an interface; chat_presence_redis_new() is its backend
 * on Redis (hiredis). A registry that loses its data (a Redis restart)
 * recovers by itself: every gateway re-asserts all its users at its next
 * heartbeat, at most ttl_ms / 3 later. Entries of a gateway that died
 * expire after ttl_ms.
 *
 * Thread rules: every function is thread-safe. chat_presence_set() never
 * blocks (it queues; a thread of the registry talks to Redis), so a
 * gateway's service thread may call it. chat_presence_locate() and
 * chat_fanout_route() block on the network: call them from a worker or a
 * consumer thread.
 */
#ifndef CHAT_PRESENCE_H
#define CHAT_PRESENCE_H

#include <chat/bus.h>
#include <chat/common.h>
#include <chat/store.h>

CHAT_BEGIN_DECLS

typedef struct chat_presence chat_presence;

/** Operations of a presence backend. */
typedef struct chat_presence_ops {
    const char *name; /**< "redis" */
    int (*set)(chat_presence *p, const char *user_id, int online);
    int (*locate)(chat_presence *p, const char *const *user_ids, int n,
                  chat_id *gateways, int max, int *ngateways);
    void (*free)(chat_presence *p);
} chat_presence_ops;

/** Base of every presence object; backends embed it first. */
struct chat_presence {
    const chat_presence_ops *ops;
    char gateway_id[CHAT_ID_LEN + 1]; /**< "" for a locator */
};

/** Options of the Redis registry. Strings are borrowed for the call. */
typedef struct chat_presence_redis_opts {
    unsigned version; /**< CHAT_PRESENCE_REDIS_OPTS_VERSION */
    const char *url;  /**< redis://[:password@]host[:port]; NULL:
                           redis://127.0.0.1:6379 */
    /** This process's gateway id (a UUID): chat_presence_set() records
     *  users under it and a heartbeat thread renews them. NULL: the
     *  handle only locates (the fanout-worker). */
    const char *gateway_id;
    int ttl_ms;         /**< entry lifetime; heartbeats every ttl_ms / 3;
                             0 = 30000; at least 300 */
    int timeout_ms;     /**< connect and command timeout; 0 = 2000 */
    const char *prefix; /**< key prefix; NULL: "chat:presence:" */
} chat_presence_redis_opts;

#define CHAT_PRESENCE_REDIS_OPTS_VERSION 1

/** Defaults: everything 0/NULL but the version. */
CHAT_API void chat_presence_redis_opts_init(chat_presence_redis_opts *o);

/**
 * A registry in Redis: for each user a sorted set "<prefix><user_id>"
 * whose members are gateway ids, scored by the time (ms since the epoch)
 * the entry expires; the key itself expires 2 × ttl_ms after its last
 * renewal. Clocks of gateways and locators should agree to well within
 * ttl_ms (NTP).
 * @return CHAT_OK, CHAT_EINVAL (bad options), CHAT_EUNAVAIL (Redis cannot
 *         be reached now; later outages are retried with backoff).
 */
CHAT_API CHAT_WARN_UNUSED int
chat_presence_redis_new(chat_presence **out,
                        const chat_presence_redis_opts *opts);

/** Record that @p user_id has (online = 1) or no longer has (0) a socket
 *  on this gateway. Call it for the first and the last socket of a user;
 *  it returns at once (the write happens on the registry's thread).
 *  @return CHAT_OK, CHAT_EINVAL (no gateway_id, bad id), CHAT_ENOMEM. */
CHAT_API int chat_presence_set(chat_presence *p, const char *user_id,
                               int online);

/** The distinct live gateways of @p user_ids (n of them), at most
 *  @p max, into @p gateways; their number into @p ngateways. One round
 *  trip. @return CHAT_OK, CHAT_EUNAVAIL (Redis unreachable), CHAT_EINVAL. */
CHAT_API int chat_presence_locate(chat_presence *p, const char *const *user_ids,
                                  int n, chat_id *gateways, int max,
                                  int *ngateways);

/** The gateway id this handle records under; "" for a locator. The
 *  string lives as long as @p p. */
CHAT_API const char *chat_presence_gateway_id(const chat_presence *p);

/** Free the registry; NULL is accepted. A gateway's entries are removed
 *  (a clean shutdown); if Redis is unreachable they expire by their TTL. */
CHAT_API void chat_presence_free(chat_presence *p);

/**
 * Route @p ev to the gateways of its recipients: the members of
 * ev->conversation_id when ev->to_members (read from @p store at this
 * moment, so a member invited a moment ago is included and a removed one
 * is not), plus ev->recipients, located with @p presence; each such
 * gateway's channel of @p bus gets the event once (chat_bus_publish_to).
 * An event that changes membership (ev->members_changed) goes to every
 * gateway instead (chat_bus_publish), because any of them may cache that
 * conversation's members. The gateways still filter by their own view of
 * the members. Blocks (store, Redis).
 * @return CHAT_OK (also when no recipient is online), or the first error
 *         of the store, the registry or the bus: then the event may have
 *         reached only some gateways, and routing it again is safe
 *         (clients drop duplicates by seq).
 */
CHAT_API int chat_fanout_route(chat_store *store, chat_presence *presence,
                               chat_bus *bus, const chat_event *ev);

CHAT_END_DECLS

#endif /* CHAT_PRESENCE_H */
