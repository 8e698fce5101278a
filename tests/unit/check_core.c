/* lib/core: errors, allocator and log hooks, ids, times, UTF-8, the
 * preview cut, buffers, base64url, the worker pool. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>

#include "core/internal.h"
#include "core/pool.h"
#include "check_run.h"

START_TEST(errors)
{
    int codes[] = {CHAT_OK,      CHAT_ERROR,     CHAT_ENOMEM,    CHAT_EINVAL,
                   CHAT_EAUTH,   CHAT_EPERM,     CHAT_ENOTFOUND, CHAT_ECONFLICT,
                   CHAT_ELIMIT,  CHAT_EIO,       CHAT_EPROTO,    CHAT_EAGAIN,
                   CHAT_ECLOSED, CHAT_ETIMEDOUT, CHAT_ERATE,     CHAT_EEXPIRED,
                   CHAT_EUNAVAIL};
    size_t i;

    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_ptr_nonnull(chat_strerror(codes[i]));
        ck_assert_str_ne(chat_strerror(codes[i]), "unknown error");
    }
    ck_assert_str_eq(chat_strerror(-999), "unknown error");
    chat_error_clear();
    ck_assert_int_eq(chat_error_last()->code, CHAT_OK);
    ck_assert_str_eq(chat_error_last()->message, "");
    ck_assert_int_eq(chat__error(CHAT_EINVAL, "bad %d", 7), CHAT_EINVAL);
    ck_assert_int_eq(chat_error_last()->code, CHAT_EINVAL);
    ck_assert_str_eq(chat_error_last()->message, "bad 7");
    /* argument checks on public functions */
    ck_assert_int_eq(chat_uuid_v7(NULL), CHAT_EINVAL);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "out"));
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    /* a fresh thread has its own, empty, last error */
    return (void *)(intptr_t)(chat_error_last()->code == CHAT_OK &&
                              chat_error_last()->message != NULL);
}

START_TEST(errors_thread_local)
{
    pthread_t t;
    void *ok;

    chat__error(CHAT_EIO, "main thread");
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &ok);
    ck_assert(ok);
    ck_assert_str_eq(chat_error_last()->message, "main thread");
}
END_TEST

static atomic_int g_allocs;
static void *count_malloc(size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    return malloc(n);
}
static void *count_realloc(void *p, size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    return realloc(p, n);
}

START_TEST(allocator_hook)
{
    chat_allocator a = {count_malloc, count_realloc, free};
    chat_allocator bad = {count_malloc, NULL, free};
    char *s;

    ck_assert_int_eq(chat_set_allocator(&bad), CHAT_EINVAL);
    ck_assert_int_eq(chat_set_allocator(&a), CHAT_OK);
    s = chat__strdup("counted");
    ck_assert_int_ge(atomic_load(&g_allocs), 1);
    chat_free(s);
    ck_assert_int_eq(chat_set_allocator(NULL), CHAT_OK);
}
END_TEST

static int g_lines;
static char g_last[256];
static void hook(int level, const char *line, void *ud)
{
    (void)level;
    *(int *)ud += 1;
    g_lines++;
    strncpy(g_last, line, sizeof g_last - 1);
}

START_TEST(log_hook)
{
    int calls = 0;

    chat_log_set(hook, CHAT_LOG_WARN, &calls);
    CHAT_LOG(CHAT_LOG_INFO, "dropped=%d", 1);
    CHAT_LOG(CHAT_LOG_ERROR, "kept=%d", 2);
    ck_assert_int_eq(calls, 1);
    ck_assert_str_eq(g_last, "kept=2");
    chat_log_set(NULL, CHAT_LOG_DEBUG, NULL);
    CHAT_LOG(CHAT_LOG_ERROR, "nobody listens");
    ck_assert_int_eq(calls, 1);
    ck_assert_str_eq(chat_log_level_name(CHAT_LOG_WARN), "warn");
}
END_TEST

START_TEST(uuid_v7)
{
    char prev[CHAT_ID_LEN + 1] = "", id[CHAT_ID_LEN + 1];
    int i;

    for (i = 0; i < 10000; i++) {
        ck_assert_int_eq(chat_uuid_v7(id), CHAT_OK);
        ck_assert_int_eq((int)strlen(id), CHAT_ID_LEN);
        ck_assert(chat_uuid_valid(id));
        ck_assert_int_eq(id[14], '7');             /* version */
        ck_assert(strchr("89ab", id[19]) != NULL); /* variant 10 */
        ck_assert_msg(strcmp(prev, id) < 0, "%s !< %s", prev, id);
        memcpy(prev, id, sizeof id);
    }
    ck_assert(chat_uuid_valid("01A210E3-DCDF-7580-9D1F-7EFD749ADF56"));
    ck_assert(!chat_uuid_valid("01a210e3-dcdf-7580-9d1f-7efd749adf5"));
    ck_assert(!chat_uuid_valid("01a210e3-dcdf-7580-9d1f-7efd749adf566"));
    ck_assert(!chat_uuid_valid("01a210e3xdcdf-7580-9d1f-7efd749adf56"));
    ck_assert(!chat_uuid_valid("01a210e3-dcdf-7580-9d1f-7efd749adfzz"));
    ck_assert(!chat_uuid_valid(""));
    ck_assert(!chat_uuid_valid(NULL));
}
END_TEST

START_TEST(times)
{
    char t[CHAT_TIME_LEN + 1];
    int64_t ms;

    ck_assert_int_eq(chat_time_format(0, t), CHAT_OK);
    ck_assert_str_eq(t, "1970-01-01T00:00:00.000Z");
    ck_assert_int_eq(chat_time_format(1767789296789LL, t), CHAT_OK);
    ck_assert_str_eq(t, "2026-01-07T12:34:56.789Z");
    ck_assert_int_eq(chat_time_format(-1, t), CHAT_OK);
    ck_assert_str_eq(t, "1969-12-31T23:59:59.999Z");

    ck_assert_int_eq(chat_time_parse("2026-01-07T12:34:56.789Z", &ms), 0);
    ck_assert_int_eq(ms, 1767789296789LL);
    ck_assert_int_eq(chat_time_parse("2026-01-07t12:34:56z", &ms), 0);
    ck_assert_int_eq(ms, 1767789296000LL);
    ck_assert_int_eq(chat_time_parse("2026-01-07T14:34:56.7+02:00", &ms), 0);
    ck_assert_int_eq(ms, 1767789296700LL);
    ck_assert_int_eq(
        chat_time_parse("2026-01-07T07:04:56.123456789-05:30", &ms), 0);
    ck_assert_int_eq(ms, 1767789296123LL);
    ck_assert_int_eq(chat_time_parse("2026-13-07T12:34:56Z", &ms), CHAT_EINVAL);
    ck_assert_int_eq(chat_time_parse("2026-01-07T12:34:56", &ms), CHAT_EINVAL);
    ck_assert_int_eq(chat_time_parse("2026-01-07T12:34:56.Z", &ms),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_time_parse("yesterday", &ms), CHAT_EINVAL);
    ck_assert_int_eq(chat_time_parse("2026-01-07T12:34:56Zjunk", &ms),
                     CHAT_EINVAL);
    ms = chat_time_now_ms();
    chat_time_format(ms, t);
    {
        int64_t back;
        ck_assert_int_eq(chat_time_parse(t, &back), CHAT_OK);
        ck_assert_int_eq(back, ms);
    }
}
END_TEST

#define V(s) chat_utf8_valid(s, sizeof(s) - 1)

START_TEST(utf8)
{
    ck_assert(V("plain ascii"));
    ck_assert(V("caf\xc3\xa9"));       /* é */
    ck_assert(V("\xe2\x82\xac"));      /* € */
    ck_assert(V("\xf0\x9f\x98\x80"));  /* 😀 */
    ck_assert(V("\xf4\x8f\xbf\xbf"));  /* U+10FFFF */
    ck_assert(!V("\xc0\x80"));         /* overlong NUL */
    ck_assert(!V("\xc1\xbf"));         /* overlong */
    ck_assert(!V("\xe0\x80\x80"));     /* overlong 3-byte */
    ck_assert(!V("\xf0\x80\x80\x80")); /* overlong 4-byte */
    ck_assert(!V("\xed\xa0\x80"));     /* surrogate */
    ck_assert(!V("\xf4\x90\x80\x80")); /* > U+10FFFF */
    ck_assert(!V("\xf5\x80\x80\x80"));
    ck_assert(!V("\xe2\x82")); /* truncated */
    ck_assert(!V("\x80"));     /* stray continuation */
    ck_assert(!V("a\xff"));
    ck_assert(!chat_utf8_valid("a\0b", 3)); /* NUL */
    ck_assert(chat_utf8_valid("", 0));
    ck_assert_uint_eq(chat_utf8_chars("caf\xc3\xa9\xf0\x9f\x98\x80", 9), 5);
}
END_TEST

START_TEST(preview)
{
    char buf[2048];
    size_t cut, i;
    int more;

    memset(buf, 'a', 201);
    ck_assert_int_eq(chat_text_preview(buf, 200, 200, &cut, &more), CHAT_OK);
    ck_assert_uint_eq(cut, 200);
    ck_assert_int_eq(more, 0);
    chat_text_preview(buf, 201, 200, &cut, &more);
    ck_assert_uint_eq(cut, 200);
    ck_assert_int_eq(more, 1);
    /* 300 emoji: the cut is 200 code points = 800 bytes */
    for (i = 0; i < 300; i++)
        memcpy(buf + 4 * i, "\xf0\x9f\x98\x80", 4);
    chat_text_preview(buf, 1200, 200, &cut, &more);
    ck_assert_uint_eq(cut, 800);
    ck_assert_int_eq(more, 1);
    /* mixed widths: the prefix is itself valid and exactly 200 chars */
    for (i = 0; i < 500; i++)
        buf[i] = (char)(i % 3 == 0 ? 'x' : 0);
    {
        size_t o = 0;
        for (i = 0; i < 250; i++) {
            static const char *const cps[] = {"a", "\xc3\xa9", "\xe2\x82\xac",
                                              "\xf0\x9f\x98\x80"};
            const char *c = cps[i % 4];
            memcpy(buf + o, c, strlen(c));
            o += strlen(c);
        }
        chat_text_preview(buf, o, 200, &cut, &more);
        ck_assert(chat_utf8_valid(buf, cut));
        ck_assert_uint_eq(chat_utf8_chars(buf, cut), 200);
        ck_assert_int_eq(more, 1);
    }
    ck_assert_int_eq(chat_text_preview(NULL, 0, 200, &cut, &more), CHAT_OK);
    ck_assert_uint_eq(cut, 0);
}
END_TEST

START_TEST(buffers_and_base64)
{
    chat__buf b = CHAT__BUF_INIT;
    uint8_t raw[40], back[40];
    char enc[64];
    size_t n, i;
    char *s;

    for (i = 0; i < 1000; i++)
        ck_assert_int_eq(chat__buf_printf(&b, "%zu,", i), CHAT_OK);
    ck_assert_uint_eq(b.len, strlen(b.data));
    s = chat__buf_detach(&b, &n);
    ck_assert_ptr_nonnull(s);
    ck_assert(!strncmp(s, "0,1,2,", 6));
    chat__free(s);
    ck_assert_ptr_null(b.data);

    for (i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 37 + 250);
    ck_assert_uint_eq(chat__b64url_len(32), 43);
    chat__b64url_encode(enc, raw, 32);
    ck_assert_uint_eq(strlen(enc), 43);
    ck_assert(strpbrk(enc, "+/=") == NULL);
    ck_assert_int_eq(chat__b64url_decode(back, sizeof back, &n, enc, 43), 0);
    ck_assert_uint_eq(n, 32);
    ck_assert(!memcmp(raw, back, 32));
    ck_assert_int_ne(chat__b64url_decode(back, sizeof back, &n, "AA==", 4), 0);
    ck_assert_int_ne(chat__b64url_decode(back, sizeof back, &n, "a+/b", 4), 0);
    /* non-canonical: trailing bits set */
    ck_assert_int_ne(chat__b64url_decode(back, sizeof back, &n, "AB", 2), 0);
}
END_TEST

static atomic_int g_ran;
static void bump(chat__task *t)
{
    (void)t;
    atomic_fetch_add(&g_ran, 1);
}

START_TEST(pool)
{
    enum { N = 10000 };
    chat__task *tasks = calloc(N, sizeof *tasks);
    chat__pool *p;
    int i;

    ck_assert_int_eq(chat__pool_new(&p, 4, "test"), CHAT_OK);
    for (i = 0; i < N; i++) {
        tasks[i].fn = bump;
        ck_assert_int_eq(chat__pool_submit(p, &tasks[i]), CHAT_OK);
    }
    chat__pool_free(p); /* runs everything queued first */
    ck_assert_int_eq(atomic_load(&g_ran), N);
    ck_assert_int_eq(chat__pool_new(&p, 0, "x"), CHAT_EINVAL);
    free(tasks);
}
END_TEST

START_TEST(version)
{
    ck_assert_str_eq(chat_version(), CHAT_VERSION_STRING);
    ck_assert_uint_eq(chat_version_number(), CHAT_VERSION_NUMBER);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, errors);
    tcase_add_test(tc, errors_thread_local);
    tcase_add_test(tc, allocator_hook);
    tcase_add_test(tc, log_hook);
    tcase_add_test(tc, uuid_v7);
    tcase_add_test(tc, times);
    tcase_add_test(tc, utf8);
    tcase_add_test(tc, preview);
    tcase_add_test(tc, buffers_and_base64);
    tcase_add_test(tc, pool);
    tcase_add_test(tc, version);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
