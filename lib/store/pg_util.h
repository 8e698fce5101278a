/* PostgreSQL plumbing shared by the store and the message log (libpq):
 * a connection pool that reconnects broken connections, statements
 * prepared once per connection, migrations under an advisory lock, and
 * SQLSTATE -> CHAT_E* mapping. All parameters and results are text. */
#ifndef CHAT_STORE_PG_UTIL_H
#define CHAT_STORE_PG_UTIL_H

#include <libpq-fe.h>
#include <pthread.h>

#include <chat/store.h>

#include "core/internal.h"

#define CHAT__PG_STMTS  64
#define CHAT__PG_PARAMS 16

/* One connection and the statements prepared on it, keyed by the SQL
 * text's address (every statement is a string literal). */
typedef struct chat__pg {
    PGconn *conn;
    const char *sql[CHAT__PG_STMTS];
    int nstmt;
    struct chat__pg *next_free;
} chat__pg;

typedef struct chat__pgpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *conninfo;
    int connect_timeout_s;
    chat__pg *free_list;
    chat__pg *all; /* n slots */
    int n;
} chat__pgpool;

/* Text parameters for one statement: chat__pa_text/int append in order. */
typedef struct chat__pgargs {
    const char *v[CHAT__PG_PARAMS];
    char num[CHAT__PG_PARAMS][24];
    int n;
} chat__pgargs;

void chat__pa_text(chat__pgargs *a, const char *s); /* NULL = SQL NULL */
void chat__pa_int(chat__pgargs *a, int64_t v);

/* n connections to conninfo; the first is opened now (so a bad address
 * or password fails here), the others on first use. */
int chat__pgpool_open(chat__pgpool *p, const chat_pg_opts *o, int n);
void chat__pgpool_close(chat__pgpool *p);
/* Borrow a connection, reconnecting it if it broke; NULL and
 * CHAT_EUNAVAIL (last error) when the server cannot be reached. */
chat__pg *chat__pgpool_get(chat__pgpool *p);
void chat__pgpool_put(chat__pgpool *p, chat__pg *c);

/* Open or reopen c->conn; CHAT_OK or CHAT_EUNAVAIL/CHAT_EAUTH. */
int chat__pg_connect(chat__pg *c, const char *conninfo, int timeout_s);
void chat__pg_disconnect(chat__pg *c);

/* Run sql (prepared on first use on this connection) with args (may be
 * NULL). Returns the result when it is PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK; otherwise NULL with *rc set from the SQLSTATE
 * (23505 -> CHAT_ECONFLICT, 40001/40P01 -> CHAT_EAGAIN, connection
 * errors -> CHAT_EUNAVAIL, else CHAT_EIO) and the last error saying
 * what failed. Free the result with PQclear. */
PGresult *chat__pg_query(chat__pg *c, const char *sql, const chat__pgargs *args,
                         const char *what, int *rc);
/* One statement of a pipeline. */
typedef struct chat__pgstmt {
    const char *sql; /* a string literal, as for chat__pg_query */
    const chat__pgargs *args;
    const char *what;
} chat__pgstmt;

/* Run stmts[0..n) in one round trip (libpq's pipeline mode, one sync at
 * the end): out[i] is statement i's result (free each with PQclear).
 * The connection blocks while it sends, and the answers are read only
 * after everything is sent: keep them small enough for the socket
 * buffers (the log's batches: at most ~1,000 statements answering a few
 * dozen bytes each).
 * CHAT_OK when all succeeded; else the first failure's code, mapped as
 * by chat__pg_query, with out[] NULL from that statement on (the server
 * skips the rest; a transaction they opened is left aborted, for the
 * caller to roll back). A connection that broke is closed. */
int chat__pg_pipeline(chat__pg *c, const chat__pgstmt *stmts, int n,
                      PGresult **out);
/* Run a statement and drop its result (BEGIN, COMMIT, ...). */
int chat__pg_exec(chat__pg *c, const char *sql, const char *what);

/* Field helpers: text copy into out (size bytes, "" for NULL), int64. */
void chat__pg_text(const PGresult *r, int row, int col, char *out, size_t size);
int64_t chat__pg_int(const PGresult *r, int row, int col);

/* Apply migrations[0..n) for component, each in its own transaction
 * holding an advisory lock, so instances starting together are safe.
 * The applied version lives in chat_schema(component, version). */
int chat__pg_migrate(chat__pg *c, const char *component,
                     const char *const *migrations, int n);

#endif /* CHAT_STORE_PG_UTIL_H */
