/* SQLite plumbing: pragmas, migrations, statement cache, pool. */
#include <stdio.h>
#include <string.h>

#include "store/sqlite_util.h"

/* Migrations, applied in order; version N = the first N entries ran.
 * Never edit a shipped entry: append a new one. */
static const char *const g_migrations[] = {
    /* 1: the chat schema */
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY,"
    "  email TEXT NOT NULL,"
    "  username TEXT NOT NULL,"
    "  password_hash TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX users_email ON users(email COLLATE NOCASE);"
    "CREATE UNIQUE INDEX users_username ON users(username COLLATE NOCASE);"
    "CREATE TABLE refresh_tokens ("
    "  hash BLOB PRIMARY KEY,"
    "  family_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  rotated_at INTEGER,"
    "  revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);"
    "CREATE TABLE conversations ("
    "  id TEXT PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  dm_key TEXT UNIQUE,"
    "  created_by TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  last_seq INTEGER NOT NULL DEFAULT 0,"
    "  last_activity_at INTEGER NOT NULL,"
    "  last_message_id TEXT NOT NULL DEFAULT '',"
    "  last_sender_id TEXT NOT NULL DEFAULT '',"
    "  last_preview TEXT NOT NULL DEFAULT '',"
    "  last_has_more INTEGER NOT NULL DEFAULT 0,"
    "  member_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE members ("
    "  conversation_id TEXT NOT NULL,"
    "  user_id TEXT NOT NULL,"
    "  role INTEGER NOT NULL,"
    "  joined_at INTEGER NOT NULL,"
    "  read_seq INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (conversation_id, user_id)) WITHOUT ROWID;"
    "CREATE INDEX members_user ON members(user_id);"
    "CREATE TABLE messages ("
    "  conversation_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  id TEXT NOT NULL UNIQUE,"
    "  sender_id TEXT NOT NULL,"
    "  client_msg_id TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  preview TEXT NOT NULL,"
    "  has_more INTEGER NOT NULL,"
    "  content_len INTEGER NOT NULL,"
    /* last, so pages of previews never read its overflow pages */
    "  content TEXT NOT NULL,"
    "  PRIMARY KEY (conversation_id, seq));"
    "CREATE UNIQUE INDEX messages_idem"
    "  ON messages(conversation_id, sender_id, client_msg_id);",
};

void chat__sqlite_opts_resolve(const chat_sqlite_opts *in,
                               chat_sqlite_opts *out)
{
    chat_sqlite_opts d = CHAT_SQLITE_OPTS_INIT;

    if (in)
        d = *in;
    if (d.readers <= 0)
        d.readers = 4;
    if (d.busy_timeout_ms <= 0)
        d.busy_timeout_ms = 5000;
    if (d.batch_max <= 0)
        d.batch_max = 512;
    *out = d;
}

int chat__db_error(chat__db *d, int src, const char *what)
{
    const char *msg = d && d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(src);

    switch (src & 0xff) {
    case SQLITE_CONSTRAINT:
        return chat__error(CHAT_ECONFLICT, "%s: %s", what, msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return chat__error(CHAT_EAGAIN, "%s: database busy", what);
    case SQLITE_NOMEM:
        return chat__error(CHAT_ENOMEM, "%s: out of memory", what);
    default:
        return chat__error(CHAT_EIO, "%s: %s", what, msg);
    }
}

int chat__db_exec(chat__db *d, const char *sql)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? CHAT_OK : chat__db_error(d, rc, sql);
}

static int migrate(chat__db *d)
{
    sqlite3_stmt *s;
    int version = 0, rc, i, n = (int)CHAT__ARRAY_LEN(g_migrations);
    char pragma[64];

    /* IMMEDIATE: two processes opening a new file migrate one at a time */
    if ((rc = chat__db_exec(d, "BEGIN IMMEDIATE")) != CHAT_OK)
        return rc;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &s, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    if (version > n) {
        chat__db_exec(d, "ROLLBACK");
        return chat__error(CHAT_EIO,
                           "database schema %d is newer than this build (%d)",
                           version, n);
    }
    for (i = version; i < n; i++) {
        if ((rc = chat__db_exec(d, g_migrations[i])) != CHAT_OK)
            goto fail;
    }
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", n);
    if ((rc = chat__db_exec(d, pragma)) != CHAT_OK ||
        (rc = chat__db_exec(d, "COMMIT")) != CHAT_OK)
        goto fail;
    if (version < n)
        CHAT_LOG(CHAT_LOG_INFO, "component=store event=migrated from=%d to=%d",
                 version, n);
    return CHAT_OK;
fail:
    chat__db_exec(d, "ROLLBACK");
    return rc;
}

int chat__db_open(chat__db *d, const char *path, const chat_sqlite_opts *o,
                  int do_migrate)
{
    char pragmas[256];
    int rc;

    memset(d, 0, sizeof *d);
    rc = sqlite3_open_v2(
        path, &d->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = chat__db_error(d, rc, "open");
        chat__db_close(d);
        return rc;
    }
    sqlite3_busy_timeout(d->db, o->busy_timeout_ms);
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
             "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
             o->sync_full ? "FULL" : "NORMAL");
    if ((rc = chat__db_exec(d, pragmas)) != CHAT_OK ||
        (do_migrate && (rc = migrate(d)) != CHAT_OK)) {
        chat__db_close(d);
        return rc;
    }
    return CHAT_OK;
}

void chat__db_close(chat__db *d)
{
    int i;

    for (i = 0; i < d->nstmt; i++)
        sqlite3_finalize(d->stmt[i]);
    d->nstmt = 0;
    if (d->db)
        sqlite3_close(d->db);
    d->db = NULL;
}

sqlite3_stmt *chat__db_stmt(chat__db *d, const char *sql)
{
    sqlite3_stmt *s;
    int i, rc;

    for (i = 0; i < d->nstmt; i++) {
        if (d->sql[i] == sql) {
            sqlite3_reset(d->stmt[i]);
            sqlite3_clear_bindings(d->stmt[i]);
            return d->stmt[i];
        }
    }
    rc = sqlite3_prepare_v3(
        d->db, sql, -1,
        d->nstmt < CHAT__STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0, &s, NULL);
    if (rc != SQLITE_OK) {
        chat__db_error(d, rc, "prepare");
        return NULL;
    }
    if (d->nstmt == CHAT__STMT_CACHE) {
        /* cache full (a bug: statements are a fixed set): replace one */
        sqlite3_finalize(d->stmt[0]);
        d->sql[0] = sql;
        d->stmt[0] = s;
        return s;
    }
    d->sql[d->nstmt] = sql;
    d->stmt[d->nstmt++] = s;
    return s;
}

int chat__dbpool_open(chat__dbpool *p, const char *path,
                      const chat_sqlite_opts *o, int n)
{
    int i, rc;

    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->all = chat__calloc((size_t)n, sizeof *p->all);
    if (p->all == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        if ((rc = chat__db_open(&p->all[i], path, o, 0)) != CHAT_OK) {
            chat__dbpool_close(p);
            return rc;
        }
        p->n++;
        p->all[i].next_free = p->free_list;
        p->free_list = &p->all[i];
    }
    return CHAT_OK;
}

void chat__dbpool_close(chat__dbpool *p)
{
    int i;

    for (i = 0; i < p->n; i++)
        chat__db_close(&p->all[i]);
    chat__free(p->all);
    p->all = NULL;
    p->n = 0;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

chat__db *chat__dbpool_get(chat__dbpool *p)
{
    chat__db *d;

    pthread_mutex_lock(&p->lock);
    while (p->free_list == NULL)
        pthread_cond_wait(&p->cond, &p->lock);
    d = p->free_list;
    p->free_list = d->next_free;
    pthread_mutex_unlock(&p->lock);
    return d;
}

void chat__dbpool_put(chat__dbpool *p, chat__db *d)
{
    pthread_mutex_lock(&p->lock);
    d->next_free = p->free_list;
    p->free_list = d;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int chat__bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC)
             : sqlite3_bind_null(s, i);
}

int chat__bind_int(sqlite3_stmt *s, int i, int64_t v)
{
    return sqlite3_bind_int64(s, i, v);
}

void chat__col_text(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    chat__strlcpy(out, t ? (const char *)t : "", size);
}
