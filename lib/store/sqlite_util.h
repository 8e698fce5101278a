/* SQLite plumbing shared by the store and the message log: opening with
 * the project's pragmas, migrations, a connection pool with cached
 * prepared statements, error mapping. */
#ifndef CHAT_STORE_SQLITE_UTIL_H
#define CHAT_STORE_SQLITE_UTIL_H

#include <pthread.h>
#include <sqlite3.h>

#include <chat/store.h>

#include "core/internal.h"

#define CHAT__STMT_CACHE 48

/* One connection and its prepared statements, keyed by the SQL text's
 * address (every statement is a string literal). */
typedef struct chat__db {
    sqlite3 *db;
    const char *sql[CHAT__STMT_CACHE];
    sqlite3_stmt *stmt[CHAT__STMT_CACHE];
    int nstmt;
    struct chat__db *next_free;
} chat__db;

typedef struct chat__dbpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chat__db *free_list;
    chat__db *all;
    int n;
} chat__dbpool;

/* Open one connection with WAL, synchronous per opts, foreign keys, busy
 * timeout; apply migrations if `migrate`. */
int chat__db_open(chat__db *d, const char *path, const chat_sqlite_opts *o,
                  int migrate);
void chat__db_close(chat__db *d);
/* The cached statement for sql, reset and unbound; NULL on error (the
 * thread's last error says why). */
sqlite3_stmt *chat__db_stmt(chat__db *d, const char *sql);
/* Run SQL without results (BEGIN, COMMIT, ...). */
int chat__db_exec(chat__db *d, const char *sql);
/* Map a SQLite result to a CHAT_E* code and record it. */
int chat__db_error(chat__db *d, int src, const char *what);

int chat__dbpool_open(chat__dbpool *p, const char *path,
                      const chat_sqlite_opts *o, int n);
void chat__dbpool_close(chat__dbpool *p);
chat__db *chat__dbpool_get(chat__dbpool *p);
void chat__dbpool_put(chat__dbpool *p, chat__db *d);

/* Bind helpers: text (NULL binds NULL), int64. */
int chat__bind_text(sqlite3_stmt *s, int i, const char *v);
int chat__bind_int(sqlite3_stmt *s, int i, int64_t v);
/* Copy column i as text into out (size bytes, "" for NULL). */
void chat__col_text(sqlite3_stmt *s, int i, char *out, size_t size);

/* Record m as its conversation's latest message (if newer) and move the
 * sender's read marker to it; inside the caller's transaction. */
int chat__sqlite_touch(chat__db *d, const chat_message *m);

/* Defaults applied to NULL/zero options. */
void chat__sqlite_opts_resolve(const chat_sqlite_opts *in,
                               chat_sqlite_opts *out);

#endif
