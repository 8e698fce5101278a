/*
 * The client cache on SQLite: schema and migrations, and one function per
 * question the sync engine or the public API asks. Every query that runs
 * at start or per screen goes through an index: the conversation list
 * is one index scan plus one lookup per conversation, a history page is a
 * range of the (conversation_id, seq) key, so opening a cache of millions
 * of messages costs what the screen shows, not what the file holds.
 */
#include "client/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chat/core.h>

#define STMT_CACHE 48

struct chat__cache {
    sqlite3 *db;
    size_t stmt_max; /* STMT_CACHE, lower in tests */
    /* Prepared statements keyed by the address of their SQL literal: every
     * query here is a constant, so the key is exact and lookup is a scan
     * of a few dozen pointers (cheaper than SQLite's parser by far). */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } stmts[STMT_CACHE];
};

/* Versioned migrations: PRAGMA user_version is the number applied. */
static const char *const migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE users(id TEXT PRIMARY KEY, username TEXT NOT NULL,"
    "  email TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE TABLE conversations(id TEXT PRIMARY KEY, kind INTEGER NOT NULL,"
    "  title TEXT NOT NULL DEFAULT '', role INTEGER NOT NULL DEFAULT 0,"
    "  member_count INTEGER NOT NULL DEFAULT 0,"
    "  last_activity INTEGER NOT NULL DEFAULT 0,"
    "  base_seq INTEGER NOT NULL DEFAULT 0,"
    "  synced_seq INTEGER NOT NULL DEFAULT 0,"
    "  delivered_seq INTEGER NOT NULL DEFAULT 0,"
    "  server_seq INTEGER NOT NULL DEFAULT 0,"
    "  read_seq INTEGER NOT NULL DEFAULT 0,"
    "  left INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE INDEX conversations_activity ON conversations(left,"
    "  last_activity DESC);"
    "CREATE TABLE members(conversation_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL, role INTEGER NOT NULL DEFAULT 0,"
    "  read_seq INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(conversation_id, user_id)) WITHOUT ROWID;"
    "CREATE TABLE messages(id INTEGER PRIMARY KEY,"
    "  conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  message_id TEXT NOT NULL, sender_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, text TEXT NOT NULL,"
    "  has_more INTEGER NOT NULL, client_msg_id TEXT NOT NULL DEFAULT '',"
    "  UNIQUE(conversation_id, seq));"
    "CREATE INDEX messages_by_id ON messages(message_id);"
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages',"
    "  content_rowid='id');"
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
    "  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, text)"
    "  VALUES ('delete', old.id, old.text); END;"
    "CREATE TRIGGER messages_au AFTER UPDATE OF text ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, text)"
    "  VALUES ('delete', old.id, old.text);"
    "  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TABLE outbox(id INTEGER PRIMARY KEY,"
    "  client_msg_id TEXT NOT NULL UNIQUE, conversation_id TEXT NOT NULL,"
    "  content TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 1, error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX outbox_conversation ON outbox(conversation_id, state, id);"
    "CREATE INDEX outbox_pending ON outbox(state, conversation_id, id);",
    /* 2: your read marker still to be told to the server (0: none), so a
     * chat_client_mark_read() made offline survives until it lands */
    "ALTER TABLE conversations ADD COLUMN read_push INTEGER NOT NULL "
    "  DEFAULT 0;"
    "CREATE INDEX conversations_read_push ON conversations(read_push)"
    "  WHERE read_push>0;",
};

static int db_error(chat__cache *c, const char *what)
{
    return chat__error(CHAT_EIO, "cache: %s: %s", what, sqlite3_errmsg(c->db));
}

static int prepare(chat__cache *c, const char *sql, sqlite3_stmt **st)
{
    size_t i;
    for (i = 0; i < c->stmt_max && c->stmts[i].sql; i++)
        if (c->stmts[i].sql == sql) {
            *st = c->stmts[i].st;
            return CHAT_OK;
        }
    if (sqlite3_prepare_v3(c->db, sql, -1,
                           i < c->stmt_max ? SQLITE_PREPARE_PERSISTENT : 0, st,
                           NULL) != SQLITE_OK)
        return db_error(c, "prepare");
    if (i < c->stmt_max) {
        c->stmts[i].sql = sql;
        c->stmts[i].st = *st;
    }
    return CHAT_OK;
}

/* Done with a statement: cached ones are reset for the next call, the
 * rare uncached one (cache full) is finalized. */
static void release(chat__cache *c, sqlite3_stmt *st)
{
    for (size_t i = 0; i < STMT_CACHE && c->stmts[i].sql; i++)
        if (c->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

void chat__cache_stmt_limit(chat__cache *c, size_t n)
{
    c->stmt_max = n < STMT_CACHE ? n : STMT_CACHE;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

static int exec(chat__cache *c, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        int rc = chat__error(CHAT_EIO, "cache: %s", err ? err : "exec");
        sqlite3_free(err);
        return rc;
    }
    return CHAT_OK;
}

static int migrate(chat__cache *c)
{
    sqlite3_stmt *st = NULL;
    int version = 0, rc;
    if ((rc = prepare(c, "PRAGMA user_version", &st)) != CHAT_OK)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    release(c, st);
    if (version > (int)CHAT__ARRAY_LEN(migrations))
        return chat__error(CHAT_EIO,
                           "cache: schema version %d is newer than "
                           "this libchat (%d)",
                           version, (int)CHAT__ARRAY_LEN(migrations));
    for (int v = version; v < (int)CHAT__ARRAY_LEN(migrations); v++) {
        char pragma[48];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", v + 1);
        if ((rc = exec(c, "BEGIN IMMEDIATE")) != CHAT_OK)
            return rc;
        if ((rc = exec(c, migrations[v])) != CHAT_OK ||
            (rc = exec(c, pragma)) != CHAT_OK) {
            exec(c, "ROLLBACK");
            return rc;
        }
        if ((rc = exec(c, "COMMIT")) != CHAT_OK)
            return rc;
    }
    return CHAT_OK;
}

int chat__cache_open(chat__cache **out, const char *path)
{
    chat__cache *c = chat__calloc(1, sizeof *c);
    int rc;
    if (!c)
        return CHAT_ENOMEM;
    c->stmt_max = STMT_CACHE;
    if (path) {
        /* Tokens live here: create the file owner-only before SQLite does
         * (its journal and WAL files copy the main file's mode). */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = chat__error(CHAT_EIO, "cache: %s: %s", path, strerror(errno));
            goto fail;
        }
        fchmod(fd, 0600);
        close(fd);
    }
    if (sqlite3_open_v2(path ? path : ":memory:", &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = chat__error(CHAT_EIO, "cache: open %s: %s", path ? path : "",
                         c->db ? sqlite3_errmsg(c->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 5000);
    /* WAL + synchronous=NORMAL: a crash of the process never loses a
     * committed transaction (only a power loss may drop the last ones,
     * and the outbox then resends under the same ids). */
    if ((rc = exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                      "PRAGMA foreign_keys=OFF")) != CHAT_OK ||
        (rc = migrate(c)) != CHAT_OK)
        goto fail;
    *out = c;
    return CHAT_OK;
fail:
    chat__cache_close(c);
    return rc;
}

void chat__cache_close(chat__cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < STMT_CACHE && c->stmts[i].sql; i++)
        sqlite3_finalize(c->stmts[i].st);
    sqlite3_close_v2(c->db);
    chat__free(c);
}

sqlite3 *chat__cache_db(chat__cache *c)
{
    return c->db;
}

int chat__cache_begin(chat__cache *c)
{
    return exec(c, "BEGIN IMMEDIATE");
}
int chat__cache_commit(chat__cache *c)
{
    return exec(c, "COMMIT");
}
void chat__cache_rollback(chat__cache *c)
{
    if (!sqlite3_get_autocommit(c->db))
        exec(c, "ROLLBACK");
}

/* Run a statement that returns no rows; finalizes it. */
static int step_done(chat__cache *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? CHAT_OK : db_error(c, "step");
    release(c, st);
    return rc;
}

int chat__cache_meta_get(chat__cache *c, const char *key, char **val)
{
    sqlite3_stmt *st;
    int rc = prepare(c, "SELECT value FROM meta WHERE key=?", &st);
    *val = NULL;
    if (rc)
        return rc;
    bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *val = chat__strdup((const char *)sqlite3_column_text(st, 0));
        if (!*val)
            rc = CHAT_ENOMEM;
    }
    release(c, st);
    return rc;
}

int chat__cache_meta_set(chat__cache *c, const char *key, const char *val)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     val ? "INSERT INTO meta(key,value) VALUES(?,?) ON "
                           "CONFLICT(key) DO UPDATE SET value=excluded.value"
                         : "DELETE FROM meta WHERE key=?",
                     &st);
    if (rc)
        return rc;
    bind_text(st, 1, key);
    if (val)
        bind_text(st, 2, val);
    return step_done(c, st);
}

int chat__cache_wipe(chat__cache *c)
{
    return exec(c, "DELETE FROM meta; DELETE FROM users;"
                   "DELETE FROM conversations; DELETE FROM members;"
                   "DELETE FROM messages; DELETE FROM outbox;");
}

int chat__cache_user_put(chat__cache *c, const char *id, const char *username,
                         const char *email)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "INSERT INTO users(id,username,email) VALUES(?,?,?) "
                     "ON CONFLICT(id) DO UPDATE SET username=excluded.username,"
                     " email=CASE WHEN excluded.email='' THEN users.email "
                     "ELSE excluded.email END",
                     &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    bind_text(st, 2, username);
    bind_text(st, 3, email);
    return step_done(c, st);
}

int chat__cache_user_get(chat__cache *c, const char *id, chat_client_user *out)
{
    sqlite3_stmt *st;
    int rc =
        prepare(c, "SELECT id, username, email FROM users WHERE id=?", &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    memset(out, 0, sizeof *out);
    if (sqlite3_step(st) == SQLITE_ROW) {
        chat__strlcpy(out->id, (const char *)sqlite3_column_text(st, 0),
                      sizeof out->id);
        chat__strlcpy(out->username, (const char *)sqlite3_column_text(st, 1),
                      sizeof out->username);
        chat__strlcpy(out->email, (const char *)sqlite3_column_text(st, 2),
                      sizeof out->email);
    } else {
        rc = chat__error(CHAT_ENOTFOUND, "user not in the cache");
    }
    release(c, st);
    return rc;
}

/* ---- JSON field helpers --------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jint(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static int64_t jtime(const cJSON *o, const char *key)
{
    int64_t ms = 0;
    const char *s = jstr(o, key);
    if (s && chat_time_parse(s, &ms) != CHAT_OK)
        ms = 0;
    return ms;
}

static int role_of(const char *s)
{
    if (s && strcmp(s, "owner") == 0)
        return CHAT_ROLE_OWNER;
    if (s && strcmp(s, "admin") == 0)
        return CHAT_ROLE_ADMIN;
    return CHAT_ROLE_MEMBER;
}

/* ---- conversations ---------------------------------------------------- */

static int put_members(chat__cache *c, const char *conv, const cJSON *members)
{
    sqlite3_stmt *st;
    const cJSON *m;
    int rc = prepare(c, "DELETE FROM members WHERE conversation_id=?", &st);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    if ((rc = step_done(c, st)) != CHAT_OK)
        return rc;
    cJSON_ArrayForEach(m, members)
    {
        const char *uid = jstr(m, "user_id"), *name = jstr(m, "username");
        if (!uid)
            continue;
        if (name && (rc = chat__cache_user_put(c, uid, name, NULL)) != CHAT_OK)
            return rc;
        if ((rc = prepare(c,
                          "INSERT INTO members(conversation_id,user_id,role,"
                          "read_seq) VALUES(?,?,?,?)",
                          &st)) != CHAT_OK)
            return rc;
        bind_text(st, 1, conv);
        bind_text(st, 2, uid);
        sqlite3_bind_int(st, 3, role_of(jstr(m, "role")));
        sqlite3_bind_int64(st, 4, jint(m, "read_seq"));
        if ((rc = step_done(c, st)) != CHAT_OK)
            return rc;
    }
    return CHAT_OK;
}

int chat__cache_conv_put(chat__cache *c, const cJSON *conv, int64_t depth,
                         int *is_new)
{
    const char *id = jstr(conv, "id"), *kind = jstr(conv, "kind");
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(conv, "members");
    int64_t last = jint(conv, "last_seq"), base = 0;
    chat__conv_pos pos;
    sqlite3_stmt *st;
    int rc;
    if (!id || !chat_uuid_valid(id))
        return chat__error(CHAT_EPROTO, "conversation without an id");
    rc = chat__cache_conv_pos(c, id, &pos);
    if (rc != CHAT_OK && rc != CHAT_ENOTFOUND)
        return rc;
    *is_new = rc == CHAT_ENOTFOUND;
    if (*is_new && depth < 0)
        base = last; /* CHAT_CLIENT_HISTORY_NONE: from now on */
    else if (*is_new && depth > 0 && last > depth)
        base = last - depth;
    rc = prepare(
        c,
        "INSERT INTO conversations(id,kind,title,role,member_count,"
        "last_activity,base_seq,synced_seq,delivered_seq,server_seq,read_seq)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?7,?7,?8,?9) ON CONFLICT(id) DO UPDATE "
        "SET kind=excluded.kind, title=CASE WHEN excluded.title='' AND "
        "conversations.kind=1 THEN conversations.title ELSE excluded.title "
        "END, role=excluded.role, member_count=excluded.member_count,"
        " last_activity=max(last_activity, excluded.last_activity),"
        " server_seq=max(server_seq, excluded.server_seq),"
        " read_seq=max(conversations.read_seq, excluded.read_seq),"
        " read_push=CASE WHEN conversations.read_push<=excluded.read_seq"
        " THEN 0 ELSE conversations.read_push END, left=0",
        &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    sqlite3_bind_int(st, 2,
                     kind && strcmp(kind, "group") == 0 ? CHAT_CONV_GROUP
                                                        : CHAT_CONV_DM);
    bind_text(st, 3, jstr(conv, "title"));
    sqlite3_bind_int(st, 4, role_of(jstr(conv, "role")));
    sqlite3_bind_int64(st, 5, jint(conv, "member_count"));
    sqlite3_bind_int64(st, 6, jtime(conv, "last_activity_at"));
    sqlite3_bind_int64(st, 7, base);
    sqlite3_bind_int64(st, 8, last);
    sqlite3_bind_int64(st, 9, jint(conv, "read_seq"));
    if ((rc = step_done(c, st)) != CHAT_OK)
        return rc;
    if (cJSON_IsArray(members))
        rc = put_members(c, id, members);
    return rc;
}

int chat__cache_conv_pos(chat__cache *c, const char *id, chat__conv_pos *pos)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT base_seq,synced_seq,delivered_seq,server_seq,"
                     "read_seq,left,read_push FROM conversations WHERE id=?",
                     &st);
    memset(pos, 0, sizeof *pos);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        pos->base_seq = sqlite3_column_int64(st, 0);
        pos->synced_seq = sqlite3_column_int64(st, 1);
        pos->delivered_seq = sqlite3_column_int64(st, 2);
        pos->server_seq = sqlite3_column_int64(st, 3);
        pos->read_seq = sqlite3_column_int64(st, 4);
        pos->left = sqlite3_column_int(st, 5);
        pos->read_push = sqlite3_column_int64(st, 6);
        break;
    case SQLITE_DONE:
        rc = CHAT_ENOTFOUND;
        break;
    default:
        rc = db_error(c, "conversation");
    }
    release(c, st);
    return rc;
}

static int conv_update(chat__cache *c, const char *sql, const char *id,
                       int64_t v)
{
    sqlite3_stmt *st;
    int rc = prepare(c, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, v);
    bind_text(st, 2, id);
    return step_done(c, st);
}

int chat__cache_conv_server_seq(chat__cache *c, const char *id, int64_t seq)
{
    return conv_update(c,
                       "UPDATE conversations SET server_seq=max(server_seq,?1)"
                       " WHERE id=?2",
                       id, seq);
}

int chat__cache_conv_read(chat__cache *c, const char *id, int64_t seq)
{
    /* Like the server: forward only, and never past the newest message. */
    return conv_update(c,
                       "UPDATE conversations SET read_seq=max(read_seq,"
                       "min(?1, max(server_seq, synced_seq))) WHERE id=?2",
                       id, seq);
}

int chat__cache_read_mark(chat__cache *c, const char *id, int64_t seq)
{
    /* One statement, so the marker and the push to make move together. */
    return conv_update(c,
                       "UPDATE conversations SET read_seq=max(read_seq,"
                       "min(?1, max(server_seq, synced_seq))), read_push="
                       "max(read_push, min(?1, max(server_seq, synced_seq)))"
                       " WHERE id=?2",
                       id, seq);
}

int chat__cache_read_acked(chat__cache *c, const char *id, int64_t seq)
{
    return conv_update(c,
                       "UPDATE conversations SET read_push=0 WHERE id=?2 AND "
                       "read_push>0 AND read_push<=?1",
                       id, seq);
}

int chat__cache_read_pushes(chat__cache *c, chat__read_push *items, size_t max,
                            size_t *n)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT id, read_push FROM conversations WHERE "
                     "read_push>0 AND left=0 LIMIT ?",
                     &st);
    *n = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)max);
    while (*n < max && sqlite3_step(st) == SQLITE_ROW) {
        chat__strlcpy(items[*n].conversation_id,
                      (const char *)sqlite3_column_text(st, 0),
                      sizeof items[*n].conversation_id);
        items[*n].seq = sqlite3_column_int64(st, 1);
        (*n)++;
    }
    release(c, st);
    return CHAT_OK;
}

int chat__cache_conv_left(chat__cache *c, const char *id)
{
    return conv_update(c, "UPDATE conversations SET left=?1 WHERE id=?2", id,
                       1);
}

int chat__cache_member_read(chat__cache *c, const char *conv, const char *user,
                            int64_t seq)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "UPDATE members SET read_seq=max(read_seq,?1) WHERE "
                     "conversation_id=?2 AND user_id=?3",
                     &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, conv);
    bind_text(st, 3, user);
    return step_done(c, st);
}

int chat__cache_conv_ids(chat__cache *c, char ***ids, size_t *n)
{
    sqlite3_stmt *st;
    char **v = NULL;
    size_t count = 0, cap = 0;
    int rc = prepare(c, "SELECT id FROM conversations WHERE left=0", &st);
    *ids = NULL;
    *n = 0;
    if (rc)
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = chat__realloc(v, ncap * sizeof *nv);
            if (!nv) {
                rc = CHAT_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if (!(v[count] =
                  chat__strdup((const char *)sqlite3_column_text(st, 0)))) {
            rc = CHAT_ENOMEM;
            break;
        }
        count++;
    }
    release(c, st);
    if (rc) {
        for (size_t i = 0; i < count; i++)
            chat__free(v[i]);
        chat__free(v);
        return rc;
    }
    *ids = v;
    *n = count;
    return CHAT_OK;
}

/* ---- messages ---------------------------------------------------------- */

int chat__cache_msg_put(chat__cache *c, const cJSON *msg, const char *full_text)
{
    const char *conv = jstr(msg, "conversation_id"),
               *mid = jstr(msg, "message_id");
    const char *sender = jstr(msg, "sender_id"), *text = full_text;
    const char *cmid = jstr(msg, "client_msg_id");
    int64_t seq = jint(msg, "seq");
    int has_more = 0;
    sqlite3_stmt *st;
    int rc;
    if (!conv || !mid || !sender || seq <= 0)
        return chat__error(CHAT_EPROTO, "message without conversation_id, "
                                        "message_id, sender_id or seq");
    if (!text)
        text = jstr(msg, "content");
    if (!text) {
        text = jstr(msg, "preview");
        has_more =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "has_more"));
    }
    if (!text)
        return chat__error(CHAT_EPROTO, "message without text");
    /* A known message only ever gains its full text. */
    rc = prepare(c,
                 "INSERT INTO messages(conversation_id,seq,message_id,"
                 "sender_id,created_at,text,has_more,client_msg_id) "
                 "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(conversation_id,seq) DO "
                 "UPDATE SET text=excluded.text, has_more=0 WHERE "
                 "messages.has_more=1 AND excluded.has_more=0",
                 &st);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    sqlite3_bind_int64(st, 2, seq);
    bind_text(st, 3, mid);
    bind_text(st, 4, sender);
    sqlite3_bind_int64(st, 5, jtime(msg, "created_at"));
    bind_text(st, 6, text);
    sqlite3_bind_int(st, 7, has_more);
    bind_text(st, 8, cmid);
    if ((rc = step_done(c, st)) != CHAT_OK)
        return rc;
    /* Our own message, however it came (live copy, catch-up or the send's
     * answer): its outbox row goes in the same transaction, so the cache
     * never shows a message both stored and pending. */
    if (cmid && cmid[0]) {
        if ((rc = prepare(c,
                          "DELETE FROM outbox WHERE client_msg_id=?1 AND "
                          "conversation_id=?2 AND ?3=(SELECT value FROM meta "
                          "WHERE key='user_id')",
                          &st)) != CHAT_OK)
            return rc;
        bind_text(st, 1, cmid);
        bind_text(st, 2, conv);
        bind_text(st, 3, sender);
        if ((rc = step_done(c, st)) != CHAT_OK)
            return rc;
    }
    if ((rc = chat__cache_conv_server_seq(c, conv, seq)) != CHAT_OK)
        return rc;
    /* The server raises a sender's read marker to the message it stores
     * and tells no device, so do the same: the sender's member row, and
     * your own marker when it is yours, so that your messages never count
     * as unread on any of your devices. */
    if ((rc = chat__cache_member_read(c, conv, sender, seq)) != CHAT_OK)
        return rc;
    if ((rc = prepare(c,
                      "UPDATE conversations SET read_seq=max(read_seq,?1) "
                      "WHERE id=?2 AND ?3=(SELECT value FROM meta WHERE "
                      "key='user_id')",
                      &st)) != CHAT_OK)
        return rc;
    sqlite3_bind_int64(st, 1, seq);
    bind_text(st, 2, conv);
    bind_text(st, 3, sender);
    return step_done(c, st);
}

int chat__cache_advance(chat__cache *c, const char *conv, int64_t *synced)
{
    chat__conv_pos pos;
    sqlite3_stmt *st;
    int rc = chat__cache_conv_pos(c, conv, &pos), more = 1;
    int64_t s;
    if (rc)
        return rc;
    s = pos.synced_seq;
    /* Walk the key forward in bounded pages while seqs stay contiguous. */
    while (more) {
        more = 0;
        if ((rc = prepare(c,
                          "SELECT seq FROM messages WHERE conversation_id=? "
                          "AND seq>? ORDER BY seq LIMIT 512",
                          &st)) != CHAT_OK)
            return rc;
        bind_text(st, 1, conv);
        sqlite3_bind_int64(st, 2, s);
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (sqlite3_column_int64(st, 0) != s + 1)
                break;
            s++;
            n++;
        }
        release(c, st);
        more = n == 512;
    }
    if (s != pos.synced_seq &&
        (rc = conv_update(c,
                          "UPDATE conversations SET synced_seq=?1 WHERE id=?2",
                          conv, s)) != CHAT_OK)
        return rc;
    *synced = s;
    return CHAT_OK;
}

int chat__cache_delivered(chat__cache *c, const char *conv, int64_t seq)
{
    return conv_update(c,
                       "UPDATE conversations SET delivered_seq="
                       "max(delivered_seq,?1) WHERE id=?2",
                       conv, seq);
}

#define MSG_COLUMNS                                                            \
    "m.conversation_id, m.message_id, m.sender_id, m.client_msg_id, m.seq,"    \
    " m.created_at, m.text, m.has_more"

/* Append the rows of st (MSG_COLUMNS) to out; texts are copied into one
 * allocation per message right after its struct array grows. */
static int collect(chat__cache *c, sqlite3_stmt *st,
                   chat_client_message_list *out)
{
    int rc = CHAT_OK, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        chat_client_message *items =
            chat__realloc(out->items, (out->count + 1) * sizeof *items);
        chat_client_message *m;
        const char *text = (const char *)sqlite3_column_text(st, 6);
        if (!items) {
            rc = CHAT_ENOMEM;
            break;
        }
        out->items = items;
        m = &items[out->count];
        memset(m, 0, sizeof *m);
        chat__strlcpy(m->conversation_id,
                      (const char *)sqlite3_column_text(st, 0),
                      sizeof m->conversation_id);
        chat__strlcpy(m->message_id, (const char *)sqlite3_column_text(st, 1),
                      sizeof m->message_id);
        chat__strlcpy(m->sender_id, (const char *)sqlite3_column_text(st, 2),
                      sizeof m->sender_id);
        chat__strlcpy(m->client_msg_id,
                      (const char *)sqlite3_column_text(st, 3),
                      sizeof m->client_msg_id);
        m->seq = sqlite3_column_int64(st, 4);
        m->created_at_ms = sqlite3_column_int64(st, 5);
        m->has_more = sqlite3_column_int(st, 7);
        m->state = sqlite3_column_int(st, 8);
        if (!(m->text = chat__strdup(text ? text : ""))) {
            rc = CHAT_ENOMEM;
            break;
        }
        out->count++;
    }
    if (rc == CHAT_OK && step != SQLITE_DONE)
        rc = db_error(c, "read");
    release(c, st);
    return rc;
}

void chat_client_message_list_free(chat_client_message_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        chat__free((void *)list->items[i].text);
    chat__free(list->items);
    list->items = NULL;
    list->count = 0;
}

int chat__cache_undelivered(chat__cache *c, const char *conv, int limit,
                            chat_client_message_list *out)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT " MSG_COLUMNS ", 0 FROM messages m JOIN "
                     "conversations v ON v.id=m.conversation_id WHERE "
                     "m.conversation_id=?1 AND m.seq>v.delivered_seq AND "
                     "m.seq<=v.synced_seq ORDER BY m.seq LIMIT ?2",
                     &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    sqlite3_bind_int(st, 2, limit);
    return collect(c, st, out);
}

int chat__cache_msg_get(chat__cache *c, const char *message_id,
                        chat_client_message_list *out)
{
    sqlite3_stmt *st;
    int rc = prepare(
        c, "SELECT " MSG_COLUMNS ", 0 FROM messages m WHERE m.message_id=?",
        &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    bind_text(st, 1, message_id);
    return collect(c, st, out);
}

int chat__cache_history(chat__cache *c, const char *conv, int64_t before_seq,
                        int limit, chat_client_message_list *out)
{
    sqlite3_stmt *st;
    int rc;
    memset(out, 0, sizeof *out);
    /* Newest `limit` below before_seq, then flipped to oldest first by the
     * outer query; the inner range scan is the only index work. */
    rc = prepare(c,
                 "SELECT * FROM (SELECT " MSG_COLUMNS
                 ", 0 FROM messages m WHERE m.conversation_id=?1 AND m.seq<?2"
                 " ORDER BY m.seq DESC LIMIT ?3) ORDER BY 5",
                 &st);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    sqlite3_bind_int64(st, 2, before_seq > 0 ? before_seq : INT64_MAX);
    sqlite3_bind_int(st, 3, limit);
    if ((rc = collect(c, st, out)) != CHAT_OK || before_seq > 0)
        return rc;
    /* The newest page ends with what is still on its way. */
    rc = prepare(c,
                 "SELECT conversation_id, '', ?2, client_msg_id, 0, "
                 "created_at, content, 0, state FROM outbox WHERE "
                 "conversation_id=?1 ORDER BY state, id",
                 &st);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    {
        char *me = NULL;
        chat__cache_meta_get(c, "user_id", &me);
        bind_text(st, 2, me);
        chat__free(me);
    }
    return collect(c, st, out);
}

int chat__cache_history_after(chat__cache *c, const char *conv,
                              int64_t after_seq, int limit,
                              chat_client_message_list *out)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT " MSG_COLUMNS ", 0 FROM messages m WHERE "
                     "m.conversation_id=?1 AND m.seq>?2 ORDER BY m.seq "
                     "LIMIT ?3",
                     &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    bind_text(st, 1, conv);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, limit);
    return collect(c, st, out);
}

int chat__cache_search(chat__cache *c, const char *query, const char *conv,
                       int limit, chat_client_message_list *out)
{
    sqlite3_stmt *st;
    int rc;
    memset(out, 0, sizeof *out);
    rc = prepare(c,
                 /* FTS5 walks its matches in rowid order for free, so
                  * the inner query stops after `limit` rows instead of
                  * sorting every match; rowids grow as messages are
                  * cached, and the outer query orders the page by time. */
                 "SELECT * FROM (SELECT " MSG_COLUMNS ", 0 FROM messages_fts "
                 "f JOIN messages m ON m.id=f.rowid WHERE messages_fts MATCH "
                 "?1 AND (?2='' OR m.conversation_id=?2) ORDER BY f.rowid "
                 "DESC LIMIT ?3) ORDER BY 6 DESC, 5 DESC",
                 &st);
    if (rc)
        return rc;
    bind_text(st, 1, query);
    bind_text(st, 2, conv);
    sqlite3_bind_int(st, 3, limit);
    /* The statement is fixed; a failing step can only be the query's
     * FTS5 syntax ("unterminated string", "syntax error near ..."). */
    if ((rc = collect(c, st, out)) == CHAT_EIO)
        rc = chat__error(CHAT_EINVAL, "search: %s", sqlite3_errmsg(c->db));
    return rc;
}

/* ---- conversations for the API ------------------------------------------ */

#define CONV_COLUMNS                                                           \
    "v.id, v.kind, v.role, CASE WHEN v.kind=1 THEN coalesce((SELECT "          \
    "u.username FROM members x JOIN users u ON u.id=x.user_id WHERE "          \
    "x.conversation_id=v.id AND x.user_id<>coalesce((SELECT value FROM meta "  \
    "WHERE key='user_id'),'') LIMIT 1), v.title) ELSE v.title END, "           \
    "max(v.server_seq, v.synced_seq), v.read_seq, v.last_activity, "           \
    "v.member_count"

static int conv_fill(chat__cache *c, sqlite3_stmt *st,
                     chat_client_conversation *v)
{
    const char *title = (const char *)sqlite3_column_text(st, 3);
    sqlite3_stmt *last;
    chat_client_message_list one = {0, NULL};
    int rc;
    memset(v, 0, sizeof *v);
    chat__strlcpy(v->id, (const char *)sqlite3_column_text(st, 0),
                  sizeof v->id);
    v->kind = sqlite3_column_int(st, 1);
    v->role = sqlite3_column_int(st, 2);
    v->last_seq = sqlite3_column_int64(st, 4);
    v->read_seq = sqlite3_column_int64(st, 5);
    v->unread = v->last_seq > v->read_seq ? v->last_seq - v->read_seq : 0;
    v->last_activity_ms = sqlite3_column_int64(st, 6);
    v->member_count = sqlite3_column_int(st, 7);
    if (!(v->title = chat__strdup(title ? title : "")))
        return CHAT_ENOMEM;
    rc = prepare(c,
                 "SELECT " MSG_COLUMNS ", 0 FROM messages m WHERE "
                 "m.conversation_id=? ORDER BY m.seq DESC LIMIT 1",
                 &last);
    if (rc)
        return rc;
    bind_text(last, 1, v->id);
    if ((rc = collect(c, last, &one)) != CHAT_OK)
        return rc;
    if (one.count == 1) {
        v->last_message = one.items[0];
        v->has_last_message = 1;
        chat__free(one.items);
    }
    return CHAT_OK;
}

static void conv_clear(chat_client_conversation *v)
{
    chat__free((void *)v->title);
    chat__free((void *)v->last_message.text);
    chat__free(v->members);
}

void chat_client_conversation_list_free(chat_client_conversation_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        conv_clear(&list->items[i]);
    chat__free(list->items);
    list->items = NULL;
    list->count = 0;
}

void chat_client_conversation_free(chat_client_conversation *conv)
{
    if (!conv)
        return;
    conv_clear(conv);
    chat__free(conv);
}

int chat__cache_conversations(chat__cache *c,
                              chat_client_conversation_list *out)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT " CONV_COLUMNS " FROM conversations v WHERE "
                     "v.left=0 ORDER BY v.last_activity DESC",
                     &st);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        chat_client_conversation *items =
            chat__realloc(out->items, (out->count + 1) * sizeof *items);
        if (!items) {
            rc = CHAT_ENOMEM;
            break;
        }
        out->items = items;
        rc = conv_fill(c, st, &items[out->count]);
        if (rc) {
            conv_clear(&items[out->count]);
            break;
        }
        out->count++;
    }
    release(c, st);
    if (rc)
        chat_client_conversation_list_free(out);
    return rc;
}

int chat__cache_conversation(chat__cache *c, const char *id,
                             chat_client_conversation **out)
{
    sqlite3_stmt *st, *ms = NULL;
    chat_client_conversation *v = chat__calloc(1, sizeof *v);
    int rc;
    if (!v)
        return CHAT_ENOMEM;
    if ((rc = prepare(c,
                      "SELECT " CONV_COLUMNS
                      " FROM conversations v WHERE v.id=? AND v.left=0",
                      &st)) != CHAT_OK)
        goto fail;
    bind_text(st, 1, id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        release(c, st);
        rc = chat__error(CHAT_ENOTFOUND, "no such conversation in the cache");
        goto fail;
    }
    rc = conv_fill(c, st, v);
    release(c, st);
    if (rc)
        goto fail;
    if ((rc = prepare(c,
                      "SELECT x.user_id, coalesce(u.username,''), x.role, "
                      "x.read_seq FROM members x LEFT JOIN users u ON "
                      "u.id=x.user_id WHERE x.conversation_id=? ORDER BY "
                      "x.role DESC, u.username",
                      &ms)) != CHAT_OK)
        goto fail;
    bind_text(ms, 1, id);
    while (sqlite3_step(ms) == SQLITE_ROW) {
        chat_client_member *m =
            chat__realloc(v->members, (v->member_count_cached + 1) * sizeof *m);
        if (!m) {
            rc = CHAT_ENOMEM;
            goto fail;
        }
        v->members = m;
        m = &m[v->member_count_cached++];
        memset(m, 0, sizeof *m);
        chat__strlcpy(m->user_id, (const char *)sqlite3_column_text(ms, 0),
                      sizeof m->user_id);
        chat__strlcpy(m->username, (const char *)sqlite3_column_text(ms, 1),
                      sizeof m->username);
        m->role = sqlite3_column_int(ms, 2);
        m->read_seq = sqlite3_column_int64(ms, 3);
    }
    release(c, ms);
    *out = v;
    return CHAT_OK;
fail:
    if (ms)
        release(c, ms);
    chat_client_conversation_free(v);
    return rc;
}

/* ---- outbox -------------------------------------------------------------- */

int chat__cache_outbox_add(chat__cache *c, const char *conv, const char *text,
                           const char *client_msg_id, int64_t now_ms)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "INSERT INTO outbox(client_msg_id,conversation_id,"
                     "content,created_at,state) VALUES(?,?,?,?,1)",
                     &st);
    if (rc)
        return rc;
    bind_text(st, 1, client_msg_id);
    bind_text(st, 2, conv);
    bind_text(st, 3, text);
    sqlite3_bind_int64(st, 4, now_ms);
    return step_done(c, st);
}

static int outbox_read(sqlite3_stmt *st, chat__outbox_item *it)
{
    memset(it, 0, sizeof *it);
    it->id = sqlite3_column_int64(st, 0);
    chat__strlcpy(it->client_msg_id, (const char *)sqlite3_column_text(st, 1),
                  sizeof it->client_msg_id);
    chat__strlcpy(it->conversation_id, (const char *)sqlite3_column_text(st, 2),
                  sizeof it->conversation_id);
    it->created_at_ms = sqlite3_column_int64(st, 4);
    it->state = sqlite3_column_int(st, 5);
    it->content = chat__strdup((const char *)sqlite3_column_text(st, 3));
    return it->content ? CHAT_OK : CHAT_ENOMEM;
}

int chat__cache_outbox_next(chat__cache *c, chat__outbox_item *items,
                            size_t max, size_t *n)
{
    sqlite3_stmt *st;
    /* The oldest pending row of each conversation: a skip-scan over the
     * (state, conversation_id, id) index, one seek per conversation, so a
     * long offline queue costs nothing per send. */
    int rc = prepare(c,
                     "WITH RECURSIVE convs(cid) AS (SELECT min(conversation_id)"
                     " FROM outbox WHERE state=1 UNION ALL SELECT (SELECT "
                     "min(conversation_id) FROM outbox WHERE state=1 AND "
                     "conversation_id>cid) FROM convs WHERE cid IS NOT NULL) "
                     "SELECT o.id, o.client_msg_id, o.conversation_id, "
                     "o.content, o.created_at, o.state FROM convs JOIN outbox "
                     "o ON o.id=(SELECT min(id) FROM outbox WHERE state=1 AND "
                     "conversation_id=convs.cid) LIMIT ?",
                     &st);
    *n = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)max);
    while (*n < max && sqlite3_step(st) == SQLITE_ROW) {
        if ((rc = outbox_read(st, &items[*n])) != CHAT_OK)
            break;
        (*n)++;
    }
    release(c, st);
    return rc;
}

int chat__cache_outbox_get(chat__cache *c, const char *client_msg_id,
                           chat__outbox_item *item)
{
    sqlite3_stmt *st;
    int rc = prepare(c,
                     "SELECT id, client_msg_id, conversation_id, content, "
                     "created_at, state FROM outbox WHERE client_msg_id=?",
                     &st);
    if (rc)
        return rc;
    bind_text(st, 1, client_msg_id);
    rc =
        sqlite3_step(st) == SQLITE_ROW ? outbox_read(st, item) : CHAT_ENOTFOUND;
    release(c, st);
    return rc;
}

int chat__cache_outbox_done(chat__cache *c, const char *client_msg_id)
{
    sqlite3_stmt *st;
    int rc = prepare(c, "DELETE FROM outbox WHERE client_msg_id=?", &st);
    if (rc)
        return rc;
    bind_text(st, 1, client_msg_id);
    rc = step_done(c, st);
    if (rc == CHAT_OK && sqlite3_changes(c->db) == 0)
        rc = CHAT_ENOTFOUND;
    return rc;
}

int chat__cache_outbox_fail(chat__cache *c, const char *client_msg_id,
                            const char *error)
{
    sqlite3_stmt *st;
    int rc = prepare(
        c, "UPDATE outbox SET state=2, error=? WHERE client_msg_id=?", &st);
    if (rc)
        return rc;
    bind_text(st, 1, error);
    bind_text(st, 2, client_msg_id);
    return step_done(c, st);
}

void chat__outbox_item_clear(chat__outbox_item *it)
{
    chat__free(it->content);
    it->content = NULL;
}
