/* The account/conversation store's contract, one suite run against every
 * backend:
 *
 *   store_contract sqlite      a SQLite store in a temporary directory
 *   store_contract postgres    PostgreSQL at $DATABASE_URL (a private
 *                              server started by with-postgres.sh); each
 *                              test gets a database of its own
 *
 * "Two instances" are two chat_store handles on the same data, as two
 * service processes would have. */
#include <check.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chat/chat.h>
#include "check_run.h"

static const char *g_backend;
static char g_admin[1024]; /* postgres: DATABASE_URL, the server's db */
static char g_dir[64];     /* sqlite: this test's directory */
static char g_where[1200]; /* this test's store: a path or a conninfo */
static char g_dbs[4][64];  /* postgres: databases this test created */
static int g_ndbs;
static chat_store *S;

static const char NOBODY[] = "00000000-0000-7000-8000-000000000000";

static int is_pg(void)
{
    return !strcmp(g_backend, "postgres");
}

static int rm_entry(const char *p, const struct stat *sb, int f,
                    struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    return remove(p);
}

/* ---- where the data lives ------------------------------------------------ */

static void pg_admin_exec(const char *sql)
{
    PGconn *c = PQconnectdb(g_admin);
    PGresult *r;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "admin connect: %s",
                  PQerrorMessage(c));
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* g_admin with another database, as a key=value conninfo. */
static void pg_conninfo_for(const char *db, char *out, size_t size)
{
    PQconninfoOption *opts, *o;
    char *err = NULL;
    size_t len = 0;

    opts = PQconninfoParse(g_admin, &err);
    ck_assert_msg(opts != NULL, "DATABASE_URL: %s", err ? err : "?");
    out[0] = '\0';
    for (o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") ? o->val : db;
        if (v == NULL || !*v)
            continue;
        len += (size_t)snprintf(out + len, size - len, "%s%s='", len ? " " : "",
                                o->keyword);
        for (; *v && len + 3 < size; v++) {
            if (*v == '\'' || *v == '\\')
                out[len++] = '\\';
            out[len++] = *v;
        }
        len += (size_t)snprintf(out + len, size - len, "'");
        ck_assert_uint_lt(len, size);
    }
    PQconninfoFree(opts);
}

/* A new empty place for a store: a database (postgres) or a file path. */
static void new_location(char *where, size_t size)
{
    static int n;
    char sql[384];

    n++;
    if (!is_pg()) {
        snprintf(where, size, "%s/store%d.db", g_dir, n);
        return;
    }
    ck_assert_int_lt(g_ndbs, 4);
    snprintf(g_dbs[g_ndbs], sizeof g_dbs[0], "store_%d_%d", (int)getpid(), n);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", g_dbs[g_ndbs]);
    pg_admin_exec(sql);
    pg_conninfo_for(g_dbs[g_ndbs++], where, size);
}

static int open_at(const char *where, chat_store **out)
{
    if (is_pg()) {
        chat_pg_opts o;
        chat_pg_opts_init(&o);
        o.conninfo = where;
        return chat_store_pg_open(out, &o);
    } else {
        chat_sqlite_opts o = CHAT_SQLITE_OPTS_INIT;
        o.sync_full = 0;
        return chat_store_sqlite_open(out, where, &o);
    }
}

static chat_store *open_second(void)
{
    chat_store *s = NULL;

    ck_assert_msg(open_at(g_where, &s) == CHAT_OK, "open: %s",
                  chat_error_last()->message);
    return s;
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/chat-store-contract-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    g_ndbs = 0;
    new_location(g_where, sizeof g_where);
    ck_assert_msg(open_at(g_where, &S) == CHAT_OK, "open: %s",
                  chat_error_last()->message);
}

static void teardown(void)
{
    char sql[384];
    int i;

    chat_store_free(S);
    S = NULL;
    for (i = 0; i < g_ndbs; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", g_dbs[i]);
        pg_admin_exec(sql);
    }
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ------------------------------------------------------------- */

static void fill_user(const char *name, const char *email, chat_user *u)
{
    memset(u, 0, sizeof *u);
    ck_assert_int_eq(chat_uuid_v7(u->id), CHAT_OK);
    if (email)
        snprintf(u->email, sizeof u->email, "%s", email);
    else
        snprintf(u->email, sizeof u->email, "%s@test.io", name);
    snprintf(u->username, sizeof u->username, "%s", name);
    snprintf(u->password_hash, sizeof u->password_hash, "$hash$%s", name);
    u->created_at = chat_time_now_ms();
}

static void mkuser(const char *name, chat_user *u)
{
    fill_user(name, NULL, u);
    ck_assert_msg(chat_store_user_create(S, u) == CHAT_OK, "create %s: %s",
                  name, chat_error_last()->message);
}

static void upper(char *dst, const char *src)
{
    for (; *src; src++)
        *dst++ = (char)(*src >= 'a' && *src <= 'z' ? *src - 32 : *src);
    *dst = '\0';
}

static chat_refresh_rec token(const char *user, uint8_t tag)
{
    chat_refresh_rec r;

    memset(&r, 0, sizeof r);
    memset(r.hash, tag, sizeof r.hash);
    chat_uuid_v7(r.family_id);
    memcpy(r.user_id, user, CHAT_ID_LEN);
    r.expires_at = chat_time_now_ms() + 60000;
    return r;
}

static chat_message msg_at(const char *conv, const char *sender, int64_t seq,
                           int64_t at)
{
    chat_message m;

    memset(&m, 0, sizeof m);
    chat_uuid_v7(m.id);
    memcpy(m.conversation_id, conv, CHAT_ID_LEN);
    memcpy(m.sender_id, sender, CHAT_ID_LEN);
    m.seq = seq;
    m.created_at = at;
    snprintf(m.preview, sizeof m.preview, "message %lld", (long long)seq);
    return m;
}

static int count_owners(const char *conv)
{
    chat_member m[CHAT_GROUP_MAX_MEMBERS];
    int n, i, owners = 0;

    ck_assert_int_eq(
        chat_store_conv_members(S, conv, m, CHAT_GROUP_MAX_MEMBERS, &n),
        CHAT_OK);
    for (i = 0; i < n; i++)
        owners += m[i].role == CHAT_ROLE_OWNER;
    return owners;
}

static pthread_barrier_t g_go;

/* Workers call this first: they all start at the same moment. */
static void go(void)
{
    pthread_barrier_wait(&g_go);
}

/* Start n threads running fn(args + i * stride) and wait for them. */
static void run_threads(int n, void *(*fn)(void *), void *args, size_t stride)
{
    pthread_t t[16];
    int i;

    ck_assert_int_le(n, 16);
    pthread_barrier_init(&g_go, NULL, (unsigned)n);
    for (i = 0; i < n; i++)
        ck_assert_int_eq(
            pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * stride),
            0);
    for (i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&g_go);
}

/* ---- users --------------------------------------------------------------- */

START_TEST(users)
{
    chat_user a, b, dup, got, found[10];
    int n;

    mkuser("alice", &a);
    mkuser("bob", &b);
    dup = a;
    chat_uuid_v7(dup.id);
    snprintf(dup.username, sizeof dup.username, "other");
    snprintf(dup.email, sizeof dup.email, "ALICE@test.io");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "email"));
    snprintf(dup.email, sizeof dup.email, "new@test.io");
    snprintf(dup.username, sizeof dup.username, "BOB");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "username"));
    /* both taken: the email is named first */
    snprintf(dup.email, sizeof dup.email, "Bob@Test.IO");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "email"));
    /* the same id again */
    dup = a;
    snprintf(dup.username, sizeof dup.username, "fresh");
    snprintf(dup.email, sizeof dup.email, "fresh@test.io");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);

    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_OK);
    ck_assert_str_eq(got.username, "alice");
    ck_assert_str_eq(got.email, "alice@test.io");
    ck_assert_int_eq(got.created_at, a.created_at);
    ck_assert_str_eq(got.password_hash, ""); /* not asked for */
    ck_assert_int_eq(chat_store_user_find_login(S, "Alice", &got), CHAT_OK);
    ck_assert_str_eq(got.password_hash, "$hash$alice");
    ck_assert_str_eq(got.id, a.id);
    ck_assert_int_eq(chat_store_user_find_login(S, "BOB@TEST.IO", &got),
                     CHAT_OK);
    ck_assert_str_eq(got.id, b.id);
    ck_assert_int_eq(chat_store_user_find_login(S, "carol", &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_user_find_login(S, "alice@test", &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_user_get(S, "nope", &got), CHAT_ENOTFOUND);

    ck_assert_int_eq(chat_store_user_search(S, "AL", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(found[0].id, a.id);
    ck_assert_str_eq(found[0].password_hash, "");
    ck_assert_int_eq(chat_store_user_search(S, "%", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 0); /* wildcards are literal */
    ck_assert_int_eq(chat_store_user_search(S, "", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(chat_store_user_search(S, "", 1, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(chat_store_user_search(S, "a", 0, found, &n), CHAT_EINVAL);
}
END_TEST

START_TEST(search_order_and_wildcards)
{
    chat_user u[7], found[10];
    int n;

    mkuser("bz", &u[0]);
    mkuser("B_x", &u[1]);
    mkuser("b.y", &u[2]);
    mkuser("al_b", &u[3]);
    mkuser("alxb", &u[4]);
    fill_user("carl", "ZED@example.io", &u[5]);
    ck_assert_int_eq(chat_store_user_create(S, &u[5]), CHAT_OK);
    mkuser("al%c", &u[6]);

    /* by username, ASCII case folded, bytewise: '.' < '_' < 'z' */
    ck_assert_int_eq(chat_store_user_search(S, "b", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(found[0].username, "b.y");
    ck_assert_str_eq(found[1].username, "B_x");
    ck_assert_str_eq(found[2].username, "bz");
    /* '_' and '%' match themselves only */
    ck_assert_int_eq(chat_store_user_search(S, "AL_", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(found[0].id, u[3].id);
    ck_assert_int_eq(chat_store_user_search(S, "al%", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(found[0].id, u[6].id);
    ck_assert_int_eq(chat_store_user_search(S, "al", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(found[0].username, "al%c");
    ck_assert_str_eq(found[1].username, "al_b");
    ck_assert_str_eq(found[2].username, "alxb");
    /* an email prefix finds a user whose username does not match */
    ck_assert_int_eq(chat_store_user_search(S, "zed@", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(found[0].username, "carl");
    ck_assert_str_eq(found[0].email, "ZED@example.io");
    ck_assert_int_eq(chat_store_user_search(S, "", 2, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(found[0].username, "al%c");
}
END_TEST

START_TEST(long_and_odd_logins)
{
    char login[400];
    chat_user a, got;

    mkuser("alice", &a);
    memset(login, 'a', sizeof login - 1);
    login[sizeof login - 1] = '\0';
    ck_assert_int_eq(chat_store_user_find_login(S, login, &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_user_find_login(S, "", &got), CHAT_ENOTFOUND);
    ck_assert_int_eq(
        chat_store_user_find_login(S, "'; DROP TABLE users; --", &got),
        CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_user_find_login(S, "ALICE", &got), CHAT_OK);
}
END_TEST

/* ---- refresh tokens ------------------------------------------------------ */

START_TEST(refresh_rotation_reuse_and_expiry)
{
    chat_user a;
    chat_refresh_rec t1, out;
    uint8_t h2[32], h3[32], h4[32];
    int64_t now = chat_time_now_ms();

    mkuser("alice", &a);
    t1 = token(a.id, 1);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_ECONFLICT);
    memset(h2, 2, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h2, now + 60000, now, &out),
        CHAT_OK);
    ck_assert_str_eq(out.family_id, t1.family_id);
    ck_assert_str_eq(out.user_id, a.id);
    ck_assert_int_eq(memcmp(out.hash, h2, 32), 0);
    ck_assert_int_eq(out.expires_at, now + 60000);
    /* replaying t1 revokes the family: h2 dies too */
    memset(h3, 3, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h3, now + 60000, now, &out),
        CHAT_EAUTH);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "reuse"));
    ck_assert_int_eq(chat_store_token_rotate(S, h2, h3, now + 60000, now, &out),
                     CHAT_EAUTH);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "revoked"));
    /* unknown */
    memset(h4, 4, 32);
    ck_assert_int_eq(chat_store_token_rotate(S, h4, h3, now + 60000, now, &out),
                     CHAT_EAUTH);
    /* expired */
    t1 = token(a.id, 5);
    t1.expires_at = now - 1;
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h4, now + 60000, now, &out),
        CHAT_EEXPIRED);
    t1.expires_at = now; /* expires_at <= now is expired */
    memset(t1.hash, 7, 32);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h4, now + 60000, now, &out),
        CHAT_EEXPIRED);
    /* logout revokes */
    t1 = token(a.id, 6);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(chat_store_token_revoke_family(S, t1.hash), CHAT_OK);
    ck_assert_int_eq(chat_store_token_revoke_family(S, t1.hash), CHAT_OK);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h4, now + 60000, now, &out),
        CHAT_EAUTH);
    ck_assert_int_eq(chat_store_token_revoke_family(S, h4), CHAT_ENOTFOUND);
}
END_TEST

START_TEST(refresh_chain_and_logout_from_any_token)
{
    chat_user a;
    chat_refresh_rec t, out;
    uint8_t h[8][32];
    int64_t now = chat_time_now_ms();
    int i;

    mkuser("alice", &a);
    t = token(a.id, 100);
    ck_assert_int_eq(chat_store_token_insert(S, &t), CHAT_OK);
    memcpy(h[0], t.hash, 32);
    for (i = 1; i < 8; i++) {
        memset(h[i], 100 + i, 32);
        ck_assert_int_eq(
            chat_store_token_rotate(S, h[i - 1], h[i], now + 1000, now, &out),
            CHAT_OK);
        ck_assert_str_eq(out.family_id, t.family_id);
    }
    /* another family of the same user is not touched */
    t = token(a.id, 200);
    ck_assert_int_eq(chat_store_token_insert(S, &t), CHAT_OK);
    /* logout with an old token of the chain ends the newest one */
    ck_assert_int_eq(chat_store_token_revoke_family(S, h[2]), CHAT_OK);
    memset(h[0], 99, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, h[7], h[0], now + 1000, now, &out),
        CHAT_EAUTH);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t.hash, h[0], now + 1000, now, &out),
        CHAT_OK);
}
END_TEST

/* ---- conversations ------------------------------------------------------- */

START_TEST(dm_create_or_get)
{
    chat_user a, b;
    chat_conv c1, c2;
    char up[CHAT_ID_LEN + 1];
    int created = -1;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &c1, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(c1.kind, CHAT_CONV_DM);
    ck_assert_int_eq(c1.member_count, 2);
    ck_assert_int_eq(c1.role, CHAT_ROLE_MEMBER);
    ck_assert_int_eq(c1.read_seq, 0);
    ck_assert_int_eq(c1.last_seq, 0);
    ck_assert_int_eq(c1.last_activity_at, c1.created_at);
    ck_assert_str_eq(c1.created_by, a.id);
    ck_assert_str_eq(c1.title, "");
    ck_assert_str_eq(c1.last_message_id, "");
    ck_assert(chat_uuid_valid(c1.id));
    ck_assert_int_eq(chat_store_conv_dm(S, b.id, a.id, &c2, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_str_eq(c1.id, c2.id);
    /* ids are compared in lower case */
    upper(up, a.id);
    ck_assert_int_eq(chat_store_conv_dm(S, b.id, up, &c2, NULL), CHAT_OK);
    ck_assert_str_eq(c1.id, c2.id);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, a.id, &c2, NULL), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, up, &c2, NULL), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, NOBODY, &c2, NULL),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_conv_dm(S, NOBODY, b.id, &c2, NULL),
                     CHAT_ENOTFOUND);
    /* seen by b */
    ck_assert_int_eq(chat_store_conv_get(S, c1.id, b.id, &c2), CHAT_OK);
    ck_assert_int_eq(c2.role, CHAT_ROLE_MEMBER);
}
END_TEST

START_TEST(peers_share_a_conversation)
{
    chat_user a, b, c, d;
    chat_conv dm, g;
    chat_id out[8];
    const char *members[1];
    int n = -1, i, seen_b = 0, seen_c = 0;

    mkuser("pa", &a);
    mkuser("pb", &b);
    mkuser("pc", &c);
    mkuser("pd", &d);
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    members[0] = c.id;
    ck_assert_int_eq(chat_store_conv_group(S, a.id, "g", members, 1, &g),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    for (i = 0; i < n; i++) {
        seen_b += !strcmp(out[i].id, b.id);
        seen_c += !strcmp(out[i].id, c.id);
        ck_assert_str_ne(out[i].id, a.id);
    }
    ck_assert_int_eq(seen_b, 1);
    ck_assert_int_eq(seen_c, 1);
    ck_assert_int_eq(chat_store_peers(S, b.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(out[0].id, a.id);
    ck_assert_int_eq(chat_store_peers(S, d.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    /* at most max */
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 1, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    /* someone who left is no longer a peer */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, c.id), CHAT_OK);
    ck_assert_int_eq(chat_store_peers(S, c.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    /* sharing two conversations makes one peer */
    members[0] = b.id;
    ck_assert_int_eq(chat_store_conv_group(S, a.id, "g2", members, 1, &g),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_peers(S, b.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
}
END_TEST

START_TEST(groups_limits_and_ownership)
{
    static chat_user u[101];
    const char *ids[101];
    chat_member m[100];
    chat_conv g, got;
    int i, n;

    for (i = 0; i < 101; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%03d", i);
        mkuser(name, &u[i]);
        ids[i] = u[i].id;
    }
    /* creator + 100 others is one too many */
    ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "big", ids + 1, 100, &g),
                     CHAT_ELIMIT);
    /* creator + 99 is exactly the limit */
    ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "full", ids + 1, 99, &g),
                     CHAT_OK);
    ck_assert_int_eq(g.member_count, 100);
    ck_assert_int_eq(chat_store_conv_members(S, g.id, m, 100, &n), CHAT_OK);
    ck_assert_int_eq(n, 100);
    ck_assert_int_eq(
        chat_store_member_add(S, g.id, u[100].id, CHAT_ROLE_MEMBER),
        CHAT_ELIMIT);
    /* duplicates and the creator are folded away */
    {
        const char *dups[] = {u[1].id, u[1].id, u[0].id, u[2].id};
        ck_assert_int_eq(
            chat_store_conv_group(S, u[0].id, "small", dups, 4, &g), CHAT_OK);
        ck_assert_int_eq(g.member_count, 3);
        ck_assert_int_eq(g.role, CHAT_ROLE_OWNER);
        ck_assert_int_eq(g.kind, CHAT_CONV_GROUP);
        ck_assert_str_eq(g.title, "small");
        ck_assert_str_eq(g.created_by, u[0].id);
    }
    {
        const char *bad[] = {u[1].id, NOBODY};
        ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "x", bad, 2, &got),
                         CHAT_ENOTFOUND);
        ck_assert_ptr_nonnull(strstr(chat_error_last()->message, NOBODY));
    }
    /* fill it to 100 with member_add, then one more is refused */
    for (i = 3; i < 100; i++)
        ck_assert_int_eq(
            chat_store_member_add(S, g.id, u[i].id, CHAT_ROLE_MEMBER), CHAT_OK);
    ck_assert_int_eq(
        chat_store_member_add(S, g.id, u[100].id, CHAT_ROLE_MEMBER),
        CHAT_ELIMIT);
    ck_assert_int_eq(chat_store_member_add(S, g.id, u[5].id, CHAT_ROLE_MEMBER),
                     CHAT_ECONFLICT);
    ck_assert_int_eq(chat_store_conv_members(S, g.id, m, 100, &n), CHAT_OK);
    ck_assert_int_eq(n, 100);
    ck_assert_str_eq(m[0].user_id, u[0].id);
    ck_assert_int_eq(m[0].role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(chat_store_conv_members(S, g.id, m, 10, &n), CHAT_OK);
    ck_assert_int_eq(n, 10);

    /* outsiders and unknowns */
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[100].id, &got), CHAT_EPERM);
    ck_assert_int_eq(chat_store_conv_get(S, NOBODY, u[0].id, &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_conv_get(S, NOBODY, NULL, &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &got), CHAT_OK);
    ck_assert_int_eq(got.role, -1);
    ck_assert_int_eq(got.read_seq, 0);
    ck_assert_int_eq(got.member_count, 100);

    /* make u[7] an admin; when the owner leaves, the admin takes over */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[7].id), CHAT_OK);
    ck_assert_int_eq(chat_store_member_add(S, g.id, u[7].id, CHAT_ROLE_ADMIN),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[0].id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[7].id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(got.member_count, 99);
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[0].id),
                     CHAT_ENOTFOUND);
    /* without admins the oldest member inherits */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[7].id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[1].id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(count_owners(g.id), 1);
}
END_TEST

START_TEST(membership_details)
{
    chat_user a, b, c;
    chat_conv g, got;
    chat_member m[4];
    chat_message msg;
    char up[CHAT_ID_LEN + 1];
    int64_t stored = -1;
    int n;

    mkuser("alice", &a);
    mkuser("bob", &b);
    mkuser("carol", &c);
    ck_assert_int_eq(chat_store_conv_group(S, a.id, "", NULL, 0, &g), CHAT_OK);
    ck_assert_int_eq(g.member_count, 1);
    ck_assert_int_eq(chat_store_member_add(S, NOBODY, b.id, CHAT_ROLE_MEMBER),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_member_add(S, g.id, NOBODY, CHAT_ROLE_MEMBER),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_member_add(S, g.id, b.id, 7), CHAT_EINVAL);
    /* an upper-case id names the same user */
    upper(up, b.id);
    ck_assert_int_eq(chat_store_member_add(S, g.id, up, CHAT_ROLE_ADMIN),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_member_add(S, g.id, b.id, CHAT_ROLE_MEMBER),
                     CHAT_ECONFLICT);
    usleep(5000); /* a later join time */
    ck_assert_int_eq(chat_store_member_add(S, g.id, c.id, CHAT_ROLE_MEMBER),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_conv_members(S, g.id, m, 4, &n), CHAT_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(m[2].user_id, c.id);
    ck_assert_str_eq(m[2].username, "carol");
    ck_assert_int_eq(m[2].role, CHAT_ROLE_MEMBER);
    ck_assert_int_le(m[0].joined_at, m[2].joined_at);
    ck_assert_int_eq(chat_store_conv_members(S, NOBODY, m, 4, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, b.id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_ADMIN);
    ck_assert_int_eq(got.member_count, 3);

    /* read markers: nothing to read yet, non-members refused */
    ck_assert_int_eq(chat_store_read_set(S, g.id, c.id, 10, &stored), CHAT_OK);
    ck_assert_int_eq(stored, 0);
    ck_assert_int_eq(chat_store_read_set(S, NOBODY, c.id, 1, &stored),
                     CHAT_EPERM);
    ck_assert_int_eq(chat_store_read_set(S, g.id, c.id, -1, &stored),
                     CHAT_EINVAL);
    /* a touch of an unknown conversation is not an error */
    msg = msg_at(NOBODY, a.id, 1, chat_time_now_ms());
    ck_assert_int_eq(chat_store_conv_touch(S, &msg), CHAT_OK);
    /* the summary carries the message's fields */
    msg = msg_at(g.id, b.id, 4, g.created_at + 10);
    msg.has_more = 1;
    ck_assert_int_eq(chat_store_conv_touch(S, &msg), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, b.id, &got), CHAT_OK);
    ck_assert_int_eq(got.last_seq, 4);
    ck_assert_int_eq(got.last_activity_at, g.created_at + 10);
    ck_assert_str_eq(got.last_message_id, msg.id);
    ck_assert_str_eq(got.last_sender_id, b.id);
    ck_assert_str_eq(got.last_preview, "message 4");
    ck_assert_int_eq(got.last_has_more, 1);
    ck_assert_int_eq(got.read_seq, 4);
    /* the same seq again changes nothing */
    msg = msg_at(g.id, a.id, 4, g.created_at + 20);
    ck_assert_int_eq(chat_store_conv_touch(S, &msg), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &got), CHAT_OK);
    ck_assert_int_eq(got.last_activity_at, g.created_at + 10);
    ck_assert_str_eq(got.last_sender_id, b.id);
    /* ...but the sender's marker still moves to it */
    ck_assert_int_eq(chat_store_conv_get(S, g.id, a.id, &got), CHAT_OK);
    ck_assert_int_eq(got.read_seq, 4);
    ck_assert_int_eq(chat_store_read_set(S, g.id, up, 3, &stored), CHAT_OK);
    ck_assert_int_eq(stored, 4);
    ck_assert_int_eq(chat_store_read_set(S, g.id, c.id, 2, NULL), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, c.id, &got), CHAT_OK);
    ck_assert_int_eq(got.read_seq, 2);
    /* an upper-case id leaves too */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, up), CHAT_OK);
    ck_assert_int_eq(chat_store_member_remove(S, NOBODY, c.id), CHAT_ENOTFOUND);
    /* the last member may leave; the conversation stays */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, a.id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, c.id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(chat_store_member_remove(S, g.id, c.id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &got), CHAT_OK);
    ck_assert_int_eq(got.member_count, 0);
}
END_TEST

START_TEST(list_paging_touch_and_read)
{
    chat_user a, peers[25];
    chat_conv c[25], page[10];
    chat_conv_cursor cur;
    chat_message m;
    int i, n, seen = 0, pages = 0;
    int64_t stored, base = chat_time_now_ms();

    mkuser("alice", &a);
    for (i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "peer%02d", i);
        mkuser(name, &peers[i]);
        ck_assert_int_eq(chat_store_conv_dm(S, a.id, peers[i].id, &c[i], NULL),
                         CHAT_OK);
    }
    /* activity: conversation i was last active at base + i */
    for (i = 0; i < 25; i++) {
        m = msg_at(c[i].id, peers[i].id, 1, base + 1000 + i);
        ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);
    }
    /* an older seq does not move the summary back */
    m = msg_at(c[24].id, peers[24].id, 1, base);
    ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);

    memset(&cur, 0, sizeof cur);
    do {
        ck_assert_int_eq(
            chat_store_conv_list(S, a.id, pages ? &cur : NULL, 10, page, &n),
            CHAT_OK);
        for (i = 0; i < n; i++) {
            /* newest first: 24, 23, ... */
            ck_assert_str_eq(page[i].id, c[24 - seen].id);
            ck_assert_int_eq(page[i].last_seq, 1);
            ck_assert_int_eq(page[i].read_seq, 0);
            ck_assert_int_eq(page[i].role, CHAT_ROLE_MEMBER);
            ck_assert_int_eq(page[i].member_count, 2);
            seen++;
        }
        if (n) {
            cur.activity_at = page[n - 1].last_activity_at;
            memcpy(cur.id, page[n - 1].id, sizeof cur.id);
        }
        pages++;
    } while (n == 10);
    ck_assert_int_eq(seen, 25);
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(page[0].last_activity_at, base + 1004);

    /* the sender's marker moved with the touch */
    ck_assert_int_eq(chat_store_conv_get(S, c[3].id, peers[3].id, page),
                     CHAT_OK);
    ck_assert_int_eq(page[0].read_seq, 1);
    ck_assert_int_eq(chat_store_conv_list(S, peers[3].id, NULL, 10, page, &n),
                     CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(page[0].read_seq, 1);

    /* read markers: forward only, clamped to last_seq */
    m = msg_at(c[0].id, peers[0].id, 5, base + 5000);
    ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 3, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 3);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 2, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 3);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 99, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 5);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, peers[1].id, 1, &stored),
                     CHAT_EPERM);
    /* c[0] is now the newest */
    ck_assert_int_eq(chat_store_conv_list(S, a.id, NULL, 1, page, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(page[0].id, c[0].id);
    ck_assert_int_eq(page[0].read_seq, 5);
    /* nobody's list */
    ck_assert_int_eq(chat_store_conv_list(S, NOBODY, NULL, 10, page, &n),
                     CHAT_OK);
    ck_assert_int_eq(n, 0);
}
END_TEST

static int cmp_conv_id_desc(const void *a, const void *b)
{
    return strcmp(((const chat_conv *)b)->id, ((const chat_conv *)a)->id);
}

START_TEST(list_ties_break_by_id)
{
    chat_user a, p[6];
    chat_conv c[6], page[2], all[6];
    chat_conv_cursor cur;
    chat_message m;
    int i, n, seen = 0;
    int64_t at = chat_time_now_ms() + 100000;

    mkuser("alice", &a);
    for (i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "tie%d", i);
        mkuser(name, &p[i]);
        ck_assert_int_eq(chat_store_conv_dm(S, a.id, p[i].id, &c[i], NULL),
                         CHAT_OK);
        m = msg_at(c[i].id, p[i].id, 1, at); /* all equally recent */
        ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);
        all[i] = c[i];
    }
    qsort(all, 6, sizeof all[0], cmp_conv_id_desc);
    ck_assert_int_eq(chat_store_conv_list(S, a.id, NULL, 2, page, &n), CHAT_OK);
    while (n > 0) {
        for (i = 0; i < n; i++)
            ck_assert_str_eq(page[i].id, all[seen++].id);
        cur.activity_at = page[n - 1].last_activity_at;
        memcpy(cur.id, page[n - 1].id, sizeof cur.id);
        ck_assert_int_eq(chat_store_conv_list(S, a.id, &cur, 2, page, &n),
                         CHAT_OK);
    }
    ck_assert_int_eq(seen, 6);
}
END_TEST

START_TEST(persists_across_reopen)
{
    chat_user a, b, got;
    chat_conv dm, again;
    int created;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    chat_store_free(S);
    S = NULL;
    ck_assert_int_eq(open_at(g_where, &S), CHAT_OK);
    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_OK);
    ck_assert_str_eq(got.email, "alice@test.io");
    ck_assert_int_eq(chat_store_conv_dm(S, b.id, a.id, &again, &created),
                     CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_str_eq(again.id, dm.id);
}
END_TEST

START_TEST(rejects_bad_arguments)
{
    chat_user u, found[2];
    chat_conv c;
    chat_member m[2];
    chat_id ids[2];
    chat_refresh_rec r;
    uint8_t h[32] = {0};
    int n;

    memset(&u, 0, sizeof u);
    ck_assert_int_eq(chat_store_user_create(S, &u), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_user_create(NULL, &u), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_user_get(S, NULL, &u), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_user_find_login(S, NULL, &u), CHAT_EINVAL);
    ck_assert_int_eq(
        chat_store_user_search(S, "a", CHAT_SEARCH_MAX + 1, found, &n),
        CHAT_EINVAL);
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(chat_store_token_insert(S, &r), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_token_rotate(S, h, NULL, 0, 0, &r),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_store_token_revoke_family(S, NULL), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_dm(S, NULL, NOBODY, &c, NULL),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_group(S, NOBODY, "t", NULL, 1, &c),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_group(S, NOBODY, NULL, NULL, 0, &c),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_members(S, NOBODY, m, 0, &n), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_list(S, NOBODY, NULL, 0, &c, &n),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_store_peers(S, NOBODY, ids, 0, &n), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_touch(S, NULL), CHAT_EINVAL);
    chat_store_free(NULL);
}
END_TEST

/* ---- concurrency: two instances, several threads each -------------------- */

#define PAIRS 16

typedef struct dm_arg {
    chat_store *s;
    chat_user *a, *b;
    int idx, created, failed;
    char ids[PAIRS][CHAT_ID_LEN + 1];
} dm_arg;

static void *dm_worker(void *p)
{
    dm_arg *arg = p;
    chat_conv c;
    int i, made, k;

    go();
    for (k = 0; k < PAIRS; k++) {
        /* each thread walks the pairs from another start, both orders */
        i = (k + arg->idx * 5) % PAIRS;
        made = 0;
        if ((arg->idx % 2
                 ? chat_store_conv_dm(arg->s, arg->a[i].id, arg->b[i].id, &c,
                                      &made)
                 : chat_store_conv_dm(arg->s, arg->b[i].id, arg->a[i].id, &c,
                                      &made)) != CHAT_OK) {
            arg->failed++;
            continue;
        }
        arg->created += made;
        memcpy(arg->ids[i], c.id, sizeof c.id);
    }
    return NULL;
}

START_TEST(concurrent_dm_creates_one_conversation)
{
    static chat_user a[PAIRS], b[PAIRS];
    static dm_arg args[4];
    chat_store *second = open_second();
    chat_conv list[4];
    int i, t, n, created = 0;

    for (i = 0; i < PAIRS; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%02d", i);
        mkuser(name, &a[i]);
        snprintf(name, sizeof name, "b%02d", i);
        mkuser(name, &b[i]);
    }
    memset(args, 0, sizeof args);
    for (t = 0; t < 4; t++) {
        args[t].s = t < 2 ? S : second;
        args[t].a = a;
        args[t].b = b;
        args[t].idx = t;
    }
    run_threads(4, dm_worker, args, sizeof args[0]);
    chat_store_free(second);
    for (t = 0; t < 4; t++) {
        ck_assert_msg(args[t].failed == 0, "thread %d: %d failed", t,
                      args[t].failed);
        created += args[t].created;
    }
    ck_assert_int_eq(created, PAIRS);
    for (i = 0; i < PAIRS; i++) {
        for (t = 1; t < 4; t++)
            ck_assert_str_eq(args[t].ids[i], args[0].ids[i]);
        ck_assert_int_eq(chat_store_conv_list(S, a[i].id, NULL, 4, list, &n),
                         CHAT_OK);
        ck_assert_int_eq(n, 1);
        ck_assert_int_eq(list[0].member_count, 2);
        ck_assert_int_eq(count_owners(list[0].id), 0);
    }
}
END_TEST

#define NAMES 8

typedef struct reg_arg {
    chat_store *s;
    int idx, ok[NAMES], conflict[NAMES], other;
} reg_arg;

static void *reg_worker(void *p)
{
    reg_arg *arg = p;
    chat_user u;
    char name[16], email[64];
    int i, rc;

    go();
    for (i = 0; i < NAMES; i++) {
        /* the same username in varying case, each with its own email */
        snprintf(name, sizeof name, arg->idx % 2 ? "Racer%d" : "racer%d", i);
        snprintf(email, sizeof email, "t%d-%d@test.io", arg->idx, i);
        fill_user(name, email, &u);
        rc = chat_store_user_create(arg->s, &u);
        if (rc == CHAT_OK)
            arg->ok[i]++;
        else if (rc == CHAT_ECONFLICT &&
                 strstr(chat_error_last()->message, "username"))
            arg->conflict[i]++;
        else
            arg->other++;
    }
    return NULL;
}

START_TEST(concurrent_registration_one_wins)
{
    static reg_arg args[6];
    chat_store *second = open_second();
    chat_user found[10];
    int i, t, n;

    memset(args, 0, sizeof args);
    for (t = 0; t < 6; t++) {
        args[t].s = t % 2 ? S : second;
        args[t].idx = t;
    }
    run_threads(6, reg_worker, args, sizeof args[0]);
    chat_store_free(second);
    for (i = 0; i < NAMES; i++) {
        int ok = 0, conflict = 0;
        for (t = 0; t < 6; t++) {
            ok += args[t].ok[i];
            conflict += args[t].conflict[i];
        }
        ck_assert_msg(ok == 1, "racer%d: %d registrations", i, ok);
        ck_assert_int_eq(conflict, 5);
    }
    for (t = 0; t < 6; t++)
        ck_assert_int_eq(args[t].other, 0);
    ck_assert_int_eq(chat_store_user_search(S, "RACER", 10, found, &n),
                     CHAT_OK);
    ck_assert_int_eq(n, NAMES);
}
END_TEST

typedef struct add_arg {
    chat_store *s;
    const char *conv;
    chat_user *users;
    int from, to, ok, full, other;
} add_arg;

static void *add_worker(void *p)
{
    add_arg *arg = p;
    int i, rc;

    go();
    for (i = arg->from; i < arg->to; i++) {
        rc = chat_store_member_add(arg->s, arg->conv, arg->users[i].id,
                                   CHAT_ROLE_MEMBER);
        if (rc == CHAT_OK)
            arg->ok++;
        else if (rc == CHAT_ELIMIT)
            arg->full++;
        else
            arg->other++;
    }
    return NULL;
}

START_TEST(concurrent_member_add_respects_the_limit)
{
    static chat_user u[104];
    static add_arg args[6];
    const char *ids[97];
    chat_store *second = open_second();
    chat_member m[CHAT_GROUP_MAX_MEMBERS];
    chat_conv g;
    int i, t, n, round, ok, full;

    for (i = 0; i < 104; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%03d", i);
        mkuser(name, &u[i]);
        if (i >= 1 && i < 98)
            ids[i - 1] = u[i].id;
    }
    for (round = 0; round < 8; round++) {
        /* 98 members; 6 more try to join at the same moment: 2 fit */
        ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "g", ids, 97, &g),
                         CHAT_OK);
        ck_assert_int_eq(g.member_count, 98);
        memset(args, 0, sizeof args);
        for (t = 0; t < 6; t++) {
            args[t].s = t % 2 ? S : second;
            args[t].conv = g.id;
            args[t].users = u;
            args[t].from = 98 + t;
            args[t].to = args[t].from + 1;
        }
        run_threads(6, add_worker, args, sizeof args[0]);
        for (ok = 0, full = 0, t = 0; t < 6; t++) {
            ok += args[t].ok;
            full += args[t].full;
            ck_assert_int_eq(args[t].other, 0);
        }
        ck_assert_int_eq(ok, 2);
        ck_assert_int_eq(full, 4);
        ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &g), CHAT_OK);
        ck_assert_int_eq(g.member_count, CHAT_GROUP_MAX_MEMBERS);
        ck_assert_int_eq(
            chat_store_conv_members(S, g.id, m, CHAT_GROUP_MAX_MEMBERS, &n),
            CHAT_OK);
        ck_assert_int_eq(n, CHAT_GROUP_MAX_MEMBERS);
    }
    chat_store_free(second);
}
END_TEST

typedef struct churn_arg {
    chat_store *s;
    const char *conv;
    chat_user *users; /* this thread's own */
    int n, first, rounds, other;
} churn_arg;

static void *churn_worker(void *p)
{
    churn_arg *arg = p;
    int r, i, rc;

    go();
    /* even rounds add, odd rounds remove */
    for (r = arg->first; r < arg->rounds; r++)
        for (i = 0; i < arg->n; i++) {
            rc = r % 2
                     ? chat_store_member_remove(arg->s, arg->conv,
                                                arg->users[i].id)
                     : chat_store_member_add(arg->s, arg->conv,
                                             arg->users[i].id, CHAT_ROLE_ADMIN);
            arg->other += rc != CHAT_OK;
        }
    return NULL;
}

START_TEST(concurrent_churn_keeps_count_and_one_owner)
{
    static chat_user u[25];
    static churn_arg args[4];
    chat_store *second = open_second();
    chat_member m[CHAT_GROUP_MAX_MEMBERS];
    chat_conv g;
    int i, t, n;

    for (i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%02d", i);
        mkuser(name, &u[i]);
    }
    ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "g", NULL, 0, &g),
                     CHAT_OK);
    memset(args, 0, sizeof args);
    for (t = 0; t < 4; t++) {
        args[t].s = t % 2 ? S : second;
        args[t].conv = g.id;
        args[t].users = &u[1 + 6 * t];
        args[t].n = 6;
        args[t].rounds = 5; /* add, remove, ..., add: all in at the end */
    }
    run_threads(4, churn_worker, args, sizeof args[0]);
    for (t = 0; t < 4; t++)
        ck_assert_int_eq(args[t].other, 0);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &g), CHAT_OK);
    ck_assert_int_eq(
        chat_store_conv_members(S, g.id, m, CHAT_GROUP_MAX_MEMBERS, &n),
        CHAT_OK);
    ck_assert_int_eq(n, 25);
    ck_assert_int_eq(g.member_count, n);
    ck_assert_int_eq(count_owners(g.id), 1);

    /* the owner and the admins leave at once: one owner remains */
    for (t = 0; t < 4; t++) {
        args[t].first = 1; /* remove only */
        args[t].rounds = 2;
        args[t].n = t == 3 ? 5 : 6;
    }
    ck_assert_int_eq(chat_store_member_remove(second, g.id, u[0].id), CHAT_OK);
    run_threads(4, churn_worker, args, sizeof args[0]);
    chat_store_free(second);
    for (t = 0; t < 4; t++)
        ck_assert_int_eq(args[t].other, 0);
    ck_assert_int_eq(
        chat_store_conv_members(S, g.id, m, CHAT_GROUP_MAX_MEMBERS, &n),
        CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(m[0].user_id, u[24].id);
    ck_assert_int_eq(m[0].role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &g), CHAT_OK);
    ck_assert_int_eq(g.member_count, 1);
}
END_TEST

typedef struct leave_arg {
    chat_store *s;
    const char *conv, *user;
    int rc;
} leave_arg;

static void *leave_worker(void *p)
{
    leave_arg *arg = p;

    go();
    arg->rc = chat_store_member_remove(arg->s, arg->conv, arg->user);
    return NULL;
}

START_TEST(concurrent_owner_and_heir_leave)
{
    static chat_user u[5];
    static leave_arg args[2];
    chat_store *second = open_second();
    chat_conv g;
    int i, round;

    for (i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "o%d", i);
        mkuser(name, &u[i]);
    }
    for (round = 0; round < 20; round++) {
        const char *ids[] = {u[3].id, u[4].id};
        ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "g", ids, 2, &g),
                         CHAT_OK);
        ck_assert_int_eq(
            chat_store_member_add(S, g.id, u[1].id, CHAT_ROLE_ADMIN), CHAT_OK);
        usleep(2000);
        ck_assert_int_eq(
            chat_store_member_add(S, g.id, u[2].id, CHAT_ROLE_ADMIN), CHAT_OK);
        /* the owner and the admin who would inherit leave together */
        args[0].s = S;
        args[0].conv = g.id;
        args[0].user = u[0].id;
        args[1].s = second;
        args[1].conv = g.id;
        args[1].user = u[1].id;
        run_threads(2, leave_worker, args, sizeof args[0]);
        ck_assert_int_eq(args[0].rc, CHAT_OK);
        ck_assert_int_eq(args[1].rc, CHAT_OK);
        ck_assert_int_eq(count_owners(g.id), 1);
        ck_assert_int_eq(chat_store_conv_get(S, g.id, u[2].id, &g), CHAT_OK);
        ck_assert_int_eq(g.role, CHAT_ROLE_OWNER);
        ck_assert_int_eq(g.member_count, 3);
    }
    chat_store_free(second);
}
END_TEST

typedef struct rot_arg {
    chat_store *s;
    const uint8_t *old_hash;
    uint8_t new_hash[32];
    int rc;
} rot_arg;

static void *rot_worker(void *p)
{
    rot_arg *arg = p;
    chat_refresh_rec out;
    int64_t now = chat_time_now_ms();

    go();
    arg->rc = chat_store_token_rotate(arg->s, arg->old_hash, arg->new_hash,
                                      now + 60000, now, &out);
    return NULL;
}

START_TEST(concurrent_rotation_of_one_token)
{
    static rot_arg args[4];
    chat_store *second = open_second();
    chat_refresh_rec t, out;
    chat_user a;
    uint8_t h[32];
    int64_t now = chat_time_now_ms();
    int round, k, ok, winner;

    mkuser("alice", &a);
    for (round = 0; round < 8; round++) {
        t = token(a.id, (uint8_t)(10 * round + 1));
        ck_assert_int_eq(chat_store_token_insert(S, &t), CHAT_OK);
        for (k = 0; k < 4; k++) {
            args[k].s = k % 2 ? S : second;
            args[k].old_hash = t.hash;
            memset(args[k].new_hash, 10 * round + 2 + k, 32);
        }
        run_threads(4, rot_worker, args, sizeof args[0]);
        /* one rotation; the others are replays that end the family */
        for (ok = 0, winner = -1, k = 0; k < 4; k++) {
            if (args[k].rc == CHAT_OK) {
                ok++;
                winner = k;
            } else {
                ck_assert_int_eq(args[k].rc, CHAT_EAUTH);
            }
        }
        ck_assert_int_eq(ok, 1);
        memset(h, 255 - round, 32);
        ck_assert_int_eq(chat_store_token_rotate(S, args[winner].new_hash, h,
                                                 now + 60000, now, &out),
                         CHAT_EAUTH);
    }
    chat_store_free(second);
}
END_TEST

typedef struct chain_arg {
    chat_store *s;
    uint8_t first[32], last[32];
    volatile int rotations;
    volatile int revoked; /* set once the revoke returned */
    int rc;
} chain_arg;

static void *chain_worker(void *p)
{
    chain_arg *arg = p;
    chat_refresh_rec out;
    uint8_t next[32];
    int64_t now = chat_time_now_ms();
    int i;

    memcpy(arg->last, arg->first, 32);
    /* A leak rotates on until the family is revoked. How many rotations
     * land before the revoke depends on scheduling (a busy writer can
     * starve it for a while); a rotation that *starts* after the revoke
     * returned must fail. Bounded so a broken store cannot hang. */
    arg->rc = CHAT_ERROR;
    for (i = 1; i < 1000000; i++) {
        int after = __atomic_load_n(&arg->revoked, __ATOMIC_ACQUIRE);
        memset(next, 0, sizeof next);
        memcpy(next, &i, sizeof i);
        next[31] = 0xcc;
        arg->rc = chat_store_token_rotate(arg->s, arg->last, next, now + 60000,
                                          now, &out);
        if (arg->rc != CHAT_OK || after)
            break;
        memcpy(arg->last, next, 32);
        __atomic_store_n(&arg->rotations, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

START_TEST(logout_during_rotations_ends_the_family)
{
    static chain_arg arg;
    chat_store *second = open_second();
    chat_refresh_rec t, out;
    chat_user a;
    pthread_t th;
    uint8_t h[32];
    int64_t now = chat_time_now_ms();

    mkuser("alice", &a);
    t = token(a.id, 0xab);
    ck_assert_int_eq(chat_store_token_insert(S, &t), CHAT_OK);
    memset(&arg, 0, sizeof arg);
    arg.s = second;
    memcpy(arg.first, t.hash, 32);
    ck_assert_int_eq(pthread_create(&th, NULL, chain_worker, &arg), 0);
    while (__atomic_load_n(&arg.rotations, __ATOMIC_ACQUIRE) < 20)
        usleep(1000);
    /* logout with the first token while the chain keeps rotating */
    ck_assert_int_eq(chat_store_token_revoke_family(S, t.hash), CHAT_OK);
    __atomic_store_n(&arg.revoked, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    chat_store_free(second);
    ck_assert_int_eq(arg.rc, CHAT_EAUTH);
    memset(h, 0xee, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, arg.last, h, now + 60000, now, &out),
        CHAT_EAUTH);
}
END_TEST

typedef struct mark_arg {
    chat_store *s;
    const char *conv, *user;
    unsigned seed;
    int64_t max_set, last_seen;
    int backwards, other;
} mark_arg;

static void *mark_worker(void *p)
{
    mark_arg *arg = p;
    int64_t seq, got;
    int i;

    go();
    for (i = 0; i < 50; i++) {
        seq = rand_r(&arg->seed) % 1200;
        if (chat_store_read_set(arg->s, arg->conv, arg->user, seq, &got) !=
            CHAT_OK) {
            arg->other++;
            continue;
        }
        if (seq > arg->max_set)
            arg->max_set = seq;
        /* what this thread sees never goes back */
        arg->backwards += got < arg->last_seen || got < (seq < 1000 ? seq : 0);
        arg->last_seen = got;
    }
    return NULL;
}

START_TEST(concurrent_read_markers_only_move_forward)
{
    static mark_arg args[4];
    chat_store *second = open_second();
    chat_user a, b;
    chat_conv dm;
    chat_message m;
    int64_t max = 0;
    int t;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    m = msg_at(dm.id, b.id, 1000, chat_time_now_ms());
    ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);
    memset(args, 0, sizeof args);
    for (t = 0; t < 4; t++) {
        args[t].s = t % 2 ? S : second;
        args[t].conv = dm.id;
        args[t].user = a.id;
        args[t].seed = (unsigned)(t + 1);
    }
    run_threads(4, mark_worker, args, sizeof args[0]);
    chat_store_free(second);
    for (t = 0; t < 4; t++) {
        ck_assert_int_eq(args[t].other, 0);
        ck_assert_int_eq(args[t].backwards, 0);
        if (args[t].max_set > max)
            max = args[t].max_set;
    }
    ck_assert_int_eq(chat_store_conv_get(S, dm.id, a.id, &dm), CHAT_OK);
    ck_assert_int_eq(dm.read_seq, max < 1000 ? max : 1000);
}
END_TEST

typedef struct touch_arg {
    chat_store *s;
    const char *conv, *sender;
    int from, other;
} touch_arg;

static void *touch_worker(void *p)
{
    touch_arg *arg = p;
    chat_message m;
    int seq;

    go();
    /* interleaved seqs: thread k touches k+1, k+5, k+9, ... */
    for (seq = arg->from; seq <= 200; seq += 4) {
        m = msg_at(arg->conv, arg->sender, seq, 1000000 + seq);
        arg->other += chat_store_conv_touch(arg->s, &m) != CHAT_OK;
    }
    return NULL;
}

START_TEST(concurrent_touches_keep_the_newest)
{
    static touch_arg args[4];
    chat_store *second = open_second();
    chat_user a, b;
    chat_conv dm;
    int t;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    for (t = 0; t < 4; t++) {
        args[t].s = t % 2 ? S : second;
        args[t].conv = dm.id;
        args[t].sender = t % 2 ? a.id : b.id;
        args[t].from = t + 1;
        args[t].other = 0;
    }
    run_threads(4, touch_worker, args, sizeof args[0]);
    chat_store_free(second);
    for (t = 0; t < 4; t++)
        ck_assert_int_eq(args[t].other, 0);
    ck_assert_int_eq(chat_store_conv_get(S, dm.id, a.id, &dm), CHAT_OK);
    ck_assert_int_eq(dm.last_seq, 200);
    ck_assert_int_eq(dm.last_activity_at, 1000200);
    ck_assert_str_eq(dm.last_preview, "message 200");
    ck_assert_int_eq(dm.read_seq, 200); /* alice sent the even ones */
}
END_TEST

typedef struct open_arg {
    const char *where;
    int rc;
    chat_store *s;
} open_arg;

static void *open_worker(void *p)
{
    open_arg *arg = p;

    go();
    arg->rc = open_at(arg->where, &arg->s);
    return NULL;
}

START_TEST(instances_starting_together_migrate_once)
{
    static char where[1200];
    static open_arg args[4];
    chat_user u, got;
    int t;

    new_location(where, sizeof where);
    for (t = 0; t < 4; t++)
        args[t].where = where;
    run_threads(4, open_worker, args, sizeof args[0]);
    for (t = 0; t < 4; t++)
        ck_assert_int_eq(args[t].rc, CHAT_OK);
    fill_user("zoe", NULL, &u);
    ck_assert_int_eq(chat_store_user_create(args[0].s, &u), CHAT_OK);
    ck_assert_int_eq(chat_store_user_get(args[3].s, u.id, &got), CHAT_OK);
    for (t = 0; t < 4; t++)
        chat_store_free(args[t].s);
}
END_TEST

/* ---- failures ------------------------------------------------------------ */

/* A loopback port nobody listens on. */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

START_TEST(unreachable_backend)
{
    chat_store *s = NULL;
    char where[256];

    if (!is_pg()) {
        ck_assert_int_ne(open_at("/nonexistent-dir/deeper/store.db", &s),
                         CHAT_OK);
        ck_assert_ptr_null(s);
        return;
    }
    snprintf(where, sizeof where,
             "postgresql://chat@127.0.0.1:%d/postgres?connect_timeout=2",
             closed_port());
    ck_assert_int_eq(open_at(where, &s), CHAT_EUNAVAIL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "PostgreSQL"));
    snprintf(where, sizeof where, "host=127.0.0.1 port=%d user=chat",
             closed_port());
    ck_assert_int_eq(open_at(where, &s), CHAT_EUNAVAIL);
    ck_assert_int_eq(open_at("", &s), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_pg_open(&s, NULL), CHAT_EINVAL);
    ck_assert_ptr_null(s);
}
END_TEST

static void pg_ctl(const char *what)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd, "%s %s", getenv("PG_CTL_CMD"), what);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

typedef struct busy_arg {
    const char *user;
    int failed;
    char why[256];
} busy_arg;

/* Hold pooled connections busy at once, so that all of them are open. */
static void *busy_worker(void *p)
{
    busy_arg *arg = p;
    chat_user got;
    int i;

    go();
    for (i = 0; i < 40; i++)
        if (chat_store_user_get(S, arg->user, &got) != CHAT_OK &&
            !arg->failed++)
            snprintf(arg->why, sizeof arg->why, "%s",
                     chat_error_last()->message);
    return NULL;
}

START_TEST(server_restart)
{
    static busy_arg args[6];
    chat_user a, b, got;
    chat_conv dm;
    int t;

    if (!is_pg() || !getenv("PG_CTL_CMD"))
        return;
    mkuser("alice", &a);
    for (t = 0; t < 6; t++)
        args[t].user = a.id;
    run_threads(6, busy_worker, args, sizeof args[0]);
    /* restarted while the pool is idle: calls after it do not fail for
     * the connections that broke */
    pg_ctl("stop");
    pg_ctl("start");
    memset(args, 0, sizeof args);
    for (t = 0; t < 6; t++)
        args[t].user = a.id;
    run_threads(6, busy_worker, args, sizeof args[0]);
    for (t = 0; t < 6; t++)
        ck_assert_msg(args[t].failed == 0, "after restart: %d failed: %s",
                      args[t].failed, args[t].why);
    fill_user("bob", NULL, &b);
    ck_assert_int_eq(chat_store_user_create(S, &b), CHAT_OK);
    /* while it is down: CHAT_EUNAVAIL, quickly, and no crash */
    pg_ctl("stop");
    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_EUNAVAIL);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL),
                     CHAT_EUNAVAIL);
    ck_assert_int_eq(chat_store_user_create(S, &b), CHAT_EUNAVAIL);
    pg_ctl("start");
    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    ck_assert_int_eq(chat_store_user_create(S, &b), CHAT_ECONFLICT);
}
END_TEST

/* ---- the message log keeps the store's summary --------------------------- */

START_TEST(log_touches_the_store)
{
    chat_user a, b;
    chat_conv dm, got;
    chat_message m;
    chat_log *log = NULL;
    chat_append req;
    int rc;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    if (is_pg()) {
        chat_pg_opts o;
        chat_pg_opts_init(&o);
        o.conninfo = g_where;
        o.touch_store = 1;
        rc = chat_log_pg_open(&log, &o);
    } else {
        chat_sqlite_opts o = CHAT_SQLITE_OPTS_INIT;
        o.sync_full = 0;
        o.touch_store = 1;
        rc = chat_log_sqlite_open(&log, g_where, &o);
    }
    ck_assert_msg(rc == CHAT_OK, "log open: %s", chat_error_last()->message);
    ck_assert_int_eq(chat_log_touches_store(log), 1);
    memset(&req, 0, sizeof req);
    req.conversation_id = dm.id;
    req.sender_id = b.id;
    req.content = "hello";
    req.content_len = 5;
    req.require_member = 1;
    ck_assert_int_eq(chat_log_append_wait(log, &req, &m, NULL), CHAT_OK);
    ck_assert_int_eq(chat_log_append_wait(log, &req, &m, NULL), CHAT_OK);
    ck_assert_int_eq(m.seq, 2);
    req.sender_id = NOBODY;
    ck_assert_int_eq(chat_log_append_wait(log, &req, &m, NULL), CHAT_EPERM);
    chat_log_free(log);
    ck_assert_int_eq(chat_store_conv_get(S, dm.id, b.id, &got), CHAT_OK);
    ck_assert_int_eq(got.last_seq, 2);
    ck_assert_str_eq(got.last_preview, "hello");
    ck_assert_str_eq(got.last_sender_id, b.id);
    ck_assert_int_eq(got.read_seq, 2);
    ck_assert_int_eq(chat_store_read_set(S, dm.id, a.id, 10, &got.read_seq),
                     CHAT_OK);
    ck_assert_int_eq(got.read_seq, 2);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;

    g_backend = argc > 1 ? argv[1] : "sqlite";
    if (strcmp(g_backend, "sqlite") && strcmp(g_backend, "postgres")) {
        fprintf(stderr, "usage: store_contract sqlite|postgres\n");
        return 2;
    }
    if (is_pg()) {
        if (chat_pg_conninfo_from_env(g_admin, sizeof g_admin) != CHAT_OK) {
            fprintf(stderr, "store_contract: %s\n", chat_error_last()->message);
            return 2;
        }
    }
    s = suite_create(g_backend);
    tc = tcase_create("store contract");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, users);
    tcase_add_test(tc, search_order_and_wildcards);
    tcase_add_test(tc, long_and_odd_logins);
    tcase_add_test(tc, refresh_rotation_reuse_and_expiry);
    tcase_add_test(tc, refresh_chain_and_logout_from_any_token);
    tcase_add_test(tc, dm_create_or_get);
    tcase_add_test(tc, peers_share_a_conversation);
    tcase_add_test(tc, groups_limits_and_ownership);
    tcase_add_test(tc, membership_details);
    tcase_add_test(tc, list_paging_touch_and_read);
    tcase_add_test(tc, list_ties_break_by_id);
    tcase_add_test(tc, persists_across_reopen);
    tcase_add_test(tc, rejects_bad_arguments);
    tcase_add_test(tc, concurrent_dm_creates_one_conversation);
    tcase_add_test(tc, concurrent_registration_one_wins);
    tcase_add_test(tc, concurrent_member_add_respects_the_limit);
    tcase_add_test(tc, concurrent_churn_keeps_count_and_one_owner);
    tcase_add_test(tc, concurrent_owner_and_heir_leave);
    tcase_add_test(tc, concurrent_rotation_of_one_token);
    tcase_add_test(tc, logout_during_rotations_ends_the_family);
    tcase_add_test(tc, concurrent_read_markers_only_move_forward);
    tcase_add_test(tc, concurrent_touches_keep_the_newest);
    tcase_add_test(tc, instances_starting_together_migrate_once);
    tcase_add_test(tc, unreachable_backend);
    tcase_add_test(tc, server_restart);
    tcase_add_test(tc, log_touches_the_store);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
