/* lib/store: the SQLite message log with group commit. */
#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>
#include "check_run.h"

static char g_dir[64], g_path[128];
static chat_store *S;
static chat_log *L;
static chat_user A, B;
static chat_conv C;

static int rm_entry(const char *p, const struct stat *sb, int f,
                    struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    return remove(p);
}

static void mkuser(const char *name, chat_user *u)
{
    memset(u, 0, sizeof *u);
    chat_uuid_v7(u->id);
    snprintf(u->email, sizeof u->email, "%s@test.io", name);
    snprintf(u->username, sizeof u->username, "%s", name);
    snprintf(u->password_hash, sizeof u->password_hash, "x");
    ck_assert_int_eq(chat_store_user_create(S, u), CHAT_OK);
}

static void open_log(int sync_full)
{
    chat_sqlite_opts o = CHAT_SQLITE_OPTS_INIT;

    o.sync_full = sync_full;
    o.touch_store = 1;
    ck_assert_int_eq(chat_log_sqlite_open(&L, g_path, &o), CHAT_OK);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/chat-log-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/chat.db", g_dir);
    ck_assert_int_eq(chat_store_sqlite_open(&S, g_path, NULL), CHAT_OK);
    mkuser("alice", &A);
    mkuser("bob", &B);
    ck_assert_int_eq(chat_store_conv_dm(S, A.id, B.id, &C, NULL), CHAT_OK);
    open_log(0);
}

static void teardown(void)
{
    chat_log_free(L);
    chat_store_free(S);
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int append(const char *sender, const char *text, const char *cmid,
                  chat_message *out, int *created)
{
    chat_append a = {C.id, sender, cmid, text, strlen(text), 0};
    return chat_log_append_wait(L, &a, out, created);
}

START_TEST(seq_and_idempotency)
{
    chat_message m, again;
    int created, i;

    for (i = 1; i <= 5; i++) {
        ck_assert_int_eq(append(A.id, "hi", NULL, &m, &created), CHAT_OK);
        ck_assert_int_eq(m.seq, i);
        ck_assert_int_eq(created, 1);
    }
    ck_assert_int_eq(append(B.id, "once", "cm-1", &m, &created), CHAT_OK);
    ck_assert_int_eq(m.seq, 6);
    ck_assert_int_eq(append(B.id, "once, retried", "cm-1", &again, &created),
                     CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_int_eq(again.seq, 6);
    ck_assert_str_eq(again.id, m.id);
    ck_assert_str_eq(again.preview, "once"); /* the original */
    /* the same client id from another sender is another message */
    ck_assert_int_eq(append(A.id, "mine", "cm-1", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(m.seq, 7);
}
END_TEST

START_TEST(rejects_bad_content)
{
    char big[CHAT_MESSAGE_MAX_BYTES + 2];
    chat_append a = {C.id, A.id, NULL, "", 0, 0};
    chat_message m;

    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EINVAL);
    a.content = "\xff\xfe";
    a.content_len = 2;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EINVAL);
    memset(big, 'a', sizeof big);
    a.content = big;
    a.content_len = CHAT_MESSAGE_MAX_BYTES + 1;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EINVAL);
    a.content_len = CHAT_MESSAGE_MAX_BYTES;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_OK);
    ck_assert_uint_eq(m.content_len, CHAT_MESSAGE_MAX_BYTES);
    a.client_msg_id = "";
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EINVAL);
}
END_TEST

START_TEST(previews_and_full_content)
{
    char text[4 * 300 + 1], *full = NULL;
    chat_message m, got;
    int i;

    for (i = 0; i < 300; i++)
        memcpy(text + 4 * i, "\xf0\x9f\x98\x80", 4);
    text[1200] = '\0';
    ck_assert_int_eq(append(A.id, text, NULL, &m, NULL), CHAT_OK);
    ck_assert_uint_eq(strlen(m.preview), 800);
    ck_assert_int_eq(m.has_more, 1);
    ck_assert_int_eq(chat_log_get(L, C.id, m.id, &got, &full), CHAT_OK);
    ck_assert_str_eq(full, text);
    ck_assert_str_eq(got.preview, m.preview);
    chat_free(full);
    /* a message id is only found in its own conversation */
    {
        chat_conv other;
        chat_user c;
        mkuser("carol", &c);
        chat_store_conv_dm(S, A.id, c.id, &other, NULL);
        ck_assert_int_eq(chat_log_get(L, other.id, m.id, &got, &full),
                         CHAT_ENOTFOUND);
    }
}
END_TEST

START_TEST(range_paging)
{
    chat_message page[CHAT_PAGE_MAX];
    int i, n;

    for (i = 1; i <= 30; i++) {
        char t[32];
        snprintf(t, sizeof t, "m%d", i);
        ck_assert_int_eq(append(i % 2 ? A.id : B.id, t, NULL, page, NULL),
                         CHAT_OK);
    }
    ck_assert_int_eq(chat_log_range(L, C.id, 10, 0, 5, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(page[0].seq, 11);
    ck_assert_int_eq(page[4].seq, 15);
    ck_assert_int_eq(chat_log_range(L, C.id, 0, 11, 5, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(page[0].seq, 6); /* ascending */
    ck_assert_int_eq(page[4].seq, 10);
    ck_assert_int_eq(chat_log_range(L, C.id, 0, 3, 50, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(chat_log_range(L, C.id, 30, 0, 50, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(chat_log_range(L, C.id, 0, 0, 201, page, &n), CHAT_EINVAL);
    /* the conversation summary followed the log in the same transactions */
    {
        chat_conv c;
        ck_assert_int_eq(chat_store_conv_get(S, C.id, B.id, &c), CHAT_OK);
        ck_assert_int_eq(c.last_seq, 30);
        ck_assert_str_eq(c.last_preview, "m30");
        ck_assert_int_eq(c.read_seq, 30); /* B sent m30 */
        ck_assert_int_eq(chat_store_conv_get(S, C.id, A.id, &c), CHAT_OK);
        ck_assert_int_eq(c.read_seq, 29);
    }
}
END_TEST

#define THREADS 8
#define EACH    500

static void *sender(void *arg)
{
    const char *who = arg;
    chat_message m;
    long ok = 0;
    int i;

    for (i = 0; i < EACH; i++)
        if (append(who, "concurrent", NULL, &m, NULL) == CHAT_OK)
            ok++;
    return (void *)ok;
}

START_TEST(gapless_under_concurrency)
{
    chat_message page[CHAT_PAGE_MAX];
    pthread_t t[THREADS];
    static char seen[THREADS * EACH + 1];
    int64_t after = 0;
    long total = 0;
    int i, n;

    for (i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, sender, i % 2 ? A.id : B.id);
    for (i = 0; i < THREADS; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        total += (long)ok;
    }
    ck_assert_int_eq(total, THREADS * EACH);
    memset(seen, 0, sizeof seen);
    do {
        ck_assert_int_eq(
            chat_log_range(L, C.id, after, 0, CHAT_PAGE_MAX, page, &n),
            CHAT_OK);
        for (i = 0; i < n; i++) {
            ck_assert_int_eq(page[i].seq, after + 1);
            ck_assert(!seen[page[i].seq]);
            seen[page[i].seq] = 1;
            after = page[i].seq;
        }
    } while (n > 0);
    ck_assert_int_eq(after, THREADS * EACH);
}
END_TEST

static atomic_int g_done;
static void count_cb(int rc, const chat_message *m, int created, void *ud)
{
    (void)m;
    (void)created;
    (void)ud;
    if (rc == CHAT_OK)
        atomic_fetch_add(&g_done, 1);
}

START_TEST(free_drains_queue_and_data_persists)
{
    chat_append a = {C.id, A.id, NULL, "queued", 6, 0};
    chat_message page[10];
    int i, n;

    atomic_store(&g_done, 0);
    for (i = 0; i < 1000; i++)
        ck_assert_int_eq(chat_log_append(L, &a, count_cb, NULL), CHAT_OK);
    chat_log_free(L); /* commits everything queued, answers every one */
    ck_assert_int_eq(atomic_load(&g_done), 1000);
    open_log(1); /* reopen, synchronous=FULL this time */
    ck_assert_int_eq(chat_log_range(L, C.id, 995, 0, 10, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(page[4].seq, 1000);
    ck_assert_int_eq(append(B.id, "after reopen", NULL, page, NULL), CHAT_OK);
    ck_assert_int_eq(page[0].seq, 1001);
}
END_TEST

static atomic_int g_ok, g_perm;
static void tally(int rc, const chat_message *m, int created, void *ud)
{
    (void)created;
    (void)ud;
    if (rc == CHAT_OK && m != NULL)
        atomic_fetch_add(&g_ok, 1);
    else if (rc == CHAT_EPERM && m == NULL)
        atomic_fetch_add(&g_perm, 1);
}

START_TEST(membership_in_the_transaction)
{
    chat_user c;
    chat_message m;
    chat_append a = {C.id, A.id, NULL, "member", 6, 1};
    chat_log *plain;
    chat_sqlite_opts o = CHAT_SQLITE_OPTS_INIT;
    int i;

    mkuser("carol", &c);
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_OK);
    ck_assert_int_eq(m.seq, 1);
    a.sender_id = c.id;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EPERM);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "member"));
    a.conversation_id = "00000000-0000-7000-8000-000000000000";
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_ENOTFOUND);
    /* refusals in a batch do not fail the members' appends around them */
    atomic_store(&g_ok, 0);
    atomic_store(&g_perm, 0);
    a.conversation_id = C.id;
    for (i = 0; i < 200; i++) {
        a.sender_id = i % 3 ? A.id : c.id;
        ck_assert_int_eq(chat_log_append(L, &a, tally, NULL), CHAT_OK);
    }
    chat_log_free(L);
    open_log(0);
    ck_assert_int_eq(atomic_load(&g_ok), 133);
    ck_assert_int_eq(atomic_load(&g_perm), 67);
    a.sender_id = A.id;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_OK);
    ck_assert_int_eq(m.seq, 135); /* gapless: refusals took no seq */
    /* a log that does not share the store cannot check */
    o.sync_full = 0;
    ck_assert_int_eq(chat_log_sqlite_open(&plain, g_path, &o), CHAT_OK);
    ck_assert_int_eq(chat_log_append_wait(plain, &a, &m, NULL), CHAT_EINVAL);
    chat_log_free(plain);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("sqlite");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, seq_and_idempotency);
    tcase_add_test(tc, rejects_bad_content);
    tcase_add_test(tc, previews_and_full_content);
    tcase_add_test(tc, range_paging);
    tcase_add_test(tc, gapless_under_concurrency);
    tcase_add_test(tc, free_drains_queue_and_data_persists);
    tcase_add_test(tc, membership_in_the_transaction);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
