/* The event bus over Redis pub/sub (hiredis).
 *
 * An event travels as one message on the channel: a JSON header (type,
 * conversation, actor, recipients, flags), a newline, then the payload
 * exactly as clients receive it. One connection publishes (under a lock,
 * reconnected on failure); a thread holds the subscription on a second
 * one and calls the subscribers, reconnecting with backoff when Redis
 * goes away. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>

#include <chat/bus.h>

#include "bus/redis_conn.h"
#include "bus/wire.h"
#include "core/internal.h"

typedef struct redis_bus {
    chat_bus base;
    chat__redis_target to;
    char channel[128];
    /* a gateway's own channel, "<channel>:gw:<id>"; "" if none */
    char own[128 + 4 + CHAT_ID_LEN + 1];

    pthread_mutex_t pub_lock;
    redisContext *pub;

    pthread_mutex_t lock; /* closing, sub (for shutdown), ready */
    pthread_cond_t ready_cond;
    int ready; /* subscribed at least once */
    int closing;
    redisContext *sub;
    pthread_t thread;
    int started;
    chat__subs subs;
} redis_bus;

void chat_redis_opts_init(chat_redis_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_REDIS_OPTS_VERSION;
    }
}

/* ---- publishing ------------------------------------------------------------
 */

/* A PUBLISH of ev on the shared channel (gateways NULL, n 1) or on each
 * of n gateways' own channels, pipelined: one round trip. hiredis copies
 * each command as it is appended, so one channel buffer serves all. On a
 * failure, one reconnect and the whole lot again (a channel may so get ev
 * twice; subscribers dedupe by seq). */
static int publish_on(redis_bus *b, const char *const *gateways, int n,
                      const chat_event *ev)
{
    chat__buf msg = CHAT__BUF_INIT;
    char channel[sizeof b->own];
    const char *argv[3] = {"PUBLISH", NULL, NULL};
    size_t lens[3];
    redisReply *r;
    int rc, attempt, i, sent;

    if ((rc = chat__event_encode(ev, &msg)) != CHAT_OK) {
        chat__buf_free(&msg);
        return rc;
    }
    argv[1] = gateways ? channel : b->channel;
    argv[2] = msg.data;
    lens[0] = 7;
    lens[2] = msg.len;
    rc = CHAT_EUNAVAIL;
    pthread_mutex_lock(&b->pub_lock);
    for (attempt = 0; attempt < 2 && rc != CHAT_OK; attempt++) {
        if (b->pub == NULL && (b->pub = chat__redis_connect(&b->to)) == NULL)
            continue;
        for (sent = 0; sent < n; sent++) {
            if (gateways)
                snprintf(channel, sizeof channel, "%s:gw:%s", b->channel,
                         gateways[sent]);
            lens[1] = strlen(argv[1]);
            if (redisAppendCommandArgv(b->pub, 3, argv, lens) != REDIS_OK)
                break;
        }
        rc = sent == n ? CHAT_OK : CHAT_EUNAVAIL;
        for (i = 0; i < sent; i++) { /* every reply, even after a failure */
            r = NULL;
            if (redisGetReply(b->pub, (void **)&r) != REDIS_OK || r == NULL) {
                rc = CHAT_EUNAVAIL;
                break;
            }
            if (r->type != REDIS_REPLY_INTEGER && rc == CHAT_OK) {
                chat__error(CHAT_EUNAVAIL, "Redis PUBLISH: %s",
                            r->str ? r->str : "unexpected reply");
                rc = CHAT_EUNAVAIL;
            }
            freeReplyObject(r);
        }
        if (rc != CHAT_OK) {
            if (b->pub->err)
                chat__error(CHAT_EUNAVAIL, "Redis PUBLISH: %s", b->pub->errstr);
            redisFree(b->pub); /* reconnect: the context may be unusable */
            b->pub = NULL;
        }
    }
    pthread_mutex_unlock(&b->pub_lock);
    chat__buf_free(&msg);
    return rc;
}

static int redis_publish(chat_bus *base, const chat_event *ev)
{
    return publish_on((redis_bus *)base, NULL, 1, ev);
}

static int redis_publish_each(chat_bus *base, const char *const *targets, int n,
                              const chat_event *ev)
{
    int i;

    for (i = 0; i < n; i++)
        if (!chat_uuid_valid(targets[i]))
            return chat__error(CHAT_EINVAL, "gateway id is not a UUID");
    return publish_on((redis_bus *)base, targets, n, ev);
}

static int redis_publish_to(chat_bus *base, const char *target,
                            const chat_event *ev)
{
    return redis_publish_each(base, &target, 1, ev);
}

/* ---- subscribing ----------------------------------------------------------
 */

static int closing(redis_bus *b)
{
    int c;

    pthread_mutex_lock(&b->lock);
    c = b->closing;
    pthread_mutex_unlock(&b->lock);
    return c;
}

static void *sub_main(void *arg)
{
    redis_bus *b = arg;
    unsigned backoff_ms = 100;
    int was_connected = 1;

    while (!closing(b)) {
        const char *argv[3] = {"SUBSCRIBE", b->channel, b->own};
        redisContext *c = chat__redis_connect(&b->to);
        redisReply *r = NULL;

        if (c) {
            struct timeval none = {0, 0};
            /* both channels are subscribed when the first answer comes;
             * the second answer is skipped by the loop below */
            r = redisCommandArgv(c, b->own[0] ? 3 : 2, argv, NULL);
            redisSetTimeout(c, none); /* then wait for messages forever */
        }
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            struct timespec ts;
            if (r)
                freeReplyObject(r);
            if (c)
                redisFree(c);
            if (was_connected)
                CHAT_LOG(CHAT_LOG_WARN,
                         "component=bus backend=redis event=disconnected"
                         " msg=\"%s\" action=retry",
                         chat_error_last()->message);
            was_connected = 0;
            ts.tv_sec = backoff_ms / 1000;
            ts.tv_nsec = (long)(backoff_ms % 1000) * 1000000L;
            nanosleep(&ts, NULL);
            backoff_ms = backoff_ms < 2000 ? backoff_ms * 2 : 2000;
            continue;
        }
        freeReplyObject(r);
        if (!was_connected)
            CHAT_LOG(CHAT_LOG_INFO, "component=bus backend=redis"
                                    " event=reconnected (events published"
                                    " meanwhile were not received)");
        was_connected = 1;
        backoff_ms = 100;
        pthread_mutex_lock(&b->lock);
        b->sub = c;
        b->ready = 1;
        pthread_cond_broadcast(&b->ready_cond);
        if (b->closing) /* free() ran before we published c */
            shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&b->lock);
        for (;;) {
            void *reply = NULL;
            redisReply *rr;
            if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL)
                break;
            rr = reply;
            if (rr->type == REDIS_REPLY_ARRAY && rr->elements == 3 &&
                rr->element[0]->type == REDIS_REPLY_STRING &&
                !strcmp(rr->element[0]->str, "message") &&
                rr->element[2]->type == REDIS_REPLY_STRING)
                if (chat__event_dispatch(&b->subs, rr->element[2]->str,
                                         rr->element[2]->len,
                                         chat__mono_us()) == CHAT_EPROTO)
                    CHAT_LOG(CHAT_LOG_WARN,
                             "component=bus backend=redis"
                             " event=bad_message msg=\"%s\"",
                             chat_error_last()->message);
            freeReplyObject(rr);
        }
        pthread_mutex_lock(&b->lock);
        b->sub = NULL;
        pthread_mutex_unlock(&b->lock);
        chat__error(CHAT_EUNAVAIL, "Redis subscription: %s", c->errstr);
        redisFree(c);
    }
    return NULL;
}

static int redis_subscribe(chat_bus *base, chat_event_fn fn, void *userdata)
{
    return chat__subs_add(&((redis_bus *)base)->subs, fn, userdata);
}

static void redis_free(chat_bus *base)
{
    redis_bus *b = (redis_bus *)base;

    pthread_mutex_lock(&b->lock);
    b->closing = 1;
    if (b->sub) /* wakes the subscriber thread out of its read */
        shutdown(b->sub->fd, SHUT_RDWR);
    pthread_mutex_unlock(&b->lock);
    if (b->started)
        pthread_join(b->thread, NULL);
    if (b->pub)
        redisFree(b->pub);
    chat__redis_target_free(&b->to);
    chat__subs_destroy(&b->subs);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->ready_cond);
    pthread_mutex_destroy(&b->pub_lock);
    chat__free(b);
}

static int redis_ping(chat_bus *base)
{
    redis_bus *b = (redis_bus *)base;
    redisReply *r = NULL;
    int rc = CHAT_EUNAVAIL;

    pthread_mutex_lock(&b->pub_lock);
    if (b->pub == NULL)
        b->pub = chat__redis_connect(&b->to);
    if (b->pub && (r = redisCommand(b->pub, "PING")) != NULL &&
        r->type == REDIS_REPLY_STATUS)
        rc = CHAT_OK;
    else if (b->pub) {
        chat__error(CHAT_EUNAVAIL, "Redis PING: %s",
                    r && r->type == REDIS_REPLY_ERROR ? r->str
                                                      : b->pub->errstr);
        if (r == NULL) { /* the context is unusable: reconnect next time */
            redisFree(b->pub);
            b->pub = NULL;
        }
    }
    pthread_mutex_unlock(&b->pub_lock);
    if (r)
        freeReplyObject(r);
    return rc;
}

static const chat_bus_ops g_redis_ops = {
    "redis",          redis_publish, redis_subscribe,   redis_free,
    redis_publish_to, redis_ping,    redis_publish_each};

int chat_bus_redis_new(chat_bus **out, const chat_redis_opts *o)
{
    redis_bus *b;
    int rc;

    CHAT_ASSERT_ARG(out && o);
    if (o->version < 1 || o->version > CHAT_REDIS_OPTS_VERSION)
        return chat__error(CHAT_EINVAL, "chat_redis_opts: unknown version");
    if (o->channel && (!*o->channel || strlen(o->channel) >= 128))
        return chat__error(CHAT_EINVAL, "channel must be 1-127 bytes");
    if (o->version >= 2 && o->gateway_id && !chat_uuid_valid(o->gateway_id))
        return chat__error(CHAT_EINVAL, "gateway_id must be a UUID");
    if ((b = chat__calloc(1, sizeof *b)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    b->base.ops = &g_redis_ops;
    chat__subs_init(&b->subs);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->ready_cond, NULL);
    pthread_mutex_init(&b->pub_lock, NULL);
    snprintf(b->channel, sizeof b->channel, "%s",
             o->channel ? o->channel : "chat:events");
    if (o->version >= 2 && o->gateway_id)
        snprintf(b->own, sizeof b->own, "%s:gw:%s", b->channel, o->gateway_id);
    if ((rc = chat__redis_target_parse(&b->to, o->url, o->timeout_ms)) !=
        CHAT_OK) {
        redis_free(&b->base);
        return rc;
    }
    /* fail now if Redis is not there; later outages are retried */
    if ((b->pub = chat__redis_connect(&b->to)) == NULL) {
        rc = chat_error_last()->code;
        redis_free(&b->base);
        return rc;
    }
    if (pthread_create(&b->thread, NULL, sub_main, b) != 0) {
        redis_free(&b->base);
        return chat__error(CHAT_ERROR, "cannot start the Redis subscriber");
    }
    b->started = 1;
    pthread_setname_np(b->thread, "chat-redis");
    /* an event published once this returns reaches this bus's subscribers */
    {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += b->to.timeout.tv_sec + 1;
        pthread_mutex_lock(&b->lock);
        while (!b->ready &&
               pthread_cond_timedwait(&b->ready_cond, &b->lock, &until) == 0)
            ;
        rc = b->ready;
        pthread_mutex_unlock(&b->lock);
        if (!rc) {
            redis_free(&b->base);
            return chat__error(CHAT_EUNAVAIL, "Redis: cannot subscribe");
        }
    }
    *out = &b->base;
    return CHAT_OK;
}
