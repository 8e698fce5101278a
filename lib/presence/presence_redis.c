/* The presence registry on Redis (chat/presence.h).
 *
 * Per user a sorted set "<prefix><user>": gateway id -> expiry (ms since
 * the epoch). A gateway keeps the set of its online users in memory;
 * chat_presence_set() changes that set and queues the change, and one
 * thread per gateway handle writes the queue to Redis (pipelined) and,
 * every ttl / 3, renews every online user's entry. After any Redis error
 * the next round is a full renewal, which is also how the registry comes
 * back after Redis lost its data. A round that writes entries (a user's
 * first socket here, or a renewal, which re-adds what Redis lost) also
 * bumps "<prefix>epoch", after them, so that routers caching lookups know
 * to look again. Lookups use
 * their own connection. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chat/presence.h>

#include "bus/redis_conn.h"
#include "core/internal.h"

#define USER_BUCKETS 4096
#define CHANGES_MAX  100000 /* queued beyond this: one full renewal */

typedef struct puser {
    struct puser *next;
    char id[CHAT_ID_LEN + 1];
} puser;

typedef struct change {
    struct change *next;
    char id[CHAT_ID_LEN + 1];
    int online;
} change;

typedef struct redis_presence {
    chat_presence base;
    chat__redis_target to;
    char prefix[64];
    int ttl_ms;

    pthread_mutex_t lock; /* users, changes, flags */
    pthread_cond_t cond;
    puser *users[USER_BUCKETS];
    size_t nusers;
    change *head, *tail;
    size_t nchanges;
    int overflow; /* changes were dropped: renew everything */
    int closing;
    pthread_t thread;
    int started;

    pthread_mutex_t loc_lock;
    redisContext *loc;
} redis_presence;

void chat_presence_redis_opts_init(chat_presence_redis_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_PRESENCE_REDIS_OPTS_VERSION;
    }
}

static void key_of(const redis_presence *p, const char *user, char *out,
                   size_t n)
{
    snprintf(out, n, "%s%s", p->prefix, user);
}

/* ---- writing (the gateway's thread) -------------------------------------
 */

/* Append one user's renewal (online) or removal to c's pipeline; the
 * number of replies it will produce. */
static int append_user(redis_presence *p, redisContext *c, const char *user,
                       int online, int64_t expires_ms)
{
    char key[128], score[24], ttl[24];

    key_of(p, user, key, sizeof key);
    if (!online) {
        const char *argv[3] = {"ZREM", key, p->base.gateway_id};
        redisAppendCommandArgv(c, 3, argv, NULL);
        return 1;
    }
    snprintf(score, sizeof score, "%lld", (long long)expires_ms);
    snprintf(ttl, sizeof ttl, "%d", 2 * p->ttl_ms);
    {
        const char *zadd[4] = {"ZADD", key, score, p->base.gateway_id};
        const char *expire[3] = {"PEXPIRE", key, ttl};
        const char *trim[4] = {"ZREMRANGEBYSCORE", key, "-inf", NULL};
        char now[24];
        /* entries of gateways that died without saying so go too */
        snprintf(now, sizeof now, "(%lld", (long long)chat_time_now_ms());
        trim[3] = now;
        redisAppendCommandArgv(c, 4, trim, NULL);
        redisAppendCommandArgv(c, 4, zadd, NULL);
        redisAppendCommandArgv(c, 3, expire, NULL);
    }
    return 3;
}

/* Read n pipelined replies; CHAT_OK or CHAT_EUNAVAIL. */
static int drain(redisContext *c, int n)
{
    int rc = CHAT_OK;

    while (n-- > 0) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
            return chat__error(CHAT_EUNAVAIL, "Redis: %s", c->errstr);
        if (((redisReply *)r)->type == REDIS_REPLY_ERROR)
            rc =
                chat__error(CHAT_EUNAVAIL, "Redis: %s", ((redisReply *)r)->str);
        freeReplyObject(r);
    }
    return rc;
}

/* Every online user's id, copied under the lock. */
static chat_id *snapshot(redis_presence *p, size_t *n)
{
    chat_id *ids = chat__calloc(p->nusers ? p->nusers : 1, sizeof *ids);
    size_t i, k = 0;

    if (ids == NULL)
        return NULL;
    for (i = 0; i < USER_BUCKETS; i++)
        for (puser *u = p->users[i]; u; u = u->next)
            memcpy(ids[k++].id, u->id, sizeof u->id);
    *n = k;
    return ids;
}

static void free_changes(change *c)
{
    while (c) {
        change *next = c->next;
        chat__free(c);
        c = next;
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *writer_main(void *arg)
{
    redis_presence *p = arg;
    redisContext *c = NULL;
    int64_t next_renewal = 0;
    unsigned backoff_ms = 100;
    int full = 1, warned = 0;

    pthread_mutex_lock(&p->lock);
    while (!p->closing) {
        int64_t now = chat__mono_us() / 1000;
        chat_id *all = NULL;
        size_t nall = 0;
        change *list;
        int rc = CHAT_OK, replies = 0, renew;

        if (p->head == NULL && !p->overflow && now < next_renewal) {
            struct timespec until;
            int64_t wait = next_renewal - now;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += (time_t)(wait / 1000);
            until.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->cond, &p->lock, &until);
            continue;
        }
        list = p->head;
        p->head = p->tail = NULL;
        p->nchanges = 0;
        renew = full || p->overflow || now >= next_renewal;
        p->overflow = 0;
        if (renew && (all = snapshot(p, &nall)) == NULL)
            renew = 0, full = 1; /* out of memory: again next round */
        pthread_mutex_unlock(&p->lock);

        if (c == NULL && (c = chat__redis_connect(&p->to)) == NULL) {
            rc = chat_error_last()->code;
        } else {
            int64_t expires = chat_time_now_ms() + p->ttl_ms;
            /* renewals too: after Redis lost its data they add again */
            int added = nall > 0;
            /* removals first: a full renewal does not name those users */
            for (change *ch = list; ch; ch = ch->next) {
                replies += append_user(p, c, ch->id, ch->online, expires);
                added |= ch->online;
            }
            for (size_t i = 0; i < nall; i++)
                replies += append_user(p, c, all[i].id, 1, expires);
            if (added) {
                char key[96];
                const char *argv[2] = {"INCR", key};
                snprintf(key, sizeof key, "%sepoch", p->prefix);
                redisAppendCommandArgv(c, 2, argv, NULL);
                replies++;
            }
            rc = drain(c, replies);
        }
        free_changes(list);
        chat__free(all);
        if (rc != CHAT_OK) {
            if (!warned)
                CHAT_LOG(CHAT_LOG_WARN,
                         "component=presence backend=redis event=unavailable"
                         " msg=\"%s\" action=retry",
                         chat_error_last()->message);
            warned = 1;
            if (c)
                redisFree(c);
            c = NULL;
            full = 1;
            sleep_ms(backoff_ms);
            backoff_ms = backoff_ms < 2000 ? backoff_ms * 2 : 2000;
        } else {
            if (warned)
                CHAT_LOG(CHAT_LOG_INFO,
                         "component=presence backend=redis"
                         " event=reconnected users=%zu",
                         nall);
            warned = 0;
            backoff_ms = 100;
            if (renew) {
                full = 0;
                next_renewal = now + p->ttl_ms / 3;
            }
        }
        pthread_mutex_lock(&p->lock);
    }
    /* a clean stop: this gateway's users are no longer here */
    {
        size_t n = 0;
        chat_id *all = snapshot(p, &n);
        pthread_mutex_unlock(&p->lock);
        if (all && (c || (c = chat__redis_connect(&p->to)) != NULL)) {
            int replies = 0;
            for (size_t i = 0; i < n; i++)
                replies += append_user(p, c, all[i].id, 0, 0);
            (void)drain(c, replies);
        }
        chat__free(all);
    }
    if (c)
        redisFree(c);
    return NULL;
}

static int presence_set(chat_presence *base, const char *user, int online)
{
    redis_presence *p = (redis_presence *)base;
    unsigned h;
    puser **pp, *u;
    change *ch;
    int rc = CHAT_OK;

    if (!p->base.gateway_id[0])
        return chat__error(CHAT_EINVAL, "a locator has no gateway id");
    if (!chat_uuid_valid(user))
        return chat__error(CHAT_EINVAL, "user id is not a UUID");
    h = chat__str_hash(user) % USER_BUCKETS;
    pthread_mutex_lock(&p->lock);
    for (pp = &p->users[h]; *pp && strcmp((*pp)->id, user); pp = &(*pp)->next)
        ;
    if (online && *pp == NULL) {
        if ((u = chat__calloc(1, sizeof *u)) == NULL) {
            rc = chat__error(CHAT_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(u->id, user, sizeof u->id);
        u->next = p->users[h];
        p->users[h] = u;
        p->nusers++;
    } else if (!online && *pp) {
        u = *pp;
        *pp = u->next;
        chat__free(u);
        p->nusers--;
    }
    if (p->nchanges >= CHANGES_MAX ||
        (ch = chat__calloc(1, sizeof *ch)) == NULL) {
        /* the next full renewal carries the online users; a removal that
         * was dropped expires with its TTL */
        p->overflow = 1;
    } else {
        memcpy(ch->id, user, sizeof ch->id);
        ch->online = online != 0;
        if (p->tail)
            p->tail->next = ch;
        else
            p->head = ch;
        p->tail = ch;
        p->nchanges++;
    }
    pthread_cond_signal(&p->cond);
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---- locating -----------------------------------------------------------
 */

static int add_gateway(chat_id *gw, int max, int *n, const char *id, size_t len)
{
    int i;

    if (len != CHAT_ID_LEN)
        return CHAT_OK; /* not ours */
    for (i = 0; i < *n; i++)
        if (!memcmp(gw[i].id, id, CHAT_ID_LEN))
            return CHAT_OK;
    if (*n == max)
        return chat__error(CHAT_ELIMIT, "more than %d gateways", max);
    memcpy(gw[*n].id, id, CHAT_ID_LEN);
    gw[*n].id[CHAT_ID_LEN] = '\0';
    (*n)++;
    return CHAT_OK;
}

static int locate_once(redis_presence *p, const char *const *users, int n,
                       chat_id *gw, int max, int *ngw)
{
    char key[128], now[24];
    const char *argv[4] = {"ZRANGEBYSCORE", key, now, "+inf"};
    int i, rc = CHAT_OK, sent = 0;

    snprintf(now, sizeof now, "%lld", (long long)chat_time_now_ms());
    for (i = 0; i < n; i++) {
        if (users[i] == NULL || strlen(users[i]) > CHAT_ID_LEN)
            continue;
        key_of(p, users[i], key, sizeof key);
        redisAppendCommandArgv(p->loc, 4, argv, NULL);
        sent++;
    }
    *ngw = 0;
    for (i = 0; i < sent; i++) {
        void *v = NULL;
        redisReply *r;
        if (redisGetReply(p->loc, &v) != REDIS_OK || v == NULL)
            return chat__error(CHAT_EUNAVAIL, "Redis: %s", p->loc->errstr);
        r = v;
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t k = 0; k < r->elements && rc == CHAT_OK; k++)
                if (r->element[k]->type == REDIS_REPLY_STRING)
                    rc = add_gateway(gw, max, ngw, r->element[k]->str,
                                     r->element[k]->len);
        freeReplyObject(r);
    }
    return rc;
}

/* Run op(p, arg) on the lookup connection; if it fails with
 * CHAT_EUNAVAIL, once more on a new connection (the old one may be out of
 * step or dead). */
static int on_lookup_conn(redis_presence *p,
                          int (*op)(redis_presence *p, void *arg), void *arg)
{
    int rc = CHAT_EUNAVAIL, attempt;

    pthread_mutex_lock(&p->loc_lock);
    for (attempt = 0; attempt < 2; attempt++) {
        if (p->loc == NULL && (p->loc = chat__redis_connect(&p->to)) == NULL) {
            rc = chat_error_last()->code;
            continue;
        }
        rc = op(p, arg);
        if (rc != CHAT_EUNAVAIL)
            break;
        redisFree(p->loc); /* start over */
        p->loc = NULL;
    }
    pthread_mutex_unlock(&p->loc_lock);
    return rc;
}

typedef struct locate_args {
    const char *const *users;
    int n, max;
    chat_id *gw;
    int *ngw;
} locate_args;

static int locate_op(redis_presence *p, void *arg)
{
    locate_args *a = arg;

    return locate_once(p, a->users, a->n, a->gw, a->max, a->ngw);
}

static int presence_locate(chat_presence *base, const char *const *users, int n,
                           chat_id *gw, int max, int *ngw)
{
    locate_args a = {users, n, max, gw, ngw};

    return on_lookup_conn((redis_presence *)base, locate_op, &a);
}

static int epoch_op(redis_presence *p, void *arg)
{
    int64_t *epoch = arg;
    char key[96];
    redisReply *r;
    int rc = CHAT_OK;

    snprintf(key, sizeof key, "%sepoch", p->prefix);
    if ((r = redisCommand(p->loc, "GET %s", key)) == NULL)
        return chat__error(CHAT_EUNAVAIL, "Redis: %s", p->loc->errstr);
    if (r->type == REDIS_REPLY_STRING)
        *epoch = strtoll(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_NIL)
        *epoch = 0; /* a Redis that lost its data */
    else
        rc = chat__error(CHAT_EUNAVAIL, "Redis GET %s: %s", key,
                         r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    freeReplyObject(r);
    return rc;
}

static int presence_epoch(chat_presence *base, int64_t *epoch)
{
    return on_lookup_conn((redis_presence *)base, epoch_op, epoch);
}

static void presence_free(chat_presence *base)
{
    redis_presence *p = (redis_presence *)base;
    size_t i;

    pthread_mutex_lock(&p->lock);
    p->closing = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->started)
        pthread_join(p->thread, NULL);
    free_changes(p->head);
    for (i = 0; i < USER_BUCKETS; i++) {
        puser *u = p->users[i];
        while (u) {
            puser *next = u->next;
            chat__free(u);
            u = next;
        }
    }
    if (p->loc)
        redisFree(p->loc);
    chat__redis_target_free(&p->to);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->loc_lock);
    chat__free(p);
}

static const chat_presence_ops g_ops = {"redis", presence_set, presence_locate,
                                        presence_free, presence_epoch};

int chat_presence_redis_new(chat_presence **out,
                            const chat_presence_redis_opts *o)
{
    redis_presence *p;
    int rc;

    CHAT_ASSERT_ARG(out && o);
    if (o->version != CHAT_PRESENCE_REDIS_OPTS_VERSION)
        return chat__error(CHAT_EINVAL, "chat_presence_redis_opts: unknown "
                                        "version");
    if (o->gateway_id && !chat_uuid_valid(o->gateway_id))
        return chat__error(CHAT_EINVAL, "gateway_id must be a UUID");
    if (o->ttl_ms != 0 && o->ttl_ms < 300)
        return chat__error(CHAT_EINVAL, "presence ttl must be >= 300 ms");
    if (o->prefix && strlen(o->prefix) >= 64)
        return chat__error(CHAT_EINVAL, "presence key prefix: < 64 bytes");
    if ((p = chat__calloc(1, sizeof *p)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    p->base.ops = &g_ops;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_init(&p->loc_lock, NULL);
    snprintf(p->prefix, sizeof p->prefix, "%s",
             o->prefix ? o->prefix : "chat:presence:");
    snprintf(p->base.gateway_id, sizeof p->base.gateway_id, "%s",
             o->gateway_id ? o->gateway_id : "");
    p->ttl_ms = o->ttl_ms ? o->ttl_ms : 30000;
    if ((rc = chat__redis_target_parse(&p->to, o->url, o->timeout_ms)) !=
        CHAT_OK)
        goto fail;
    /* fail now if Redis is not there; later outages are retried */
    if ((p->loc = chat__redis_connect(&p->to)) == NULL) {
        rc = chat_error_last()->code;
        goto fail;
    }
    if (p->base.gateway_id[0]) {
        if (pthread_create(&p->thread, NULL, writer_main, p) != 0) {
            rc = chat__error(CHAT_ERROR, "cannot start the presence thread");
            goto fail;
        }
        p->started = 1;
        pthread_setname_np(p->thread, "chat-presence");
    }
    *out = &p->base;
    return CHAT_OK;
fail:
    presence_free(&p->base);
    return rc;
}
