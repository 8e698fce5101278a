/* The message log on PostgreSQL, with group commit.
 *
 * Appends queue up per writer thread (a conversation always goes to the
 * same one, so its appends keep their order); a writer commits what is
 * queued in one transaction, sent in one round trip (libpq's pipeline
 * mode), and answers each append after the commit.
 * Inside it, every conversation's advisory lock is taken (in a fixed
 * order, so writers of several instances cannot deadlock) before its
 * last seq is read: any number of instances produce 1..N without gaps,
 * with no counter that could drift from the rows. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/log_util.h"
#include "store/pg_util.h"

#define BATCH_MAX 512

typedef chat__append_req ppending;

struct pg_log;

/* A batch's pipeline: BEGIN, a lock per conversation, an insert per
 * append, COMMIT. */
#define PIPE_MAX (2 * BATCH_MAX + 2)

typedef struct pworker {
    struct pg_log *l;
    pthread_t thread;
    int started;
    chat__pg conn;
    chat__append_queue queue;
    chat__pgstmt stmts[PIPE_MAX];
    chat__pgargs args[PIPE_MAX];
    PGresult *res[PIPE_MAX];
    int at[BATCH_MAX]; /* where each append's insert is in stmts */
} pworker;

typedef struct pg_log {
    chat_log base;
    int touch_store;
    char *conninfo;
    int timeout_s;
    int nworkers;
    pworker *workers;
    chat__pgpool readers;
} pg_log;

/* Migrations of the "log" schema; never edit a shipped entry. */
static const char *const g_migrations[] = {
    "CREATE TABLE IF NOT EXISTS messages ("
    "  conversation_id TEXT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  id TEXT NOT NULL UNIQUE,"
    "  sender_id TEXT NOT NULL,"
    "  client_msg_id TEXT,"
    "  created_at BIGINT NOT NULL,"
    "  preview TEXT NOT NULL,"
    "  has_more INTEGER NOT NULL,"
    "  content_len INTEGER NOT NULL,"
    "  content TEXT NOT NULL,"
    "  PRIMARY KEY (conversation_id, seq));"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_idem"
    "  ON messages (conversation_id, sender_id, client_msg_id);",
};

#define MSG_COLS                                                               \
    "id, conversation_id, sender_id, COALESCE(client_msg_id, ''), seq,"        \
    " created_at, preview, has_more, content_len"

static void read_msg(const PGresult *r, int row, chat_message *m)
{
    memset(m, 0, sizeof *m);
    chat__pg_text(r, row, 0, m->id, sizeof m->id);
    chat__pg_text(r, row, 1, m->conversation_id, sizeof m->conversation_id);
    chat__pg_text(r, row, 2, m->sender_id, sizeof m->sender_id);
    chat__pg_text(r, row, 3, m->client_msg_id, sizeof m->client_msg_id);
    m->seq = chat__pg_int(r, row, 4);
    m->created_at = chat__pg_int(r, row, 5);
    chat__pg_text(r, row, 6, m->preview, sizeof m->preview);
    m->has_more = chat__pg_int(r, row, 7) != 0;
    m->content_len = (size_t)chat__pg_int(r, row, 8);
}

/* The insert reads seq = last + 1 itself; with touch_store it also moves
 * the conversation summary and the sender's read marker, and with
 * require_member it is made on condition of membership. A client_msg_id
 * already stored inserts nothing (ON CONFLICT): the append is then
 * answered with the stored message. */
#define INS_COLS                                                               \
    "INSERT INTO messages (conversation_id, seq, id, sender_id,"               \
    " client_msg_id, created_at, preview, has_more, content_len, content)"     \
    " SELECT $1, last.seq, $2, $3, $4, $5::bigint, $6, $7::integer,"           \
    " $8::integer, $9 FROM last"
#define LAST_SEQ                                                               \
    "WITH last AS (SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM messages"      \
    " WHERE conversation_id = $1)"
#define ON_DUP                                                                 \
    " ON CONFLICT (conversation_id, sender_id, client_msg_id) DO NOTHING"
#define TOUCH                                                                  \
    " RETURNING seq),"                                                         \
    " conv AS (UPDATE conversations SET last_seq = ins.seq,"                   \
    " last_activity_at = $5::bigint, last_message_id = $2,"                    \
    " last_sender_id = $3, last_preview = $6, last_has_more = $7::integer"     \
    " FROM ins WHERE id = $1 AND last_seq < ins.seq),"                         \
    " rd AS (UPDATE members SET read_seq = GREATEST(read_seq, ins.seq)"        \
    " FROM ins WHERE conversation_id = $1 AND user_id = $3)"                   \
    " SELECT seq FROM ins"

/* WHERE true: "FROM last ON" would read as the start of a join */
static const char q_ins[] =
    LAST_SEQ " " INS_COLS " WHERE true" ON_DUP " RETURNING seq";
static const char q_ins_touch[] =
    LAST_SEQ ", ins AS (" INS_COLS " WHERE true" ON_DUP TOUCH;
static const char q_ins_member[] =
    LAST_SEQ ", ins AS (" INS_COLS
             " WHERE EXISTS (SELECT 1 FROM members WHERE conversation_id = $1"
             " AND user_id = $3)" ON_DUP TOUCH;
static const char q_begin[] = "BEGIN";
static const char q_commit[] = "COMMIT";
static const char q_lock[] =
    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/* Give p's message everything but its seq, and its insert's arguments. */
static int prepare_insert(ppending *p, chat__pgargs *a)
{
    chat_message *m = &p->msg;
    size_t cut;
    int rc;

    p->rc = CHAT_OK;
    p->created = 0;
    memset(m, 0, sizeof *m);
    if ((rc = chat_uuid_v7(m->id)) != CHAT_OK)
        return rc;
    memcpy(m->conversation_id, p->conv, sizeof p->conv);
    memcpy(m->sender_id, p->sender, sizeof p->sender);
    memcpy(m->client_msg_id, p->cmid, sizeof p->cmid);
    m->created_at = chat_time_now_ms();
    chat_text_preview(p->content, p->len, CHAT_PREVIEW_CHARS, &cut,
                      &m->has_more);
    memcpy(m->preview, p->content, cut);
    m->preview[cut] = '\0';
    m->content_len = p->len;

    memset(a, 0, sizeof *a);
    chat__pa_text(a, m->conversation_id);
    chat__pa_text(a, m->id);
    chat__pa_text(a, m->sender_id);
    chat__pa_text(a, p->cmid[0] ? p->cmid : NULL);
    chat__pa_int(a, m->created_at);
    chat__pa_text(a, m->preview);
    chat__pa_int(a, m->has_more);
    chat__pa_int(a, (int64_t)p->len);
    chat__pa_text(a, p->content);
    return CHAT_OK;
}

/* An insert that stored nothing (after the commit): the message its
 * client_msg_id names, or why the sender may not post there. */
static void explain_nothing_stored(chat__pg *c, ppending *p)
{
    static const char q_idem[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = $1"
        " AND sender_id = $2 AND client_msg_id = $3";
    static const char q_member[] =
        "SELECT (SELECT 1 FROM conversations WHERE id = $1),"
        " (SELECT 1 FROM members WHERE conversation_id = $1"
        " AND user_id = $2)";
    chat__pgargs a = {0};
    PGresult *r;
    int rc;

    chat__pa_text(&a, p->conv);
    chat__pa_text(&a, p->sender);
    if (p->cmid[0]) {
        chat__pgargs ai = a;
        chat__pa_text(&ai, p->cmid);
        if (!(r = chat__pg_query(c, q_idem, &ai, "idempotency lookup", &rc))) {
            p->rc = rc;
            return;
        }
        if (PQntuples(r) == 1) {
            read_msg(r, 0, &p->msg);
            PQclear(r);
            return;
        }
        PQclear(r);
    }
    if (!p->require_member) { /* nothing else stops an insert */
        p->rc = chat__error(CHAT_EIO, "PostgreSQL: an insert stored nothing");
        return;
    }
    if (!(r = chat__pg_query(c, q_member, &a, "membership", &rc))) {
        p->rc = rc;
        return;
    }
    p->rc = PQgetisnull(r, 0, 0) ? CHAT_ENOTFOUND : CHAT_EPERM;
    PQclear(r);
}

static int by_conv(const void *a, const void *b)
{
    const ppending *x = *(ppending *const *)a, *y = *(ppending *const *)b;
    int d = strcmp(x->conv, y->conv);

    /* stable: equal conversations keep their queue order */
    return d ? d : x->order - y->order;
}

/* One transaction for the n appends in v (sorted by conversation), in
 * one round trip: BEGIN, each conversation's lock, each insert, COMMIT. */
static int commit_once(pg_log *l, pworker *w, ppending **v, int n)
{
    chat__pg *c = &w->conn;
    const char *locked = NULL;
    int rc, i, k = 0;

    w->stmts[k++] = (chat__pgstmt){q_begin, NULL, "begin"};
    for (i = 0; i < n; i++) {
        if (locked == NULL || strcmp(locked, v[i]->conv) != 0) {
            memset(&w->args[k], 0, sizeof w->args[k]);
            chat__pa_text(&w->args[k], v[i]->conv);
            w->stmts[k] =
                (chat__pgstmt){q_lock, &w->args[k], "conversation lock"};
            k++;
            locked = v[i]->conv;
        }
        if ((rc = prepare_insert(v[i], &w->args[k])) != CHAT_OK)
            return rc;
        w->stmts[k] = (chat__pgstmt){v[i]->require_member ? q_ins_member
                                     : l->touch_store     ? q_ins_touch
                                                          : q_ins,
                                     &w->args[k], "insert message"};
        w->at[i] = k++;
    }
    w->stmts[k++] = (chat__pgstmt){q_commit, NULL, "commit"};
    rc = chat__pg_pipeline(c, w->stmts, k, w->res);
    for (i = 0; rc == CHAT_OK && i < n; i++) {
        const PGresult *r = w->res[w->at[i]];
        if (PQntuples(r) == 1) {
            v[i]->msg.seq = chat__pg_int(r, 0, 0);
            v[i]->created = 1;
        }
    }
    for (i = 0; i < k; i++)
        PQclear(w->res[i]);
    if (rc != CHAT_OK) {
        if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
            chat__pg_exec(c, "ROLLBACK", "rollback");
        return rc;
    }
    for (i = 0; i < n; i++)
        if (!v[i]->created)
            explain_nothing_stored(c, v[i]);
    return CHAT_OK;
}

/* Commit a batch; on a broken connection reconnect and retry once, on a
 * deadlock or serialization failure retry, on any other failure replay
 * one append per transaction so a single bad append fails alone. */
static void commit_batch(pg_log *l, pworker *w, ppending **v, int n)
{
    int rc = CHAT_EUNAVAIL, attempt, i;

    for (attempt = 0; attempt < 3; attempt++) {
        if (w->conn.conn == NULL || PQstatus(w->conn.conn) != CONNECTION_OK) {
            if ((rc = chat__pg_connect(&w->conn, l->conninfo, l->timeout_s)) !=
                CHAT_OK)
                break;
        }
        rc = commit_once(l, w, v, n);
        if (rc == CHAT_OK || (rc != CHAT_EUNAVAIL && rc != CHAT_EAGAIN))
            break;
    }
    if (rc == CHAT_OK)
        return;
    if (n > 1 && rc != CHAT_EUNAVAIL) {
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=log backend=postgres event=batch_failed rc=%d"
                 " action=replay_singly",
                 rc);
        for (i = 0; i < n; i++)
            commit_batch(l, w, &v[i], 1);
        return;
    }
    for (i = 0; i < n; i++)
        v[i]->rc = rc;
}

static void *writer_main(void *arg)
{
    pworker *w = arg;
    pg_log *l = w->l;
    ppending *batch, *p, *next, *v[BATCH_MAX];
    int n;

    while ((batch = chat__append_queue_take(&w->queue, BATCH_MAX))) {
        for (p = batch, n = 0; p; p = p->next) {
            p->order = n;
            v[n++] = p;
        }
        qsort(v, (size_t)n, sizeof *v, by_conv);
        commit_batch(l, w, v, n);
        for (p = batch; p; p = next) {
            next = p->next;
            chat__append_req_finish(p);
        }
    }
    return NULL; /* closed and drained */
}

static int log_append(chat_log *base, const chat_append *req, chat_append_cb cb,
                      void *userdata)
{
    pg_log *l = (pg_log *)base;
    ppending *p;
    pworker *w;
    int rc;

    /* PostgreSQL text cannot hold NUL */
    if ((rc = chat__append_req_new(req, cb, userdata, l->touch_store, 1, &p)) !=
        CHAT_OK)
        return rc;
    w = &l->workers[chat__conv_shard(p->conv, (unsigned)l->nworkers)];
    return chat__append_queue_push(&w->queue, p);
}

/* A read failed on a connection that may only have gone stale (the
 * server restarted while it sat in the pool): reconnect it once. NULL
 * (connection returned to the pool) if the server is really away. */
static chat__pg *retry_conn(pg_log *l, chat__pg *c)
{
    if (chat__pg_connect(c, l->readers.conninfo, l->timeout_s) == CHAT_OK)
        return c;
    chat__pgpool_put(&l->readers, c);
    return NULL;
}

static int log_range(chat_log *base, const char *conv_id, int64_t after_seq,
                     int64_t before_seq, int limit, chat_message *out, int *n)
{
    static const char q_after[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = $1"
        " AND seq > $2 ORDER BY seq LIMIT $3";
    static const char q_before[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = $1"
        " AND seq < $2 ORDER BY seq DESC LIMIT $3";
    pg_log *l = (pg_log *)base;
    char conv[CHAT_ID_LEN + 1];
    chat__pgargs a = {0};
    chat__pg *c;
    PGresult *r;
    int rc, i, rows;

    *n = 0;
    if (limit < 1 || limit > CHAT_PAGE_MAX)
        return chat__error(CHAT_EINVAL, "limit must be 1 to %d", CHAT_PAGE_MAX);
    if ((c = chat__pgpool_get(&l->readers)) == NULL)
        return CHAT_EUNAVAIL;
    chat__ascii_lower(conv, conv_id, sizeof conv);
    chat__pa_text(&a, conv);
    chat__pa_int(&a, before_seq > 0 ? before_seq : after_seq);
    chat__pa_int(&a, limit);
    r = chat__pg_query(c, before_seq > 0 ? q_before : q_after, &a, "history",
                       &rc);
    if (r == NULL && rc == CHAT_EUNAVAIL && (c = retry_conn(l, c)) != NULL)
        r = chat__pg_query(c, before_seq > 0 ? q_before : q_after, &a,
                           "history", &rc);
    if (c)
        chat__pgpool_put(&l->readers, c);
    if (r == NULL)
        return rc;
    rows = PQntuples(r);
    for (i = 0; i < rows && i < limit; i++)
        /* before: newest first from the query, stored ascending */
        read_msg(r, before_seq > 0 ? rows - 1 - i : i, &out[i]);
    *n = i;
    PQclear(r);
    return CHAT_OK;
}

static int log_get(chat_log *base, const char *conv_id, const char *msg_id,
                   chat_message *out, char **content)
{
    static const char q[] = "SELECT " MSG_COLS ", content FROM messages"
                            " WHERE id = $1 AND conversation_id = $2";
    pg_log *l = (pg_log *)base;
    char lm[CHAT_ID_LEN + 1], lc[CHAT_ID_LEN + 1];
    chat__pgargs a = {0};
    chat__pg *c;
    PGresult *r;
    int rc;

    if (content)
        *content = NULL;
    chat__ascii_lower(lm, msg_id, sizeof lm);
    chat__ascii_lower(lc, conv_id, sizeof lc);
    if ((c = chat__pgpool_get(&l->readers)) == NULL)
        return CHAT_EUNAVAIL;
    chat__pa_text(&a, lm);
    chat__pa_text(&a, lc);
    r = chat__pg_query(c, q, &a, "message lookup", &rc);
    if (r == NULL && rc == CHAT_EUNAVAIL && (c = retry_conn(l, c)) != NULL)
        r = chat__pg_query(c, q, &a, "message lookup", &rc);
    if (c)
        chat__pgpool_put(&l->readers, c);
    if (r == NULL)
        return rc;
    if (PQntuples(r) != 1) {
        rc = chat__error(CHAT_ENOTFOUND, "no such message");
    } else {
        read_msg(r, 0, out);
        if (content && (*content = chat__strdup(PQgetvalue(r, 0, 9))) == NULL)
            rc = chat__error(CHAT_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

static void log_free(chat_log *base)
{
    pg_log *l = (pg_log *)base;
    int i;

    for (i = 0; i < l->nworkers; i++)
        chat__append_queue_close(&l->workers[i].queue);
    for (i = 0; i < l->nworkers; i++) {
        if (l->workers[i].started)
            pthread_join(l->workers[i].thread, NULL); /* commits its queue */
        chat__pg_disconnect(&l->workers[i].conn);
        chat__append_queue_destroy(&l->workers[i].queue);
    }
    chat__free(l->workers);
    chat__pgpool_close(&l->readers);
    chat__free(l->conninfo);
    chat__free(l);
}

static const chat_log_ops g_ops = {"postgres", log_free, log_append,
                                   log_range,  log_get,  0};
static const chat_log_ops g_ops_touch = {"postgres", log_free, log_append,
                                         log_range,  log_get,  1};

int chat_log_pg_open(chat_log **out, const chat_pg_opts *opts)
{
    pg_log *l;
    chat__pg *c;
    int rc, i;

    CHAT_ASSERT_ARG(out && opts);
    if (opts->version != CHAT_PG_OPTS_VERSION)
        return chat__error(CHAT_EINVAL, "chat_pg_opts: unknown version");
    if (opts->pool_size < 0 || opts->pool_size > 64)
        return chat__error(CHAT_EINVAL, "pool_size must be 0 to 64");
    if ((l = chat__calloc(1, sizeof *l)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    l->base.ops = opts->touch_store ? &g_ops_touch : &g_ops;
    l->touch_store = opts->touch_store;
    l->timeout_s = opts->connect_timeout_s;
    l->nworkers = opts->pool_size > 0 ? opts->pool_size : 4;
    if ((rc = chat__pgpool_open(&l->readers, opts, l->nworkers)) != CHAT_OK) {
        chat__free(l);
        return rc;
    }
    l->conninfo = chat__strdup(opts->conninfo);
    l->workers = chat__calloc((size_t)l->nworkers, sizeof *l->workers);
    if (l->conninfo == NULL || l->workers == NULL) {
        l->nworkers = 0;
        log_free(&l->base);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    for (i = 0; i < l->nworkers; i++)
        chat__append_queue_init(&l->workers[i].queue);
    if ((c = chat__pgpool_get(&l->readers)) == NULL) {
        log_free(&l->base);
        return CHAT_EUNAVAIL;
    }
    rc = chat__pg_migrate(c, "log", g_migrations,
                          (int)CHAT__ARRAY_LEN(g_migrations));
    chat__pgpool_put(&l->readers, c);
    for (i = 0; rc == CHAT_OK && i < l->nworkers; i++) {
        pworker *w = &l->workers[i];
        w->l = l;
        if ((rc = chat__pg_connect(&w->conn, l->conninfo, l->timeout_s)) !=
            CHAT_OK)
            break;
        if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
            rc = chat__error(CHAT_ERROR, "cannot start a log writer");
            break;
        }
        w->started = 1;
        pthread_setname_np(w->thread, "chat-pglog");
    }
    if (rc != CHAT_OK) {
        log_free(&l->base);
        return rc;
    }
    *out = &l->base;
    return CHAT_OK;
}
