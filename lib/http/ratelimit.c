/* Token buckets keyed by string, in 16 independently locked shards.
 * Keys are hashed with a keyed SipHash (crypto_shorthash) so an attacker
 * cannot aim many keys at one chain; memory is bounded per shard.
 *
 * Shared limits (chat__ratelimit_share): every instance given the same
 * Redis also counts each key in one GCRA bucket there. A take never waits
 * for Redis (it runs on the socket thread too): it checks the local
 * bucket and what Redis last said of the key, and counts the token as
 * pending; a thread of its own adds the pending counts to Redis every
 * SHARE_MS in one pipelined round trip and learns which keys are over
 * their limit, and until when. So the whole fleet keeps the limit, give
 * or take what each instance lets through in one round; while Redis is
 * unreachable each instance falls back to its own buckets. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include "bus/redis_conn.h"
#include "http/http.h"

#define SHARDS        16
#define SHARD_BUCKETS 1024 /* hash slots per shard */
#define SHARD_CAP     4096 /* most live entries per shard */
#define KEY_MAX       255  /* longer keys are truncated */
#define SHARE_MS      50   /* how often pending counts go to Redis */
#define SHARE_BATCH   (SHARDS * SHARD_CAP)

typedef struct entry {
    struct entry *next;
    double tokens;
    int64_t last_us;
    uint64_t hash;
    /* shared limits: tokens taken since the last round, the rate they
     * were taken under, and until when Redis says the key is over */
    unsigned pending;
    double per_second, burst;
    int64_t blocked_until_us;
    char key[];
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry *slots[SHARD_BUCKETS];
    size_t count;
} shard;

typedef struct share share;

struct chat__ratelimit {
    unsigned char hkey[crypto_shorthash_KEYBYTES];
    shard shards[SHARDS];
    share *share; /* NULL: limits of this process only */
};

/* The shard of key[0..klen) and its hash; the caller locks the shard. */
static shard *shard_of(chat__ratelimit *rl, const char *key, size_t klen,
                       uint64_t *h)
{
    crypto_shorthash((unsigned char *)h, (const unsigned char *)key, klen,
                     rl->hkey);
    return &rl->shards[*h % SHARDS];
}

/* The chain of sh where the key hashed to h lives. */
static entry **chain(shard *sh, uint64_t h)
{
    return &sh->slots[(h / SHARDS) % SHARD_BUCKETS];
}

/* key[0..klen)'s bucket in its locked shard, or NULL. */
static entry *lookup(shard *sh, uint64_t h, const char *key, size_t klen)
{
    for (entry *e = *chain(sh, h); e; e = e->next)
        if (e->hash == h && !strncmp(e->key, key, klen) && !e->key[klen])
            return e;
    return NULL;
}

int chat__rate_parse(const char *s, chat__rate *out)
{
    char *end;
    double n, period;

    if (s == NULL || !strcmp(s, "off") || !strcmp(s, "0")) {
        out->per_second = 0;
        out->burst = 0;
        return CHAT_OK;
    }
    n = strtod(s, &end);
    if (end == s || *end != '/' || !(n > 0) || n > 1e9)
        goto bad;
    if (!strcmp(end, "/s"))
        period = 1;
    else if (!strcmp(end, "/m"))
        period = 60;
    else if (!strcmp(end, "/h"))
        period = 3600;
    else
        goto bad;
    out->per_second = n / period;
    out->burst = n;
    return CHAT_OK;
bad:
    return chat__error(CHAT_EINVAL, "rate \"%s\" is not N/s, N/m, N/h or off",
                       s);
}

/* ---- shared limits ----------------------------------------------------------
 */

/* GCRA over n tokens at once, on Redis's clock. KEYS[1] holds the
 * theoretical arrival time (µs); ARGV: n, emission interval (µs), burst
 * tolerance (burst × interval, µs). Returns how long (µs) until one more
 * token fits, 0 if it fits now. Tokens are always counted: they were
 * already spent on some instance. */
static const char GCRA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local n, iv, cap = tonumber(ARGV[1]), tonumber(ARGV[2]),"
    " tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tat < now then tat = now end\n"
    "tat = tat + n * iv\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',"
    " math.ceil((tat - now) / 1000) + 1000)\n"
    "local wait = tat + iv - cap - now\n"
    "if wait > 0 then return math.ceil(wait) end\n"
    "return 0\n";

typedef struct pending {
    char key[KEY_MAX + 1];
    unsigned n;
    long long iv_us, cap_us;
} pending;

struct share {
    chat__redis_target target;
    redisContext *c; /* the sharing thread's only */
    char sha[41];    /* of GCRA, loaded on this connection */
    int down;        /* Redis unreachable: logged once */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* wakes the thread to close */
    pthread_cond_t rounded; /* a round ended (tests wait on it) */
    unsigned long rounds;
    int closing;
    pending *batch;
    size_t cap;
};

/* Take every pending count out of the buckets into s->batch. */
static size_t collect(chat__ratelimit *rl, share *s)
{
    size_t n = 0, k;
    int i;

    for (i = 0; i < SHARDS; i++) {
        shard *sh = &rl->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (k = 0; k < SHARD_BUCKETS; k++)
            for (entry *e = sh->slots[k]; e; e = e->next) {
                double iv;
                if (e->pending == 0)
                    continue;
                if (n == s->cap) {
                    pending *b =
                        n < SHARE_BATCH
                            ? chat__realloc(s->batch, 2 * n * sizeof *b)
                            : NULL;
                    if (b == NULL) /* counted in a later round */
                        continue;
                    s->batch = b;
                    s->cap = 2 * n;
                }
                iv = 1e6 / e->per_second;
                snprintf(s->batch[n].key, sizeof s->batch[n].key, "%s", e->key);
                s->batch[n].n = e->pending;
                s->batch[n].iv_us = (long long)ceil(iv);
                s->batch[n].cap_us = (long long)ceil(iv * e->burst);
                e->pending = 0;
                n++;
            }
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

/* Redis says key is over its limit for wait_us more. */
static void block(chat__ratelimit *rl, const char *key, long long wait_us)
{
    size_t klen = strlen(key);
    uint64_t h;
    shard *sh = shard_of(rl, key, klen, &h);
    entry *e;

    pthread_mutex_lock(&sh->lock);
    if ((e = lookup(sh, h, key, klen)) != NULL)
        e->blocked_until_us = chat__mono_us() + wait_us;
    pthread_mutex_unlock(&sh->lock);
}

static void share_drop_connection(share *s, const char *why)
{
    if (!s->down)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=ratelimit event=redis_down msg=\"%s\""
                 " limits=per_instance",
                 why);
    s->down = 1;
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
}

/* A connection with the script loaded, or NULL (logged). */
static redisContext *share_connect(share *s)
{
    redisReply *r;

    if (s->c)
        return s->c;
    if ((s->c = chat__redis_connect(&s->target)) == NULL) {
        share_drop_connection(s, chat_error_last()->message);
        return NULL;
    }
    r = redisCommand(s->c, "SCRIPT LOAD %s", GCRA);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        chat__error(CHAT_EUNAVAIL, "Redis SCRIPT LOAD: %s",
                    r && r->type == REDIS_REPLY_ERROR ? r->str : s->c->errstr);
        share_drop_connection(s, chat_error_last()->message);
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    memcpy(s->sha, r->str, 41);
    freeReplyObject(r);
    if (s->down)
        CHAT_LOG(CHAT_LOG_INFO,
                 "component=ratelimit event=redis_up limits=shared");
    s->down = 0;
    return s->c;
}

/* One round: the pending counts to Redis, the answers to the buckets.
 * Counts of a round that fails are dropped (the instance let them through
 * on its own buckets). */
static void share_round(chat__ratelimit *rl, share *s)
{
    size_t n = collect(rl, s), i;
    redisContext *c;

    if (n == 0 || (c = share_connect(s)) == NULL)
        return;
    for (i = 0; i < n; i++)
        redisAppendCommand(c, "EVALSHA %s 1 chat:rl:%s %u %lld %lld", s->sha,
                           s->batch[i].key, s->batch[i].n, s->batch[i].iv_us,
                           s->batch[i].cap_us);
    for (i = 0; i < n; i++) {
        void *reply = NULL;
        redisReply *r;
        if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL) {
            share_drop_connection(s, c->errstr);
            return;
        }
        r = reply;
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            block(rl, s->batch[i].key, r->integer);
        else if (r->type == REDIS_REPLY_ERROR) {
            /* NOSCRIPT after a Redis restart, or worse: start over */
            char why[128];
            snprintf(why, sizeof why, "%s", r->str);
            freeReplyObject(r);
            share_drop_connection(s, why);
            return;
        }
        freeReplyObject(r);
    }
}

static void *share_main(void *arg)
{
    chat__ratelimit *rl = arg;
    share *s = rl->share;
    struct timespec until;

    pthread_mutex_lock(&s->lock);
    while (!s->closing) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SHARE_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &until);
        if (s->closing)
            break;
        pthread_mutex_unlock(&s->lock);
        share_round(rl, s);
        pthread_mutex_lock(&s->lock);
        s->rounds++;
        pthread_cond_broadcast(&s->rounded);
    }
    pthread_mutex_unlock(&s->lock);
    share_round(rl, s); /* what was taken last still counts */
    return NULL;
}

static void share_free(share *s)
{
    if (s == NULL)
        return;
    if (s->c)
        redisFree(s->c);
    chat__redis_target_free(&s->target);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->rounded);
    chat__free(s->batch);
    chat__free(s);
}

int chat__ratelimit_share(chat__ratelimit *rl, const char *redis_url)
{
    pthread_condattr_t ca;
    share *s;
    int rc;

    CHAT_ASSERT_ARG(rl && rl->share == NULL);
    s = chat__calloc(1, sizeof *s);
    if (s == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_cond_init(&s->rounded, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->lock, NULL);
    if ((rc = chat__redis_target_parse(&s->target, redis_url, 1000)) != CHAT_OK)
        goto fail;
    s->cap = 64;
    s->batch = chat__malloc(s->cap * sizeof *s->batch);
    if (s->batch == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto fail;
    }
    if (share_connect(s) == NULL) { /* a bad address fails at start */
        rc = chat_error_last()->code;
        goto fail;
    }
    rl->share = s;
    if (pthread_create(&s->thread, NULL, share_main, rl) != 0) {
        rl->share = NULL;
        rc = chat__error(CHAT_ERROR, "cannot start the rate-limit thread");
        goto fail;
    }
    pthread_setname_np(s->thread, "chat-ratelimit");
    return CHAT_OK;
fail:
    share_free(s);
    return rc;
}

int chat__ratelimit_share_wait(chat__ratelimit *rl)
{
    share *s = rl->share;
    struct timespec until;
    unsigned long target;
    int rc = CHAT_OK;

    if (s == NULL)
        return CHAT_EINVAL;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s->lock);
    target = s->rounds + 2; /* the one running now may have begun before */
    while (s->rounds < target && rc == CHAT_OK)
        if (pthread_cond_timedwait(&s->rounded, &s->lock, &until) != 0)
            rc = CHAT_ETIMEDOUT;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void share_stop(chat__ratelimit *rl)
{
    share *s = rl->share;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->closing = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    rl->share = NULL;
    share_free(s);
}

int chat__ratelimit_new(chat__ratelimit **out)
{
    chat__ratelimit *rl;
    int i;

    CHAT_ASSERT_ARG(out != NULL);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    rl = chat__calloc(1, sizeof *rl);
    if (rl == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    crypto_shorthash_keygen(rl->hkey);
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_init(&rl->shards[i].lock, NULL);
    *out = rl;
    return CHAT_OK;
}

void chat__ratelimit_free(chat__ratelimit *rl)
{
    int i;
    size_t k;

    if (rl == NULL)
        return;
    share_stop(rl);
    for (i = 0; i < SHARDS; i++) {
        shard *sh = &rl->shards[i];
        for (k = 0; k < SHARD_BUCKETS; k++) {
            entry *e = sh->slots[k], *next;
            for (; e; e = next) {
                next = e->next;
                chat__free(e);
            }
        }
        pthread_mutex_destroy(&sh->lock);
    }
    chat__free(rl);
}

size_t chat__ratelimit_size(chat__ratelimit *rl)
{
    size_t n = 0;
    int i;

    for (i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].lock);
        n += rl->shards[i].count;
        pthread_mutex_unlock(&rl->shards[i].lock);
    }
    return n;
}

/* Refill e to now. */
static void refill(entry *e, const chat__rate *rate, int64_t now)
{
    double dt = (double)(now - e->last_us) / 1e6;

    if (dt > 0) {
        e->tokens += dt * rate->per_second;
        if (e->tokens > rate->burst)
            e->tokens = rate->burst;
        e->last_us = now;
    }
}

/* Make room in a full shard: drop buckets that have refilled (they hold no
 * state a fresh bucket would not), then, if that was not enough, the ones
 * touched longest ago. */
static void sweep(shard *sh, const chat__rate *rate, int64_t now)
{
    int64_t oldest_keep = now;
    size_t k;
    int pass;

    for (pass = 0; pass < 2 && sh->count >= SHARD_CAP; pass++) {
        if (pass == 1) {
            /* keep the newer half: find the median-ish cutoff cheaply */
            int64_t lo = INT64_MAX, hi = 0;
            for (k = 0; k < SHARD_BUCKETS; k++)
                for (entry *e = sh->slots[k]; e; e = e->next) {
                    lo = e->last_us < lo ? e->last_us : lo;
                    hi = e->last_us > hi ? e->last_us : hi;
                }
            oldest_keep = lo + (hi - lo) / 2;
        }
        for (k = 0; k < SHARD_BUCKETS; k++) {
            entry **pp = &sh->slots[k];
            while (*pp) {
                entry *e = *pp;
                int drop;
                if (pass == 0) {
                    refill(e, rate, now);
                    drop = e->tokens >= rate->burst && e->pending == 0 &&
                           e->blocked_until_us <= now;
                } else {
                    drop = e->last_us <= oldest_keep;
                }
                if (drop) {
                    *pp = e->next;
                    chat__free(e);
                    sh->count--;
                } else {
                    pp = &e->next;
                }
            }
        }
    }
}

int chat__ratelimit_take(chat__ratelimit *rl, const chat__rate *rate,
                         const char *key, int *retry_after_s)
{
    uint64_t h;
    size_t klen;
    shard *sh;
    entry *e;
    int64_t now;
    double wait = 0;
    int rc = CHAT_OK;

    if (rate->per_second <= 0)
        return CHAT_OK;
    klen = strnlen(key, KEY_MAX);
    sh = shard_of(rl, key, klen, &h);
    now = chat__mono_us();

    pthread_mutex_lock(&sh->lock);
    if ((e = lookup(sh, h, key, klen)) == NULL) {
        if (sh->count >= SHARD_CAP)
            sweep(sh, rate, now);
        e = chat__malloc(sizeof *e + klen + 1);
        if (e == NULL) {
            /* failing open keeps the service up under memory pressure */
            pthread_mutex_unlock(&sh->lock);
            return CHAT_OK;
        }
        memcpy(e->key, key, klen);
        e->key[klen] = '\0';
        e->hash = h;
        e->tokens = rate->burst;
        e->last_us = now;
        e->pending = 0;
        e->per_second = rate->per_second;
        e->burst = rate->burst;
        e->blocked_until_us = 0;
        e->next = *chain(sh, h);
        *chain(sh, h) = e;
        sh->count++;
    }
    refill(e, rate, now);
    if (e->blocked_until_us > now) { /* over the limit of the fleet */
        wait = ceil((double)(e->blocked_until_us - now) / 1e6);
        rc = CHAT_ERATE;
    } else if (e->tokens >= 1) {
        e->tokens -= 1;
        if (rl->share) {
            e->pending++;
            e->per_second = rate->per_second;
            e->burst = rate->burst;
        }
    } else {
        wait = ceil((1 - e->tokens) / rate->per_second);
        rc = CHAT_ERATE;
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc == CHAT_ERATE && retry_after_s)
        *retry_after_s = wait < 1 ? 1 : wait > 86400 ? 86400 : (int)wait;
    return rc;
}
