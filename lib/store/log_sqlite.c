/* The message log on SQLite, with group commit: appends queue up for one
 * writer thread that commits them in batches and answers each one only
 * after its batch is durable. Readers use their own connections (WAL). */
#include <pthread.h>
#include <string.h>

#include "store/log_util.h"
#include "store/sqlite_util.h"

typedef chat__append_req pending;

typedef struct sqlite_log {
    chat_log base;
    chat__db writer;
    chat__dbpool readers;
    chat_sqlite_opts o;
    pthread_t thread;
    pthread_mutex_t lock; /* closing, ckpt_wanted */
    chat__append_queue queue;
    int closing; /* for the checkpointer, under lock */
    /* WAL checkpoints run on their own thread and connection, so a commit
     * never stops to copy pages back into the database file */
    chat__db ckpt;
    pthread_t ckpt_thread;
    pthread_cond_t ckpt_cond;
    int ckpt_wanted;
} sqlite_log;

/* Pages in the WAL that start a checkpoint (SQLite's own default). */
#define CKPT_PAGES 1000

int chat__sqlite_touch(chat__db *d, const chat_message *m)
{
    static const char q_conv[] =
        "UPDATE conversations SET last_seq = ?2, last_activity_at = ?3,"
        " last_message_id = ?4, last_sender_id = ?5, last_preview = ?6,"
        " last_has_more = ?7 WHERE id = ?1 AND last_seq < ?2";
    static const char q_read[] =
        "UPDATE members SET read_seq = MAX(read_seq, ?3)"
        " WHERE conversation_id = ?1 AND user_id = ?2";
    sqlite3_stmt *st = chat__db_stmt(d, q_conv);
    int rc;

    if (st == NULL)
        return CHAT_EIO;
    chat__bind_text(st, 1, m->conversation_id);
    chat__bind_int(st, 2, m->seq);
    chat__bind_int(st, 3, m->created_at);
    chat__bind_text(st, 4, m->id);
    chat__bind_text(st, 5, m->sender_id);
    chat__bind_text(st, 6, m->preview);
    chat__bind_int(st, 7, m->has_more);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return chat__db_error(d, rc, "touch conversation");
    if ((st = chat__db_stmt(d, q_read)) == NULL)
        return CHAT_EIO;
    chat__bind_text(st, 1, m->conversation_id);
    chat__bind_text(st, 2, m->sender_id);
    chat__bind_int(st, 3, m->seq);
    rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? CHAT_OK
                             : chat__db_error(d, rc, "sender read marker");
}

#define MSG_COLS                                                               \
    "id, conversation_id, sender_id, COALESCE(client_msg_id, ''), seq,"        \
    " created_at, preview, has_more, content_len"

static void read_msg(sqlite3_stmt *st, chat_message *m)
{
    memset(m, 0, sizeof *m);
    chat__col_text(st, 0, m->id, sizeof m->id);
    chat__col_text(st, 1, m->conversation_id, sizeof m->conversation_id);
    chat__col_text(st, 2, m->sender_id, sizeof m->sender_id);
    chat__col_text(st, 3, m->client_msg_id, sizeof m->client_msg_id);
    m->seq = sqlite3_column_int64(st, 4);
    m->created_at = sqlite3_column_int64(st, 5);
    chat__col_text(st, 6, m->preview, sizeof m->preview);
    m->has_more = sqlite3_column_int(st, 7);
    m->content_len = (size_t)sqlite3_column_int64(st, 8);
}

/* Store one append inside the writer's open transaction. */
static int apply(sqlite_log *l, pending *p)
{
    static const char q_member[] =
        "SELECT (SELECT 1 FROM conversations WHERE id = ?1),"
        " (SELECT 1 FROM members WHERE conversation_id = ?1"
        " AND user_id = ?2)";
    static const char q_idem[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = ?1"
        " AND sender_id = ?2 AND client_msg_id = ?3";
    static const char q_last[] =
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1";
    static const char q_ins[] =
        "INSERT INTO messages (conversation_id, seq, id, sender_id,"
        " client_msg_id, created_at, preview, has_more, content_len, content)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    chat__db *d = &l->writer;
    chat_message *m = &p->msg;
    sqlite3_stmt *st;
    size_t cut;
    int rc;

    p->rc = CHAT_OK;
    if (p->require_member) {
        /* a refusal is this append's answer, not a failure of the batch */
        if (!(st = chat__db_stmt(d, q_member)))
            return CHAT_EIO;
        chat__bind_text(st, 1, p->conv);
        chat__bind_text(st, 2, p->sender);
        if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
            sqlite3_reset(st);
            return chat__db_error(d, rc, "membership");
        }
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            p->rc = CHAT_ENOTFOUND;
        else if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            p->rc = CHAT_EPERM;
        sqlite3_reset(st);
        if (p->rc != CHAT_OK)
            return CHAT_OK;
    }
    if (p->cmid[0]) {
        if (!(st = chat__db_stmt(d, q_idem)))
            return CHAT_EIO;
        chat__bind_text(st, 1, p->conv);
        chat__bind_text(st, 2, p->sender);
        chat__bind_text(st, 3, p->cmid);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_msg(st, m);
            sqlite3_reset(st);
            p->created = 0;
            return CHAT_OK;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return chat__db_error(d, rc, "idempotency lookup");
    }
    /* the next seq, read through the primary key in this transaction:
     * no separate counter exists that could drift from the rows */
    if (!(st = chat__db_stmt(d, q_last)))
        return CHAT_EIO;
    chat__bind_text(st, 1, p->conv);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW)
        return chat__db_error(d, rc, "last seq");
    memset(m, 0, sizeof *m);
    m->seq = sqlite3_column_int64(st, 0) + 1;
    sqlite3_reset(st);
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

    if (!(st = chat__db_stmt(d, q_ins)))
        return CHAT_EIO;
    chat__bind_text(st, 1, m->conversation_id);
    chat__bind_int(st, 2, m->seq);
    chat__bind_text(st, 3, m->id);
    chat__bind_text(st, 4, m->sender_id);
    chat__bind_text(st, 5, p->cmid[0] ? p->cmid : NULL);
    chat__bind_int(st, 6, m->created_at);
    chat__bind_text(st, 7, m->preview);
    chat__bind_int(st, 8, m->has_more);
    chat__bind_int(st, 9, (int64_t)p->len);
    sqlite3_bind_text(st, 10, p->content, (int)p->len, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE)
        return chat__db_error(d, rc, "insert message");
    if (l->o.touch_store && (rc = chat__sqlite_touch(d, m)) != CHAT_OK)
        return rc;
    p->created = 1;
    return CHAT_OK;
}

/* Commit a batch: all in one transaction; on failure, replay one append
 * per transaction so a single bad append fails alone. */
static void commit_batch(sqlite_log *l, pending *batch)
{
    pending *p;
    int rc;

    rc = chat__db_exec(&l->writer, "BEGIN IMMEDIATE");
    for (p = batch; rc == CHAT_OK && p; p = p->next)
        rc = apply(l, p);
    if (rc == CHAT_OK)
        rc = chat__db_exec(&l->writer, "COMMIT");
    if (rc == CHAT_OK)
        return; /* each p->rc is CHAT_OK or its refusal */
    chat__db_exec(&l->writer, "ROLLBACK");
    if (batch->next == NULL) {
        batch->rc = rc;
        return;
    }
    CHAT_LOG(CHAT_LOG_WARN,
             "component=log event=batch_failed rc=%d action=replay_singly", rc);
    for (p = batch; p; p = p->next) {
        pending *next = p->next;
        p->next = NULL;
        commit_batch(l, p);
        p->next = next;
    }
}

/* After each commit on the writer's connection (writer thread). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sqlite_log *l = arg;

    (void)db;
    (void)name;
    if (pages >= CKPT_PAGES) {
        pthread_mutex_lock(&l->lock);
        l->ckpt_wanted = 1;
        pthread_cond_signal(&l->ckpt_cond);
        pthread_mutex_unlock(&l->lock);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    sqlite_log *l = arg;
    int frames, done, rc;

    for (;;) {
        pthread_mutex_lock(&l->lock);
        while (!l->ckpt_wanted && !l->closing)
            pthread_cond_wait(&l->ckpt_cond, &l->lock);
        l->ckpt_wanted = 0;
        if (l->closing) {
            pthread_mutex_unlock(&l->lock);
            return NULL;
        }
        pthread_mutex_unlock(&l->lock);
        /* PASSIVE: copies what no reader still needs; never blocks the
         * writer, which keeps appending meanwhile */
        rc = sqlite3_wal_checkpoint_v2(
            l->ckpt.db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            CHAT_LOG(CHAT_LOG_WARN,
                     "component=log event=checkpoint_failed rc=%d msg=\"%s\"",
                     rc, sqlite3_errmsg(l->ckpt.db));
    }
}

static void *writer_main(void *arg)
{
    sqlite_log *l = arg;
    pending *batch, *p, *next;

    /* up to batch_max appends at a time, until closed and drained */
    while ((batch = chat__append_queue_take(&l->queue, l->o.batch_max))) {
        commit_batch(l, batch);
        for (p = batch; p; p = next) {
            next = p->next;
            chat__append_req_finish(p);
        }
    }
    return NULL;
}

static int log_append(chat_log *base, const chat_append *req, chat_append_cb cb,
                      void *userdata)
{
    sqlite_log *l = (sqlite_log *)base;
    pending *p;
    int rc;

    if ((rc = chat__append_req_new(req, cb, userdata, l->o.touch_store, 0,
                                   &p)) != CHAT_OK)
        return rc;
    return chat__append_queue_push(&l->queue, p);
}

static int log_range(chat_log *base, const char *conv_id, int64_t after_seq,
                     int64_t before_seq, int limit, chat_message *out, int *n)
{
    static const char q_after[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = ?1"
        " AND seq > ?2 ORDER BY seq LIMIT ?3";
    static const char q_before[] =
        "SELECT " MSG_COLS " FROM messages WHERE conversation_id = ?1"
        " AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
    sqlite_log *l = (sqlite_log *)base;
    chat__db *d = chat__dbpool_get(&l->readers);
    sqlite3_stmt *st = chat__db_stmt(d, before_seq > 0 ? q_before : q_after);
    int rc = CHAT_EIO;

    *n = 0;
    if (st) {
        chat__bind_text(st, 1, conv_id);
        chat__bind_int(st, 2, before_seq > 0 ? before_seq : after_seq);
        chat__bind_int(st, 3, limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < limit)
            read_msg(st, &out[(*n)++]);
        rc = rc == SQLITE_DONE || rc == SQLITE_ROW
                 ? CHAT_OK
                 : chat__db_error(d, rc, "history");
        sqlite3_reset(st);
    }
    chat__dbpool_put(&l->readers, d);
    if (rc == CHAT_OK && before_seq > 0) /* back to ascending */
        chat__messages_reverse(out, *n);
    return rc;
}

static int log_get(chat_log *base, const char *conv_id, const char *msg_id,
                   chat_message *out, char **content)
{
    static const char q[] = "SELECT " MSG_COLS ", content FROM messages"
                            " WHERE id = ?1 AND conversation_id = ?2";
    sqlite_log *l = (sqlite_log *)base;
    chat__db *d = chat__dbpool_get(&l->readers);
    sqlite3_stmt *st = chat__db_stmt(d, q);
    char lm[CHAT_ID_LEN + 1], lc[CHAT_ID_LEN + 1];
    int rc = CHAT_EIO;

    if (content)
        *content = NULL;
    chat__ascii_lower(lm, msg_id, sizeof lm);
    chat__ascii_lower(lc, conv_id, sizeof lc);
    if (st) {
        chat__bind_text(st, 1, lm);
        chat__bind_text(st, 2, lc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_msg(st, out);
            rc = CHAT_OK;
            if (content) {
                const char *t = (const char *)sqlite3_column_text(st, 9);
                int len = sqlite3_column_bytes(st, 9);
                *content = chat__strndup(t ? t : "", (size_t)len);
                if (*content == NULL)
                    rc = chat__error(CHAT_ENOMEM, "out of memory");
            }
        } else if (rc == SQLITE_DONE) {
            rc = chat__error(CHAT_ENOTFOUND, "no such message");
        } else {
            rc = chat__db_error(d, rc, "message lookup");
        }
        sqlite3_reset(st);
    }
    chat__dbpool_put(&l->readers, d);
    return rc;
}

static void log_free(chat_log *base)
{
    sqlite_log *l = (sqlite_log *)base;

    chat__append_queue_close(&l->queue);
    pthread_mutex_lock(&l->lock);
    l->closing = 1;
    pthread_cond_broadcast(&l->ckpt_cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL); /* commits what was queued */
    pthread_join(l->ckpt_thread, NULL);
    chat__db_close(&l->ckpt);
    /* the last connection to close checkpoints the rest */
    chat__db_close(&l->writer);
    chat__dbpool_close(&l->readers);
    pthread_mutex_destroy(&l->lock);
    chat__append_queue_destroy(&l->queue);
    pthread_cond_destroy(&l->ckpt_cond);
    chat__free(l);
}

static const chat_log_ops g_ops = {"sqlite",  log_free, log_append,
                                   log_range, log_get,  0};
static const chat_log_ops g_ops_touch = {"sqlite",  log_free, log_append,
                                         log_range, log_get,  1};

int chat_log_sqlite_open(chat_log **out, const char *path,
                         const chat_sqlite_opts *opts)
{
    sqlite_log *l;
    int rc;

    CHAT_ASSERT_ARG(out && path);
    l = chat__calloc(1, sizeof *l);
    if (l == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    chat__sqlite_opts_resolve(opts, &l->o);
    l->base.ops = l->o.touch_store ? &g_ops_touch : &g_ops;
    pthread_mutex_init(&l->lock, NULL);
    chat__append_queue_init(&l->queue);
    pthread_cond_init(&l->ckpt_cond, NULL);
    if ((rc = chat__db_open(&l->writer, path, &l->o, 1)) != CHAT_OK)
        goto fail;
    if ((rc = chat__dbpool_open(&l->readers, path, &l->o, l->o.readers)) !=
        CHAT_OK)
        goto fail_writer;
    if ((rc = chat__db_open(&l->ckpt, path, &l->o, 0)) != CHAT_OK) {
        chat__dbpool_close(&l->readers);
        goto fail_writer;
    }
    if ((rc = chat__db_exec(&l->writer, "PRAGMA wal_autocheckpoint=0")) !=
        CHAT_OK) {
        chat__db_close(&l->ckpt);
        chat__dbpool_close(&l->readers);
        goto fail_writer;
    }
    sqlite3_wal_hook(l->writer.db, wal_hook, l);
    if (pthread_create(&l->ckpt_thread, NULL, ckpt_main, l) != 0) {
        rc = chat__error(CHAT_ERROR, "cannot start the log checkpointer");
        chat__db_close(&l->ckpt);
        chat__dbpool_close(&l->readers);
        goto fail_writer;
    }
    pthread_setname_np(l->ckpt_thread, "chat-ckpt");
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        rc = chat__error(CHAT_ERROR, "cannot start the log writer");
        pthread_mutex_lock(&l->lock);
        l->closing = 1;
        pthread_cond_broadcast(&l->ckpt_cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->ckpt_thread, NULL);
        chat__db_close(&l->ckpt);
        chat__dbpool_close(&l->readers);
        goto fail_writer;
    }
    pthread_setname_np(l->thread, "chat-log");
    *out = &l->base;
    return CHAT_OK;
fail_writer:
    chat__db_close(&l->writer);
fail:
    pthread_mutex_destroy(&l->lock);
    chat__append_queue_destroy(&l->queue);
    pthread_cond_destroy(&l->ckpt_cond);
    chat__free(l);
    return rc;
}
