/**
 * @file chat/bus.h
 * @brief The event bus between the services that change state (messages,
 *        chats) and the realtime gateway that tells clients.
 *
 * An interface with backends: chat_bus_local_new() delivers in-process
 * (chatd); Kafka and Redis backends implement the same operations for the
 * distributed daemons.
 *
 * Thread rules: chat_bus_publish() and chat_bus_subscribe() are
 * thread-safe. Subscribers are called on a bus-owned or publishing thread
 * (the local bus calls them synchronously inside chat_bus_publish; the
 * Redis and Kafka buses on their consumer thread), so a
 * subscriber must copy what it keeps and return quickly; the event and its
 * strings are borrowed for the call only.
 */
#ifndef CHAT_BUS_H
#define CHAT_BUS_H

#include <chat/common.h>
#include <chat/limits.h>

CHAT_BEGIN_DECLS

/** What happened; each maps to one Socket.IO event name. */
typedef enum chat_event_type {
    CHAT_EVENT_MESSAGE_NEW = 1,          /**< "message:new" */
    CHAT_EVENT_READ_UPDATED = 2,         /**< "read:updated" */
    CHAT_EVENT_CONVERSATION_UPDATED = 3, /**< "conversation:updated" */
    CHAT_EVENT_TYPING = 4,               /**< "typing" */
    CHAT_EVENT_PRESENCE = 5,             /**< "presence" */
} chat_event_type;

/** The Socket.IO event name of @p type ("message:new", ...), or NULL. */
CHAT_API const char *chat_event_name(chat_event_type type);

/** One event. Who receives it: every member of conversation_id when
 *  to_members is set (as the gateway knows them when it delivers), plus
 *  each user in recipients; never the socket-less. */
typedef struct chat_event {
    chat_event_type type;
    const char *conversation_id; /**< may be NULL (presence) */
    const char *user_id;         /**< who caused it */
    int to_members;
    const char *const *recipients; /**< user ids; may be NULL */
    int nrecipients;
    /** The event's JSON object exactly as clients receive it. */
    const char *payload;
    size_t payload_len;
    /** Membership changed (conversation:updated): caches of
     *  conversation_id's members are stale. */
    int members_changed;
    /** Set by the bus for subscribers (ignored when publishing): a time
     *  (CLOCK_MONOTONIC, microseconds) by which the event had reached this
     *  process, so everything that happened before it was published
     *  happened before then. Kafka: when the batch holding it was taken
     *  from the consumer's queue; Redis: when it was read; local: when it
     *  was published. */
    int64_t received_us;
} chat_event;

/** A subscriber. It runs on the backend's delivery thread (the
 *  publishing thread for the local bus); @p ev and everything it points to
 *  are valid for the call only.
 *
 *  Return CHAT_OK once the event is handled. Any other value says it was
 *  not: a backend with a durable input (Kafka) then neither commits the
 *  record nor any later one of its partition, and delivers it again (to
 *  this handle after a pause, or to another member of the group once this
 *  one is gone), so nothing that was refused is lost. The other backends
 *  deliver at most once and ignore the value. */
typedef int (*chat_event_fn)(const chat_event *ev, void *userdata);

typedef struct chat_bus chat_bus;

/** Operations of a bus backend. */
typedef struct chat_bus_ops {
    const char *name; /**< "local", "kafka", "redis" */
    int (*publish)(chat_bus *b, const chat_event *ev);
    int (*subscribe)(chat_bus *b, chat_event_fn fn, void *userdata);
    void (*free)(chat_bus *b);
    /** Publish to one gateway's subscribers only; NULL for a backend
     *  without per-gateway delivery (local, Kafka). */
    int (*publish_to)(chat_bus *b, const char *gateway_id,
                      const chat_event *ev);
    /** Whether the backend answers now; NULL = always (local). */
    int (*ping)(chat_bus *b);
    /** publish_to for each of n gateways, in one round trip; NULL: the
     *  library calls publish_to for each. */
    int (*publish_each)(chat_bus *b, const char *const *gateway_ids, int n,
                        const chat_event *ev);
} chat_bus_ops;

/** Base of every bus object; backends embed it first. */
struct chat_bus {
    const chat_bus_ops *ops;
};

/** An in-process bus: publish calls every subscriber before returning. */
CHAT_API CHAT_WARN_UNUSED int chat_bus_local_new(chat_bus **out);

/** Options of the Redis bus. Strings are borrowed for the call only. */
typedef struct chat_redis_opts {
    unsigned version;    /**< CHAT_REDIS_OPTS_VERSION */
    const char *url;     /**< redis://[:password@]host[:port]; NULL:
                              redis://127.0.0.1:6379 */
    const char *channel; /**< pub/sub channel; NULL: "chat:events" */
    int timeout_ms;      /**< connect and command timeout; 0 = 2000 */
    /** Version 2: this handle is a realtime gateway's: besides channel it
     *  subscribes to its own "<channel>:gw:<gateway_id>", which
     *  chat_bus_publish_to() addresses. A UUID; NULL: channel only. */
    const char *gateway_id;
} chat_redis_opts;

#define CHAT_REDIS_OPTS_VERSION 2

/** Defaults: everything 0/NULL but the version. */
CHAT_API void chat_redis_opts_init(chat_redis_opts *o);

/**
 * A bus over Redis pub/sub, for services in different processes: publish
 * sends the event on the channel (one PUBLISH); a thread of this bus
 * holds a subscription and calls the subscribers for every event on the
 * channel, this process's own included. Delivery is at most once: events
 * published while a subscriber is disconnected are not replayed (it
 * reconnects by itself, with backoff, and logs the gap; clients catch up
 * from the message log). publish returns CHAT_EUNAVAIL when Redis cannot
 * be reached (after one reconnect attempt). chat_bus_publish() reaches
 * every handle; chat_bus_publish_to() only the gateway handle opened with
 * that gateway_id (the fanout-worker routes through it, see
 * chat/presence.h). Options of version 1 are accepted.
 * @return CHAT_OK, CHAT_EINVAL (bad URL), CHAT_EUNAVAIL (cannot connect).
 */
CHAT_API CHAT_WARN_UNUSED int chat_bus_redis_new(chat_bus **out,
                                                 const chat_redis_opts *opts);

/** Options of the Kafka bus. Strings are borrowed for the call only. */
typedef struct chat_kafka_opts {
    unsigned version;           /**< CHAT_KAFKA_OPTS_VERSION */
    const char *brokers;        /**< "host:port[,host:port]"; required */
    const char *messages_topic; /**< message:new; NULL: "chat.messages" */
    const char *events_topic;   /**< every other event; NULL: "chat.events" */
    const char *group_id;       /**< consume in this consumer group (from
                                     the earliest uncommitted offset); NULL:
                                     publish only */
    int timeout_ms;             /**< open and the flush at free; 0 = 5000 */
    /** Since version 2: the longest a consumer's fetch waits for data
     *  (fetch.wait.max.ms); 0 = 20. Brokers answer as soon as data
     *  arrives, so this only sets how often an idle consumer asks; a
     *  cluster that waits it out (librdkafka's mock) adds it to every
     *  delivery. 1..1000. */
    int fetch_wait_ms;
} chat_kafka_opts;

#define CHAT_KAFKA_OPTS_VERSION 2

/** Defaults: everything 0/NULL but the version. */
CHAT_API void chat_kafka_opts_init(chat_kafka_opts *o);

/**
 * A bus over Kafka (librdkafka). publish produces one record, key = the
 * conversation (the user for presence) so a conversation's events keep
 * their order, with an idempotent producer and acks=all; it returns once
 * the record is queued (failures to deliver are logged). With a group_id,
 * the first chat_bus_subscribe() starts a consumer in that group: every
 * record is decoded and handed to the subscribers, and its offset is
 * committed only after they returned (at least once: after a crash the
 * uncommitted records come again). chat_bus_free() flushes the producer
 * (up to timeout_ms) and commits the consumer's offsets.
 * @return CHAT_OK, CHAT_EINVAL (bad options), CHAT_EUNAVAIL (no broker
 *         answered within timeout_ms).
 */
CHAT_API CHAT_WARN_UNUSED int chat_bus_kafka_new(chat_bus **out,
                                                 const chat_kafka_opts *opts);

/** Publish @p ev to every subscriber. CHAT_OK, or the backend's error
 *  (then the event may not have reached anyone). */
CHAT_API int chat_bus_publish(chat_bus *b, const chat_event *ev);

/** Publish @p ev to the subscribers of one gateway's handle only
 *  (chat_redis_opts.gateway_id). CHAT_OK; CHAT_EINVAL if the backend has
 *  no per-gateway delivery or @p gateway_id is not a UUID; or the
 *  backend's error. Thread-safe. */
CHAT_API int chat_bus_publish_to(chat_bus *b, const char *gateway_id,
                                 const chat_event *ev);

/** chat_bus_publish_to() for each of @p gateway_ids[0..n), in one round
 *  trip where the backend can (Redis pipelines the PUBLISHes). CHAT_OK
 *  once every one was published; else the first error (some may have
 *  been published). Thread-safe. */
CHAT_API int chat_bus_publish_each(chat_bus *b, const char *const *gateway_ids,
                                   int n, const chat_event *ev);

/** Whether the bus's backend answers now (readiness checks): one round
 *  trip (Redis PING, Kafka metadata, 2 s at most). CHAT_OK or
 *  CHAT_EUNAVAIL. Thread-safe; blocks. */
CHAT_API int chat_bus_ping(chat_bus *b);

/** Add a subscriber; it stays until the bus is freed. At most 16 on the
 *  local bus (CHAT_ELIMIT beyond). */
CHAT_API int chat_bus_subscribe(chat_bus *b, chat_event_fn fn, void *userdata);

/** Free the bus; NULL is accepted. No publish may be running. */
CHAT_API void chat_bus_free(chat_bus *b);

CHAT_END_DECLS

#endif /* CHAT_BUS_H */
