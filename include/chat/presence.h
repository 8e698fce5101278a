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
    /** The registry's epoch (see chat_presence_epoch()); NULL: none. */
    int (*epoch)(chat_presence *p, int64_t *epoch);
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

/** The registry's epoch: a number that changes whenever a user gets an
 *  entry on a gateway where they had none (written in the same pipeline,
 *  after the entry). What was located while the epoch read before it was
 *  current is still good, as far as new sockets go. One round trip.
 *  @return CHAT_OK; CHAT_EUNAVAIL; CHAT_EINVAL (a backend without
 *          epochs). */
CHAT_API int chat_presence_epoch(chat_presence *p, int64_t *epoch);

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
 * gateway's channel of @p bus gets the event once (chat_bus_publish_each).
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

/** A router that remembers, for a short time, which gateways each
 *  conversation's members are on (see chat_fanout_new()). */
typedef struct chat_fanout chat_fanout;

/** chat_fanout_opts.version of this header. */
#define CHAT_FANOUT_OPTS_VERSION 1

/** Options of chat_fanout_new(). The handles are borrowed and must
 *  outlive the router. */
typedef struct chat_fanout_opts {
    unsigned version; /**< CHAT_FANOUT_OPTS_VERSION */
    chat_store *store;
    chat_presence *presence;
    chat_bus *bus; /**< where events go (chat_bus_publish_to) */
    /** How long a conversation's gateways are reused: 0 = 100 ms; a
     *  negative value = never (every event as chat_fanout_route()). */
    int cache_ms;
} chat_fanout_opts;

/** Fill @p o with the defaults (for FFI callers). */
CHAT_API void chat_fanout_opts_init(chat_fanout_opts *o);

/**
 * A router for a fanout-worker. chat_fanout_event() routes like
 * chat_fanout_route(), except that an event for a conversation's members
 * (without explicit recipients) reuses the gateways found for that
 * conversation's previous event while they are younger than cache_ms and
 * the registry's epoch (chat_presence_epoch()) has not moved. The epoch
 * is read after the event arrived: one read serves every event whose
 * ev->received_us is not later than the read (Kafka's batch of what was
 * already fetched), so at 1,000 messages/s into a busy group that is a
 * GET per batch and a few lookups a second instead of a thousand members
 * queries and 100,000 presence reads. A socket that appears on a new
 * gateway moves the epoch, so it is never missed for the cache's sake
 * (an event with received_us 0 gets a read of its own); the price
 * is that a member added by an event this router did not see (another
 * worker's partition) may be missed for up to cache_ms (clients catch up
 * on conversation:updated, which goes to every gateway). A membership
 * change seen by the router drops that conversation at once. If the epoch
 * cannot be read, the event is routed without the cache.
 * @return CHAT_OK and *out; CHAT_EINVAL; CHAT_ENOMEM.
 */
CHAT_API CHAT_WARN_UNUSED int chat_fanout_new(chat_fanout **out,
                                              const chat_fanout_opts *o);

/** Route @p ev (see chat_fanout_new()). Blocks like chat_fanout_route(),
 *  with the same return values; thread-safe (lookups run outside the
 *  router's lock). */
CHAT_API int chat_fanout_event(chat_fanout *f, const chat_event *ev);

/** Free the router; NULL is accepted. */
CHAT_API void chat_fanout_free(chat_fanout *f);

CHAT_END_DECLS

#endif /* CHAT_PRESENCE_H */
