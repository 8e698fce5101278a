/* The account/conversation store on SQLite. Every call borrows a pooled
 * connection; multi-statement operations run in one BEGIN IMMEDIATE
 * transaction so checks and writes cannot interleave with another
 * writer. */
#include <stdio.h>
#include <string.h>

#include "store/sqlite_util.h"

typedef struct sqlite_store {
    chat_store base;
    chat__dbpool pool;
} sqlite_store;

#define POOL(s) (&((sqlite_store *)(s))->pool)

/* Borrow a connection for the body of an operation. */
#define WITH_DB(s, d) chat__db *d = chat__dbpool_get(POOL(s))
#define DONE_DB(s, d) chat__dbpool_put(POOL(s), d)

static int step_done(chat__db *d, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    return rc == SQLITE_DONE || rc == SQLITE_ROW ? CHAT_OK
                                                 : chat__db_error(d, rc, what);
}

/* 1 if the one-parameter query sql returns a row, 0 if not, -1 on error. */
static int row_exists(chat__db *d, const char *sql, const char *arg)
{
    sqlite3_stmt *st = chat__db_stmt(d, sql);
    int rc;

    if (st == NULL)
        return -1;
    chat__bind_text(st, 1, arg);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- users --------------------------------------------------------------- */

#define USER_COLS "id, email, username, password_hash, created_at"

static void read_user(sqlite3_stmt *st, chat_user *u, int with_hash)
{
    chat__col_text(st, 0, u->id, sizeof u->id);
    chat__col_text(st, 1, u->email, sizeof u->email);
    chat__col_text(st, 2, u->username, sizeof u->username);
    if (with_hash)
        chat__col_text(st, 3, u->password_hash, sizeof u->password_hash);
    else
        u->password_hash[0] = '\0';
    u->created_at = sqlite3_column_int64(st, 4);
}

static int user_create(chat_store *s, const chat_user *u)
{
    static const char q_email[] =
        "SELECT 1 FROM users WHERE email = ?1 COLLATE NOCASE";
    static const char q_name[] =
        "SELECT 1 FROM users WHERE username = ?1 COLLATE NOCASE";
    static const char q_ins[] =
        "INSERT INTO users (" USER_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)";
    WITH_DB(s, d);
    sqlite3_stmt *st;
    int rc, found;

    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    if ((found = row_exists(d, q_email, u->email)) != 0) {
        rc = found < 0
                 ? CHAT_EIO
                 : chat__error(CHAT_ECONFLICT, "email already registered");
        goto rollback;
    }
    if ((found = row_exists(d, q_name, u->username)) != 0) {
        rc = found < 0 ? CHAT_EIO
                       : chat__error(CHAT_ECONFLICT, "username already taken");
        goto rollback;
    }
    if (!(st = chat__db_stmt(d, q_ins))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    chat__bind_text(st, 1, u->id);
    chat__bind_text(st, 2, u->email);
    chat__bind_text(st, 3, u->username);
    chat__bind_text(st, 4, u->password_hash);
    chat__bind_int(st, 5, u->created_at);
    if ((rc = step_done(d, st, "insert user")) != CHAT_OK)
        goto rollback;
    rc = chat__db_exec(d, "COMMIT");
    if (rc == CHAT_OK)
        goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int user_query(chat_store *s, const char *sql, const char *arg,
                      chat_user *out, int with_hash)
{
    WITH_DB(s, d);
    sqlite3_stmt *st = chat__db_stmt(d, sql);
    int rc;

    if (st == NULL) {
        rc = CHAT_EIO;
    } else {
        chat__bind_text(st, 1, arg);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_user(st, out, with_hash);
            rc = CHAT_OK;
        } else if (rc == SQLITE_DONE) {
            rc = chat__error(CHAT_ENOTFOUND, "no such user");
        } else {
            rc = chat__db_error(d, rc, "user lookup");
        }
        sqlite3_reset(st);
    }
    DONE_DB(s, d);
    return rc;
}

static int user_get(chat_store *s, const char *id, chat_user *out)
{
    static const char q[] = "SELECT " USER_COLS " FROM users WHERE id = ?1";
    return user_query(s, q, id, out, 0);
}

static int user_find_login(chat_store *s, const char *login, chat_user *out)
{
    static const char q[] = "SELECT " USER_COLS " FROM users"
                            " WHERE email = ?1 COLLATE NOCASE"
                            " OR username = ?1 COLLATE NOCASE LIMIT 1";
    return user_query(s, q, login, out, 1);
}

static int user_search(chat_store *s, const char *prefix, int limit,
                       chat_user *out, int *n)
{
    static const char q[] =
        "SELECT " USER_COLS " FROM users"
        " WHERE username LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\'"
        " ORDER BY username COLLATE NOCASE LIMIT ?2";
    char pattern[2 * CHAT_EMAIL_MAX + 2];
    size_t o = 0;
    sqlite3_stmt *st;
    int rc;

    /* LIKE is case-insensitive for ASCII; escape its wildcards */
    for (; *prefix && o + 3 < sizeof pattern; prefix++) {
        if (*prefix == '%' || *prefix == '_' || *prefix == '\\')
            pattern[o++] = '\\';
        pattern[o++] = *prefix;
    }
    pattern[o++] = '%';
    pattern[o] = '\0';
    *n = 0;
    WITH_DB(s, d);
    if (!(st = chat__db_stmt(d, q))) {
        rc = CHAT_EIO;
        goto out;
    }
    chat__bind_text(st, 1, pattern);
    chat__bind_int(st, 2, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < limit)
        read_user(st, &out[(*n)++], 0);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW
             ? CHAT_OK
             : chat__db_error(d, rc, "search");
    sqlite3_reset(st);
out:
    DONE_DB(s, d);
    return rc;
}

/* ---- refresh tokens ------------------------------------------------------ */

static int token_insert(chat_store *s, const chat_refresh_rec *r)
{
    static const char q[] = "INSERT INTO refresh_tokens (hash, family_id,"
                            " user_id, expires_at) VALUES (?1, ?2, ?3, ?4)";
    WITH_DB(s, d);
    sqlite3_stmt *st = chat__db_stmt(d, q);
    int rc = CHAT_EIO;

    if (st) {
        sqlite3_bind_blob(st, 1, r->hash, 32, SQLITE_STATIC);
        chat__bind_text(st, 2, r->family_id);
        chat__bind_text(st, 3, r->user_id);
        chat__bind_int(st, 4, r->expires_at);
        rc = step_done(d, st, "insert token");
        sqlite3_reset(st);
    }
    DONE_DB(s, d);
    return rc;
}

static int token_rotate(chat_store *s, const uint8_t old_hash[32],
                        const uint8_t new_hash[32], int64_t new_expires_at,
                        int64_t now, chat_refresh_rec *out)
{
    static const char q_get[] =
        "SELECT family_id, user_id, expires_at, rotated_at, revoked"
        " FROM refresh_tokens WHERE hash = ?1";
    static const char q_revoke[] =
        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1";
    static const char q_retire[] =
        "UPDATE refresh_tokens SET rotated_at = ?2 WHERE hash = ?1";
    static const char q_ins[] = "INSERT INTO refresh_tokens (hash, family_id,"
                                " user_id, expires_at) VALUES (?1, ?2, ?3, ?4)";
    WITH_DB(s, d);
    sqlite3_stmt *st;
    int rc, step, rotated, revoked;
    int64_t expires;

    memset(out, 0, sizeof *out);
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    if (!(st = chat__db_stmt(d, q_get))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    sqlite3_bind_blob(st, 1, old_hash, 32, SQLITE_STATIC);
    step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE
                 ? chat__error(CHAT_EAUTH, "unknown refresh token")
                 : chat__db_error(d, step, "token lookup");
        goto rollback;
    }
    chat__col_text(st, 0, out->family_id, sizeof out->family_id);
    chat__col_text(st, 1, out->user_id, sizeof out->user_id);
    expires = sqlite3_column_int64(st, 2);
    rotated = sqlite3_column_type(st, 3) != SQLITE_NULL;
    revoked = sqlite3_column_int(st, 4);
    sqlite3_reset(st);
    if (revoked) {
        rc = chat__error(CHAT_EAUTH, "refresh token revoked");
        goto rollback;
    }
    if (rotated) {
        /* A used token came back: someone holds a copy. End the family. */
        if (!(st = chat__db_stmt(d, q_revoke))) {
            rc = CHAT_EIO;
            goto rollback;
        }
        chat__bind_text(st, 1, out->family_id);
        if ((rc = step_done(d, st, "revoke family")) != CHAT_OK ||
            (rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
            goto rollback;
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=store event=refresh_reuse user=%s family=%s",
                 out->user_id, out->family_id);
        rc = chat__error(CHAT_EAUTH,
                         "refresh token reuse detected; session revoked");
        goto out;
    }
    if (expires <= now) {
        rc = chat__error(CHAT_EEXPIRED, "refresh token expired");
        goto rollback;
    }
    if (!(st = chat__db_stmt(d, q_retire))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    sqlite3_bind_blob(st, 1, old_hash, 32, SQLITE_STATIC);
    chat__bind_int(st, 2, now);
    if ((rc = step_done(d, st, "retire token")) != CHAT_OK)
        goto rollback;
    if (!(st = chat__db_stmt(d, q_ins))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    sqlite3_bind_blob(st, 1, new_hash, 32, SQLITE_STATIC);
    chat__bind_text(st, 2, out->family_id);
    chat__bind_text(st, 3, out->user_id);
    chat__bind_int(st, 4, new_expires_at);
    if ((rc = step_done(d, st, "insert token")) != CHAT_OK)
        goto rollback;
    if ((rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto rollback;
    memcpy(out->hash, new_hash, 32);
    out->expires_at = new_expires_at;
    goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int token_revoke_family(chat_store *s, const uint8_t hash[32])
{
    static const char q[] =
        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id ="
        " (SELECT family_id FROM refresh_tokens WHERE hash = ?1)";
    WITH_DB(s, d);
    sqlite3_stmt *st = chat__db_stmt(d, q);
    int rc = CHAT_EIO;

    if (st) {
        sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
        rc = step_done(d, st, "revoke family");
        if (rc == CHAT_OK && sqlite3_changes(d->db) == 0)
            rc = chat__error(CHAT_ENOTFOUND, "unknown refresh token");
        sqlite3_reset(st);
    }
    DONE_DB(s, d);
    return rc;
}

/* ---- conversations --------------------------------------------------------
 */

#define CONV_COLS                                                              \
    "c.id, c.kind, c.title, c.created_by, c.created_at, c.last_seq,"           \
    " c.last_activity_at, c.last_message_id, c.last_sender_id,"                \
    " c.last_preview, c.last_has_more, c.member_count"

static void read_conv(sqlite3_stmt *st, chat_conv *c)
{
    memset(c, 0, sizeof *c);
    chat__col_text(st, 0, c->id, sizeof c->id);
    c->kind = sqlite3_column_int(st, 1);
    chat__col_text(st, 2, c->title, sizeof c->title);
    chat__col_text(st, 3, c->created_by, sizeof c->created_by);
    c->created_at = sqlite3_column_int64(st, 4);
    c->last_seq = sqlite3_column_int64(st, 5);
    c->last_activity_at = sqlite3_column_int64(st, 6);
    chat__col_text(st, 7, c->last_message_id, sizeof c->last_message_id);
    chat__col_text(st, 8, c->last_sender_id, sizeof c->last_sender_id);
    chat__col_text(st, 9, c->last_preview, sizeof c->last_preview);
    c->last_has_more = sqlite3_column_int(st, 10);
    c->member_count = sqlite3_column_int(st, 11);
    c->role = -1;
}

/* Load a conversation (and the viewer's membership) on connection d. */
static int conv_load(chat__db *d, const char *id, const char *viewer,
                     chat_conv *out)
{
    static const char q[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM conversations c"
        " LEFT JOIN members m ON m.conversation_id = c.id"
        " AND m.user_id = ?2 WHERE c.id = ?1";
    sqlite3_stmt *st = chat__db_stmt(d, q);
    int rc;

    if (st == NULL)
        return CHAT_EIO;
    chat__bind_text(st, 1, id);
    chat__bind_text(st, 2, viewer ? viewer : "");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_conv(st, out);
        if (viewer) {
            if (sqlite3_column_type(st, 12) == SQLITE_NULL) {
                rc = chat__error(CHAT_EPERM, "not a member");
            } else {
                out->role = sqlite3_column_int(st, 12);
                out->read_seq = sqlite3_column_int64(st, 13);
                rc = CHAT_OK;
            }
        } else {
            rc = CHAT_OK;
        }
    } else if (rc == SQLITE_DONE) {
        rc = chat__error(CHAT_ENOTFOUND, "no such conversation");
    } else {
        rc = chat__db_error(d, rc, "conversation lookup");
    }
    sqlite3_reset(st);
    return rc;
}

static int conv_get(chat_store *s, const char *conv_id, const char *viewer,
                    chat_conv *out)
{
    WITH_DB(s, d);
    int rc = conv_load(d, conv_id, viewer, out);
    DONE_DB(s, d);
    return rc;
}

static int user_exists(chat__db *d, const char *id)
{
    static const char q[] = "SELECT 1 FROM users WHERE id = ?1";
    return row_exists(d, q, id);
}

static int insert_conv(chat__db *d, const char *id, int kind, const char *title,
                       const char *dm_key, const char *creator, int64_t now,
                       int members)
{
    static const char q[] =
        "INSERT INTO conversations (id, kind, title, dm_key, created_by,"
        " created_at, last_activity_at, member_count)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)";
    sqlite3_stmt *st = chat__db_stmt(d, q);

    if (st == NULL)
        return CHAT_EIO;
    chat__bind_text(st, 1, id);
    chat__bind_int(st, 2, kind);
    chat__bind_text(st, 3, title);
    chat__bind_text(st, 4, dm_key);
    chat__bind_text(st, 5, creator);
    chat__bind_int(st, 6, now);
    chat__bind_int(st, 7, members);
    return step_done(d, st, "insert conversation");
}

static int insert_member(chat__db *d, const char *conv, const char *user,
                         int role, int64_t now)
{
    static const char q[] = "INSERT INTO members (conversation_id, user_id,"
                            " role, joined_at) VALUES (?1, ?2, ?3, ?4)";
    sqlite3_stmt *st = chat__db_stmt(d, q);

    if (st == NULL)
        return CHAT_EIO;
    chat__bind_text(st, 1, conv);
    chat__bind_text(st, 2, user);
    chat__bind_int(st, 3, role);
    chat__bind_int(st, 4, now);
    return step_done(d, st, "insert member");
}

static int conv_dm(chat_store *s, const char *a, const char *b, chat_conv *out,
                   int *created)
{
    static const char q_key[] =
        "SELECT id FROM conversations WHERE dm_key = ?1";
    char key[2 * CHAT_ID_LEN + 2], la[CHAT_ID_LEN + 1], lb[CHAT_ID_LEN + 1];
    char id[CHAT_ID_LEN + 1];
    int64_t now = chat_time_now_ms();
    sqlite3_stmt *st;
    int rc, made = 0;

    chat__ascii_lower(la, a, sizeof la);
    chat__ascii_lower(lb, b, sizeof lb);
    if (!strcmp(la, lb))
        return chat__error(CHAT_EINVAL, "a DM needs two different users");
    snprintf(key, sizeof key, "%s:%s", strcmp(la, lb) < 0 ? la : lb,
             strcmp(la, lb) < 0 ? lb : la);
    WITH_DB(s, d);
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    if (!(st = chat__db_stmt(d, q_key))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    chat__bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW) {
        chat__col_text(st, 0, id, sizeof id);
        sqlite3_reset(st);
    } else {
        sqlite3_reset(st);
        if (user_exists(d, la) != 1 || user_exists(d, lb) != 1) {
            rc = chat__error(CHAT_ENOTFOUND, "no such user");
            goto rollback;
        }
        if ((rc = chat_uuid_v7(id)) != CHAT_OK ||
            (rc = insert_conv(d, id, CHAT_CONV_DM, "", key, la, now, 2)) ||
            (rc = insert_member(d, id, la, CHAT_ROLE_MEMBER, now)) ||
            (rc = insert_member(d, id, lb, CHAT_ROLE_MEMBER, now)))
            goto rollback;
        made = 1;
    }
    if ((rc = conv_load(d, id, la, out)) != CHAT_OK ||
        (rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto rollback;
    if (created)
        *created = made;
    goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int conv_group(chat_store *s, const char *creator, const char *title,
                      const char *const *member_ids, int n, chat_conv *out)
{
    char uniq[CHAT_GROUP_MAX_MEMBERS][CHAT_ID_LEN + 1];
    char id[CHAT_ID_LEN + 1], lc[CHAT_ID_LEN + 1];
    int64_t now = chat_time_now_ms();
    int count = 0, i, k, rc;

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
    WITH_DB(s, d);
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    for (i = 0; i < count; i++) {
        if (user_exists(d, uniq[i]) != 1) {
            rc = chat__error(CHAT_ENOTFOUND, "no such user: %s", uniq[i]);
            goto rollback;
        }
    }
    if ((rc = chat_uuid_v7(id)) != CHAT_OK ||
        (rc = insert_conv(d, id, CHAT_CONV_GROUP, title, NULL, lc, now,
                          count + 1)) ||
        (rc = insert_member(d, id, lc, CHAT_ROLE_OWNER, now)))
        goto rollback;
    for (i = 0; i < count; i++)
        if ((rc = insert_member(d, id, uniq[i], CHAT_ROLE_MEMBER, now)))
            goto rollback;
    if ((rc = conv_load(d, id, lc, out)) != CHAT_OK ||
        (rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto rollback;
    goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int conv_members(chat_store *s, const char *conv_id, chat_member *out,
                        int max, int *n)
{
    static const char q[] =
        "SELECT m.user_id, COALESCE(u.username, ''), m.role, m.joined_at,"
        " m.read_seq FROM members m LEFT JOIN users u ON u.id = m.user_id"
        " WHERE m.conversation_id = ?1 ORDER BY m.joined_at, m.user_id";
    sqlite3_stmt *st;
    int rc;

    *n = 0;
    WITH_DB(s, d);
    if (!(st = chat__db_stmt(d, q))) {
        rc = CHAT_EIO;
        goto out;
    }
    chat__bind_text(st, 1, conv_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
        chat_member *m = &out[(*n)++];
        memset(m, 0, sizeof *m);
        chat__col_text(st, 0, m->user_id, sizeof m->user_id);
        chat__col_text(st, 1, m->username, sizeof m->username);
        m->role = sqlite3_column_int(st, 2);
        m->joined_at = sqlite3_column_int64(st, 3);
        m->read_seq = sqlite3_column_int64(st, 4);
    }
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW
             ? CHAT_OK
             : chat__db_error(d, rc, "members");
    sqlite3_reset(st);
out:
    DONE_DB(s, d);
    return rc;
}

static int peers(chat_store *s, const char *user_id, chat_id *out, int max,
                 int *n)
{
    static const char q[] =
        "SELECT DISTINCT o.user_id FROM members m JOIN members o"
        " ON o.conversation_id = m.conversation_id"
        " WHERE m.user_id = ?1 AND o.user_id <> ?1 LIMIT ?2";
    sqlite3_stmt *st;
    int rc;

    *n = 0;
    WITH_DB(s, d);
    if (!(st = chat__db_stmt(d, q))) {
        rc = CHAT_EIO;
        goto out;
    }
    chat__bind_text(st, 1, user_id);
    sqlite3_bind_int(st, 2, max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max)
        chat__col_text(st, 0, out[(*n)++].id, sizeof out[0].id);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? CHAT_OK
                                               : chat__db_error(d, rc, "peers");
    sqlite3_reset(st);
out:
    DONE_DB(s, d);
    return rc;
}

static int conv_list(chat_store *s, const char *user_id,
                     const chat_conv_cursor *after, int limit, chat_conv *out,
                     int *n)
{
    static const char q_first[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM members m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.user_id = ?1"
        " ORDER BY c.last_activity_at DESC, c.id DESC LIMIT ?2";
    static const char q_after[] =
        "SELECT " CONV_COLS ", m.role, m.read_seq FROM members m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.user_id = ?1 AND (c.last_activity_at, c.id) < (?3, ?4)"
        " ORDER BY c.last_activity_at DESC, c.id DESC LIMIT ?2";
    sqlite3_stmt *st;
    int rc;

    *n = 0;
    WITH_DB(s, d);
    if (!(st = chat__db_stmt(d, after ? q_after : q_first))) {
        rc = CHAT_EIO;
        goto out;
    }
    chat__bind_text(st, 1, user_id);
    chat__bind_int(st, 2, limit);
    if (after) {
        chat__bind_int(st, 3, after->activity_at);
        chat__bind_text(st, 4, after->id);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < limit) {
        chat_conv *c = &out[(*n)++];
        read_conv(st, c);
        c->role = sqlite3_column_int(st, 12);
        c->read_seq = sqlite3_column_int64(st, 13);
    }
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW
             ? CHAT_OK
             : chat__db_error(d, rc, "conversation list");
    sqlite3_reset(st);
out:
    DONE_DB(s, d);
    return rc;
}

static int member_add(chat_store *s, const char *conv_id, const char *user_id,
                      int role)
{
    static const char q_bump[] = "UPDATE conversations SET member_count ="
                                 " member_count + 1 WHERE id = ?1";
    char lu[CHAT_ID_LEN + 1];
    chat_conv c;
    sqlite3_stmt *st;
    int rc;

    chat__ascii_lower(lu, user_id, sizeof lu);
    WITH_DB(s, d);
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    rc = conv_load(d, conv_id, lu, &c);
    if (rc == CHAT_OK) {
        rc = chat__error(CHAT_ECONFLICT, "already a member");
        goto rollback;
    }
    if (rc != CHAT_EPERM) /* EPERM = exists, and not a member yet */
        goto rollback;
    if (user_exists(d, lu) != 1) {
        rc = chat__error(CHAT_ENOTFOUND, "no such user");
        goto rollback;
    }
    if (c.member_count >= CHAT_GROUP_MAX_MEMBERS) {
        rc = chat__error(CHAT_ELIMIT, "a group has at most %d members",
                         CHAT_GROUP_MAX_MEMBERS);
        goto rollback;
    }
    if ((rc = insert_member(d, conv_id, lu, role, chat_time_now_ms())))
        goto rollback;
    if (!(st = chat__db_stmt(d, q_bump))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    chat__bind_text(st, 1, conv_id);
    if ((rc = step_done(d, st, "member count")) != CHAT_OK ||
        (rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto rollback;
    goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int member_remove(chat_store *s, const char *conv_id,
                         const char *user_id)
{
    static const char q_del[] =
        "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2"
        " RETURNING role";
    static const char q_dec[] = "UPDATE conversations SET member_count ="
                                " member_count - 1 WHERE id = ?1";
    /* the oldest admin, else the oldest member, becomes owner */
    static const char q_heir[] =
        "UPDATE members SET role = 2 WHERE conversation_id = ?1 AND"
        " user_id = (SELECT user_id FROM members WHERE conversation_id = ?1"
        " ORDER BY role DESC, joined_at, user_id LIMIT 1)";
    char lu[CHAT_ID_LEN + 1];
    sqlite3_stmt *st;
    int rc, role;

    chat__ascii_lower(lu, user_id, sizeof lu);
    WITH_DB(s, d);
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        goto out;
    if (!(st = chat__db_stmt(d, q_del))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    chat__bind_text(st, 1, conv_id);
    chat__bind_text(st, 2, lu);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? chat__error(CHAT_ENOTFOUND, "not a member")
                               : chat__db_error(d, rc, "remove member");
        sqlite3_reset(st);
        goto rollback;
    }
    role = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    if (!(st = chat__db_stmt(d, q_dec))) {
        rc = CHAT_EIO;
        goto rollback;
    }
    chat__bind_text(st, 1, conv_id);
    if ((rc = step_done(d, st, "member count")) != CHAT_OK)
        goto rollback;
    if (role == CHAT_ROLE_OWNER) {
        if (!(st = chat__db_stmt(d, q_heir))) {
            rc = CHAT_EIO;
            goto rollback;
        }
        chat__bind_text(st, 1, conv_id);
        if ((rc = step_done(d, st, "owner hand-over")) != CHAT_OK)
            goto rollback;
    }
    if ((rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto rollback;
    goto out;
rollback:
    chat__db_exec(d, "ROLLBACK");
out:
    DONE_DB(s, d);
    return rc;
}

static int read_set(chat_store *s, const char *conv_id, const char *user_id,
                    int64_t seq, int64_t *result)
{
    /* forward only, and never past the conversation's last message */
    static const char q[] =
        "UPDATE members SET read_seq = MAX(read_seq, MIN(?3,"
        " (SELECT last_seq FROM conversations WHERE id = ?1)))"
        " WHERE conversation_id = ?1 AND user_id = ?2 RETURNING read_seq";
    char lu[CHAT_ID_LEN + 1];
    sqlite3_stmt *st;
    int rc;

    chat__ascii_lower(lu, user_id, sizeof lu);
    WITH_DB(s, d);
    if (!(st = chat__db_stmt(d, q))) {
        rc = CHAT_EIO;
        goto out;
    }
    chat__bind_text(st, 1, conv_id);
    chat__bind_text(st, 2, lu);
    chat__bind_int(st, 3, seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (result)
            *result = sqlite3_column_int64(st, 0);
        rc = CHAT_OK;
    } else if (rc == SQLITE_DONE) {
        rc = chat__error(CHAT_EPERM, "not a member");
    } else {
        rc = chat__db_error(d, rc, "read marker");
    }
    sqlite3_reset(st);
out:
    DONE_DB(s, d);
    return rc;
}

static int conv_touch(chat_store *s, const chat_message *m)
{
    int rc;

    WITH_DB(s, d);
    rc = chat__db_exec(d, "BEGIN IMMEDIATE");
    if (rc == CHAT_OK) {
        rc = chat__sqlite_touch(d, m);
        if (rc == CHAT_OK)
            rc = chat__db_exec(d, "COMMIT");
        if (rc != CHAT_OK)
            chat__db_exec(d, "ROLLBACK");
    }
    DONE_DB(s, d);
    return rc;
}

static void store_free(chat_store *s)
{
    chat__dbpool_close(POOL(s));
    chat__free(s);
}

static const chat_store_ops g_ops = {
    "sqlite",      store_free,      user_create,
    user_get,      user_find_login, user_search,
    token_insert,  token_rotate,    token_revoke_family,
    conv_dm,       conv_group,      conv_get,
    conv_members,  conv_list,       member_add,
    member_remove, read_set,        conv_touch,
    peers,
};

int chat_store_sqlite_open(chat_store **out, const char *path,
                           const chat_sqlite_opts *opts)
{
    chat_sqlite_opts o;
    sqlite_store *s;
    chat__db first;
    int rc;

    CHAT_ASSERT_ARG(out && path);
    chat__sqlite_opts_resolve(opts, &o);
    /* one connection migrates before the pool opens */
    if ((rc = chat__db_open(&first, path, &o, 1)) != CHAT_OK)
        return rc;
    chat__db_close(&first);
    s = chat__calloc(1, sizeof *s);
    if (s == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    s->base.ops = &g_ops;
    if ((rc = chat__dbpool_open(&s->pool, path, &o, o.readers)) != CHAT_OK) {
        chat__free(s);
        return rc;
    }
    *out = &s->base;
    return CHAT_OK;
}
