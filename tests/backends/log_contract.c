/* The message log's contract, one suite run against every backend:
 *
 *   log_contract sqlite      a SQLite log in a temporary directory
 *   log_contract dynamodb    DynamoDB at $DYNAMODB_ENDPOINT (dynalite in
 *                            make test, started by with-dynalite.sh)
 *   log_contract postgres    PostgreSQL at $DATABASE_URL (a private
 *                            server started by with-postgres.sh)
 *
 * "Two instances" are two chat_log handles on the same data, as two
 * message-service processes would have. */
#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chat/chat.h>
#include "aws/dynamodb.h" /* to plant the traces of a writer that died */
#include "check_run.h"

static const char *g_backend;
static char g_dir[64], g_path[128], g_table[64];
static chat_log *L;
static char CONV[CHAT_ID_LEN + 1], ALICE[CHAT_ID_LEN + 1], BOB[CHAT_ID_LEN + 1];

static int is_ddb(void)
{
    return !strcmp(g_backend, "dynamodb");
}

static int rm_entry(const char *p, const struct stat *sb, int f,
                    struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    return remove(p);
}

static int is_pg(void)
{
    return !strcmp(g_backend, "postgres");
}

static int open_log(chat_log **out)
{
    if (is_pg()) {
        chat_pg_opts o;
        chat_pg_opts_init(&o);
        o.conninfo = getenv("DATABASE_URL");
        return chat_log_pg_open(out, &o);
    }
    if (is_ddb()) {
        chat_dynamodb_opts o;
        chat_dynamodb_opts_init(&o);
        chat_dynamodb_opts_from_env(&o);
        o.table = g_table;
        return chat_log_dynamodb_open(out, &o);
    }
    return chat_log_sqlite_open(out, g_path, NULL);
}

static void setup(void)
{
    static int n;

    chat_uuid_v7(CONV);
    chat_uuid_v7(ALICE);
    chat_uuid_v7(BOB);
    /* a table per test: no test sees another's data */
    snprintf(g_table, sizeof g_table, "contract_%d_%d", (int)getpid(), ++n);
    snprintf(g_dir, sizeof g_dir, "/tmp/chat-contract-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/log.db", g_dir);
    ck_assert_msg(open_log(&L) == CHAT_OK, "open: %s",
                  chat_error_last()->message);
}

static void teardown(void)
{
    chat_log_free(L);
    L = NULL;
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int append_on(chat_log *l, const char *conv, const char *sender,
                     const char *text, const char *cmid, chat_message *out,
                     int *created)
{
    chat_append a = {conv, sender, cmid, text, strlen(text), 0};
    return chat_log_append_wait(l, &a, out, created);
}

static int append(const char *sender, const char *text, const char *cmid,
                  chat_message *out, int *created)
{
    return append_on(L, CONV, sender, text, cmid, out, created);
}

/* Every message of CONV in order; checks 1..n without gaps. */
static int64_t check_gapless(char *seen_ids, size_t id_stride)
{
    chat_message page[CHAT_PAGE_MAX];
    int64_t after = 0;
    int i, n;

    do {
        ck_assert_int_eq(
            chat_log_range(L, CONV, after, 0, CHAT_PAGE_MAX, page, &n),
            CHAT_OK);
        for (i = 0; i < n; i++) {
            ck_assert_int_eq(page[i].seq, after + 1);
            if (seen_ids)
                memcpy(seen_ids + (size_t)(page[i].seq - 1) * id_stride,
                       page[i].preview, id_stride - 1);
            after = page[i].seq;
        }
    } while (n > 0);
    return after;
}

START_TEST(seq_and_idempotency)
{
    chat_message m, again, other;
    int created, i;

    for (i = 1; i <= 5; i++) {
        ck_assert_int_eq(append(ALICE, "hi", NULL, &m, &created), CHAT_OK);
        ck_assert_int_eq(m.seq, i);
        ck_assert_int_eq(created, 1);
        ck_assert(chat_uuid_valid(m.id));
        ck_assert_str_eq(m.conversation_id, CONV);
        ck_assert_str_eq(m.sender_id, ALICE);
    }
    ck_assert_int_eq(append(ALICE, "once", "c-1", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(m.seq, 6);
    ck_assert_str_eq(m.client_msg_id, "c-1");
    /* a retry, even with other text, gets the original */
    ck_assert_int_eq(append(ALICE, "twice", "c-1", &again, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_int_eq(again.seq, 6);
    ck_assert_str_eq(again.id, m.id);
    ck_assert_str_eq(again.preview, "once");
    /* the same id from another sender is another message */
    ck_assert_int_eq(append(BOB, "bob's", "c-1", &other, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(other.seq, 7);
    ck_assert_int_eq(check_gapless(NULL, 0), 7);
}
END_TEST

START_TEST(rejects_bad_input)
{
    chat_message m;
    char *big = malloc(CHAT_MESSAGE_MAX_BYTES + 2);
    chat_append a = {CONV, ALICE, NULL, "x", 1, 0};

    ck_assert_int_eq(append(ALICE, "", NULL, &m, NULL), CHAT_EINVAL);
    ck_assert_int_eq(append(ALICE, "\xff\xfe", NULL, &m, NULL), CHAT_EINVAL);
    ck_assert_int_eq(append(ALICE, "\xc3", NULL, &m, NULL), CHAT_EINVAL);
    memset(big, 'a', CHAT_MESSAGE_MAX_BYTES + 1);
    big[CHAT_MESSAGE_MAX_BYTES + 1] = '\0';
    ck_assert_int_eq(append(ALICE, big, NULL, &m, NULL), CHAT_EINVAL);
    big[CHAT_MESSAGE_MAX_BYTES] = '\0'; /* exactly the limit is fine */
    ck_assert_int_eq(append(ALICE, big, NULL, &m, NULL), CHAT_OK);
    ck_assert_int_eq(m.content_len, CHAT_MESSAGE_MAX_BYTES);
    free(big);
    ck_assert_int_eq(append_on(L, "not-a-uuid", ALICE, "x", NULL, &m, NULL),
                     CHAT_EINVAL);
    ck_assert_int_eq(append(ALICE, "x", "", &m, NULL), CHAT_EINVAL);
    ck_assert_int_eq(
        append(ALICE, "x",
               "0123456789012345678901234567890123456789012345678901234567890"
               "123456789",
               &m, NULL),
        CHAT_EINVAL);
    /* membership needs a log that shares the store's transaction */
    a.require_member = 1;
    ck_assert_int_eq(chat_log_append_wait(L, &a, &m, NULL), CHAT_EINVAL);
    ck_assert_int_eq(check_gapless(NULL, 0), 1);
}
END_TEST

START_TEST(previews_and_full_content)
{
    chat_message m, got;
    char text[1200], *full = NULL, other[CHAT_ID_LEN + 1],
                     ghost[CHAT_ID_LEN + 1];
    size_t i;
    int created;

    /* 300 two-byte characters: the preview is the first 200 of them */
    for (i = 0; i < 300; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2);
    text[600] = '\0';
    ck_assert_int_eq(append(ALICE, text, NULL, &m, &created), CHAT_OK);
    ck_assert_int_eq(m.has_more, 1);
    ck_assert_uint_eq(strlen(m.preview), 400);
    ck_assert_uint_eq(m.content_len, 600);
    ck_assert_int_eq(chat_log_get(L, CONV, m.id, &got, &full), CHAT_OK);
    ck_assert_str_eq(full, text);
    ck_assert_str_eq(got.id, m.id);
    ck_assert_int_eq(got.seq, 1);
    ck_assert_int_eq(got.has_more, 1);
    ck_assert_int_eq(got.created_at, m.created_at);
    chat_free(full);
    /* upper case ids name the same message */
    {
        char up[CHAT_ID_LEN + 1];
        for (i = 0; i <= CHAT_ID_LEN; i++)
            up[i] = (char)(m.id[i] >= 'a' && m.id[i] <= 'f' ? m.id[i] - 32
                                                            : m.id[i]);
        ck_assert_int_eq(chat_log_get(L, CONV, up, &got, NULL), CHAT_OK);
    }
    /* the short one has no more */
    ck_assert_int_eq(append(BOB, "short \xf0\x9f\x98\x80", NULL, &m, NULL),
                     CHAT_OK);
    ck_assert_int_eq(m.has_more, 0);
    ck_assert_str_eq(m.preview, "short \xf0\x9f\x98\x80");
    /* not found: unknown id, or the id in another conversation */
    chat_uuid_v7(other);
    chat_uuid_v7(ghost);
    ck_assert_int_eq(chat_log_get(L, CONV, ghost, &got, &full), CHAT_ENOTFOUND);
    ck_assert_ptr_null(full);
    ck_assert_int_eq(chat_log_get(L, other, m.id, &got, &full), CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_log_get(L, CONV, "garbage", &got, &full),
                     CHAT_ENOTFOUND);
}
END_TEST

START_TEST(range_paging)
{
    chat_message m, page[CHAT_PAGE_MAX];
    char text[32], other[CHAT_ID_LEN + 1];
    int i, n;

    for (i = 1; i <= 25; i++) {
        snprintf(text, sizeof text, "m%d", i);
        ck_assert_int_eq(append(i % 2 ? ALICE : BOB, text, NULL, &m, NULL),
                         CHAT_OK);
    }
    ck_assert_int_eq(chat_log_range(L, CONV, 0, 0, 10, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 10);
    ck_assert_int_eq(page[0].seq, 1);
    ck_assert_str_eq(page[0].preview, "m1");
    ck_assert_str_eq(page[0].sender_id, ALICE);
    ck_assert_int_eq(page[9].seq, 10);
    ck_assert_int_eq(chat_log_range(L, CONV, 20, 0, 10, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(page[4].seq, 25);
    ck_assert_int_eq(chat_log_range(L, CONV, 25, 0, 10, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    /* before: the last `limit` before it, still ascending */
    ck_assert_int_eq(chat_log_range(L, CONV, 0, 11, 5, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(page[0].seq, 6);
    ck_assert_int_eq(page[4].seq, 10);
    ck_assert_int_eq(chat_log_range(L, CONV, 0, 1, 5, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(chat_log_range(L, CONV, 0, 1000, 200, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 25);
    ck_assert_int_eq(page[0].seq, 1);
    /* another conversation is empty */
    chat_uuid_v7(other);
    ck_assert_int_eq(chat_log_range(L, other, 0, 0, 10, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
}
END_TEST

/* ---- concurrency: two instances, several threads each ------------------ */

#define THREADS 4
static int g_each;

typedef struct sender_arg {
    chat_log *log;
    int idx;
    const char *cmid; /* all threads send this one, or NULL */
    int ok;
    char ids[64][CHAT_ID_LEN + 1];
} sender_arg;

static void *sender(void *arg)
{
    sender_arg *a = arg;
    chat_message m;
    char text[32];
    int i, rc, created;

    for (i = 0; i < g_each; i++) {
        snprintf(text, sizeof text, "t%d-%d", a->idx, i);
        do {
            rc = append_on(a->log, CONV, a->idx % 2 ? ALICE : BOB, text,
                           a->cmid, &m, &created);
            if (rc == CHAT_EAGAIN) /* the first claim is still writing */
                usleep(20000);
        } while (rc == CHAT_EAGAIN);
        if (rc == CHAT_OK) {
            memcpy(a->ids[a->ok % 64], m.id, sizeof m.id);
            a->ok++;
        }
    }
    return NULL;
}

START_TEST(gapless_across_instances)
{
    static sender_arg args[2 * THREADS];
    static char seen[2 * THREADS * 64][8];
    chat_log *second;
    pthread_t t[2 * THREADS];
    int i, j, total = 0;

    ck_assert_int_eq(open_log(&second), CHAT_OK);
    g_each = is_ddb() ? 15 : 60;
    memset(args, 0, sizeof args);
    for (i = 0; i < 2 * THREADS; i++) {
        args[i].log = i < THREADS ? L : second;
        args[i].idx = i;
        pthread_create(&t[i], NULL, sender, &args[i]);
    }
    for (i = 0; i < 2 * THREADS; i++) {
        pthread_join(t[i], NULL);
        total += args[i].ok;
    }
    chat_log_free(second);
    ck_assert_int_eq(total, 2 * THREADS * g_each);
    memset(seen, 0, sizeof seen);
    ck_assert_int_eq(check_gapless(&seen[0][0], sizeof seen[0]), total);
    /* every text exactly once */
    for (i = 0; i < 2 * THREADS; i++)
        for (j = 0; j < g_each; j++) {
            char text[32];
            int k, found = 0;
            snprintf(text, sizeof text, "t%d-%d", i, j);
            for (k = 0; k < total; k++)
                found += !strcmp(seen[k], text);
            ck_assert_msg(found == 1, "%s stored %d times", text, found);
        }
}
END_TEST

START_TEST(one_client_msg_id_across_instances)
{
    static sender_arg args[2 * THREADS];
    chat_log *second;
    pthread_t t[2 * THREADS];
    int i;

    ck_assert_int_eq(open_log(&second), CHAT_OK);
    g_each = 3;
    memset(args, 0, sizeof args);
    for (i = 0; i < 2 * THREADS; i++) {
        args[i].log = i < THREADS ? L : second;
        args[i].idx = 0; /* one sender */
        args[i].cmid = "same-request";
        pthread_create(&t[i], NULL, sender, &args[i]);
    }
    for (i = 0; i < 2 * THREADS; i++)
        pthread_join(t[i], NULL);
    chat_log_free(second);
    /* stored once; everyone got that one */
    ck_assert_int_eq(check_gapless(NULL, 0), 1);
    for (i = 0; i < 2 * THREADS; i++) {
        int j;
        ck_assert_int_eq(args[i].ok, g_each);
        for (j = 0; j < g_each; j++)
            ck_assert_str_eq(args[i].ids[j], args[0].ids[0]);
    }
}
END_TEST

START_TEST(reopen_keeps_everything)
{
    chat_message m;
    int created;

    ck_assert_int_eq(append(ALICE, "before", "r-1", &m, NULL), CHAT_OK);
    ck_assert_int_eq(append(ALICE, "before 2", NULL, &m, NULL), CHAT_OK);
    chat_log_free(L);
    L = NULL;
    ck_assert_int_eq(open_log(&L), CHAT_OK);
    ck_assert_int_eq(append(ALICE, "after", "r-1", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_int_eq(m.seq, 1);
    ck_assert_int_eq(append(ALICE, "after", NULL, &m, &created), CHAT_OK);
    ck_assert_int_eq(m.seq, 3);
    ck_assert_int_eq(check_gapless(NULL, 0), 3);
}
END_TEST

static int g_cbs;
static pthread_mutex_t g_cb_lock = PTHREAD_MUTEX_INITIALIZER;
static void count_cb(int rc, const chat_message *m, int created, void *ud)
{
    (void)m;
    (void)created;
    (void)ud;
    pthread_mutex_lock(&g_cb_lock);
    if (rc == CHAT_OK)
        g_cbs++;
    pthread_mutex_unlock(&g_cb_lock);
}

START_TEST(free_drains_queued_appends)
{
    chat_append a = {CONV, ALICE, NULL, "queued", 6, 0};
    int i, n = is_ddb() ? 30 : 200;

    g_cbs = 0;
    for (i = 0; i < n; i++)
        ck_assert_int_eq(chat_log_append(L, &a, count_cb, NULL), CHAT_OK);
    chat_log_free(L); /* answers every queued append first */
    L = NULL;
    ck_assert_int_eq(g_cbs, n);
    ck_assert_int_eq(open_log(&L), CHAT_OK);
    ck_assert_int_eq(check_gapless(NULL, 0), n);
}
END_TEST

/* Appends queued together, so they share batches: three conversations,
 * and in each a client_msg_id sent several times among other messages. */
typedef struct slot {
    int rc, created, done;
    int64_t seq;
    char id[CHAT_ID_LEN + 1];
} slot;

static void slot_cb(int rc, const chat_message *m, int created, void *ud)
{
    slot *s = ud;

    pthread_mutex_lock(&g_cb_lock);
    s->rc = rc;
    s->created = created;
    if (m) {
        s->seq = m->seq;
        memcpy(s->id, m->id, sizeof s->id);
    }
    s->done = 1;
    g_cbs++;
    pthread_mutex_unlock(&g_cb_lock);
}

START_TEST(retries_and_conversations_in_one_batch)
{
    enum { N = 60, NCONV = 3 };
    static slot slots[N];
    char convs[NCONV][CHAT_ID_LEN + 1], text[32];
    int64_t next[NCONV] = {0}, dup_seq[NCONV] = {0};
    const char *dup_id[NCONV] = {NULL};
    int i, k, done;

    for (k = 0; k < NCONV; k++)
        chat_uuid_v7(convs[k]);
    memset(slots, 0, sizeof slots);
    g_cbs = 0;
    for (i = 0; i < N; i++) {
        chat_append a = {
            convs[i % NCONV], ALICE, i % 4 == 0 ? "dup" : NULL, text, 0, 0};
        a.content_len = (size_t)snprintf(text, sizeof text, "m%d", i);
        ck_assert_int_eq(chat_log_append(L, &a, slot_cb, &slots[i]), CHAT_OK);
    }
    for (i = 0; i < 3000; i++) { /* at most 30 s */
        pthread_mutex_lock(&g_cb_lock);
        done = g_cbs;
        pthread_mutex_unlock(&g_cb_lock);
        if (done == N)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(done, N);
    for (i = 0; i < N; i++) {
        k = i % NCONV;
        ck_assert_int_eq(slots[i].rc, CHAT_OK);
        if (i % 4 != 0) {
            ck_assert_int_eq(slots[i].created, 1);
            continue;
        }
        if (dup_id[k] == NULL) { /* the first of its conversation stores */
            ck_assert_int_eq(slots[i].created, 1);
            dup_id[k] = slots[i].id;
            dup_seq[k] = slots[i].seq;
        } else { /* the others get it back */
            ck_assert_int_eq(slots[i].created, 0);
            ck_assert_str_eq(slots[i].id, dup_id[k]);
            ck_assert_int_eq(slots[i].seq, dup_seq[k]);
        }
    }
    /* each conversation: what was created is 1..n in queue order */
    for (i = 0; i < N; i++)
        if (slots[i].created) {
            k = i % NCONV;
            ck_assert_int_eq(slots[i].seq, ++next[k]);
        }
    for (k = 0; k < NCONV; k++) {
        memcpy(CONV, convs[k], sizeof CONV);
        ck_assert_int_eq(check_gapless(NULL, 0), next[k]);
    }
}
END_TEST

/* DynamoDB only: a claim (and maybe a message) left by a writer that
 * died, written straight into the tables. */
static void plant(const char *table, const char *json)
{
    chat_dynamodb_opts o;
    chat__ddb *d;
    cJSON *req = cJSON_Parse(json);

    chat_dynamodb_opts_init(&o);
    chat_dynamodb_opts_from_env(&o);
    ck_assert_ptr_nonnull(req);
    cJSON_AddStringToObject(req, "TableName", table);
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_OK);
    ck_assert_msg(chat__ddb_call(d, "PutItem", req, NULL) == CHAT_OK, "%s",
                  chat_error_last()->message);
    chat__ddb_free(d);
    cJSON_Delete(req);
}

static void plant_claim(const char *cmid, int64_t age_ms)
{
    char json[512], requests[96], owner[CHAT_ID_LEN + 1];

    chat_uuid_v7(owner);
    snprintf(requests, sizeof requests, "%s_requests", g_table);
    snprintf(json, sizeof json,
             "{\"Item\":{\"k\":{\"S\":\"%s#%s#%s\"},"
             "\"owner\":{\"S\":\"%s\"},\"at\":{\"N\":\"%lld\"}}}",
             CONV, ALICE, cmid, owner,
             (long long)(chat_time_now_ms() - age_ms));
    plant(requests, json);
}

START_TEST(dead_writers_claims_are_taken_over)
{
    chat_message m, again;
    char json[1024], id[CHAT_ID_LEN + 1];
    int created;

    if (!is_ddb())
        return;
    /* a fresh claim: its writer may still be at work */
    plant_claim("busy", 0);
    ck_assert_int_eq(append(ALICE, "x", "busy", &m, NULL), CHAT_EAGAIN);

    /* died before writing the message: the retry writes it, once */
    plant_claim("dead-1", 120000);
    ck_assert_int_eq(append(ALICE, "first", "dead-1", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(m.seq, 1);
    ck_assert_int_eq(append(ALICE, "first", "dead-1", &again, &created),
                     CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_str_eq(again.id, m.id);

    /* died after writing it, before finishing the claim: the retry finds
     * the message by its tag and answers with it */
    plant_claim("dead-2", 120000);
    chat_uuid_v7(id);
    snprintf(json, sizeof json,
             "{\"Item\":{\"conversation_id\":{\"S\":\"%s\"},"
             "\"seq\":{\"N\":\"2\"},\"id\":{\"S\":\"%s\"},"
             "\"sender_id\":{\"S\":\"%s\"},"
             "\"client_msg_id\":{\"S\":\"dead-2\"},"
             "\"request\":{\"S\":\"%s#%s#dead-2\"},"
             "\"created_at\":{\"N\":\"%lld\"},"
             "\"preview\":{\"S\":\"second\"},\"has_more\":{\"N\":\"0\"},"
             "\"content_len\":{\"N\":\"6\"},\"content\":{\"S\":\"second\"}}}",
             CONV, id, ALICE, CONV, ALICE,
             (long long)(chat_time_now_ms() - 110000));
    plant(g_table, json);
    ck_assert_int_eq(append(ALICE, "second", "dead-2", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_int_eq(m.seq, 2);
    ck_assert_str_eq(m.id, id);
    ck_assert_int_eq(append(ALICE, "second", "dead-2", &m, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_str_eq(m.id, id);
    /* and the log goes on from there */
    ck_assert_int_eq(append(BOB, "third", NULL, &m, &created), CHAT_OK);
    ck_assert_int_eq(m.seq, 3);
    ck_assert_int_eq(check_gapless(NULL, 0), 3);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;

    g_backend = argc > 1 ? argv[1] : "sqlite";
    if (strcmp(g_backend, "sqlite") && strcmp(g_backend, "dynamodb") &&
        strcmp(g_backend, "postgres")) {
        fprintf(stderr, "usage: log_contract sqlite|dynamodb|postgres\n");
        return 2;
    }
    if (is_pg() && !getenv("DATABASE_URL")) {
        fprintf(stderr, "log_contract: DATABASE_URL is not set\n");
        return 2;
    }
    if (is_ddb() && !getenv("DYNAMODB_ENDPOINT")) {
        fprintf(stderr, "log_contract: DYNAMODB_ENDPOINT is not set\n");
        return 2;
    }
    s = suite_create(g_backend);
    tc = tcase_create("log contract");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, seq_and_idempotency);
    tcase_add_test(tc, rejects_bad_input);
    tcase_add_test(tc, previews_and_full_content);
    tcase_add_test(tc, range_paging);
    tcase_add_test(tc, gapless_across_instances);
    tcase_add_test(tc, one_client_msg_id_across_instances);
    tcase_add_test(tc, reopen_keeps_everything);
    tcase_add_test(tc, free_drains_queued_appends);
    tcase_add_test(tc, retries_and_conversations_in_one_batch);
    tcase_add_test(tc, dead_writers_claims_are_taken_over);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
