/* Token buckets keyed by string, in 16 independently locked shards.
 * Keys are hashed with a keyed SipHash (crypto_shorthash) so an attacker
 * cannot aim many keys at one chain; memory is bounded per shard. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "http/http.h"

#define SHARDS        16
#define SHARD_BUCKETS 1024 /* hash slots per shard */
#define SHARD_CAP     4096 /* most live entries per shard */
#define KEY_MAX       255  /* longer keys are truncated */

typedef struct entry {
    struct entry *next;
    double tokens;
    int64_t last_us;
    uint64_t hash;
    char key[];
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry *slots[SHARD_BUCKETS];
    size_t count;
} shard;

struct chat__ratelimit {
    unsigned char hkey[crypto_shorthash_KEYBYTES];
    shard shards[SHARDS];
};

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
                    drop = e->tokens >= rate->burst;
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
    int rc = CHAT_OK;

    if (rate->per_second <= 0)
        return CHAT_OK;
    klen = strnlen(key, KEY_MAX);
    crypto_shorthash((unsigned char *)&h, (const unsigned char *)key, klen,
                     rl->hkey);
    sh = &rl->shards[h % SHARDS];
    now = chat__mono_us();

    pthread_mutex_lock(&sh->lock);
    for (e = sh->slots[(h / SHARDS) % SHARD_BUCKETS]; e; e = e->next)
        if (e->hash == h && !strncmp(e->key, key, klen) && !e->key[klen])
            break;
    if (e == NULL) {
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
        e->next = sh->slots[(h / SHARDS) % SHARD_BUCKETS];
        sh->slots[(h / SHARDS) % SHARD_BUCKETS] = e;
        sh->count++;
    }
    refill(e, rate, now);
    if (e->tokens >= 1) {
        e->tokens -= 1;
    } else {
        double wait = ceil((1 - e->tokens) / rate->per_second);
        if (retry_after_s)
            *retry_after_s = wait < 1 ? 1 : wait > 86400 ? 86400 : (int)wait;
        rc = CHAT_ERATE;
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}
