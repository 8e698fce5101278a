/*
 * Client SDK benchmarks (prints figures; never pass/fail):
 *
 *   client_bench cache PATH [MESSAGES] [CONVERSATIONS]
 *       Build a cache of MESSAGES (default 1,000,000) over CONVERSATIONS
 *       (default 100) if PATH does not exist, then time, over 21 runs:
 *       cold start = chat_client_new + the conversation list + the last 50
 *       messages of one conversation + chat_client_free; and an FTS5 query
 *       over all of it. Median and p90.
 *
 *   client_bench sync BASE_URL [MESSAGES] [CONVERSATIONS]
 *       Against a running chatd (rate limits off): one user sends MESSAGES
 *       through the SDK into CONVERSATIONS groups, then a fresh client of
 *       another member logs in and catches up; prints messages/s applied
 *       to its cache from login to CHAT_CLIENT_EVENT_SYNCED.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>

#include "client/cache.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    printf("%-44s median %7.2f ms   p90 %7.2f ms   (n=%d)\n", what, v[n / 2],
           v[n * 9 / 10], n);
}

static const char *words[] = {"alpha", "bravo",   "charlie", "delta",
                              "echo",  "foxtrot", "golf",    "hotel",
                              "india", "juliet",  "kilo",    "lima"};

/* Fill the cache with SQL straight through the cache's own schema (the
 * sync engine would take minutes to get there over HTTP). */
static int build_cache(const char *path, long total, int nconv)
{
    chat__cache *cache;
    sqlite3 *db;
    sqlite3_stmt *ins, *conv;
    char me[37], other[37];
    char(*ids)[37] = calloc((size_t)nconv, 37);
    long per = total / nconv;
    double t0 = now_ms();
    if (!ids || chat__cache_open(&cache, path) != CHAT_OK)
        return 1;
    db = chat__cache_db(cache);
    chat_uuid_v7(me);
    chat_uuid_v7(other);
    chat__cache_meta_set(cache, "user_id", me);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_prepare_v2(db,
                       "INSERT INTO conversations(id,kind,title,member_count,"
                       "last_activity,synced_seq,delivered_seq,server_seq) "
                       "VALUES(?,2,?,2,?,?,?,?)",
                       -1, &conv, NULL);
    sqlite3_prepare_v2(db,
                       "INSERT INTO messages(conversation_id,seq,message_id,"
                       "sender_id,created_at,text,has_more) "
                       "VALUES(?,?,?,?,?,?,0)",
                       -1, &ins, NULL);
    for (int c = 0; c < nconv; c++) {
        char title[32];
        chat_uuid_v7(ids[c]);
        snprintf(title, sizeof title, "group %d", c);
        sqlite3_bind_text(conv, 1, ids[c], -1, SQLITE_STATIC);
        sqlite3_bind_text(conv, 2, title, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(conv, 3, 1764000000000 + c);
        sqlite3_bind_int64(conv, 4, per);
        sqlite3_bind_int64(conv, 5, per);
        sqlite3_bind_int64(conv, 6, per);
        sqlite3_step(conv);
        sqlite3_reset(conv);
    }
    for (long i = 0; i < total; i++) {
        int c = (int)(i % nconv);
        char mid[37], text[160];
        chat_uuid_v7(mid);
        /* ~90 bytes of text: a few words from a small vocabulary and a
         * unique token, so FTS has both common and rare terms. */
        snprintf(text, sizeof text, "%s %s %s message number w%ld of the %s",
                 words[i % 12], words[(i / 12) % 12], words[(i / 144) % 12], i,
                 words[(i / 7) % 12]);
        sqlite3_bind_text(ins, 1, ids[c], -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, i / nconv + 1);
        sqlite3_bind_text(ins, 3, mid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, (i & 1) ? me : other, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 5, 1764000000000 + i);
        sqlite3_bind_text(ins, 6, text, -1, SQLITE_TRANSIENT);
        sqlite3_step(ins);
        sqlite3_reset(ins);
        if (i % 100000 == 99999) {
            sqlite3_exec(db, "COMMIT; BEGIN", NULL, NULL, NULL);
            fprintf(stderr, "\rbuilding cache: %ld messages", i + 1);
        }
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(conv);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    chat__cache_close(cache);
    fprintf(stderr, "\rbuilt %ld messages in %d conversations in %.1f s\n",
            total, nconv, (now_ms() - t0) / 1000);
    free(ids);
    return 0;
}

static int bench_cache(const char *path, long total, int nconv)
{
    double cold[21], fts[21], fts_rare[21];
    struct stat st;
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    if (stat(path, &st) != 0 && build_cache(path, total, nconv) != 0) {
        fprintf(stderr, "cannot build %s\n", path);
        return 1;
    }
    stat(path, &st);
    printf("cache %s: %.0f MiB\n", path, (double)st.st_size / 1048576.0);
    o.base_url = "http://127.0.0.1:9"; /* never contacted: no session */
    o.cache_path = path;
    o.no_realtime = 1;
    for (int r = 0; r < 21; r++) {
        chat_client *c;
        chat_client_conversation_list list;
        chat_client_message_list h;
        double t0 = now_ms();
        if (chat_client_new(&c, &o) != CHAT_OK ||
            chat_client_conversations(c, &list) != CHAT_OK || !list.count ||
            chat_client_history(c, list.items[0].id, 0, 50, &h) != CHAT_OK ||
            h.count != 50) {
            fprintf(stderr, "cold start failed: %s\n",
                    chat_error_last()->message);
            return 1;
        }
        chat_client_message_list_free(&h);
        chat_client_conversation_list_free(&list);
        chat_client_free(c);
        cold[r] = now_ms() - t0;

        if (chat_client_new(&c, &o) != CHAT_OK)
            return 1;
        t0 = now_ms();
        if (chat_client_search(c, "charlie delta", NULL, 50, &h) != CHAT_OK) {
            fprintf(stderr, "search failed: %s\n", chat_error_last()->message);
            return 1;
        }
        fts[r] = now_ms() - t0;
        chat_client_message_list_free(&h);
        t0 = now_ms();
        char q[32];
        snprintf(q, sizeof q, "w%ld", (long)r * 4099 % total);
        if (chat_client_search(c, q, NULL, 50, &h) != CHAT_OK || h.count != 1) {
            fprintf(stderr, "rare search failed\n");
            return 1;
        }
        fts_rare[r] = now_ms() - t0;
        chat_client_message_list_free(&h);
        chat_client_free(c);
    }
    report("cold start (open + list + last 50)", cold, 21);
    report("FTS \"charlie delta\", newest 50 of all", fts, 21);
    report("FTS one rare word", fts_rare, 21);
    return 0;
}

/* ---- sync throughput ------------------------------------------------------
 */

typedef struct counter {
    long messages;
    int synced;
    char last_cmid[37];
    long confirmed;
} counter;

static void on_event(chat_client *c, const chat_client_event *ev, void *ud)
{
    counter *n = ud;
    (void)c;
    if (ev->type == CHAT_CLIENT_EVENT_MESSAGE) {
        n->messages++;
        if (ev->message->client_msg_id[0])
            n->confirmed++;
    } else if (ev->type == CHAT_CLIENT_EVENT_SYNCED) {
        n->synced++;
    }
}

static void pump(chat_client *c, int ms)
{
    struct pollfd p = {chat_client_fd(c), POLLIN, 0};
    poll(&p, 1, ms);
    chat_client_process(c);
}

static chat_client *client(const char *base, counter *n)
{
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    chat_client *c;
    o.base_url = base;
    o.on_event = on_event;
    o.userdata = n;
    if (chat_client_new(&c, &o) != CHAT_OK)
        exit(1);
    return c;
}

static void must(chat_client *c, int64_t id, const char *what)
{
    if (id < 0 || chat_client_wait(c, id, 30000) != CHAT_OK) {
        fprintf(stderr, "%s failed: %s\n", what, chat_error_last()->message);
        exit(1);
    }
}

static char group_id[64][37];
static void on_group(chat_client *c, const chat_client_result *r, void *ud)
{
    (void)c;
    snprintf(group_id[(intptr_t)ud], 37, "%s", r->id);
}

static int bench_sync(const char *base, long total, int nconv)
{
    counter na = {0}, nb = {0};
    chat_client *a = client(base, &na), *b = client(base, &nb);
    char names[2][32], bid[37] = "";
    const char *members[1];
    double t0;
    snprintf(names[0], 32, "bencha%ld", (long)getpid());
    snprintf(names[1], 32, "benchb%ld", (long)getpid());
    for (int i = 0; i < 2; i++) {
        chat_client *c = i ? b : a;
        char email[96];
        snprintf(email, sizeof email, "%s@bench.io", names[i]);
        must(c,
             chat_client_register(c, email, names[i], "bench-password", NULL,
                                  NULL),
             "register");
        must(c, chat_client_login(c, names[i], "bench-password", NULL, NULL),
             "login");
    }
    snprintf(bid, sizeof bid, "%s", chat_client_user_id(b));
    chat_client_free(b);
    members[0] = bid;
    if (nconv > 64)
        nconv = 64;
    for (int g = 0; g < nconv; g++)
        must(a,
             chat_client_group_create(a, "bench", members, 1, on_group,
                                      (void *)(intptr_t)g),
             "group");
    t0 = now_ms();
    for (long i = 0; i < total; i++) {
        char text[64];
        snprintf(text, sizeof text, "bench message %ld", i);
        if (chat_client_send(a, group_id[i % nconv], text, NULL) != CHAT_OK)
            return 1;
        if (i % 500 == 0)
            pump(a, 0);
    }
    while (na.confirmed < total)
        pump(a, 50);
    printf("%-44s %7.0f msg/s  (%ld messages, %d conversations, one in "
           "flight per conversation)\n",
           "outbox send, confirmed", (double)total / ((now_ms() - t0) / 1e3),
           total, nconv);
    chat_client_free(a);

    b = client(base, &nb);
    t0 = now_ms();
    must(b, chat_client_login(b, names[1], "bench-password", NULL, NULL),
         "login");
    while (!nb.synced)
        pump(b, 50);
    double ms = now_ms() - t0;
    printf("%-44s %7.0f msg/s  (%ld messages in %.2f s, login to SYNCED)\n",
           "catch-up applied to the cache", (double)nb.messages / (ms / 1e3),
           nb.messages, ms / 1e3);
    chat_client_free(b);
    return nb.messages == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    long n = argc > 3 ? atol(argv[3]) : 0;
    int conv = argc > 4 ? atoi(argv[4]) : 0;
    if (argc >= 3 && strcmp(argv[1], "cache") == 0)
        return bench_cache(argv[2], n > 0 ? n : 1000000, conv > 0 ? conv : 100);
    if (argc >= 3 && strcmp(argv[1], "sync") == 0)
        return bench_sync(argv[2], n > 0 ? n : 20000, conv > 0 ? conv : 10);
    fprintf(stderr, "usage: client_bench cache PATH [MESSAGES] [CONVS]\n"
                    "       client_bench sync BASE_URL [MESSAGES] [CONVS]\n");
    return 2;
}
