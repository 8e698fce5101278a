/* PostgreSQL plumbing: pool, prepared statements, migrations, errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_util.h"

/* The advisory lock key that serialises migrations ("chat" in ASCII). */
#define MIGRATION_LOCK 0x63686174

void chat__pa_text(chat__pgargs *a, const char *s)
{
    if (a->n < CHAT__PG_PARAMS)
        a->v[a->n++] = s;
}

void chat__pa_int(chat__pgargs *a, int64_t v)
{
    if (a->n < CHAT__PG_PARAMS) {
        snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", (long long)v);
        a->v[a->n] = a->num[a->n];
        a->n++;
    }
}

/* libpq reports notices on stderr by default; the library never prints. */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    CHAT_LOG(CHAT_LOG_DEBUG, "component=postgres event=notice msg=\"%.200s\"",
             msg);
}

void chat__pg_disconnect(chat__pg *c)
{
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
    c->nstmt = 0;
}

int chat__pg_connect(chat__pg *c, const char *conninfo, int timeout_s)
{
    static const char *const keys[] = {"dbname", "connect_timeout",
                                       "application_name", NULL};
    char timeout[16], *msg, *nl;
    const char *vals[4];
    int rc;

    chat__pg_disconnect(c);
    snprintf(timeout, sizeof timeout, "%d", timeout_s > 0 ? timeout_s : 5);
    vals[0] = conninfo; /* expand_dbname: a URI or key=value string */
    vals[1] = timeout;
    vals[2] = "libchat";
    vals[3] = NULL;
    c->conn = PQconnectdbParams(keys, vals, 1);
    if (c->conn == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (PQstatus(c->conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(c->conn, quiet, NULL);
        return CHAT_OK;
    }
    msg = chat__strdup(PQerrorMessage(c->conn));
    if (msg && (nl = strchr(msg, '\n')) != NULL)
        *nl = '\0';
    rc = msg && strstr(msg, "authentication") ? CHAT_EAUTH : CHAT_EUNAVAIL;
    chat__error(rc, "PostgreSQL: %s", msg ? msg : "cannot connect");
    chat__free(msg);
    chat__pg_disconnect(c);
    return rc;
}

int chat__pgpool_open(chat__pgpool *p, const chat_pg_opts *o, int n)
{
    int rc;

    memset(p, 0, sizeof *p);
    if (!o->conninfo || !*o->conninfo)
        return chat__error(CHAT_EINVAL, "PostgreSQL: no connection string"
                                        " (DATABASE_URL or POSTGRES_*)");
    p->n = n > 0 ? n : 4;
    p->connect_timeout_s = o->connect_timeout_s;
    p->conninfo = chat__strdup(o->conninfo);
    p->all = chat__calloc((size_t)p->n, sizeof *p->all);
    if (p->conninfo == NULL || p->all == NULL) {
        chat__free(p->conninfo);
        chat__free(p->all);
        p->conninfo = NULL;
        p->all = NULL;
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    if ((rc = chat__pg_connect(&p->all[0], p->conninfo,
                               p->connect_timeout_s)) != CHAT_OK) {
        chat__free(p->conninfo);
        chat__free(p->all);
        p->conninfo = NULL;
        p->all = NULL;
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (int i = p->n - 1; i >= 0; i--) {
        p->all[i].next_free = p->free_list;
        p->free_list = &p->all[i];
    }
    return CHAT_OK;
}

void chat__pgpool_close(chat__pgpool *p)
{
    if (p->all == NULL)
        return;
    for (int i = 0; i < p->n; i++)
        chat__pg_disconnect(&p->all[i]);
    chat__free(p->all);
    chat__free(p->conninfo);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    p->all = NULL;
}

chat__pg *chat__pgpool_get(chat__pgpool *p)
{
    chat__pg *c;

    pthread_mutex_lock(&p->lock);
    while (p->free_list == NULL)
        pthread_cond_wait(&p->cond, &p->lock);
    c = p->free_list;
    p->free_list = c->next_free;
    pthread_mutex_unlock(&p->lock);
    if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
        if (chat__pg_connect(c, p->conninfo, p->connect_timeout_s) != CHAT_OK) {
            chat__pgpool_put(p, c);
            return NULL;
        }
    }
    return c;
}

void chat__pgpool_put(chat__pgpool *p, chat__pg *c)
{
    /* a connection left inside a transaction (an error path that could
     * not roll back) is not reused as it is */
    if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        chat__pg_disconnect(c);
    pthread_mutex_lock(&p->lock);
    c->next_free = p->free_list;
    p->free_list = c;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static int map_error(chat__pg *c, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int rc = CHAT_EIO;

    if (msg == NULL)
        msg = PQerrorMessage(c->conn);
    if (PQstatus(c->conn) != CONNECTION_OK || state == NULL ||
        !strncmp(state, "08", 2) || !strncmp(state, "57P", 3) ||
        !strcmp(state, "53300"))
        rc = CHAT_EUNAVAIL; /* connection lost, server shutting down */
    else if (!strcmp(state, "23505"))
        rc = CHAT_ECONFLICT;
    else if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
        rc = CHAT_EAGAIN;
    if (rc == CHAT_EIO)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=postgres event=error what=\"%s\" sqlstate=%s"
                 " msg=\"%.200s\"",
                 what, state ? state : "-", msg);
    return chat__error(rc, "PostgreSQL %s: %.200s", what, msg);
}

/* The name sql is prepared under on c ("" when the cache is full: run it
 * unprepared), preparing it first if this connection has not. */
static int stmt_name(chat__pg *c, const char *sql, const char *what,
                     char name[16])
{
    PGresult *r;
    int i;

    if (c->conn == NULL)
        return chat__error(CHAT_EUNAVAIL, "PostgreSQL: not connected");
    for (i = 0; i < c->nstmt && c->sql[i] != sql; i++)
        ;
    if (i == CHAT__PG_STMTS) {
        name[0] = '\0';
        return CHAT_OK;
    }
    snprintf(name, 16, "s%d", i);
    if (i < c->nstmt)
        return CHAT_OK;
    r = PQprepare(c->conn, name, sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        i = map_error(c, r, what);
        PQclear(r);
        return i;
    }
    PQclear(r);
    c->sql[c->nstmt++] = sql;
    return CHAT_OK;
}

PGresult *chat__pg_query(chat__pg *c, const char *sql, const chat__pgargs *args,
                         const char *what, int *rc)
{
    char name[16];
    PGresult *r;
    ExecStatusType st;

    if ((*rc = stmt_name(c, sql, what, name)) != CHAT_OK)
        return NULL;
    if (name[0])
        r = PQexecPrepared(c->conn, name, args ? args->n : 0,
                           args ? args->v : NULL, NULL, NULL, 0);
    else
        r = PQexecParams(c->conn, sql, args ? args->n : 0, NULL,
                         args ? args->v : NULL, NULL, NULL, 0);
    st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    *rc = map_error(c, r, what);
    PQclear(r);
    return NULL;
}

/* Read what the server answered to a pipeline up to its sync point:
 * out[i] for each statement (NULL once one failed), CHAT_OK or the
 * first failure. */
static int pipeline_results(chat__pg *c, const chat__pgstmt *stmts, int n,
                            PGresult **out)
{
    int rc = CHAT_OK, i;
    PGresult *r;

    for (i = 0; i < n; i++) {
        ExecStatusType st;

        out[i] = NULL;
        if ((r = PQgetResult(c->conn)) == NULL) { /* connection lost */
            if (rc == CHAT_OK)
                rc = map_error(c, NULL, stmts[i].what);
            return rc;
        }
        st = PQresultStatus(r);
        if (rc == CHAT_OK && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
            out[i] = r;
        else {
            /* the first failure says why; the server skipped the rest */
            if (rc == CHAT_OK)
                rc = map_error(c, r, stmts[i].what);
            PQclear(r);
        }
        while ((r = PQgetResult(c->conn)) != NULL) /* ends each result */
            PQclear(r);
    }
    while ((r = PQgetResult(c->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st == PGRES_PIPELINE_SYNC)
            break;
    }
    if (r == NULL && rc == CHAT_OK)
        rc = map_error(c, NULL, "pipeline sync");
    return rc;
}

int chat__pg_pipeline(chat__pg *c, const chat__pgstmt *stmts, int n,
                      PGresult **out)
{
    char name[16];
    int rc = CHAT_OK, i, sent;

    for (i = 0; i < n; i++)
        out[i] = NULL;
    /* statements are prepared outside the pipeline, once per connection */
    for (i = 0; i < n; i++)
        if ((rc = stmt_name(c, stmts[i].sql, stmts[i].what, name)) != CHAT_OK)
            return rc;
    if (!PQenterPipelineMode(c->conn))
        return map_error(c, NULL, "pipeline");
    for (i = 0; i < n; i++) {
        const chat__pgargs *a = stmts[i].args;

        stmt_name(c, stmts[i].sql, stmts[i].what, name); /* cached */
        sent = name[0]
                   ? PQsendQueryPrepared(c->conn, name, a ? a->n : 0,
                                         a ? a->v : NULL, NULL, NULL, 0)
                   : PQsendQueryParams(c->conn, stmts[i].sql, a ? a->n : 0,
                                       NULL, a ? a->v : NULL, NULL, NULL, 0);
        if (!sent)
            break;
    }
    if (i < n || !PQpipelineSync(c->conn)) {
        rc = map_error(c, NULL, i < n ? stmts[i].what : "pipeline sync");
        /* what was queued may be half sent: the connection is unusable */
        chat__pg_disconnect(c);
        return rc;
    }
    rc = pipeline_results(c, stmts, n, out);
    if (PQstatus(c->conn) != CONNECTION_OK || !PQexitPipelineMode(c->conn)) {
        if (rc == CHAT_OK)
            rc = map_error(c, NULL, "pipeline");
        for (i = 0; i < n; i++) {
            PQclear(out[i]);
            out[i] = NULL;
        }
        chat__pg_disconnect(c);
    }
    return rc;
}

int chat__pg_exec(chat__pg *c, const char *sql, const char *what)
{
    int rc;
    PGresult *r = chat__pg_query(c, sql, NULL, what, &rc);

    PQclear(r);
    return rc;
}

void chat__pg_text(const PGresult *r, int row, int col, char *out, size_t size)
{
    if (PQgetisnull(r, row, col))
        out[0] = '\0';
    else
        chat__strlcpy(out, PQgetvalue(r, row, col), size);
}

int64_t chat__pg_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int chat__pg_migrate(chat__pg *c, const char *component,
                     const char *const *migrations, int n)
{
    static const char q_schema[] =
        "CREATE TABLE IF NOT EXISTS chat_schema ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)";
    static const char q_lock[] = "SELECT pg_advisory_xact_lock($1)";
    static const char q_ver[] =
        "SELECT version FROM chat_schema WHERE component = $1";
    static const char q_set[] =
        "INSERT INTO chat_schema (component, version) VALUES ($1, $2)"
        " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version";
    chat__pgargs a;
    PGresult *r;
    int64_t version;
    int rc;

    for (;;) {
        if ((rc = chat__pg_exec(c, "BEGIN", "begin")) != CHAT_OK)
            return rc;
        memset(&a, 0, sizeof a);
        chat__pa_int(&a, MIGRATION_LOCK);
        /* the lock first: CREATE TABLE IF NOT EXISTS races otherwise */
        if (!(r = chat__pg_query(c, q_lock, &a, "migration lock", &rc)))
            goto fail;
        PQclear(r);
        if ((rc = chat__pg_exec(c, q_schema, "schema table")) != CHAT_OK)
            goto fail;
        memset(&a, 0, sizeof a);
        chat__pa_text(&a, component);
        if (!(r = chat__pg_query(c, q_ver, &a, "schema version", &rc)))
            goto fail;
        version = PQntuples(r) ? chat__pg_int(r, 0, 0) : 0;
        PQclear(r);
        if (version >= n) {
            if (version > n) {
                chat__pg_exec(c, "ROLLBACK", "rollback");
                return chat__error(CHAT_EIO,
                                   "PostgreSQL %s schema is version %lld,"
                                   " newer than this libchat (%d)",
                                   component, (long long)version, n);
            }
            return chat__pg_exec(c, "COMMIT", "commit");
        }
        /* one migration per transaction; simple-query protocol, so an
         * entry may hold several statements */
        r = PQexec(c->conn, migrations[version]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = map_error(c, r, "migration");
            PQclear(r);
            goto fail;
        }
        PQclear(r);
        memset(&a, 0, sizeof a);
        chat__pa_text(&a, component);
        chat__pa_int(&a, version + 1);
        if (!(r = chat__pg_query(c, q_set, &a, "schema version", &rc)))
            goto fail;
        PQclear(r);
        if ((rc = chat__pg_exec(c, "COMMIT", "commit")) != CHAT_OK)
            return rc;
        CHAT_LOG(CHAT_LOG_INFO,
                 "component=postgres event=migrated schema=%s to=%lld",
                 component, (long long)version + 1);
    }
fail:
    chat__pg_exec(c, "ROLLBACK", "rollback");
    return rc;
}

/* ---- public helpers ------------------------------------------------------ */

void chat_pg_opts_init(chat_pg_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_PG_OPTS_VERSION;
    }
}

/* Append " key='value'" (libpq quoting) to b. */
static void put_kv(chat__buf *b, const char *key, const char *v)
{
    chat__buf_printf(b, "%s%s='", b->len ? " " : "", key);
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\')
            chat__buf_append(b, "\\", 1);
        chat__buf_append(b, v, 1);
    }
    chat__buf_append(b, "'", 1);
}

int chat_pg_conninfo_from_env(char *out, size_t size)
{
    static const char *const vars[][2] = {{"POSTGRES_HOST", "host"},
                                          {"POSTGRES_PORT", "port"},
                                          {"POSTGRES_USER", "user"},
                                          {"POSTGRES_PASSWORD", "password"},
                                          {"POSTGRES_DB", "dbname"}};
    const char *url = getenv("DATABASE_URL"), *v;
    chat__buf b = CHAT__BUF_INIT;
    int any = 0, rc = CHAT_OK;
    size_t i;

    CHAT_ASSERT_ARG(out && size > 0);
    if (url && *url) {
        if (strlen(url) >= size)
            return chat__error(CHAT_ELIMIT, "DATABASE_URL is too long");
        memcpy(out, url, strlen(url) + 1);
        return CHAT_OK;
    }
    for (i = 0; i < CHAT__ARRAY_LEN(vars); i++)
        if ((v = getenv(vars[i][0])) && *v) {
            put_kv(&b, vars[i][1], v);
            any = 1;
        }
    if (!any)
        rc = chat__error(CHAT_ENOTFOUND,
                         "neither DATABASE_URL nor POSTGRES_* is set");
    else if (b.failed)
        rc = chat__error(CHAT_ENOMEM, "out of memory");
    else if (b.len >= size)
        rc = chat__error(CHAT_ELIMIT, "POSTGRES_* values are too long");
    else
        memcpy(out, b.data, b.len + 1);
    chat__buf_free(&b);
    return rc;
}
