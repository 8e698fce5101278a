/* The message log on DynamoDB.
 *
 * Table <t> (conversation_id S, seq N) holds the messages, with a global
 * secondary index by_id (id) for lookups by message id. seq has no
 * counter that could drift: an append reads the conversation's last item
 * and writes last + 1 with attribute_not_exists, and on a conflict reads
 * again. A worker remembers the last seq it saw per conversation, so a
 * conversation that only this instance writes costs one PutItem.
 *
 * Idempotency without transactions: table <t>_requests holds one claim
 * per (conversation, sender, client_msg_id). The append that creates the
 * claim (conditional PutItem) writes the message, tagging it with the
 * claim's key, and then records the seq in the claim. A retry that finds
 * a finished claim answers with the original; one that finds a fresh
 * unfinished claim answers CHAT_EAGAIN; one that finds a claim older than
 * LEASE_MS takes it over (conditional on its owner), looks for a message
 * tagged with the key written since the claim, and finishes it or writes
 * the message itself. A writer gives up on its own claim once ABANDON_MS
 * have passed, well inside the lease, so two writers never both write.
 */
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "core/internal.h"
#include "store/log_util.h"

#define LEASE_MS    60000
#define ABANDON_MS  20000
#define SEQ_CACHE   1024 /* per worker, direct-mapped */
#define GET_RECENT  100  /* messages searched when the index lags */
#define MAX_RETRIES 64   /* seq conflicts for one append */

typedef chat__append_req dpending;

typedef struct seq_slot {
    char conv[CHAT_ID_LEN + 1];
    int64_t last;
} seq_slot;

struct ddb_log;

typedef struct worker {
    struct ddb_log *l;
    pthread_t thread;
    int started;
    chat__ddb *ddb;
    chat__append_queue queue;
    seq_slot seq[SEQ_CACHE];
} worker;

typedef struct ddb_log {
    chat_log base;
    chat_dynamodb_opts o; /* strings point into the copies below */
    char *endpoint, *region, *access_key, *secret_key, *session_token;
    char table[201], requests[216];
    pthread_mutex_t lock; /* the handle pool */
    int nworkers;
    worker *workers;
    chat__ddb **spare; /* handles for readers (range, get) */
    int nspare, capspare;
} ddb_log;

/* ---- attribute values ------------------------------------------------- */

static int put_s(cJSON *obj, const char *name, const char *v)
{
    cJSON *a = cJSON_AddObjectToObject(obj, name);
    return a && cJSON_AddStringToObject(a, "S", v) ? 0 : -1;
}

static int put_n(cJSON *obj, const char *name, int64_t v)
{
    char num[24];
    cJSON *a = cJSON_AddObjectToObject(obj, name);

    snprintf(num, sizeof num, "%lld", (long long)v);
    return a && cJSON_AddStringToObject(a, "N", num) ? 0 : -1;
}

static const char *get_s(const cJSON *item, const char *name)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, name);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(a, "S");
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

static int get_n(const cJSON *item, const char *name, int64_t *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, name);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(a, "N");
    char *end;

    if (!cJSON_IsString(n))
        return -1;
    *out = strtoll(n->valuestring, &end, 10);
    return *end ? -1 : 0;
}

/* A message item back into chat_message (content not copied). */
static int read_item(const cJSON *item, chat_message *m)
{
    const char *id = get_s(item, "id"), *conv = get_s(item, "conversation_id");
    const char *sender = get_s(item, "sender_id"), *pv = get_s(item, "preview");
    const char *cmid = get_s(item, "client_msg_id");
    int64_t more = 0, clen = 0;

    memset(m, 0, sizeof *m);
    if (!id || !conv || !sender || !pv || get_n(item, "seq", &m->seq) ||
        get_n(item, "created_at", &m->created_at) ||
        get_n(item, "has_more", &more) || get_n(item, "content_len", &clen))
        return chat__error(CHAT_EPROTO, "DynamoDB: malformed message item");
    chat__strlcpy(m->id, id, sizeof m->id);
    chat__strlcpy(m->conversation_id, conv, sizeof m->conversation_id);
    chat__strlcpy(m->sender_id, sender, sizeof m->sender_id);
    chat__strlcpy(m->client_msg_id, cmid ? cmid : "", sizeof m->client_msg_id);
    chat__strlcpy(m->preview, pv, sizeof m->preview);
    m->has_more = more != 0;
    m->content_len = (size_t)clen;
    return CHAT_OK;
}

/* Every attribute name in an expression goes through an alias (#x), so
 * none can collide with DynamoDB's reserved words; this adds the aliases
 * that exprs uses (DynamoDB refuses unused ones). */
static int add_names(cJSON *req, const char *exprs)
{
    static const char *const names[26] = {['c' - 'a'] = "conversation_id",
                                          ['s' - 'a'] = "seq",
                                          ['i' - 'a'] = "id",
                                          ['u' - 'a'] = "sender_id",
                                          ['m' - 'a'] = "client_msg_id",
                                          ['t' - 'a'] = "created_at",
                                          ['p' - 'a'] = "preview",
                                          ['h' - 'a'] = "has_more",
                                          ['l' - 'a'] = "content_len",
                                          ['r' - 'a'] = "request",
                                          ['o' - 'a'] = "owner",
                                          ['k' - 'a'] = "k"};
    cJSON *map = cJSON_AddObjectToObject(req, "ExpressionAttributeNames");
    char alias[3] = "#";
    const char *e;

    if (map == NULL)
        return -1;
    for (e = exprs; (e = strchr(e, '#')) != NULL; e++) {
        if (e[1] < 'a' || e[1] > 'z' || !names[e[1] - 'a'])
            return -1;
        alias[1] = e[1];
        if (!cJSON_HasObjectItem(map, alias) &&
            !cJSON_AddStringToObject(map, alias, names[e[1] - 'a']))
            return -1;
    }
    return 0;
}

/* A message without its content, for history pages. */
#define PREVIEW_PROJECTION "#c, #s, #i, #u, #m, #t, #p, #h, #l"

/* ---- handles ------------------------------------------------------------ */

static chat__ddb *handle_get(ddb_log *l)
{
    chat__ddb *d = NULL;

    pthread_mutex_lock(&l->lock);
    if (l->nspare > 0)
        d = l->spare[--l->nspare];
    pthread_mutex_unlock(&l->lock);
    if (d == NULL && chat__ddb_new(&d, &l->o) != CHAT_OK)
        return NULL;
    return d;
}

static void handle_put(ddb_log *l, chat__ddb *d)
{
    pthread_mutex_lock(&l->lock);
    if (l->nspare == l->capspare) {
        int cap = l->capspare ? l->capspare * 2 : 8;
        chat__ddb **n = chat__realloc(l->spare, (size_t)cap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&l->lock);
            chat__ddb_free(d);
            return;
        }
        l->spare = n;
        l->capspare = cap;
    }
    l->spare[l->nspare++] = d;
    pthread_mutex_unlock(&l->lock);
}

/* ---- reads -------------------------------------------------------------- */

/* The message at (conv, seq), read consistently; CHAT_ENOTFOUND if none.
 * With content, *content gets a copy of the text. */
static int item_at(ddb_log *l, chat__ddb *d, const char *conv, int64_t seq,
                   chat_message *m, char **content)
{
    cJSON *req = cJSON_CreateObject(), *key, *resp = NULL;
    const cJSON *item;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
        !(key = cJSON_AddObjectToObject(req, "Key")) ||
        put_s(key, "conversation_id", conv) || put_n(key, "seq", seq) ||
        !cJSON_AddTrueToObject(req, "ConsistentRead")) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "GetItem", req, &resp);
    cJSON_Delete(req);
    if (rc != CHAT_OK)
        return rc;
    item = cJSON_GetObjectItemCaseSensitive(resp, "Item");
    if (!cJSON_IsObject(item))
        rc = chat__error(CHAT_ENOTFOUND, "no such message");
    else if ((rc = read_item(item, m)) == CHAT_OK && content) {
        const char *t = get_s(item, "content");
        *content = chat__strdup(t ? t : "");
        if (*content == NULL)
            rc = chat__error(CHAT_ENOMEM, "out of memory");
    }
    cJSON_Delete(resp);
    return rc;
}

/* The conversation's last seq (0 when empty), read consistently. */
static int last_seq(ddb_log *l, chat__ddb *d, const char *conv, int64_t *out)
{
    cJSON *req = cJSON_CreateObject(), *v, *resp = NULL;
    const cJSON *items, *it;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
        !cJSON_AddStringToObject(req, "KeyConditionExpression", "#c = :c") ||
        !(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
        put_s(v, ":c", conv) ||
        !cJSON_AddStringToObject(req, "ProjectionExpression", "#s") ||
        add_names(req, "#c #s") ||
        !cJSON_AddFalseToObject(req, "ScanIndexForward") ||
        !cJSON_AddNumberToObject(req, "Limit", 1) ||
        !cJSON_AddTrueToObject(req, "ConsistentRead")) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "Query", req, &resp);
    cJSON_Delete(req);
    if (rc != CHAT_OK)
        return rc;
    items = cJSON_GetObjectItemCaseSensitive(resp, "Items");
    it = cJSON_GetArrayItem(items, 0);
    *out = 0;
    if (it && get_n(it, "seq", out))
        rc = chat__error(CHAT_EPROTO, "DynamoDB: malformed seq");
    cJSON_Delete(resp);
    return rc;
}

/* ---- appends ------------------------------------------------------------ */

static seq_slot *seq_slot_of(worker *w, const char *conv)
{
    return &w->seq[chat__conv_shard(conv, SEQ_CACHE)];
}

static void request_key(const dpending *p, char *out, size_t size)
{
    snprintf(out, size, "%s#%s#%s", p->conv, p->sender, p->cmid);
}

/* PutItem of message m at m->seq, unless that seq is taken. */
static int put_message(ddb_log *l, chat__ddb *d, const dpending *p,
                       const chat_message *m, const char *reqkey)
{
    cJSON *req = cJSON_CreateObject(), *item;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
        !(item = cJSON_AddObjectToObject(req, "Item")) ||
        put_s(item, "conversation_id", m->conversation_id) ||
        put_n(item, "seq", m->seq) || put_s(item, "id", m->id) ||
        put_s(item, "sender_id", m->sender_id) ||
        (p->cmid[0] && put_s(item, "client_msg_id", p->cmid)) ||
        (reqkey && put_s(item, "request", reqkey)) ||
        put_n(item, "created_at", m->created_at) ||
        put_s(item, "preview", m->preview) ||
        put_n(item, "has_more", m->has_more) ||
        put_n(item, "content_len", (int64_t)m->content_len) ||
        put_s(item, "content", p->content) ||
        !cJSON_AddStringToObject(req, "ConditionExpression",
                                 "attribute_not_exists(#s)") ||
        add_names(req, "#s")) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "PutItem", req, NULL);
    cJSON_Delete(req);
    return rc;
}

/* Write m at the next free seq. A conflict is either another writer
 * (read the last seq again) or our own earlier attempt whose answer was
 * lost (the item there is ours: done). */
static int write_next(worker *w, const dpending *p, chat_message *m,
                      const char *reqkey, int64_t deadline_us)
{
    ddb_log *l = w->l;
    seq_slot *slot = seq_slot_of(w, p->conv);
    int64_t last;
    int rc, tries;

    if (!strcmp(slot->conv, p->conv)) {
        last = slot->last;
    } else if ((rc = last_seq(l, w->ddb, p->conv, &last)) != CHAT_OK) {
        return rc;
    }
    for (tries = 0; tries < MAX_RETRIES; tries++) {
        if (deadline_us && chat__mono_us() > deadline_us)
            return chat__error(CHAT_EUNAVAIL, "DynamoDB: append took too long");
        m->seq = last + 1;
        rc = put_message(l, w->ddb, p, m, reqkey);
        if (rc == CHAT_ECONFLICT) {
            chat_message there;
            if (item_at(l, w->ddb, p->conv, m->seq, &there, NULL) == CHAT_OK &&
                !strcmp(there.id, m->id))
                rc = CHAT_OK;
        }
        if (rc == CHAT_OK) {
            memcpy(slot->conv, p->conv, sizeof slot->conv);
            slot->last = m->seq;
            return CHAT_OK;
        }
        if (rc != CHAT_ECONFLICT)
            return rc;
        slot->conv[0] = '\0';
        if ((rc = last_seq(l, w->ddb, p->conv, &last)) != CHAT_OK)
            return rc;
    }
    return chat__error(CHAT_EAGAIN, "DynamoDB: too many writers on one"
                                    " conversation; retry");
}

/* The claim record of key: found (1), absent (0) or an error (<0). */
static int claim_read(ddb_log *l, chat__ddb *d, const char *key, char *owner,
                      int64_t *at, int64_t *seq)
{
    cJSON *req = cJSON_CreateObject(), *k, *resp = NULL;
    const cJSON *item;
    const char *o;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->requests) ||
        !(k = cJSON_AddObjectToObject(req, "Key")) || put_s(k, "k", key) ||
        !cJSON_AddTrueToObject(req, "ConsistentRead")) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "GetItem", req, &resp);
    cJSON_Delete(req);
    if (rc != CHAT_OK)
        return rc;
    item = cJSON_GetObjectItemCaseSensitive(resp, "Item");
    rc = 0;
    if (cJSON_IsObject(item)) {
        o = get_s(item, "owner");
        *seq = 0;
        get_n(item, "seq", seq);
        if (!o || get_n(item, "at", at))
            rc = chat__error(CHAT_EPROTO, "DynamoDB: malformed claim");
        else {
            chat__strlcpy(owner, o, CHAT_ID_LEN + 1);
            rc = 1;
        }
    }
    cJSON_Delete(resp);
    return rc;
}

/* Create the claim (old_owner NULL) or take over old_owner's; the claim
 * then belongs to owner, dated at. CHAT_ECONFLICT if someone was first. */
static int claim_write(ddb_log *l, chat__ddb *d, const char *key,
                       const char *owner, int64_t at, const char *old_owner)
{
    const char *cond = old_owner ? "#o = :o AND attribute_not_exists(#s)"
                                 : "attribute_not_exists(#k)";
    cJSON *req = cJSON_CreateObject(), *item, *v = NULL;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->requests) ||
        !(item = cJSON_AddObjectToObject(req, "Item")) ||
        put_s(item, "k", key) || put_s(item, "owner", owner) ||
        put_n(item, "at", at) ||
        !cJSON_AddStringToObject(req, "ConditionExpression", cond) ||
        add_names(req, cond) ||
        (old_owner &&
         (!(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
          put_s(v, ":o", old_owner)))) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "PutItem", req, NULL);
    cJSON_Delete(req);
    return rc;
}

/* Record the seq in the owner's claim: from now on retries get it. */
static int claim_finish(ddb_log *l, chat__ddb *d, const char *key,
                        const char *owner, int64_t seq)
{
    cJSON *req = cJSON_CreateObject(), *k, *v;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", l->requests) ||
        !(k = cJSON_AddObjectToObject(req, "Key")) || put_s(k, "k", key) ||
        !cJSON_AddStringToObject(req, "UpdateExpression", "SET #s = :s") ||
        !cJSON_AddStringToObject(req, "ConditionExpression", "#o = :o") ||
        add_names(req, "#s #o") ||
        !(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
        put_n(v, ":s", seq) || put_s(v, ":o", owner)) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "UpdateItem", req, NULL);
    cJSON_Delete(req);
    return rc;
}

/* After taking over a dead claim dated since_ms: the message its first
 * writer may have stored (tagged with key), newest first, back to what
 * was written a lease before the claim. 1 found, 0 not, <0 error. */
static int find_tagged(ddb_log *l, chat__ddb *d, const dpending *p,
                       const char *key, int64_t since_ms, chat_message *m)
{
    cJSON *start = NULL;
    int rc = 0;

    for (;;) {
        cJSON *req = cJSON_CreateObject(), *v, *resp = NULL;
        const cJSON *items, *it, *lek;
        int64_t oldest = INT64_MAX;

        if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
            !cJSON_AddStringToObject(req, "KeyConditionExpression",
                                     "#c = :c") ||
            !(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
            put_s(v, ":c", p->conv) ||
            !cJSON_AddStringToObject(req, "ProjectionExpression",
                                     PREVIEW_PROJECTION ", #r") ||
            add_names(req, PREVIEW_PROJECTION ", #r") ||
            !cJSON_AddFalseToObject(req, "ScanIndexForward") ||
            !cJSON_AddNumberToObject(req, "Limit", 200) ||
            !cJSON_AddTrueToObject(req, "ConsistentRead") ||
            (start &&
             !cJSON_AddItemToObject(req, "ExclusiveStartKey", start))) {
            cJSON_Delete(req);
            cJSON_Delete(start);
            return chat__error(CHAT_ENOMEM, "out of memory");
        }
        start = NULL;
        rc = chat__ddb_call(d, "Query", req, &resp);
        cJSON_Delete(req);
        if (rc != CHAT_OK)
            return rc;
        items = cJSON_GetObjectItemCaseSensitive(resp, "Items");
        cJSON_ArrayForEach(it, items)
        {
            const char *tag = get_s(it, "request");
            int64_t at = 0;
            get_n(it, "created_at", &at);
            if (at < oldest)
                oldest = at;
            if (tag && !strcmp(tag, key)) {
                rc = read_item(it, m) == CHAT_OK ? 1 : CHAT_EPROTO;
                cJSON_Delete(resp);
                return rc;
            }
        }
        lek = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedKey");
        if (!cJSON_IsObject(lek) || oldest < since_ms - LEASE_MS) {
            cJSON_Delete(resp);
            return 0;
        }
        start = cJSON_Duplicate(lek, 1);
        cJSON_Delete(resp);
        if (start == NULL)
            return chat__error(CHAT_ENOMEM, "out of memory");
    }
}

static void fill_new(const dpending *p, chat_message *m)
{
    size_t cut;

    memset(m, 0, sizeof *m);
    memcpy(m->conversation_id, p->conv, sizeof p->conv);
    memcpy(m->sender_id, p->sender, sizeof p->sender);
    memcpy(m->client_msg_id, p->cmid, sizeof p->cmid);
    m->created_at = chat_time_now_ms();
    chat_text_preview(p->content, p->len, CHAT_PREVIEW_CHARS, &cut,
                      &m->has_more);
    memcpy(m->preview, p->content, cut);
    m->preview[cut] = '\0';
    m->content_len = p->len;
}

/* One append; *created says whether it stored a new message. */
static int append_one(worker *w, const dpending *p, chat_message *m,
                      int *created)
{
    ddb_log *l = w->l;
    char key[CHAT_ID_LEN * 2 + CHAT_CLIENT_MSG_ID_MAX + 4];
    char owner[CHAT_ID_LEN + 1];
    int64_t at = 0, seq = 0, start_us = chat__mono_us();
    int rc, rounds;

    *created = 0;
    fill_new(p, m);
    if ((rc = chat_uuid_v7(m->id)) != CHAT_OK)
        return rc;
    if (!p->cmid[0]) {
        if ((rc = write_next(w, p, m, NULL, 0)) == CHAT_OK)
            *created = 1;
        return rc;
    }
    request_key(p, key, sizeof key);
    for (rounds = 0; rounds < 8; rounds++) {
        int64_t now = chat_time_now_ms();
        /* our claim, named by the message id it will store */
        rc = claim_write(l, w->ddb, key, m->id, now, NULL);
        if (rc == CHAT_OK)
            goto write;
        if (rc != CHAT_ECONFLICT)
            return rc;
        rc = claim_read(l, w->ddb, key, owner, &at, &seq);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue; /* gone again: claim anew */
        if (seq > 0) {
            rc = item_at(l, w->ddb, p->conv, seq, m, NULL);
            return rc == CHAT_ENOTFOUND
                       ? chat__error(CHAT_EIO, "DynamoDB: a finished request"
                                               " points to no message")
                       : rc;
        }
        if (now < at + LEASE_MS)
            return chat__error(CHAT_EAGAIN, "a send with this client_msg_id"
                                            " is still being stored; retry");
        /* its writer is gone: take over, then finish what it did */
        rc = claim_write(l, w->ddb, key, m->id, now, owner);
        if (rc == CHAT_ECONFLICT)
            continue;
        if (rc != CHAT_OK)
            return rc;
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=log backend=dynamodb event=claim_taken_over"
                 " conversation=%s",
                 p->conv);
        start_us = chat__mono_us();
        {
            chat_message found;
            rc = find_tagged(l, w->ddb, p, key, at, &found);
            if (rc < 0)
                return rc;
            if (rc == 1) {
                rc = claim_finish(l, w->ddb, key, m->id, found.seq);
                *m = found;
                return rc;
            }
        }
        goto write;
    }
    return chat__error(CHAT_EAGAIN, "DynamoDB: request claim keeps changing");
write:
    rc = write_next(w, p, m, key, start_us + (int64_t)ABANDON_MS * 1000);
    if (rc != CHAT_OK)
        return rc; /* the claim stays unfinished; a retry takes it over */
    *created = 1;
    /* if this fails the message is stored and tagged: a later retry finds
     * it through the take-over, so the answer here is still success */
    if (claim_finish(l, w->ddb, key, m->id, m->seq) != CHAT_OK)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=log backend=dynamodb event=claim_unfinished"
                 " conversation=%s seq=%lld",
                 p->conv, (long long)m->seq);
    return CHAT_OK;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    dpending *p;
    int created, rc;

    /* one at a time, until closed and drained */
    while ((p = chat__append_queue_take(&w->queue, 1))) {
        rc = append_one(w, p, &p->msg, &created);
        if (rc != CHAT_OK)
            CHAT_LOG(CHAT_LOG_WARN,
                     "component=log backend=dynamodb event=append_failed"
                     " rc=%d msg=\"%s\"",
                     rc, chat_error_last()->message);
        p->rc = rc;
        p->created = created;
        chat__append_req_finish(p);
    }
    return NULL;
}

static int log_append(chat_log *base, const chat_append *req, chat_append_cb cb,
                      void *userdata)
{
    ddb_log *l = (ddb_log *)base;
    dpending *p;
    worker *w;
    int rc;

    if ((rc = chat__append_req_new(req, cb, userdata, 0, 1, &p)) != CHAT_OK)
        return rc;
    w = &l->workers[chat__conv_shard(p->conv, (unsigned)l->nworkers)];
    return chat__append_queue_push(&w->queue, p);
}

/* ---- history ------------------------------------------------------------ */

static int log_range(chat_log *base, const char *conv_id, int64_t after_seq,
                     int64_t before_seq, int limit, chat_message *out, int *n)
{
    ddb_log *l = (ddb_log *)base;
    chat__ddb *d;
    cJSON *start = NULL;
    char conv[CHAT_ID_LEN + 1];
    int rc = CHAT_OK;

    *n = 0;
    if (limit < 1 || limit > CHAT_PAGE_MAX)
        return chat__error(CHAT_EINVAL, "limit must be 1 to %d", CHAT_PAGE_MAX);
    if ((d = handle_get(l)) == NULL)
        return CHAT_EUNAVAIL;
    chat__ascii_lower(conv, conv_id, sizeof conv);
    do {
        cJSON *req = cJSON_CreateObject(), *v, *resp = NULL;
        const cJSON *items, *it, *lek;

        if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
            !cJSON_AddStringToObject(req, "KeyConditionExpression",
                                     before_seq > 0 ? "#c = :c AND #s < :s"
                                                    : "#c = :c AND #s > :s") ||
            !(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
            put_s(v, ":c", conv) ||
            put_n(v, ":s", before_seq > 0 ? before_seq : after_seq) ||
            /* the previews, never the full text */
            !cJSON_AddStringToObject(req, "ProjectionExpression",
                                     PREVIEW_PROJECTION) ||
            add_names(req, PREVIEW_PROJECTION) ||
            !cJSON_AddBoolToObject(req, "ScanIndexForward", before_seq <= 0) ||
            !cJSON_AddNumberToObject(req, "Limit", limit - *n) ||
            !cJSON_AddTrueToObject(req, "ConsistentRead") ||
            (start &&
             !cJSON_AddItemToObject(req, "ExclusiveStartKey", start))) {
            cJSON_Delete(req);
            cJSON_Delete(start);
            rc = chat__error(CHAT_ENOMEM, "out of memory");
            break;
        }
        start = NULL;
        rc = chat__ddb_call(d, "Query", req, &resp);
        cJSON_Delete(req);
        if (rc != CHAT_OK)
            break;
        items = cJSON_GetObjectItemCaseSensitive(resp, "Items");
        cJSON_ArrayForEach(it, items)
        {
            if (*n >= limit)
                break;
            if ((rc = read_item(it, &out[*n])) != CHAT_OK)
                break;
            (*n)++;
        }
        lek = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedKey");
        if (rc == CHAT_OK && *n < limit && cJSON_IsObject(lek) &&
            (start = cJSON_Duplicate(lek, 1)) == NULL)
            rc = chat__error(CHAT_ENOMEM, "out of memory");
        cJSON_Delete(resp);
    } while (rc == CHAT_OK && start);
    handle_put(l, d);
    if (rc != CHAT_OK) {
        *n = 0;
        return rc;
    }
    if (before_seq > 0) /* back to ascending */
        chat__messages_reverse(out, *n);
    return CHAT_OK;
}

/* Where message id lives: through the by_id index, or (the index is
 * eventually consistent) among the conversation's newest messages. */
static int locate(ddb_log *l, chat__ddb *d, const char *conv, const char *id,
                  int64_t *seq)
{
    cJSON *req = cJSON_CreateObject(), *v, *resp = NULL;
    const cJSON *it;
    int rc, pass;

    for (pass = 0; pass < 2; pass++) {
        if (pass == 1)
            req = cJSON_CreateObject();
        if (!req || !cJSON_AddStringToObject(req, "TableName", l->table) ||
            !(v = cJSON_AddObjectToObject(req, "ExpressionAttributeValues")) ||
            put_s(v, ":i", id) || put_s(v, ":c", conv) ||
            (pass == 0 &&
             (!cJSON_AddStringToObject(req, "IndexName", "by_id") ||
              !cJSON_AddStringToObject(req, "KeyConditionExpression",
                                       "#i = :i") ||
              !cJSON_AddStringToObject(req, "FilterExpression", "#c = :c") ||
              add_names(req, "#i #c"))) ||
            (pass == 1 &&
             (!cJSON_AddStringToObject(req, "KeyConditionExpression",
                                       "#c = :c") ||
              !cJSON_AddStringToObject(req, "FilterExpression", "#i = :i") ||
              !cJSON_AddStringToObject(req, "ProjectionExpression", "#s") ||
              add_names(req, "#c #i #s") ||
              !cJSON_AddFalseToObject(req, "ScanIndexForward") ||
              !cJSON_AddNumberToObject(req, "Limit", GET_RECENT) ||
              !cJSON_AddTrueToObject(req, "ConsistentRead")))) {
            cJSON_Delete(req);
            return chat__error(CHAT_ENOMEM, "out of memory");
        }
        rc = chat__ddb_call(d, "Query", req, &resp);
        cJSON_Delete(req);
        req = NULL;
        if (rc != CHAT_OK)
            return rc;
        it = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "Items"),
                                0);
        if (it && get_n(it, "seq", seq) == 0) {
            cJSON_Delete(resp);
            return CHAT_OK;
        }
        cJSON_Delete(resp);
        resp = NULL;
    }
    return chat__error(CHAT_ENOTFOUND, "no such message");
}

static int log_get(chat_log *base, const char *conv_id, const char *msg_id,
                   chat_message *out, char **content)
{
    ddb_log *l = (ddb_log *)base;
    char conv[CHAT_ID_LEN + 1], id[CHAT_ID_LEN + 1];
    chat__ddb *d;
    int64_t seq = 0;
    int rc;

    if (content)
        *content = NULL;
    if (!chat_uuid_valid(conv_id) || !chat_uuid_valid(msg_id))
        return chat__error(CHAT_ENOTFOUND, "no such message");
    chat__ascii_lower(conv, conv_id, sizeof conv);
    chat__ascii_lower(id, msg_id, sizeof id);
    if ((d = handle_get(l)) == NULL)
        return CHAT_EUNAVAIL;
    rc = locate(l, d, conv, id, &seq);
    if (rc == CHAT_OK)
        rc = item_at(l, d, conv, seq, out, content);
    handle_put(l, d);
    return rc;
}

/* ---- tables -------------------------------------------------------------- */

static int table_status(chat__ddb *d, const char *name, char *status,
                        size_t size)
{
    cJSON *req = cJSON_CreateObject(), *resp = NULL;
    const cJSON *s;
    int rc;

    if (!req || !cJSON_AddStringToObject(req, "TableName", name)) {
        cJSON_Delete(req);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    rc = chat__ddb_call(d, "DescribeTable", req, &resp);
    cJSON_Delete(req);
    if (rc != CHAT_OK)
        return rc;
    s = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(resp, "Table"), "TableStatus");
    snprintf(status, size, "%s", cJSON_IsString(s) ? s->valuestring : "");
    cJSON_Delete(resp);
    return CHAT_OK;
}

static const char *const MESSAGES_TABLE =
    "{\"AttributeDefinitions\":["
    "{\"AttributeName\":\"conversation_id\",\"AttributeType\":\"S\"},"
    "{\"AttributeName\":\"seq\",\"AttributeType\":\"N\"},"
    "{\"AttributeName\":\"id\",\"AttributeType\":\"S\"}],"
    "\"KeySchema\":[{\"AttributeName\":\"conversation_id\",\"KeyType\":"
    "\"HASH\"},{\"AttributeName\":\"seq\",\"KeyType\":\"RANGE\"}],"
    "\"GlobalSecondaryIndexes\":[{\"IndexName\":\"by_id\",\"KeySchema\":["
    "{\"AttributeName\":\"id\",\"KeyType\":\"HASH\"}],"
    "\"Projection\":{\"ProjectionType\":\"KEYS_ONLY\"}}],"
    "\"BillingMode\":\"PAY_PER_REQUEST\"}";

static const char *const REQUESTS_TABLE =
    "{\"AttributeDefinitions\":[{\"AttributeName\":\"k\",\"AttributeType\":"
    "\"S\"}],\"KeySchema\":[{\"AttributeName\":\"k\",\"KeyType\":\"HASH\"}],"
    "\"BillingMode\":\"PAY_PER_REQUEST\"}";

/* Make sure table name exists and is ACTIVE, creating it from spec. */
static int ensure_table(chat__ddb *d, const char *name, const char *spec,
                        int create)
{
    char status[32];
    int rc, i;

    rc = table_status(d, name, status, sizeof status);
    if (rc == CHAT_ENOTFOUND && create) {
        cJSON *req = cJSON_Parse(spec);
        if (!req || !cJSON_AddStringToObject(req, "TableName", name)) {
            cJSON_Delete(req);
            return chat__error(CHAT_ENOMEM, "out of memory");
        }
        rc = chat__ddb_call(d, "CreateTable", req, NULL);
        cJSON_Delete(req);
        if (rc != CHAT_OK && rc != CHAT_ECONFLICT) /* another instance won */
            return rc;
        CHAT_LOG(CHAT_LOG_INFO,
                 "component=log backend=dynamodb event=table_created table=%s",
                 name);
        status[0] = '\0';
        rc = CHAT_OK;
    }
    if (rc != CHAT_OK)
        return rc;
    for (i = 0; strcmp(status, "ACTIVE") != 0; i++) {
        struct timespec ts = {0, 50 * 1000000L};
        if (i >= 1200) /* 60 s */
            return chat__error(CHAT_EUNAVAIL,
                               "DynamoDB table %s is not"
                               " ACTIVE",
                               name);
        nanosleep(&ts, NULL);
        if ((rc = table_status(d, name, status, sizeof status)) != CHAT_OK)
            return rc;
    }
    return CHAT_OK;
}

/* ---- lifecycle ------------------------------------------------------------
 */

static void log_free(chat_log *base)
{
    ddb_log *l = (ddb_log *)base;
    int i;

    for (i = 0; i < l->nworkers; i++)
        chat__append_queue_close(&l->workers[i].queue);
    for (i = 0; i < l->nworkers; i++) {
        if (l->workers[i].started)
            pthread_join(l->workers[i].thread, NULL); /* drains its queue */
        chat__ddb_free(l->workers[i].ddb);
        chat__append_queue_destroy(&l->workers[i].queue);
    }
    for (i = 0; i < l->nspare; i++)
        chat__ddb_free(l->spare[i]);
    chat__free(l->spare);
    chat__free(l->workers);
    if (l->secret_key)
        sodium_memzero(l->secret_key, strlen(l->secret_key));
    chat__free(l->endpoint);
    chat__free(l->region);
    chat__free(l->access_key);
    chat__free(l->secret_key);
    chat__free(l->session_token);
    pthread_mutex_destroy(&l->lock);
    chat__free(l);
}

static const chat_log_ops g_ops = {"dynamodb", log_free, log_append,
                                   log_range,  log_get,  0};

void chat_dynamodb_opts_init(chat_dynamodb_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_DYNAMODB_OPTS_VERSION;
        o->create_tables = 1;
    }
}

void chat_dynamodb_opts_from_env(chat_dynamodb_opts *o)
{
    const char *v;

    if (o == NULL)
        return;
    if ((v = getenv("DYNAMODB_ENDPOINT")) && *v)
        o->endpoint = v;
    if (((v = getenv("AWS_REGION")) && *v) ||
        ((v = getenv("AWS_DEFAULT_REGION")) && *v))
        o->region = v;
    if ((v = getenv("AWS_ACCESS_KEY_ID")) && *v)
        o->access_key = v;
    if ((v = getenv("AWS_SECRET_ACCESS_KEY")) && *v)
        o->secret_key = v;
    if ((v = getenv("AWS_SESSION_TOKEN")) && *v)
        o->session_token = v;
    if ((v = getenv("DYNAMODB_TABLE")) && *v)
        o->table = v;
}

static char *copy(const char *s, int *failed)
{
    char *c;

    if (s == NULL || *s == '\0')
        return NULL;
    if ((c = chat__strdup(s)) == NULL)
        *failed = 1;
    return c;
}

static int valid_table_name(const char *s)
{
    size_t n = strlen(s);

    if (n < 3 || n > 200) /* leaves room for "_requests" */
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

int chat_log_dynamodb_open(chat_log **out, const chat_dynamodb_opts *opts)
{
    ddb_log *l;
    chat__ddb *d = NULL;
    int failed = 0, rc, i;

    CHAT_ASSERT_ARG(out && opts);
    if (opts->version != CHAT_DYNAMODB_OPTS_VERSION)
        return chat__error(CHAT_EINVAL, "chat_dynamodb_opts: unknown version");
    if (opts->table && !valid_table_name(opts->table))
        return chat__error(CHAT_EINVAL, "DynamoDB table name must be 3-200"
                                        " of [A-Za-z0-9_.-]");
    if (opts->workers < 0 || opts->workers > 64)
        return chat__error(CHAT_EINVAL, "workers must be 0 to 64");
    if ((rc = chat__sodium_init()) != CHAT_OK)
        return rc;
    if ((l = chat__calloc(1, sizeof *l)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    l->base.ops = &g_ops;
    pthread_mutex_init(&l->lock, NULL);
    l->o = *opts;
    l->o.endpoint = l->endpoint = copy(opts->endpoint, &failed);
    l->o.region = l->region = copy(opts->region, &failed);
    l->o.access_key = l->access_key = copy(opts->access_key, &failed);
    l->o.secret_key = l->secret_key = copy(opts->secret_key, &failed);
    l->o.session_token = l->session_token = copy(opts->session_token, &failed);
    snprintf(l->table, sizeof l->table, "%s",
             opts->table ? opts->table : "messages");
    snprintf(l->requests, sizeof l->requests, "%s_requests", l->table);
    l->o.table = l->table;
    l->nworkers = opts->workers > 0 ? opts->workers : 4;
    l->workers = chat__calloc((size_t)l->nworkers, sizeof *l->workers);
    if (failed || l->workers == NULL) {
        l->nworkers = 0;
        log_free(&l->base);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    for (i = 0; i < l->nworkers; i++)
        chat__append_queue_init(&l->workers[i].queue);

    /* the tables, through a first handle that then serves readers */
    if ((rc = chat__ddb_new(&d, &l->o)) != CHAT_OK ||
        (rc = ensure_table(d, l->table, MESSAGES_TABLE, opts->create_tables)) !=
            CHAT_OK ||
        (rc = ensure_table(d, l->requests, REQUESTS_TABLE,
                           opts->create_tables)) != CHAT_OK) {
        chat__ddb_free(d);
        log_free(&l->base);
        return rc;
    }
    handle_put(l, d);
    for (i = 0; i < l->nworkers; i++) {
        worker *w = &l->workers[i];
        w->l = l;
        if ((rc = chat__ddb_new(&w->ddb, &l->o)) != CHAT_OK)
            break;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            rc = chat__error(CHAT_ERROR, "cannot start a log worker");
            break;
        }
        w->started = 1;
        pthread_setname_np(w->thread, "chat-ddb");
    }
    if (rc != CHAT_OK) {
        log_free(&l->base);
        return rc;
    }
    *out = &l->base;
    return CHAT_OK;
}
