/* Rate limits shared through Redis (chat__ratelimit_share), on a private
 * redis-server started by with-redis.sh: several instances keep one
 * limit between them, a take never waits for Redis, and a Redis that goes
 * away leaves every instance with its own limits until it is back.
 *
 *     with-redis.sh ratelimit_redis
 */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_run.h"
#include "core/internal.h"
#include "http/http.h"

/* A round of each instance's sharing thread after what they took. */
static void sync2(chat__ratelimit *a, chat__ratelimit *b)
{
    ck_assert_int_eq(chat__ratelimit_share_wait(a), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_share_wait(b), CHAT_OK);
    /* what b sent may have blocked a key a sent earlier */
    ck_assert_int_eq(chat__ratelimit_share_wait(a), CHAT_OK);
}

static chat__ratelimit *shared(void)
{
    chat__ratelimit *rl = NULL;

    ck_assert_int_eq(chat__ratelimit_new(&rl), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_share(rl, getenv("REDIS_URL")), CHAT_OK);
    return rl;
}

/* A fresh key per test (and per run: Redis outlives a test). */
static void key(char *out, size_t n, const char *what)
{
    snprintf(out, n, "%s-%d-%lld", what, (int)getpid(),
             (long long)chat__mono_us());
}

START_TEST(two_instances_keep_one_limit)
{
    chat__ratelimit *a = shared(), *b = shared();
    chat__rate r;
    char k[64];
    int i, ok = 0, retry = 0;

    ck_assert_int_eq(chat__rate_parse("10/m", &r), CHAT_OK);
    key(k, sizeof k, "two");
    /* alternate between the instances, with rounds in between: each
     * alone would let 10 through, 20 in all */
    for (i = 0; i < 40; i++) {
        if (chat__ratelimit_take(i % 2 ? b : a, &r, k, &retry) == CHAT_OK)
            ok++;
        if (i % 4 == 3)
            sync2(a, b);
    }
    ck_assert_int_ge(ok, 10);
    ck_assert_int_le(ok, 12); /* one round's overshoot at most */
    sync2(a, b);
    retry = 0;
    ck_assert_int_eq(chat__ratelimit_take(a, &r, k, &retry), CHAT_ERATE);
    ck_assert_int_ge(retry, 1);
    ck_assert_int_le(retry, 60);
    ck_assert_int_eq(chat__ratelimit_take(b, &r, k, &retry), CHAT_ERATE);
    chat__ratelimit_free(a);
    chat__ratelimit_free(b);
}
END_TEST

/* An instance that never saw the key learns of the fleet's count within
 * a round of its first take. */
START_TEST(a_new_instance_learns_within_a_round)
{
    chat__ratelimit *a = shared(), *c = shared();
    chat__rate r;
    char k[64];
    int i, retry;

    ck_assert_int_eq(chat__rate_parse("5/m", &r), CHAT_OK);
    key(k, sizeof k, "new");
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(chat__ratelimit_take(a, &r, k, &retry), CHAT_OK);
    sync2(a, c);
    ck_assert_int_eq(chat__ratelimit_take(a, &r, k, &retry), CHAT_ERATE);
    (void)chat__ratelimit_take(c, &r, k, &retry); /* the overshoot */
    sync2(a, c);
    ck_assert_int_eq(chat__ratelimit_take(c, &r, k, &retry), CHAT_ERATE);
    chat__ratelimit_free(a);
    chat__ratelimit_free(c);
}
END_TEST

/* Keys are separate, expire in Redis, and refill with time. */
START_TEST(keys_are_separate_expire_and_refill)
{
    chat__ratelimit *a = shared(), *b = shared();
    chat__rate slow, fast;
    char k1[64], k2[64], k3[64], rk[80];
    redisContext *c;
    redisReply *rep;
    const char *url = getenv("REDIS_URL");
    int i, retry;

    ck_assert_int_eq(chat__rate_parse("4/m", &slow), CHAT_OK);
    ck_assert_int_eq(chat__rate_parse("10/s", &fast), CHAT_OK);
    key(k1, sizeof k1, "one");
    key(k2, sizeof k2, "two");
    key(k3, sizeof k3, "three");
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(chat__ratelimit_take(a, &slow, k1, &retry), CHAT_OK);
    sync2(a, b);
    ck_assert_int_eq(chat__ratelimit_take(b, &slow, k1, &retry), CHAT_OK);
    sync2(a, b);
    ck_assert_int_eq(chat__ratelimit_take(b, &slow, k1, &retry), CHAT_ERATE);
    ck_assert_int_eq(chat__ratelimit_take(b, &slow, k2, &retry), CHAT_OK);
    /* the bucket in Redis lives as long as it holds tokens (5 × 15 s) */
    c = redisConnect("127.0.0.1", atoi(strrchr(url, ':') + 1));
    ck_assert(c && !c->err);
    snprintf(rk, sizeof rk, "chat:rl:%s", k1);
    rep = redisCommand(c, "PTTL %s", rk);
    ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
    ck_assert_int_gt(rep->integer, 1000);
    ck_assert_int_le(rep->integer, 76000);
    freeReplyObject(rep);
    redisFree(c);
    /* a fast bucket spent on a refills in Redis too: b is let through */
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(chat__ratelimit_take(a, &fast, k3, &retry), CHAT_OK);
    sync2(a, b);
    usleep(1200000);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(chat__ratelimit_take(b, &fast, k3, &retry), CHAT_OK);
        sync2(a, b);
    }
    chat__ratelimit_free(a);
    chat__ratelimit_free(b);
}
END_TEST

/* Redis stopped: takes do not wait and fall back to each instance's own
 * buckets; started again (empty): the limit is shared again. */
START_TEST(redis_restart)
{
    chat__ratelimit *a = shared(), *b = shared();
    const char *ctl = getenv("REDIS_CTL_CMD");
    char cmd[512], k[64];
    chat__rate r;
    int64_t t0;
    int i, ok = 0, retry;

    ck_assert_ptr_nonnull(ctl);
    ck_assert_int_eq(chat__rate_parse("6/m", &r), CHAT_OK);
    key(k, sizeof k, "restart");
    snprintf(cmd, sizeof cmd, "%s stop", ctl);
    ck_assert_int_eq(system(cmd), 0);
    t0 = chat__mono_us();
    for (i = 0; i < 20; i++) {
        if (chat__ratelimit_take(i % 2 ? b : a, &r, k, &retry) == CHAT_OK)
            ok++;
        if (i % 4 == 3)
            sync2(a, b);
    }
    ck_assert_int_eq(ok, 12); /* 6 each: per instance, as without Redis */
    ck_assert_int_lt(chat__mono_us() - t0, 2000000); /* nobody waited */
    snprintf(cmd, sizeof cmd, "%s start", ctl);
    ck_assert_int_eq(system(cmd), 0);
    key(k, sizeof k, "restart-after");
    ok = 0; /* each instance reconnects in its first round with counts */
    for (i = 0; i < 24; i++) {
        if (chat__ratelimit_take(i % 2 ? b : a, &r, k, &retry) == CHAT_OK)
            ok++;
        if (i % 4 == 3)
            sync2(a, b);
    }
    ck_assert_int_ge(ok, 6);
    ck_assert_int_le(ok, 8);
    chat__ratelimit_free(a);
    chat__ratelimit_free(b);
}
END_TEST

START_TEST(bad_addresses)
{
    chat__ratelimit *rl = NULL;

    ck_assert_int_eq(chat__ratelimit_new(&rl), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_share(rl, "http://127.0.0.1:6379"),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat__ratelimit_share(rl, "redis://127.0.0.1:1"),
                     CHAT_EUNAVAIL);
    chat__ratelimit_free(rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit_redis");
    TCase *tc = tcase_create("shared");

    if (getenv("REDIS_URL") == NULL) {
        fprintf(stderr, "run under with-redis.sh\n");
        return 2;
    }
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, two_instances_keep_one_limit);
    tcase_add_test(tc, a_new_instance_learns_within_a_round);
    tcase_add_test(tc, keys_are_separate_expire_and_refill);
    tcase_add_test(tc, bad_addresses);
    tcase_add_test(tc, redis_restart); /* last: it empties Redis */
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
