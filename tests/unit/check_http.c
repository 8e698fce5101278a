/* lib/http building blocks that need no socket: rate-limit parsing and
 * token buckets, and the Prometheus rendering. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"
#include "check_run.h"

START_TEST(rate_parse)
{
    chat__rate r;

    ck_assert_int_eq(chat__rate_parse("20/s", &r), CHAT_OK);
    ck_assert(r.per_second == 20 && r.burst == 20);
    ck_assert_int_eq(chat__rate_parse("30/m", &r), CHAT_OK);
    ck_assert(r.per_second == 0.5 && r.burst == 30);
    ck_assert_int_eq(chat__rate_parse("7200/h", &r), CHAT_OK);
    ck_assert(r.per_second == 2);
    ck_assert_int_eq(chat__rate_parse("off", &r), CHAT_OK);
    ck_assert(r.per_second == 0);
    ck_assert_int_eq(chat__rate_parse("0", &r), CHAT_OK);
    ck_assert_int_eq(chat__rate_parse("20", &r), CHAT_EINVAL);
    ck_assert_int_eq(chat__rate_parse("20/d", &r), CHAT_EINVAL);
    ck_assert_int_eq(chat__rate_parse("-5/s", &r), CHAT_EINVAL);
    ck_assert_int_eq(chat__rate_parse("/s", &r), CHAT_EINVAL);
    ck_assert_int_eq(chat__rate_parse("5/s junk", &r), CHAT_EINVAL);
}
END_TEST

START_TEST(buckets)
{
    chat__ratelimit *rl;
    chat__rate slow = {0.5, 3}, fast = {1000, 2}, off = {0, 0};
    int i, retry = 0;

    ck_assert_int_eq(chat__ratelimit_new(&rl), CHAT_OK);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(chat__ratelimit_take(rl, &slow, "k", &retry), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_take(rl, &slow, "k", &retry), CHAT_ERATE);
    ck_assert_int_eq(retry, 2); /* one token at 0.5/s */
    /* keys are independent */
    ck_assert_int_eq(chat__ratelimit_take(rl, &slow, "other", &retry), CHAT_OK);
    /* refill */
    ck_assert_int_eq(chat__ratelimit_take(rl, &fast, "f", &retry), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_take(rl, &fast, "f", &retry), CHAT_OK);
    ck_assert_int_eq(chat__ratelimit_take(rl, &fast, "f", &retry), CHAT_ERATE);
    usleep(5000);
    ck_assert_int_eq(chat__ratelimit_take(rl, &fast, "f", &retry), CHAT_OK);
    /* unlimited leaves no state */
    for (i = 0; i < 100; i++)
        ck_assert_int_eq(chat__ratelimit_take(rl, &off, "x", NULL), CHAT_OK);
    chat__ratelimit_free(rl);
}
END_TEST

START_TEST(bounded_under_key_flood)
{
    chat__ratelimit *rl;
    chat__rate r = {1, 5};
    char key[32];
    int i;

    ck_assert_int_eq(chat__ratelimit_new(&rl), CHAT_OK);
    for (i = 0; i < 200000; i++) {
        snprintf(key, sizeof key, "ip:%d", i);
        ck_assert_int_eq(chat__ratelimit_take(rl, &r, key, NULL), CHAT_OK);
    }
    ck_assert_uint_le(chat__ratelimit_size(rl), 16 * 4096);
    /* a key that is still limited keeps working */
    for (i = 0; i < 5; i++)
        chat__ratelimit_take(rl, &r, "hot", NULL);
    ck_assert_int_eq(chat__ratelimit_take(rl, &r, "hot", NULL), CHAT_ERATE);
    chat__ratelimit_free(rl);
}
END_TEST

static chat__ratelimit *g_rl;
static atomic_int g_ok;

static void *taker(void *arg)
{
    chat__rate r = {0.001, 1000};
    int i;

    (void)arg;
    for (i = 0; i < 1000; i++)
        if (chat__ratelimit_take(g_rl, &r, "shared", NULL) == CHAT_OK)
            atomic_fetch_add(&g_ok, 1);
    return NULL;
}

START_TEST(concurrent_exact)
{
    pthread_t t[4];
    int i;

    ck_assert_int_eq(chat__ratelimit_new(&g_rl), CHAT_OK);
    for (i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, taker, NULL);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&g_ok), 1000);
    chat__ratelimit_free(g_rl);
}
END_TEST

START_TEST(metrics_render)
{
    chat__route routes[2];
    chat__metrics *m;
    chat__buf b = CHAT__BUF_INIT;

    memset(routes, 0, sizeof routes);
    routes[0].pattern = "/api/a";
    routes[1].pattern = "/api/\"quoted\"";
    ck_assert_int_eq(chat__metrics_new(&m, 2), CHAT_OK);
    chat__metrics_request(m, 0, 200, 300);  /* 0.3 ms */
    chat__metrics_request(m, 0, 200, 3000); /* 3 ms */
    chat__metrics_request(m, 0, 422, 10);
    chat__metrics_request(m, 1, 299, 10); /* not in the table */
    chat__metrics_request(m, -1, 404, 10);
    chat__metrics_inc(m, CHAT__C_MESSAGES_STORED);
    chat__metrics_inc(m, CHAT__C_RATE_SEND);
    ck_assert_int_eq(chat__metrics_render(m, routes, 2, &b), CHAT_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "# TYPE chat_http_requests_total "
                                         "counter"));
    ck_assert_ptr_nonnull(strstr(
        b.data, "chat_http_requests_total{route=\"/api/a\",status=\"200\"} 2"));
    ck_assert_ptr_nonnull(strstr(
        b.data, "chat_http_requests_total{route=\"/api/a\",status=\"422\"} 1"));
    ck_assert_ptr_nonnull(strstr(b.data, "route=\"/api/\\\"quoted\\\"\","
                                         "status=\"other\"} 1"));
    ck_assert_ptr_nonnull(strstr(b.data, "route=\"unmatched\",status=\"404\""));
    /* cumulative buckets */
    ck_assert_ptr_nonnull(strstr(
        b.data, "duration_seconds_bucket{route=\"/api/a\",le=\"0.0005\"} 2"));
    ck_assert_ptr_nonnull(strstr(
        b.data, "duration_seconds_bucket{route=\"/api/a\",le=\"0.005\"} 3"));
    ck_assert_ptr_nonnull(strstr(
        b.data, "duration_seconds_bucket{route=\"/api/a\",le=\"+Inf\"} 3"));
    ck_assert_ptr_nonnull(
        strstr(b.data, "duration_seconds_count{route=\"/api/a\"} 3"));
    ck_assert_ptr_nonnull(strstr(b.data, "chat_messages_stored_total 1"));
    ck_assert_ptr_nonnull(
        strstr(b.data, "chat_rate_limited_total{limit=\"send\"} 1"));
    chat__buf_free(&b);
    chat__metrics_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rate_parse);
    tcase_add_test(tc, buckets);
    tcase_add_test(tc, bounded_under_key_flood);
    tcase_add_test(tc, concurrent_exact);
    tcase_add_test(tc, metrics_render);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
