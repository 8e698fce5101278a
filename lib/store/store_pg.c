/* The account/conversation store on PostgreSQL; behaves as store_sqlite.c.
 *
 * SQLite serialises every writer with BEGIN IMMEDIATE. Here several
 * processes share the database, so each read-modify-write locks exactly
 * what it depends on:
 *  - membership changes (add, remove, owner hand-over, member_count) hold
 *    the conversation's row lock (SELECT ... FOR UPDATE) and take it
 *    before any members row, the order the message log uses too;
 *  - a refresh-token family is changed (rotate, revoke) only under a
 *    transaction advisory lock on the family;
 *  - registration and DM creation rely on unique indexes (INSERT ... ON
 *    CONFLICT DO NOTHING, then read what won);
 *  - read markers and the conversation summary move forward in single
 *    UPDATEs (GREATEST, last_seq < new), re-checked on the newest row.
 * Deadlocks and serialization failures are retried; a call that finds its
 * pooled connection dead is rerun on a fresh one when that cannot apply
 * it twice (reads, idempotent writes, transactions that never reached
 * COMMIT).
 *
 * Emails, usernames and the ordering of ids use the "C" collation:
 * lower() then folds ASCII only and comparisons are bytewise, as SQLite's
 * NOCASE and BINARY do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_util.h"

typedef struct pg_store {
    chat_store base;
    chat__pgpool pool;
} pg_store;

#define POOL(s) (&((pg_store *)(s))->pool)

/* Migrations, applied in order; never edit a shipped entry. */
static const char *const g_migrations[] = {
    /* 1: users, refresh tokens, conversations, members */
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY,"
    "  email TEXT COLLATE \"C\" NOT NULL,"
    "  username TEXT COLLATE \"C\" NOT NULL,"
    "  password_hash TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    /* C collation: also serves prefix LIKE and the search order */
    "CREATE UNIQUE INDEX users_email ON users (lower(email));"
    "CREATE UNIQUE INDEX users_username ON users (lower(username));"
    "CREATE TABLE refresh_tokens ("
    "  hash BYTEA PRIMARY KEY,"
    "  family_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  expires_at BIGINT NOT NULL,"
    "  rotated_at BIGINT,"
    "  revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);"
    "CREATE TABLE conversations ("
    "  id TEXT PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  dm_key TEXT UNIQUE,"
    "  created_by TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  last_seq BIGINT NOT NULL DEFAULT 0,"
    "  last_activity_at BIGINT NOT NULL,"
    "  last_message_id TEXT NOT NULL DEFAULT '',"
    "  last_sender_id TEXT NOT NULL DEFAULT '',"
    "  last_preview TEXT NOT NULL DEFAULT '',"
    "  last_has_more INTEGER NOT NULL DEFAULT 0,"
    "  member_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE members ("
    "  conversation_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  role INTEGER NOT NULL,"
    "  joined_at BIGINT NOT NULL,"
    "  read_seq BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (conversation_id, user_id));"
    "CREATE INDEX members_user ON members (user_id);",
};

/* The advisory lock class of refresh-token families ("tokn"); the two-key
 * form keeps it apart from the message log's one-key locks. */
#define FAMILY_LOCK_CLASS 0x746f6b6e

#define MAX_ATTEMPTS 5

/* ---- running an operation ------------------------------------------------ */

typedef int (*op_fn)(chat__pg *c, void *ctx);

enum {
    OP_TX = 1,         /* run between BEGIN and COMMIT */
    OP_IDEMPOTENT = 2, /* may run again even after an unclear outcome */
};

/* Roll back without losing the error that made us do it. A broken
 * connection is left alone: the server already ended the transaction,
 * and the pool drops the connection. */
static void rollback(chat__pg *c)
{
    const chat_error *e = chat_error_last();
    char msg[256];
    int code = e->code;

    if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK)
        return;
    chat__strlcpy(msg, e->message, sizeof msg);
    if (chat__pg_exec(c, "ROLLBACK", "rollback") != CHAT_OK)
        chat__error(code, "%s", msg);
}

/* May a failed run go again? A deadlock or serialization failure was
 * undone by the server. A connection that was already open and turns out
 * dead (the server restarted since it was last used) is replaced by the
 * pool, so the rerun goes to a new one - if running it again cannot
 * apply it twice. A connection opened for this call failing means the
 * server is really gone. */
static int should_retry(int rc, int flags, int committing, int fresh,
                        int attempt, int pool_size)
{
    if (rc == CHAT_EAGAIN)
        return attempt < MAX_ATTEMPTS;
    return rc == CHAT_EUNAVAIL && !fresh && attempt <= pool_size &&
           ((flags & OP_IDEMPOTENT) || ((flags & OP_TX) && !committing));
}

/* Run fn on a pooled connection, in a transaction with OP_TX, retrying
 * as should_retry() allows. fn must start from its inputs each time. */
static int run(chat_store *s, int flags, op_fn fn, void *ctx)
{
    chat__pg *c;
    int rc, attempt, committing, fresh;

    for (attempt = 1;; attempt++) {
        if ((c = chat__pgpool_get(POOL(s))) == NULL) {
            rc = chat_error_last()->code;
            return rc != CHAT_OK ? rc
                                 : chat__error(CHAT_EUNAVAIL,
                                               "PostgreSQL: cannot connect");
        }
        fresh = c->nstmt == 0; /* every call prepares at least one */
        committing = 0;
        rc = flags & OP_TX ? chat__pg_exec(c, "BEGIN", "begin") : CHAT_OK;
        if (rc == CHAT_OK)
            rc = fn(c, ctx);
        if (flags & OP_TX) {
            if (rc == CHAT_OK) {
                committing = 1;
                rc = chat__pg_exec(c, "COMMIT", "commit");
            } else {
                rollback(c);
            }
        }
        chat__pgpool_put(POOL(s), c);
        if (!should_retry(rc, flags, committing, fresh, attempt, POOL(s)->n))
            return rc;
        if (rc == CHAT_EAGAIN) { /* back off, with jitter, then rerun */
            struct timespec ts = {0, 0};
            ts.tv_nsec =
                (long)((1000 << attempt) + chat__mono_us() % 1000) * 1000L;
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- helpers ----------------------------------------------------------- */

static void args_init(chat__pgargs *a)
{
    a->n = 0;
}

/* bytea in text form: "\x" and 64 hex digits */
static const char *hash_hex(char hex[67], const uint8_t h[32])
{
    static const char digits[] = "0123456789abcdef";
    int i;

    hex[0] = '\\';
    hex[1] = 'x';
    for (i = 0; i < 32; i++) {
        hex[2 + 2 * i] = digits[h[i] >> 4];
        hex[3 + 2 * i] = digits[h[i] & 15];
    }
    hex[66] = '\0';
    return hex;
}

static int64_t affected(const PGresult *r)
{
    return strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
}

static int is_true(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* 1 if the one-parameter query sql returns a row, 0 if not, else the
 * (negative) error. */
static int row_exists(chat__pg *c, const char *sql, const char *arg,
                      const char *what)
{
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, arg);
    if ((r = chat__pg_query(c, sql, &a, what, &rc)) == NULL)
        return rc;
    rc = PQntuples(r) > 0;
    PQclear(r);
    return rc;
}

/* A PostgreSQL text[] literal of ids: {"a","b"}. */
static int id_array(chat__buf *b, char (*ids)[CHAT_ID_LEN + 1], int n)
{
    const char *p;
    int i;

    chat__buf_append(b, "{", 1);
    for (i = 0; i < n; i++) {
        chat__buf_append(b, i ? ",\"" : "\"", i ? 2 : 1);
        for (p = ids[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                chat__buf_append(b, "\\", 1);
            chat__buf_append(b, p, 1);
        }
        chat__buf_append(b, "\"", 1);
    }
    chat__buf_append(b, "}", 1);
    return b->failed ? chat__error(CHAT_ENOMEM, "out of memory") : CHAT_OK;
}

/* ---- users --------------------------------------------------------------- */

#define USER_COLS "id, email, username, password_hash, created_at"

static void read_user(const PGresult *r, int row, chat_user *u, int with_hash)
{
    chat__pg_text(r, row, 0, u->id, sizeof u->id);
    chat__pg_text(r, row, 1, u->email, sizeof u->email);
    chat__pg_text(r, row, 2, u->username, sizeof u->username);
    if (with_hash)
        chat__pg_text(r, row, 3, u->password_hash, sizeof u->password_hash);
    else
        u->password_hash[0] = '\0';
    u->created_at = chat__pg_int(r, row, 4);
}

static int user_create_tx(chat__pg *c, void *ctx)
{
    static const char q_ins[] =
        "INSERT INTO users (" USER_COLS ") VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING";
    static const char q_email[] = "SELECT 1 FROM users WHERE lower(email) = $1";
    static const char q_name[] =
        "SELECT 1 FROM users WHERE lower(username) = $1";
    const chat_user *u = ctx;
    char low[CHAT_EMAIL_MAX + 1];
    chat__pgargs a;
    PGresult *r;
    int rc, found;

    args_init(&a);
    chat__pa_text(&a, u->id);
    chat__pa_text(&a, u->email);
    chat__pa_text(&a, u->username);
    chat__pa_text(&a, u->password_hash);
    chat__pa_int(&a, u->created_at);
    if ((r = chat__pg_query(c, q_ins, &a, "insert user", &rc)) == NULL)
        return rc;
    found = affected(r) == 0; /* a unique index refused it: which? */
    PQclear(r);
    if (!found)
        return CHAT_OK;
    chat__ascii_lower(low, u->email, sizeof low);
    if ((found = row_exists(c, q_email, low, "email lookup")) != 0)
        return found < 0
                   ? found
                   : chat__error(CHAT_ECONFLICT, "email already registered");
    chat__ascii_lower(low, u->username, sizeof low);
    if ((found = row_exists(c, q_name, low, "username lookup")) != 0)
        return found < 0
                   ? found
                   : chat__error(CHAT_ECONFLICT, "username already taken");
    return chat__error(CHAT_ECONFLICT, "insert user: id already exists");
}

static int user_create(chat_store *s, const chat_user *u)
{
    return run(s, OP_TX, user_create_tx, (void *)u);
}

typedef struct user_q {
    const char *sql, *arg;
    chat_user *out;
    int with_hash;
} user_q;

static int user_query_fn(chat__pg *c, void *ctx)
{
    user_q *q = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, q->arg);
    if ((r = chat__pg_query(c, q->sql, &a, "user lookup", &rc)) == NULL)
        return rc;
    if (PQntuples(r) > 0)
        read_user(r, 0, q->out, q->with_hash);
    else
        rc = chat__error(CHAT_ENOTFOUND, "no such user");
    PQclear(r);
    return rc;
}

static int user_get(chat_store *s, const char *id, chat_user *out)
{
    static const char q[] = "SELECT " USER_COLS " FROM users WHERE id = $1";
    user_q uq = {q, id, out, 0};

    return run(s, OP_IDEMPOTENT, user_query_fn, &uq);
}

static int user_find_login(chat_store *s, const char *login, chat_user *out)
{
    static const char q[] = "SELECT " USER_COLS " FROM users"
                            " WHERE lower(email) = $1"
                            " OR lower(username) = $1 LIMIT 1";
    char low[CHAT_EMAIL_MAX + 1];
    user_q uq = {q, low, out, 1};

    /* longer than any stored email or username: folding it into the
     * buffer would cut it, and a cut login could match */
    if (strlen(login) > CHAT_EMAIL_MAX)
        return chat__error(CHAT_ENOTFOUND, "no such user");
    chat__ascii_lower(low, login, sizeof low);
    return run(s, OP_IDEMPOTENT, user_query_fn, &uq);
}

typedef struct search_q {
    const char *pattern;
    int limit, *n;
    chat_user *out;
} search_q;

static int user_search_fn(chat__pg *c, void *ctx)
{
    /* LIKE's escape character is the backslash by default */
    static const char q[] = "SELECT " USER_COLS " FROM users"
                            " WHERE lower(username) LIKE $1"
                            " OR lower(email) LIKE $1"
                            " ORDER BY lower(username) LIMIT $2";
    search_q *sq = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, i;

    *sq->n = 0;
    args_init(&a);
    chat__pa_text(&a, sq->pattern);
    chat__pa_int(&a, sq->limit);
    if ((r = chat__pg_query(c, q, &a, "search", &rc)) == NULL)
        return rc;
    for (i = 0; i < PQntuples(r) && i < sq->limit; i++)
        read_user(r, i, &sq->out[i], 0);
    *sq->n = i;
    PQclear(r);
    return CHAT_OK;
}

static int user_search(chat_store *s, const char *prefix, int limit,
                       chat_user *out, int *n)
{
    char pattern[2 * CHAT_EMAIL_MAX + 2];
    search_q sq = {pattern, limit, n, out};
    size_t o = 0;

    /* folded to lower case like the indexed columns; wildcards escaped */
    for (; *prefix && o + 3 < sizeof pattern; prefix++) {
        char ch = *prefix;
        if (ch == '%' || ch == '_' || ch == '\\')
            pattern[o++] = '\\';
        pattern[o++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    pattern[o++] = '%';
    pattern[o] = '\0';
    *n = 0;
    return run(s, OP_IDEMPOTENT, user_search_fn, &sq);
}

/* ---- refresh tokens ------------------------------------------------------ */

static int token_insert_tx(chat__pg *c, void *ctx)
{
    static const char q[] = "INSERT INTO refresh_tokens (hash, family_id,"
                            " user_id, expires_at) VALUES ($1, $2, $3, $4)";
    const chat_refresh_rec *t = ctx;
    char hex[67];
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, hash_hex(hex, t->hash));
    chat__pa_text(&a, t->family_id);
    chat__pa_text(&a, t->user_id);
    chat__pa_int(&a, t->expires_at);
    r = chat__pg_query(c, q, &a, "insert token", &rc);
    PQclear(r);
    return rc;
}

static int token_insert(chat_store *s, const chat_refresh_rec *r)
{
    /* in a transaction so a dead connection is found at BEGIN and the
     * insert rerun, never twice */
    return run(s, OP_TX, token_insert_tx, (void *)r);
}

/* Find the family of the token with this hash and take the family's
 * advisory lock: rotations and revocations of one family run one at a
 * time, so a revocation sees every token a rotation made. 1 and
 * family_id, 0 for an unknown token, else the error. */
static int lock_family(chat__pg *c, const char *hex,
                       char family_id[CHAT_ID_LEN + 1])
{
    static const char q[] =
        "SELECT family_id, pg_advisory_xact_lock($2::int, hashtext(family_id))"
        " FROM refresh_tokens WHERE hash = $1";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, hex);
    chat__pa_int(&a, FAMILY_LOCK_CLASS);
    if ((r = chat__pg_query(c, q, &a, "token family", &rc)) == NULL)
        return rc;
    rc = PQntuples(r) > 0;
    if (rc)
        chat__pg_text(r, 0, 0, family_id, CHAT_ID_LEN + 1);
    PQclear(r);
    return rc;
}

typedef struct rotate_q {
    const uint8_t *old_hash, *new_hash;
    int64_t new_expires_at, now;
    chat_refresh_rec *out;
    int reuse; /* set: the family was revoked; answer EAUTH after COMMIT */
} rotate_q;

static int token_rotate_tx(chat__pg *c, void *ctx)
{
    static const char q_get[] =
        "SELECT family_id, user_id, expires_at, rotated_at IS NOT NULL,"
        " revoked FROM refresh_tokens WHERE hash = $1 FOR UPDATE";
    static const char q_revoke[] =
        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = $1";
    static const char q_retire[] =
        "UPDATE refresh_tokens SET rotated_at = $2 WHERE hash = $1";
    static const char q_ins[] = "INSERT INTO refresh_tokens (hash, family_id,"
                                " user_id, expires_at) VALUES ($1, $2, $3, $4)";
    rotate_q *q = ctx;
    chat_refresh_rec *out = q->out;
    char old_hex[67], new_hex[67], family[CHAT_ID_LEN + 1];
    chat__pgargs a;
    PGresult *r;
    int rc, rotated, revoked;
    int64_t expires;

    memset(out, 0, sizeof *out);
    q->reuse = 0;
    if ((rc = lock_family(c, hash_hex(old_hex, q->old_hash), family)) <= 0)
        return rc < 0 ? rc : chat__error(CHAT_EAUTH, "unknown refresh token");
    /* read again under the lock: a rotation may have just committed */
    args_init(&a);
    chat__pa_text(&a, old_hex);
    if ((r = chat__pg_query(c, q_get, &a, "token lookup", &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return chat__error(CHAT_EAUTH, "unknown refresh token");
    }
    chat__pg_text(r, 0, 0, out->family_id, sizeof out->family_id);
    chat__pg_text(r, 0, 1, out->user_id, sizeof out->user_id);
    expires = chat__pg_int(r, 0, 2);
    rotated = is_true(r, 0, 3);
    revoked = (int)chat__pg_int(r, 0, 4);
    PQclear(r);
    if (revoked)
        return chat__error(CHAT_EAUTH, "refresh token revoked");
    if (rotated) {
        /* A used token came back: someone holds a copy. End the family. */
        args_init(&a);
        chat__pa_text(&a, out->family_id);
        r = chat__pg_query(c, q_revoke, &a, "revoke family", &rc);
        PQclear(r);
        q->reuse = rc == CHAT_OK;
        return rc;
    }
    if (expires <= q->now)
        return chat__error(CHAT_EEXPIRED, "refresh token expired");
    args_init(&a);
    chat__pa_text(&a, old_hex);
    chat__pa_int(&a, q->now);
    if ((r = chat__pg_query(c, q_retire, &a, "retire token", &rc)) == NULL)
        return rc;
    PQclear(r);
    args_init(&a);
    chat__pa_text(&a, hash_hex(new_hex, q->new_hash));
    chat__pa_text(&a, out->family_id);
    chat__pa_text(&a, out->user_id);
    chat__pa_int(&a, q->new_expires_at);
    r = chat__pg_query(c, q_ins, &a, "insert token", &rc);
    PQclear(r);
    return rc;
}

static int token_rotate(chat_store *s, const uint8_t old_hash[32],
                        const uint8_t new_hash[32], int64_t new_expires_at,
                        int64_t now, chat_refresh_rec *out)
{
    rotate_q q = {old_hash, new_hash, new_expires_at, now, out, 0};
    int rc = run(s, OP_TX, token_rotate_tx, &q);

    if (rc != CHAT_OK)
        return rc;
    if (q.reuse) {
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=store event=refresh_reuse user=%s family=%s",
                 out->user_id, out->family_id);
        return chat__error(CHAT_EAUTH,
                           "refresh token reuse detected; session revoked");
    }
    memcpy(out->hash, new_hash, 32);
    out->expires_at = new_expires_at;
    return CHAT_OK;
}

static int token_revoke_tx(chat__pg *c, void *ctx)
{
    static const char q[] =
        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = $1";
    char hex[67], family[CHAT_ID_LEN + 1];
    chat__pgargs a;
    PGresult *r;
    int rc;

    if ((rc = lock_family(c, hash_hex(hex, ctx), family)) <= 0)
        return rc < 0 ? rc
                      : chat__error(CHAT_ENOTFOUND, "unknown refresh token");
    args_init(&a);
    chat__pa_text(&a, family);
    r = chat__pg_query(c, q, &a, "revoke family", &rc);
    PQclear(r);
    return rc;
}

static int token_revoke_family(chat_store *s, const uint8_t hash[32])
{
    return run(s, OP_TX | OP_IDEMPOTENT, token_revoke_tx, (void *)hash);
}

/* ---- conversations ------------------------------------------------------- */

#define CONV_COLS                                                              \
    "c.id, c.kind, c.title, c.created_by, c.created_at, c.last_seq,"           \
    " c.last_activity_at, c.last_message_id, c.last_sender_id,"                \
    " c.last_preview, c.last_has_more, c.member_count"

/* A conversation row, with the viewer's role and read_seq in columns 12
 * and 13 when has_viewer. */
static void read_conv(const PGresult *r, int row, chat_conv *c, int has_viewer)
{
    memset(c, 0, sizeof *c);
    chat__pg_text(r, row, 0, c->id, sizeof c->id);
    c->kind = (int)chat__pg_int(r, row, 1);
    chat__pg_text(r, row, 2, c->title, sizeof c->title);
    chat__pg_text(r, row, 3, c->created_by, sizeof c->created_by);
    c->created_at = chat__pg_int(r, row, 4);
    c->last_seq = chat__pg_int(r, row, 5);
    c->last_activity_at = chat__pg_int(r, row, 6);
    chat__pg_text(r, row, 7, c->last_message_id, sizeof c->last_message_id);
    chat__pg_text(r, row, 8, c->last_sender_id, sizeof c->last_sender_id);
    chat__pg_text(r, row, 9, c->last_preview, sizeof c->last_preview);
    c->last_has_more = (int)chat__pg_int(r, row, 10);
    c->member_count = (int)chat__pg_int(r, row, 11);
    c->role = -1;
    if (has_viewer) {
        c->role = (int)chat__pg_int(r, row, 12);
        c->read_seq = chat__pg_int(r, row, 13);
    }
}

/* Load a conversation (and the viewer's membership) on connection c. */
static int conv_load(chat__pg *c, const char *id, const char *viewer,
                     chat_conv *out)
{
    static const char q[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM conversations c"
        " LEFT JOIN members m ON m.conversation_id = c.id"
        " AND m.user_id = $2 WHERE c.id = $1";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, id);
    chat__pa_text(&a, viewer ? viewer : "");
    if ((r = chat__pg_query(c, q, &a, "conversation lookup", &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        rc = chat__error(CHAT_ENOTFOUND, "no such conversation");
    } else if (viewer && PQgetisnull(r, 0, 12)) {
        rc = chat__error(CHAT_EPERM, "not a member");
    } else {
        read_conv(r, 0, out, viewer != NULL);
    }
    PQclear(r);
    return rc;
}

typedef struct conv_q {
    const char *conv_id, *user_id;
    chat_conv *out;
} conv_q;

static int conv_get_fn(chat__pg *c, void *ctx)
{
    conv_q *q = ctx;

    return conv_load(c, q->conv_id, q->user_id, q->out);
}

static int conv_get(chat_store *s, const char *conv_id, const char *viewer,
                    chat_conv *out)
{
    conv_q q = {conv_id, viewer, out};

    return run(s, OP_IDEMPOTENT, conv_get_fn, &q);
}

static int insert_conv(chat__pg *c, const char *id, int kind, const char *title,
                       const char *dm_key, const char *creator, int64_t now,
                       int members, int *inserted)
{
    /* a DM another instance created meanwhile is not an error: the
     * caller reads it back */
    static const char q[] =
        "INSERT INTO conversations (id, kind, title, dm_key, created_by,"
        " created_at, last_activity_at, member_count)"
        " VALUES ($1, $2, $3, $4, $5, $6, $6, $7)"
        " ON CONFLICT (dm_key) DO NOTHING";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, id);
    chat__pa_int(&a, kind);
    chat__pa_text(&a, title);
    chat__pa_text(&a, dm_key);
    chat__pa_text(&a, creator);
    chat__pa_int(&a, now);
    chat__pa_int(&a, members);
    if ((r = chat__pg_query(c, q, &a, "insert conversation", &rc)) == NULL)
        return rc;
    *inserted = affected(r) == 1;
    PQclear(r);
    return CHAT_OK;
}

/* Insert the members in ids[] (a text[] literal) with one role. */
static int insert_members(chat__pg *c, const char *conv, const char *ids,
                          int role, int64_t now)
{
    static const char q[] =
        "INSERT INTO members (conversation_id, user_id, role, joined_at)"
        " SELECT $1, u, $3, $4 FROM unnest($2::text[]) AS u";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, conv);
    chat__pa_text(&a, ids);
    chat__pa_int(&a, role);
    chat__pa_int(&a, now);
    r = chat__pg_query(c, q, &a, "insert member", &rc);
    PQclear(r);
    return rc;
}

static int insert_member(chat__pg *c, const char *conv, const char *user,
                         int role, int64_t now)
{
    static const char q[] = "INSERT INTO members (conversation_id, user_id,"
                            " role, joined_at) VALUES ($1, $2, $3, $4)";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, conv);
    chat__pa_text(&a, user);
    chat__pa_int(&a, role);
    chat__pa_int(&a, now);
    r = chat__pg_query(c, q, &a, "insert member", &rc);
    PQclear(r);
    return rc;
}

typedef struct dm_q {
    const char *key, *a, *b; /* a, b lower case, a the viewer */
    chat_conv *out;
    int made;
} dm_q;

/* The id of the DM with this key: 1, 0 if none, else the error. */
static int dm_find(chat__pg *c, const char *key, char id[CHAT_ID_LEN + 1])
{
    static const char q[] = "SELECT id FROM conversations WHERE dm_key = $1";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, key);
    if ((r = chat__pg_query(c, q, &a, "dm lookup", &rc)) == NULL)
        return rc;
    rc = PQntuples(r) > 0;
    if (rc)
        chat__pg_text(r, 0, 0, id, CHAT_ID_LEN + 1);
    PQclear(r);
    return rc;
}

static int conv_dm_tx(chat__pg *c, void *ctx)
{
    static const char q_users[] =
        "SELECT count(*) FROM users WHERE id = $1 OR id = $2";
    dm_q *q = ctx;
    char id[CHAT_ID_LEN + 1], ids[2][CHAT_ID_LEN + 1];
    chat__buf arr = CHAT__BUF_INIT;
    int64_t now = chat_time_now_ms();
    chat__pgargs a;
    PGresult *r;
    int rc, inserted;

    q->made = 0;
    if ((rc = dm_find(c, q->key, id)) < 0)
        return rc;
    if (rc == 0) {
        args_init(&a);
        chat__pa_text(&a, q->a);
        chat__pa_text(&a, q->b);
        if ((r = chat__pg_query(c, q_users, &a, "user lookup", &rc)) == NULL)
            return rc;
        rc = chat__pg_int(r, 0, 0) == 2
                 ? CHAT_OK
                 : chat__error(CHAT_ENOTFOUND, "no such user");
        PQclear(r);
        if (rc != CHAT_OK || (rc = chat_uuid_v7(id)) != CHAT_OK ||
            (rc = insert_conv(c, id, CHAT_CONV_DM, "", q->key, q->a, now, 2,
                              &inserted)) != CHAT_OK)
            return rc;
        if (inserted) {
            memcpy(ids[0], q->a, sizeof ids[0]);
            memcpy(ids[1], q->b, sizeof ids[1]);
            if ((rc = id_array(&arr, ids, 2)) == CHAT_OK)
                rc = insert_members(c, id, arr.data, CHAT_ROLE_MEMBER, now);
            chat__buf_free(&arr);
            if (rc != CHAT_OK)
                return rc;
            q->made = 1;
        } else if ((rc = dm_find(c, q->key, id)) <= 0) {
            /* another instance's insert won; this statement sees it */
            return rc < 0 ? rc
                          : chat__error(CHAT_EAGAIN, "DM created meanwhile");
        }
    }
    return conv_load(c, id, q->a, q->out);
}

static int conv_dm(chat_store *s, const char *a, const char *b, chat_conv *out,
                   int *created)
{
    char key[2 * CHAT_ID_LEN + 2], la[CHAT_ID_LEN + 1], lb[CHAT_ID_LEN + 1];
    dm_q q = {key, la, lb, out, 0};
    int rc;

    chat__ascii_lower(la, a, sizeof la);
    chat__ascii_lower(lb, b, sizeof lb);
    if (!strcmp(la, lb))
        return chat__error(CHAT_EINVAL, "a DM needs two different users");
    snprintf(key, sizeof key, "%s:%s", strcmp(la, lb) < 0 ? la : lb,
             strcmp(la, lb) < 0 ? lb : la);
    rc = run(s, OP_TX, conv_dm_tx, &q);
    if (rc == CHAT_OK && created)
        *created = q.made;
    return rc;
}

typedef struct group_q {
    const char *creator, *title;
    char (*ids)[CHAT_ID_LEN + 1];
    int n;
    chat_conv *out;
} group_q;

static int conv_group_tx(chat__pg *c, void *ctx)
{
    static const char q_users[] =
        "SELECT id FROM users WHERE id = ANY($1::text[])";
    group_q *q = ctx;
    chat__buf arr = CHAT__BUF_INIT;
    char id[CHAT_ID_LEN + 1];
    int64_t now = chat_time_now_ms();
    chat__pgargs a;
    PGresult *r = NULL;
    int rc, i, k, found;

    if ((rc = id_array(&arr, q->ids, q->n)) != CHAT_OK)
        goto out;
    args_init(&a);
    chat__pa_text(&a, arr.data);
    if ((r = chat__pg_query(c, q_users, &a, "user lookup", &rc)) == NULL)
        goto out;
    for (i = 0; i < q->n; i++) { /* name the first one missing */
        for (found = 0, k = 0; k < PQntuples(r) && !found; k++)
            found = !strcmp(PQgetvalue(r, k, 0), q->ids[i]);
        if (!found) {
            rc = chat__error(CHAT_ENOTFOUND, "no such user: %s", q->ids[i]);
            goto out;
        }
    }
    if ((rc = chat_uuid_v7(id)) != CHAT_OK ||
        (rc = insert_conv(c, id, CHAT_CONV_GROUP, q->title, NULL, q->creator,
                          now, q->n + 1, &found)) != CHAT_OK ||
        (rc = insert_member(c, id, q->creator, CHAT_ROLE_OWNER, now)) !=
            CHAT_OK ||
        (rc = insert_members(c, id, arr.data, CHAT_ROLE_MEMBER, now)) !=
            CHAT_OK)
        goto out;
    rc = conv_load(c, id, q->creator, q->out);
out:
    PQclear(r);
    chat__buf_free(&arr);
    return rc;
}

static int conv_group(chat_store *s, const char *creator, const char *title,
                      const char *const *member_ids, int n, chat_conv *out)
{
    char uniq[CHAT_GROUP_MAX_MEMBERS][CHAT_ID_LEN + 1];
    char lc[CHAT_ID_LEN + 1];
    group_q q = {lc, title, uniq, 0, out};
    int count = 0, i, k;

    /* fold case and duplicates; the creator is implied */
    chat__ascii_lower(lc, creator, sizeof lc);
    for (i = 0; i < n; i++) {
        char m[CHAT_ID_LEN + 1];
        int dup;
        chat__ascii_lower(m, member_ids[i], sizeof m);
        dup = !strcmp(m, lc);
        for (k = 0; k < count && !dup; k++)
            dup = !strcmp(uniq[k], m);
        if (dup)
            continue;
        if (count + 1 >= CHAT_GROUP_MAX_MEMBERS)
            return chat__error(CHAT_ELIMIT, "a group has at most %d members",
                               CHAT_GROUP_MAX_MEMBERS);
        memcpy(uniq[count++], m, sizeof m);
    }
    q.n = count;
    return run(s, OP_TX, conv_group_tx, &q);
}

typedef struct members_q {
    const char *conv_id;
    chat_member *out;
    int max, *n;
} members_q;

static int conv_members_fn(chat__pg *c, void *ctx)
{
    static const char q[] =
        "SELECT m.user_id, COALESCE(u.username, ''), m.role, m.joined_at,"
        " m.read_seq FROM members m LEFT JOIN users u ON u.id = m.user_id"
        " WHERE m.conversation_id = $1"
        " ORDER BY m.joined_at, m.user_id COLLATE \"C\" LIMIT $2";
    members_q *mq = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, i;

    *mq->n = 0;
    args_init(&a);
    chat__pa_text(&a, mq->conv_id);
    chat__pa_int(&a, mq->max);
    if ((r = chat__pg_query(c, q, &a, "members", &rc)) == NULL)
        return rc;
    for (i = 0; i < PQntuples(r) && i < mq->max; i++) {
        chat_member *m = &mq->out[i];
        memset(m, 0, sizeof *m);
        chat__pg_text(r, i, 0, m->user_id, sizeof m->user_id);
        chat__pg_text(r, i, 1, m->username, sizeof m->username);
        m->role = (int)chat__pg_int(r, i, 2);
        m->joined_at = chat__pg_int(r, i, 3);
        m->read_seq = chat__pg_int(r, i, 4);
    }
    *mq->n = i;
    PQclear(r);
    return CHAT_OK;
}

static int conv_members(chat_store *s, const char *conv_id, chat_member *out,
                        int max, int *n)
{
    members_q q = {conv_id, out, max, n};

    *n = 0;
    return run(s, OP_IDEMPOTENT, conv_members_fn, &q);
}

typedef struct peers_q {
    const char *user_id;
    chat_id *out;
    int max, *n;
} peers_q;

static int peers_fn(chat__pg *c, void *ctx)
{
    static const char q[] =
        "SELECT DISTINCT o.user_id FROM members m JOIN members o"
        " ON o.conversation_id = m.conversation_id"
        " WHERE m.user_id = $1 AND o.user_id <> $1 LIMIT $2";
    peers_q *pq = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, i;

    *pq->n = 0;
    args_init(&a);
    chat__pa_text(&a, pq->user_id);
    chat__pa_int(&a, pq->max);
    if ((r = chat__pg_query(c, q, &a, "peers", &rc)) == NULL)
        return rc;
    for (i = 0; i < PQntuples(r) && i < pq->max; i++)
        chat__pg_text(r, i, 0, pq->out[i].id, sizeof pq->out[i].id);
    *pq->n = i;
    PQclear(r);
    return CHAT_OK;
}

static int peers(chat_store *s, const char *user_id, chat_id *out, int max,
                 int *n)
{
    peers_q q = {user_id, out, max, n};

    *n = 0;
    return run(s, OP_IDEMPOTENT, peers_fn, &q);
}

typedef struct list_q {
    const char *user_id;
    const chat_conv_cursor *after;
    int limit, *n;
    chat_conv *out;
} list_q;

static int conv_list_fn(chat__pg *c, void *ctx)
{
    static const char q_first[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM members m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.user_id = $1"
        " ORDER BY c.last_activity_at DESC, c.id COLLATE \"C\" DESC LIMIT $2";
    static const char q_after[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM members m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.user_id = $1"
        " AND (c.last_activity_at, c.id COLLATE \"C\") < ($3::bigint, $4)"
        " ORDER BY c.last_activity_at DESC, c.id COLLATE \"C\" DESC LIMIT $2";
    list_q *lq = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, i;

    *lq->n = 0;
    args_init(&a);
    chat__pa_text(&a, lq->user_id);
    chat__pa_int(&a, lq->limit);
    if (lq->after) {
        chat__pa_int(&a, lq->after->activity_at);
        chat__pa_text(&a, lq->after->id);
    }
    r = chat__pg_query(c, lq->after ? q_after : q_first, &a,
                       "conversation list", &rc);
    if (r == NULL)
        return rc;
    for (i = 0; i < PQntuples(r) && i < lq->limit; i++)
        read_conv(r, i, &lq->out[i], 1);
    *lq->n = i;
    PQclear(r);
    return CHAT_OK;
}

static int conv_list(chat_store *s, const char *user_id,
                     const chat_conv_cursor *after, int limit, chat_conv *out,
                     int *n)
{
    list_q q = {user_id, after, limit, n, out};

    *n = 0;
    return run(s, OP_IDEMPOTENT, conv_list_fn, &q);
}

/* Lock the conversation's row for a membership change: 1 with its
 * member_count (current, as the lock was granted), 0 if there is no
 * such conversation, else the error. */
static int lock_conv(chat__pg *c, const char *conv_id, int *member_count)
{
    static const char q[] =
        "SELECT member_count FROM conversations WHERE id = $1 FOR UPDATE";
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, conv_id);
    if ((r = chat__pg_query(c, q, &a, "lock conversation", &rc)) == NULL)
        return rc;
    rc = PQntuples(r) > 0;
    if (rc && member_count)
        *member_count = (int)chat__pg_int(r, 0, 0);
    PQclear(r);
    return rc;
}

typedef struct member_q {
    const char *conv_id, *user_id; /* user_id in lower case */
    int role;
} member_q;

static int member_add_tx(chat__pg *c, void *ctx)
{
    /* new statements see what committed while we waited for the lock */
    static const char q_check[] =
        "SELECT EXISTS (SELECT 1 FROM members WHERE conversation_id = $1"
        " AND user_id = $2), EXISTS (SELECT 1 FROM users WHERE id = $2)";
    static const char q_bump[] = "UPDATE conversations SET member_count ="
                                 " member_count + 1 WHERE id = $1";
    member_q *q = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, count = 0, member, user;

    if ((rc = lock_conv(c, q->conv_id, &count)) <= 0)
        return rc < 0 ? rc
                      : chat__error(CHAT_ENOTFOUND, "no such conversation");
    args_init(&a);
    chat__pa_text(&a, q->conv_id);
    chat__pa_text(&a, q->user_id);
    if ((r = chat__pg_query(c, q_check, &a, "membership", &rc)) == NULL)
        return rc;
    member = is_true(r, 0, 0);
    user = is_true(r, 0, 1);
    PQclear(r);
    if (member)
        return chat__error(CHAT_ECONFLICT, "already a member");
    if (!user)
        return chat__error(CHAT_ENOTFOUND, "no such user");
    if (count >= CHAT_GROUP_MAX_MEMBERS)
        return chat__error(CHAT_ELIMIT, "a group has at most %d members",
                           CHAT_GROUP_MAX_MEMBERS);
    if ((rc = insert_member(c, q->conv_id, q->user_id, q->role,
                            chat_time_now_ms())) != CHAT_OK)
        return rc;
    args_init(&a);
    chat__pa_text(&a, q->conv_id);
    r = chat__pg_query(c, q_bump, &a, "member count", &rc);
    PQclear(r);
    return rc;
}

static int member_add(chat_store *s, const char *conv_id, const char *user_id,
                      int role)
{
    char lu[CHAT_ID_LEN + 1];
    member_q q = {conv_id, lu, role};

    chat__ascii_lower(lu, user_id, sizeof lu);
    return run(s, OP_TX, member_add_tx, &q);
}

static int member_remove_tx(chat__pg *c, void *ctx)
{
    static const char q_del[] =
        "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2"
        " RETURNING role";
    static const char q_dec[] = "UPDATE conversations SET member_count ="
                                " member_count - 1 WHERE id = $1";
    /* the oldest admin, else the oldest member, becomes owner */
    static const char q_heir[] =
        "UPDATE members SET role = 2 WHERE conversation_id = $1 AND"
        " user_id = (SELECT user_id FROM members WHERE conversation_id = $1"
        " ORDER BY role DESC, joined_at, user_id COLLATE \"C\" LIMIT 1)";
    member_q *q = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc, role;

    /* no conversation: the DELETE finds no member, as in SQLite */
    if ((rc = lock_conv(c, q->conv_id, NULL)) < 0)
        return rc;
    args_init(&a);
    chat__pa_text(&a, q->conv_id);
    chat__pa_text(&a, q->user_id);
    if ((r = chat__pg_query(c, q_del, &a, "remove member", &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return chat__error(CHAT_ENOTFOUND, "not a member");
    }
    role = (int)chat__pg_int(r, 0, 0);
    PQclear(r);
    args_init(&a);
    chat__pa_text(&a, q->conv_id);
    if ((r = chat__pg_query(c, q_dec, &a, "member count", &rc)) == NULL)
        return rc;
    PQclear(r);
    if (role == CHAT_ROLE_OWNER) {
        r = chat__pg_query(c, q_heir, &a, "owner hand-over", &rc);
        PQclear(r);
    }
    return rc;
}

static int member_remove(chat_store *s, const char *conv_id,
                         const char *user_id)
{
    char lu[CHAT_ID_LEN + 1];
    member_q q = {conv_id, lu, 0};

    chat__ascii_lower(lu, user_id, sizeof lu);
    return run(s, OP_TX, member_remove_tx, &q);
}

typedef struct read_q {
    const char *conv_id, *user_id;
    int64_t seq, *result;
} read_q;

static int read_set_fn(chat__pg *c, void *ctx)
{
    /* forward only, and never past the conversation's last message; the
     * row lock makes GREATEST see the newest marker */
    static const char q[] =
        "UPDATE members SET read_seq = GREATEST(read_seq, LEAST($3::bigint,"
        " COALESCE((SELECT last_seq FROM conversations WHERE id = $1), 0)))"
        " WHERE conversation_id = $1 AND user_id = $2 RETURNING read_seq";
    read_q *rq = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, rq->conv_id);
    chat__pa_text(&a, rq->user_id);
    chat__pa_int(&a, rq->seq);
    if ((r = chat__pg_query(c, q, &a, "read marker", &rc)) == NULL)
        return rc;
    if (PQntuples(r) == 0)
        rc = chat__error(CHAT_EPERM, "not a member");
    else if (rq->result)
        *rq->result = chat__pg_int(r, 0, 0);
    PQclear(r);
    return rc;
}

static int read_set(chat_store *s, const char *conv_id, const char *user_id,
                    int64_t seq, int64_t *result)
{
    char lu[CHAT_ID_LEN + 1];
    read_q q = {conv_id, lu, seq, result};

    chat__ascii_lower(lu, user_id, sizeof lu);
    return run(s, OP_IDEMPOTENT, read_set_fn, &q);
}

static int conv_touch_tx(chat__pg *c, void *ctx)
{
    /* the conversation row before the members row, as the log does */
    static const char q_conv[] =
        "UPDATE conversations SET last_seq = $2, last_activity_at = $3,"
        " last_message_id = $4, last_sender_id = $5, last_preview = $6,"
        " last_has_more = $7 WHERE id = $1 AND last_seq < $2";
    static const char q_read[] =
        "UPDATE members SET read_seq = GREATEST(read_seq, $3::bigint)"
        " WHERE conversation_id = $1 AND user_id = $2";
    const chat_message *m = ctx;
    chat__pgargs a;
    PGresult *r;
    int rc;

    args_init(&a);
    chat__pa_text(&a, m->conversation_id);
    chat__pa_int(&a, m->seq);
    chat__pa_int(&a, m->created_at);
    chat__pa_text(&a, m->id);
    chat__pa_text(&a, m->sender_id);
    chat__pa_text(&a, m->preview);
    chat__pa_int(&a, m->has_more);
    if ((r = chat__pg_query(c, q_conv, &a, "touch conversation", &rc)) == NULL)
        return rc;
    PQclear(r);
    args_init(&a);
    chat__pa_text(&a, m->conversation_id);
    chat__pa_text(&a, m->sender_id);
    chat__pa_int(&a, m->seq);
    r = chat__pg_query(c, q_read, &a, "sender read marker", &rc);
    PQclear(r);
    return rc;
}

static int conv_touch(chat_store *s, const chat_message *m)
{
    return run(s, OP_TX | OP_IDEMPOTENT, conv_touch_tx, (void *)m);
}

static void store_free(chat_store *s)
{
    chat__pgpool_close(POOL(s));
    chat__free(s);
}

static const chat_store_ops g_ops = {
    "postgres",    store_free,      user_create,
    user_get,      user_find_login, user_search,
    token_insert,  token_rotate,    token_revoke_family,
    conv_dm,       conv_group,      conv_get,
    conv_members,  conv_list,       member_add,
    member_remove, read_set,        conv_touch,
    peers,
};

int chat_store_pg_open(chat_store **out, const chat_pg_opts *opts)
{
    pg_store *s;
    chat__pg *c;
    int rc;

    CHAT_ASSERT_ARG(out && opts);
    s = chat__calloc(1, sizeof *s);
    if (s == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    s->base.ops = &g_ops;
    /* a failed open releases what it took */
    if ((rc = chat__pgpool_open(&s->pool, opts, opts->pool_size)) != CHAT_OK) {
        chat__free(s);
        return rc;
    }
    if ((c = chat__pgpool_get(&s->pool)) == NULL) {
        rc = chat_error_last()->code;
    } else {
        rc = chat__pg_migrate(c, "store", g_migrations,
                              (int)CHAT__ARRAY_LEN(g_migrations));
        chat__pgpool_put(&s->pool, c);
    }
    if (rc != CHAT_OK) {
        store_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return CHAT_OK;
}
