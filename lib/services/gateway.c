/* realtime-gateway: chat over Socket.IO (docs/realtime.md).
 *
 * Everything that touches sockets runs on the lws service thread. Work
 * that blocks (member lists, read markers, peers) runs on the gateway's
 * worker pool; results, bus events and append completions come back as
 * items on one queue, drained on the service thread after a wake. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libwebsockets.h>

#include "realtime/sio_server.h"
#include "services/gateway.h"

#define CONV_BUCKETS   4096
#define CONV_CACHE_MAX 65536
#define IP_BUCKETS     1024
#define PEERS_MAX      5000
#define TYPING_TTL_US  (5 * 1000000LL)

enum { I_EVENT, I_MEMBERS, I_SENT, I_READ };

typedef struct gsock gsock;
typedef struct centry centry;
typedef struct item item;
typedef void (*member_fn)(chat__gateway *g, centry *e, item *it);

struct gsock {
    chat__gateway *g;
    chat__sio_socket *s; /* NULL once the socket is gone */
    int refs;
    char user[CHAT_ID_LEN + 1]; /* "" until authenticated */
    char ip[48];
    lws_sorted_usec_list_t auth_sul;
    double tokens;
    int64_t refill_us;
};

struct item {
    item *next;
    chat__task task; /* worker jobs */
    int kind;
    chat__gateway *g;
    /* events */
    chat_event_type type;
    char conv[CHAT_ID_LEN + 1];
    char actor[CHAT_ID_LEN + 1];
    int to_members, members_changed;
    chat_id *ids; /* recipients, loaded members */
    int nids;
    chat__buf payload;
    /* requests from a socket */
    gsock *gs;
    int64_t ack; /* ack id or -1 */
    int rc;
    int64_t seq;
    uint64_t gen;
    member_fn then; /* what waits for the members */
};

struct centry {
    centry *next;
    char conv[CHAT_ID_LEN + 1];
    chat_id *members;
    int n;
    int state; /* 0 unknown, 1 loading, 2 loaded */
    uint64_t gen;
    item *head, *tail; /* waiting for the members, in order */
};

typedef struct ipcount {
    struct ipcount *next;
    int n;
    char ip[48];
} ipcount;

typedef struct typing {
    struct typing *next;
    char conv[CHAT_ID_LEN + 1];
    char user[CHAT_ID_LEN + 1];
    int64_t expires_us;
} typing;

struct chat__gateway {
    chat__svc *svc;
    chat__gateway_opts o;
    chat__sio *io;
    chat__pool *pool;
    pthread_mutex_t lock; /* inbound */
    item *in_head, *in_tail;
    atomic_int stopping;
    atomic_int inflight; /* appends not yet completed */
    centry *convs[CONV_BUCKETS];
    size_t nconvs;
    ipcount *ips[IP_BUCKETS];
    typing *typing;
    lws_sorted_usec_list_t typing_sul;
    int typing_armed;
};

static unsigned hash(const char *s, unsigned n)
{
    return chat__str_hash(s) % n;
}

static void gs_unref(gsock *gs)
{
    if (gs && --gs->refs == 0)
        chat__free(gs);
}

static item *item_new(chat__gateway *g, int kind)
{
    item *it = chat__calloc(1, sizeof *it);

    if (it) {
        it->g = g;
        it->kind = kind;
        it->ack = -1;
    }
    return it;
}

static void item_free(item *it)
{
    if (it == NULL)
        return;
    chat__buf_free(&it->payload);
    chat__free(it->ids);
    chat__free(it);
}

/* Any thread: hand an item to the service thread. */
static void post(chat__gateway *g, item *it)
{
    int wake;

    pthread_mutex_lock(&g->lock);
    /* only the first item after a drain wakes the service thread: the
     * drain takes the whole queue, so one wake-up serves them all */
    wake = g->in_head == NULL;
    if (g->in_tail)
        g->in_tail->next = it;
    else
        g->in_head = it;
    g->in_tail = it;
    pthread_mutex_unlock(&g->lock);
    if (wake && !atomic_load(&g->stopping))
        chat__http_wake(g->svc->http);
}

/* ---- emitting --------------------------------------------------------------
 */

/* The Socket.IO text of an event, "2[\"name\",<json>]" (namespace nsp);
 * the Engine.IO layer adds its own "4". */
static int encode_event(chat__buf *b, const char *nsp, const char *name,
                        const char *json, size_t len)
{
    b->len = 0;
    chat__buf_puts(b, "2");
    if (strcmp(nsp, "/") != 0) {
        chat__buf_puts(b, nsp);
        chat__buf_puts(b, ",");
    }
    chat__buf_puts(b, "[\"");
    chat__buf_puts(b, name);
    chat__buf_puts(b, "\",");
    chat__buf_append(b, json, len);
    return chat__buf_append(b, "]", 1);
}

static void emit_json(chat__sio_socket *s, const char *name, const char *json)
{
    chat__buf b = CHAT__BUF_INIT;

    if (encode_event(&b, chat__sio_socket_nsp(s), name, json, strlen(json)) ==
        CHAT_OK)
        chat__sio_send_encoded(s, b.data, b.len);
    chat__buf_free(&b);
}

/* Answer an ack with one JSON value (or do nothing without an ack id). */
static void ack_json(chat__sio_socket *s, int64_t id, const char *json)
{
    chat__buf b = CHAT__BUF_INIT;
    const char *nsp = chat__sio_socket_nsp(s);

    if (id < 0)
        return;
    chat__buf_puts(&b, "3");
    if (strcmp(nsp, "/") != 0) {
        chat__buf_puts(&b, nsp);
        chat__buf_puts(&b, ",");
    }
    chat__buf_printf(&b, "%lld[", (long long)id);
    chat__buf_puts(&b, json);
    if (chat__buf_append(&b, "]", 1) == CHAT_OK)
        chat__sio_send_encoded(s, b.data, b.len);
    chat__buf_free(&b);
}

static void ack_error(chat__sio_socket *s, int64_t id, const char *code,
                      const char *msg)
{
    char json[256];

    snprintf(json, sizeof json,
             "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    ack_json(s, id, json);
}

/* Tell the client why, then end its connection. */
static void refuse(chat__sio_socket *s, const char *event, const char *msg)
{
    gsock *gs = chat__sio_user(s);
    char json[192];

    if (gs && !gs->user[0])
        chat__metrics_inc(chat__http_metrics(gs->g->svc->http),
                          CHAT__C_RT_UNAUTHORIZED);

    snprintf(json, sizeof json, "{\"message\":\"%s\"}", msg);
    emit_json(s, event, json);
    chat__sio_disconnect(s, 1);
}

/* ---- delivery --------------------------------------------------------------
 */

typedef struct deliver_ctx {
    chat__buf root, ws; /* the packet for "/" and for "/ws" */
    size_t sockets;     /* reached */
} deliver_ctx;

static void deliver_one(chat__sio_socket *s, void *arg)
{
    deliver_ctx *d = arg;
    const chat__buf *b =
        strcmp(chat__sio_socket_nsp(s), "/") ? &d->ws : &d->root;

    /* a full queue closes the socket (slow consumer) */
    chat__sio_send_encoded(s, b->data, b->len);
}

static void deliver_user(chat__gateway *g, const char *uid, deliver_ctx *d)
{
    char room[CHAT_ID_LEN + 3];

    snprintf(room, sizeof room, "u:%s", uid);
    d->sockets += chat__sio_room_each(g->io, room, deliver_one, d);
}

static int in_ids(const chat_id *ids, int n, const char *uid)
{
    int i;

    for (i = 0; i < n; i++)
        if (!strcasecmp(ids[i].id, uid))
            return 1;
    return 0;
}

static void deliver(chat__gateway *g, centry *e, item *it)
{
    const char *name = chat_event_name(it->type);
    deliver_ctx d = {CHAT__BUF_INIT, CHAT__BUF_INIT, 0};
    int i, skip_actor = it->type == CHAT_EVENT_TYPING;

    if (encode_event(&d.root, "/", name, it->payload.data, it->payload.len) ||
        encode_event(&d.ws, "/ws", name, it->payload.data, it->payload.len))
        goto out;
    for (i = 0; e && i < e->n; i++)
        if (!(skip_actor && !strcasecmp(e->members[i].id, it->actor)))
            deliver_user(g, e->members[i].id, &d);
    for (i = 0; i < it->nids; i++)
        if (!(e && in_ids(e->members, e->n, it->ids[i].id)))
            deliver_user(g, it->ids[i].id, &d);
    chat__metrics_add(chat__http_metrics(g->svc->http), CHAT__C_RT_DELIVERIES,
                      d.sockets);
out:
    chat__buf_free(&d.root);
    chat__buf_free(&d.ws);
    item_free(it);
}

/* ---- the members cache -----------------------------------------------------
 */

static centry *conv_find(chat__gateway *g, const char *conv, int create)
{
    unsigned b = hash(conv, CONV_BUCKETS);
    centry *e;

    for (e = g->convs[b]; e; e = e->next)
        if (!strcmp(e->conv, conv))
            return e;
    if (!create)
        return NULL;
    if (g->nconvs >= CONV_CACHE_MAX) {
        /* forget every settled entry; they reload on use */
        unsigned i;
        for (i = 0; i < CONV_BUCKETS; i++) {
            centry **pp = &g->convs[i];
            while (*pp) {
                centry *x = *pp;
                if (x->state == 2 && x->head == NULL) {
                    *pp = x->next;
                    chat__free(x->members);
                    chat__free(x);
                    g->nconvs--;
                } else {
                    pp = &x->next;
                }
            }
        }
    }
    e = chat__calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    snprintf(e->conv, sizeof e->conv, "%s", conv);
    e->next = g->convs[b];
    g->convs[b] = e;
    g->nconvs++;
    return e;
}

static void load_task(chat__task *t)
{
    item *it = lws_container_of(t, item, task);
    chat__gateway *g = it->g;
    chat_member *m = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *m);
    int n = 0, i;

    it->rc = m ? chat_store_conv_members(g->svc->store, it->conv, m,
                                         CHAT_GROUP_MAX_MEMBERS, &n)
               : CHAT_ENOMEM;
    if (it->rc == CHAT_OK && n > 0) {
        it->ids = chat__calloc((size_t)n, sizeof *it->ids);
        if (it->ids == NULL)
            it->rc = CHAT_ENOMEM;
        for (i = 0; it->ids && i < n; i++)
            memcpy(it->ids[i].id, m[i].user_id, sizeof it->ids[i].id);
        it->nids = it->ids ? n : 0;
    }
    chat__free(m);
    post(g, it);
}

static void load_start(chat__gateway *g, centry *e)
{
    item *it = item_new(g, I_MEMBERS);

    e->state = 1;
    if (it == NULL)
        goto fail;
    snprintf(it->conv, sizeof it->conv, "%s", e->conv);
    it->gen = e->gen;
    it->task.fn = load_task;
    if (chat__pool_submit(g->pool, &it->task) == CHAT_OK)
        return;
    item_free(it);
fail:
    e->state = 0;
}

static void run_pending(chat__gateway *g, centry *e)
{
    while (e->head && e->state == 2) {
        item *it = e->head;
        e->head = it->next;
        if (e->head == NULL)
            e->tail = NULL;
        it->next = NULL;
        it->then(g, e, it);
    }
}

/* Run then(g, e, it) once conv's members are known, in arrival order. */
static void with_members(chat__gateway *g, const char *conv, item *it,
                         member_fn then)
{
    centry *e = conv_find(g, conv, 1);

    it->then = then;
    it->next = NULL;
    if (e == NULL) { /* no memory: as if nobody were a member */
        then(g, NULL, it);
        return;
    }
    if (e->state == 2 && e->head == NULL) {
        then(g, e, it);
        return;
    }
    if (e->tail)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    if (e->state == 0)
        load_start(g, e);
}

static void members_loaded(chat__gateway *g, item *it)
{
    centry *e = conv_find(g, it->conv, 0);

    if (e == NULL || e->state != 1) {
        item_free(it);
        return;
    }
    if (it->gen != e->gen) { /* changed while loading: again */
        item_free(it);
        load_start(g, e);
        return;
    }
    if (it->rc != CHAT_OK)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=gateway event=members_failed conversation=%s "
                 "rc=%d",
                 it->conv, it->rc);
    chat__free(e->members);
    e->members = it->ids; /* a failed load reads as no members */
    e->n = it->nids;
    it->ids = NULL;
    e->state = 2;
    item_free(it);
    run_pending(g, e);
}

static void invalidate(chat__gateway *g, const char *conv)
{
    centry *e = conv_find(g, conv, 0);

    if (e == NULL)
        return;
    e->gen++;
    if (e->state == 2) {
        chat__free(e->members);
        e->members = NULL;
        e->n = 0;
        e->state = 0;
    }
}

static int is_member(const centry *e, const char *uid)
{
    return e && in_ids(e->members, e->n, uid);
}

/* ---- events from the bus ---------------------------------------------------
 */

static int on_bus(const chat_event *ev, void *ud)
{
    chat__gateway *g = ud;
    item *it;
    int i;

    if (atomic_load(&g->stopping))
        return CHAT_ECLOSED;
    it = item_new(g, I_EVENT);
    if (it == NULL)
        goto fail;
    it->type = ev->type;
    snprintf(it->conv, sizeof it->conv, "%s",
             ev->conversation_id ? ev->conversation_id : "");
    snprintf(it->actor, sizeof it->actor, "%s", ev->user_id ? ev->user_id : "");
    it->to_members = ev->to_members && ev->conversation_id;
    it->members_changed = ev->members_changed && ev->conversation_id;
    if (ev->nrecipients > 0) {
        it->ids = chat__calloc((size_t)ev->nrecipients, sizeof *it->ids);
        if (it->ids == NULL)
            goto fail;
        for (i = 0; i < ev->nrecipients; i++)
            snprintf(it->ids[i].id, sizeof it->ids[i].id, "%s",
                     ev->recipients[i]);
        it->nids = ev->nrecipients;
    }
    if (chat__buf_append(&it->payload, ev->payload, ev->payload_len) != CHAT_OK)
        goto fail;
    post(g, it);
    return CHAT_OK;
fail:
    item_free(it);
    CHAT_LOG(CHAT_LOG_WARN, "component=gateway event=dropped reason=nomem");
    return CHAT_ENOMEM;
}

static void on_event_item(chat__gateway *g, item *it)
{
    if (it->members_changed)
        invalidate(g, it->conv);
    if (it->to_members)
        with_members(g, it->conv, it, deliver);
    else
        deliver(g, NULL, it);
}

/* ---- presence --------------------------------------------------------------
 */

typedef struct presence_job {
    chat__task task;
    chat__gateway *g;
    char user[CHAT_ID_LEN + 1];
    int online;
    int64_t at_ms;
} presence_job;

/* With several gateways: is the user still connected to another one?
 * This gateway's own entry may not be removed yet; it does not count. */
static int still_elsewhere(chat__gateway *g, const char *user)
{
    chat_id gw[16];
    const char *users[1] = {user};
    const char *self = chat_presence_gateway_id(g->svc->presence);
    int n = 0, i;

    if (chat_presence_locate(g->svc->presence, users, 1, gw, 16, &n) ==
        CHAT_ELIMIT)
        return 1;
    for (i = 0; i < n; i++)
        if (strcmp(gw[i].id, self) != 0)
            return 1;
    return 0; /* also when the registry cannot say: tell the peers */
}

static void presence_task(chat__task *t)
{
    presence_job *j = lws_container_of(t, presence_job, task);
    chat_id *peers = chat__calloc(PEERS_MAX, sizeof *peers);
    const char **rcpt = NULL;
    char payload[192], at[CHAT_TIME_LEN + 1];
    chat_event ev;
    int n = 0, i;

    if (!j->online && j->g->svc->presence && still_elsewhere(j->g, j->user))
        goto out; /* another gateway has a socket of the user */
    if (peers == NULL ||
        chat_store_peers(j->g->svc->store, j->user, peers, PEERS_MAX, &n) !=
            CHAT_OK ||
        (n > 0 && (rcpt = chat__calloc((size_t)n, sizeof *rcpt)) == NULL))
        goto out;
    for (i = 0; i < n; i++)
        rcpt[i] = peers[i].id;
    if (chat_time_format(j->at_ms, at) != CHAT_OK)
        goto out;
    snprintf(payload, sizeof payload,
             "{\"user_id\":\"%s\",\"online\":%s,\"last_seen\":\"%s\"}", j->user,
             j->online ? "true" : "false", at);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_PRESENCE;
    ev.user_id = j->user;
    ev.recipients = rcpt;
    ev.nrecipients = n;
    ev.payload = payload;
    ev.payload_len = strlen(payload);
    if (n > 0)
        chat__svc_publish(j->g->svc, &ev);
out:
    chat__free(rcpt);
    chat__free(peers);
    chat__free(j);
}

/* The first socket of a user on this gateway came (online) or the last
 * one went: record it in the registry (it queues) and tell the peers. */
static void presence(chat__gateway *g, const char *user, int online)
{
    presence_job *j;

    if (g->svc->presence &&
        chat_presence_set(g->svc->presence, user, online) != CHAT_OK)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=gateway event=presence_failed"
                 " msg=\"%s\"",
                 chat_error_last()->message);
    if ((j = chat__calloc(1, sizeof *j)) == NULL)
        return;
    j->g = g;
    snprintf(j->user, sizeof j->user, "%s", user);
    j->online = online;
    j->at_ms = chat_time_now_ms();
    j->task.fn = presence_task;
    if (chat__pool_submit(g->pool, &j->task) != CHAT_OK)
        chat__free(j);
}

/* ---- typing ----------------------------------------------------------------
 */

static void publish_typing(chat__gateway *g, const char *conv, const char *user,
                           int on)
{
    char payload[160];
    chat_event ev;

    snprintf(payload, sizeof payload,
             "{\"conversation_id\":\"%s\",\"user_id\":\"%s\","
             "\"is_typing\":%s}",
             conv, user, on ? "true" : "false");
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_TYPING;
    ev.conversation_id = conv;
    ev.user_id = user;
    ev.to_members = 1;
    ev.payload = payload;
    ev.payload_len = strlen(payload);
    chat__svc_publish(g->svc, &ev);
}

static void typing_sweep(lws_sorted_usec_list_t *sul);

static void typing_arm(chat__gateway *g)
{
    if (g->typing_armed || g->typing == NULL)
        return;
    g->typing_armed = 1;
    lws_sul_schedule(chat__http_lws_context(g->svc->http), 0, &g->typing_sul,
                     typing_sweep, LWS_US_PER_SEC);
}

static void typing_sweep(lws_sorted_usec_list_t *sul)
{
    chat__gateway *g = lws_container_of(sul, chat__gateway, typing_sul);
    int64_t now = chat__mono_us();
    typing **pp = &g->typing;

    g->typing_armed = 0;
    while (*pp) {
        typing *t = *pp;
        if (t->expires_us <= now) {
            *pp = t->next;
            publish_typing(g, t->conv, t->user, 0);
            chat__free(t);
        } else {
            pp = &t->next;
        }
    }
    typing_arm(g);
}

/* Record (on) or clear (off) a typing state; 1 if it changed. */
static int typing_set(chat__gateway *g, const char *conv, const char *user,
                      int on)
{
    typing **pp, *t;

    for (pp = &g->typing; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->conv, conv) && !strcmp((*pp)->user, user))
            break;
    t = *pp;
    if (!on) {
        if (t == NULL)
            return 0;
        *pp = t->next;
        chat__free(t);
        return 1;
    }
    if (t) {
        t->expires_us = chat__mono_us() + TYPING_TTL_US;
        return 0;
    }
    t = chat__calloc(1, sizeof *t);
    if (t == NULL)
        return 0;
    snprintf(t->conv, sizeof t->conv, "%s", conv);
    snprintf(t->user, sizeof t->user, "%s", user);
    t->expires_us = chat__mono_us() + TYPING_TTL_US;
    t->next = g->typing;
    g->typing = t;
    typing_arm(g);
    return 1;
}

/* ---- requests from sockets -------------------------------------------------
 */

static const char *arg_conv(const cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "conversation_id");

    return cJSON_IsString(v) && chat_uuid_valid(v->valuestring) ? v->valuestring
                                                                : NULL;
}

static item *request_item(gsock *gs, int kind, const char *conv, int64_t ack)
{
    item *it = item_new(gs->g, kind);

    if (it == NULL)
        return NULL;
    it->gs = gs;
    gs->refs++;
    it->ack = ack;
    snprintf(it->conv, sizeof it->conv, "%s", conv);
    snprintf(it->actor, sizeof it->actor, "%s", gs->user);
    return it;
}

static void request_done(item *it)
{
    gs_unref(it->gs);
    item_free(it);
}

/* message:send, after the append is durable (the log's thread). */
static void on_sent(int rc, const chat_message *m, int created, void *ud)
{
    item *it = ud;
    chat__gateway *g = it->g;

    it->rc = rc;
    it->payload.len = 0; /* the log copied the content at append time */
    if (rc == CHAT_OK) {
        char t[CHAT_TIME_LEN + 1] = "";
        chat__svc_message_stored(g->svc, m, created);
        chat_time_format(m->created_at, t);
        chat__buf_printf(&it->payload,
                         "{\"message_id\":\"%s\",\"seq\":%lld,"
                         "\"created_at\":\"%s\",\"duplicate\":%s}",
                         m->id, (long long)m->seq, t,
                         created ? "false" : "true");
    }
    post(g, it);
    atomic_fetch_sub(&g->inflight, 1);
}

/* 1 when a request may go on: its socket is still there and its user is a
 * member of the conversation. Otherwise it is answered (if it can be) and
 * freed. */
static int request_allowed(centry *e, item *it)
{
    if (it->gs->s == NULL) {
        request_done(it);
        return 0;
    }
    if (!is_member(e, it->actor)) {
        ack_error(it->gs->s, it->ack, "forbidden",
                  "not a member of this conversation");
        request_done(it);
        return 0;
    }
    return 1;
}

static void send_checked(chat__gateway *g, centry *e, item *it)
{
    chat_append req;
    int rc;

    if (!request_allowed(e, it))
        return;
    memset(&req, 0, sizeof req);
    req.conversation_id = it->conv;
    req.sender_id = it->actor;
    req.client_msg_id = it->seq ? it->payload.data + it->seq : NULL;
    req.content = it->payload.data;
    req.content_len = it->seq ? (size_t)it->seq - 1 : it->payload.len;
    req.require_member = chat_log_touches_store(g->svc->log);
    atomic_fetch_add(&g->inflight, 1);
    /* the log copies the request; once it took it, the item is on_sent's */
    rc = chat_log_append(g->svc->log, &req, on_sent, it);
    if (rc != CHAT_OK) {
        atomic_fetch_sub(&g->inflight, 1);
        ack_error(it->gs->s, it->ack, "unavailable", "could not store");
        request_done(it);
    }
}

static void sent_done(chat__gateway *g, item *it)
{
    (void)g;
    if (it->gs->s) {
        if (it->rc == CHAT_OK)
            ack_json(it->gs->s, it->ack, it->payload.data);
        else if (it->rc == CHAT_EPERM || it->rc == CHAT_ENOTFOUND)
            ack_error(it->gs->s, it->ack, "forbidden",
                      "not a member of this conversation");
        else
            ack_error(it->gs->s, it->ack, "unavailable", "could not store");
    }
    request_done(it);
}

static int client_msg_id_valid(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

static void ev_send(gsock *gs, const cJSON *arg, int64_t ack)
{
    const char *conv = arg_conv(arg), *content, *cmid = NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(arg, "content");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(arg, "client_msg_id");
    size_t clen;
    item *it;

    if (conv == NULL) {
        ack_error(gs->s, ack, "validation_failed",
                  "conversation_id must be a conversation id");
        return;
    }
    if (!cJSON_IsString(c) || (clen = strlen(c->valuestring)) == 0 ||
        clen > CHAT_MESSAGE_MAX_BYTES) {
        ack_error(gs->s, ack, "validation_failed",
                  "content must be a non-empty string of at most 65536 bytes");
        return;
    }
    content = c->valuestring;
    if (m && !cJSON_IsNull(m)) {
        if (!cJSON_IsString(m) || m->valuestring[0] == '\0' ||
            strlen(m->valuestring) > CHAT_CLIENT_MSG_ID_MAX ||
            !client_msg_id_valid(m->valuestring)) {
            ack_error(gs->s, ack, "validation_failed",
                      "client_msg_id must be 1-64 printable ASCII characters");
            return;
        }
        cmid = m->valuestring;
    }
    {
        chat__ratelimit *rl = chat__http_ratelimit(gs->g->svc->http);
        int retry;
        if (chat__ratelimit_take(rl, &gs->g->svc->rate_send, gs->user,
                                 &retry) != CHAT_OK) {
            char msg[64];
            snprintf(msg, sizeof msg, "sending too fast; retry in %d s", retry);
            ack_error(gs->s, ack, "rate_limited", msg);
            return;
        }
    }
    if ((it = request_item(gs, I_SENT, conv, ack)) == NULL)
        return;
    /* content, then NUL and the client_msg_id; seq marks where it starts */
    chat__buf_append(&it->payload, content, clen);
    if (cmid) {
        chat__buf_append(&it->payload, "", 1);
        chat__buf_puts(&it->payload, cmid);
        it->seq = (int64_t)clen + 1;
    }
    if (it->payload.data == NULL) {
        request_done(it);
        return;
    }
    with_members(gs->g, conv, it, send_checked);
}

static void read_task(chat__task *t)
{
    item *it = lws_container_of(t, item, task);
    chat__gateway *g = it->g;

    it->rc = chat_store_read_set(g->svc->store, it->conv, it->actor, it->seq,
                                 &it->seq);
    if (it->rc == CHAT_OK)
        chat__svc_publish_read(g->svc, it->conv, it->actor, it->seq);
    post(g, it);
}

static void read_checked(chat__gateway *g, centry *e, item *it)
{
    if (!request_allowed(e, it))
        return;
    it->task.fn = read_task;
    if (chat__pool_submit(g->pool, &it->task) != CHAT_OK) {
        ack_error(it->gs->s, it->ack, "unavailable", "shutting down");
        request_done(it);
    }
}

static void read_done(chat__gateway *g, item *it)
{
    char json[160];

    (void)g;
    if (it->gs->s) {
        if (it->rc == CHAT_OK) {
            snprintf(json, sizeof json,
                     "{\"conversation_id\":\"%s\",\"seq\":%lld}", it->conv,
                     (long long)it->seq);
            ack_json(it->gs->s, it->ack, json);
        } else {
            ack_error(it->gs->s, it->ack, "unavailable", "could not store");
        }
    }
    request_done(it);
}

static void ev_read(gsock *gs, const cJSON *arg, int64_t ack)
{
    const char *conv = arg_conv(arg);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(arg, "seq");
    item *it;

    if (conv == NULL || !cJSON_IsNumber(seq) || !(seq->valuedouble >= 0) ||
        seq->valuedouble > 9007199254740992.0 ||
        seq->valuedouble != (double)(int64_t)seq->valuedouble) {
        ack_error(gs->s, ack, "validation_failed",
                  "read needs conversation_id and a non-negative integer seq");
        return;
    }
    if ((it = request_item(gs, I_READ, conv, ack)) == NULL)
        return;
    it->seq = (int64_t)seq->valuedouble;
    with_members(gs->g, conv, it, read_checked);
}

static void typing_checked(chat__gateway *g, centry *e, item *it)
{
    int on = it->seq != 0;

    if (!request_allowed(e, it))
        return;
    /* renewals only push the expiry; changes are published */
    if (typing_set(g, it->conv, it->actor, on))
        publish_typing(g, it->conv, it->actor, on);
    ack_json(it->gs->s, it->ack, "{\"ok\":true}");
    request_done(it);
}

static void ev_typing(gsock *gs, const cJSON *arg, int64_t ack)
{
    const char *conv = arg_conv(arg);
    const cJSON *on = cJSON_GetObjectItemCaseSensitive(arg, "is_typing");
    item *it;

    if (conv == NULL || !cJSON_IsBool(on)) {
        ack_error(gs->s, ack, "validation_failed",
                  "typing needs conversation_id and a boolean is_typing");
        return;
    }
    if ((it = request_item(gs, I_EVENT, conv, ack)) == NULL)
        return;
    it->seq = cJSON_IsTrue(on);
    with_members(gs->g, conv, it, typing_checked);
}

/* ---- authentication --------------------------------------------------------
 */

static void auth_timeout(lws_sorted_usec_list_t *sul)
{
    gsock *gs = lws_container_of(sul, gsock, auth_sul);

    if (gs->s && !gs->user[0])
        refuse(gs->s, "unauthorized", "authentication timeout");
}

/* 0 when authenticated; otherwise the socket was refused (and may be
 * gone). */
static int authenticate(gsock *gs, const cJSON *token, int64_t ack)
{
    chat__gateway *g = gs->g;
    chat__sio_socket *s = gs->s;
    chat_jwt_claims cl;
    char room[CHAT_ID_LEN + 3], json[96];
    int rc;

    if (gs->user[0]) { /* again: same answer */
        snprintf(json, sizeof json, "{\"userId\":\"%s\"}", gs->user);
        emit_json(s, "authenticated", json);
        ack_json(s, ack, json);
        return 0;
    }
    if (!cJSON_IsString(token)) {
        refuse(s, "unauthorized", "token must be a string");
        return -1;
    }
    rc = chat_jwt_verify(g->svc->jwt_key, g->svc->jwt_key_len,
                         token->valuestring, strlen(token->valuestring),
                         (int64_t)time(NULL), &cl);
    if (rc != CHAT_OK) {
        refuse(s, "unauthorized",
               rc == CHAT_EEXPIRED ? "token expired" : "invalid token");
        return -1;
    }
    snprintf(room, sizeof room, "u:%s", cl.sub);
    if (g->o.max_per_user > 0 &&
        chat__sio_room_size(g->io, room) >= (size_t)g->o.max_per_user) {
        refuse(s, "error", "too many connections for this user");
        return -1;
    }
    if (chat__sio_join(s, room) != CHAT_OK) {
        refuse(s, "error", "out of memory");
        return -1;
    }
    memcpy(gs->user, cl.sub, sizeof gs->user);
    lws_sul_cancel(&gs->auth_sul);
    chat__metrics_inc(chat__http_metrics(g->svc->http),
                      CHAT__C_RT_AUTHENTICATED);
    snprintf(json, sizeof json, "{\"userId\":\"%s\"}", gs->user);
    emit_json(s, "authenticated", json);
    ack_json(s, ack, json);
    if (chat__sio_room_size(g->io, room) == 1)
        presence(g, gs->user, 1);
    return 0;
}

/* ---- socket handlers -------------------------------------------------------
 */

static ipcount *ip_find(chat__gateway *g, const char *ip, int create)
{
    unsigned b = hash(ip, IP_BUCKETS);
    ipcount *c;

    for (c = g->ips[b]; c; c = c->next)
        if (!strcmp(c->ip, ip))
            return c;
    if (!create || (c = chat__calloc(1, sizeof *c)) == NULL)
        return NULL;
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    c->next = g->ips[b];
    g->ips[b] = c;
    return c;
}

static void ip_release(chat__gateway *g, const char *ip)
{
    ipcount **pp, *c;

    for (pp = &g->ips[hash(ip, IP_BUCKETS)]; (c = *pp); pp = &c->next) {
        if (!strcmp(c->ip, ip)) {
            if (--c->n == 0) {
                *pp = c->next;
                chat__free(c);
            }
            return;
        }
    }
}

static int on_connect(chat__sio_socket *s, const cJSON *auth, const char **err,
                      void *ud)
{
    chat__gateway *g = ud;
    const char *ip = chat__sio_socket_ip(s);
    ipcount *ipc = ip_find(g, ip, 1);
    gsock *gs;
    const cJSON *token;

    if (ipc == NULL) {
        *err = "Server busy";
        return -1;
    }
    /* counted first, so a refusal below gives it back */
    ipc->n++;
    if (g->o.max_per_ip > 0 && ipc->n > g->o.max_per_ip) {
        ip_release(g, ip);
        *err = "Too many connections from this address";
        return -1;
    }
    gs = chat__calloc(1, sizeof *gs);
    if (gs == NULL) {
        ip_release(g, ip);
        *err = "Server busy";
        return -1;
    }
    gs->g = g;
    gs->s = s;
    gs->refs = 1;
    snprintf(gs->ip, sizeof gs->ip, "%s", ip);
    gs->tokens = g->o.events.burst;
    gs->refill_us = chat__mono_us();
    chat__sio_set_user(s, gs);
    token = cJSON_GetObjectItemCaseSensitive(auth, "token");
    if (token) {
        authenticate(gs, token, -1);
        return 0; /* refused sockets are gone already */
    }
    lws_sul_schedule(chat__http_lws_context(g->svc->http), 0, &gs->auth_sul,
                     auth_timeout,
                     (lws_usec_t)g->o.auth_timeout_ms * LWS_US_PER_MS);
    return 0;
}

static void on_disconnect(chat__sio_socket *s, const char *reason, void *ud)
{
    chat__gateway *g = ud;
    gsock *gs = chat__sio_user(s);
    char room[CHAT_ID_LEN + 3];

    (void)reason;
    if (gs == NULL)
        return;
    lws_sul_cancel(&gs->auth_sul);
    if (gs->user[0]) {
        chat__metrics_inc(chat__http_metrics(g->svc->http), CHAT__C_RT_CLOSED);
        /* this socket is still in its room: the last one leaves it */
        snprintf(room, sizeof room, "u:%s", gs->user);
        if (chat__sio_room_size(g->io, room) == 1)
            presence(g, gs->user, 0);
    }
    ip_release(g, gs->ip);
    chat__sio_set_user(s, NULL);
    gs->s = NULL;
    gs_unref(gs);
}

/* Token bucket per socket; 0 when the event may go on. */
static int rate_take(gsock *gs)
{
    const chat__rate *r = &gs->g->o.events;
    int64_t now = chat__mono_us();

    if (r->per_second <= 0)
        return 0;
    gs->tokens += (double)(now - gs->refill_us) / 1e6 * r->per_second;
    if (gs->tokens > r->burst)
        gs->tokens = r->burst;
    gs->refill_us = now;
    if (gs->tokens < 1.0)
        return -1;
    gs->tokens -= 1.0;
    return 0;
}

static void on_event(chat__sio_socket *s, const cJSON *data,
                     const chat__sio_bin *bins, int nbins, int64_t id, void *ud)
{
    gsock *gs = chat__sio_user(s);
    const cJSON *name = cJSON_GetArrayItem(data, 0);
    const cJSON *arg = cJSON_GetArrayItem(data, 1);
    const char *n;

    (void)ud;
    (void)bins;
    if (gs == NULL)
        return;
    if (rate_take(gs) != 0) {
        chat__metrics_inc(chat__http_metrics(gs->g->svc->http),
                          CHAT__C_RATE_EVENTS);
        refuse(s, "error", "rate limit exceeded");
        return;
    }
    if (!cJSON_IsString(name))
        return;
    n = name->valuestring;
    if (!strcmp(n, "authenticate")) {
        authenticate(gs, cJSON_GetObjectItemCaseSensitive(arg, "token"), id);
        return;
    }
    if (!gs->user[0]) {
        /* nothing but authenticate before authenticating */
        ack_error(s, id, "unauthorized", "authenticate first");
        return;
    }
    if (nbins > 0 || !cJSON_IsObject(arg)) {
        ack_error(s, id, "validation_failed", "the argument must be an object");
        return;
    }
    if (!strcmp(n, "message:send"))
        ev_send(gs, arg, id);
    else if (!strcmp(n, "read"))
        ev_read(gs, arg, id);
    else if (!strcmp(n, "typing"))
        ev_typing(gs, arg, id);
    else
        ack_error(s, id, "unknown_event", "no such event");
}

/* ---- the queue from other threads ------------------------------------------
 */

static void drain(void *ud)
{
    chat__gateway *g = ud;
    item *it, *next;

    pthread_mutex_lock(&g->lock);
    it = g->in_head;
    g->in_head = g->in_tail = NULL;
    pthread_mutex_unlock(&g->lock);
    for (; it; it = next) {
        next = it->next;
        it->next = NULL;
        switch (it->kind) {
        case I_EVENT:
            on_event_item(g, it);
            break;
        case I_MEMBERS:
            members_loaded(g, it);
            break;
        case I_SENT:
            sent_done(g, it);
            break;
        case I_READ:
            read_done(g, it);
            break;
        default:
            item_free(it);
        }
    }
}

/* ---- setup -----------------------------------------------------------------
 */

void chat__gateway_opts_init(chat__gateway_opts *o)
{
    memset(o, 0, sizeof *o);
}

int chat__gateway_new(chat__gateway **out, chat__svc *svc,
                      const chat__gateway_opts *o)
{
    static const char *const paths[] = {"/socket.io/", "/ws/socket.io/"};
    static const char *const nsps[] = {"/", "/ws"};
    chat__gateway *g;
    chat__sio_opts so;
    int rc;

    CHAT_ASSERT_ARG(out && svc && svc->http && svc->bus && o);
    g = chat__calloc(1, sizeof *g);
    if (g == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    g->svc = svc;
    g->o = *o;
    if (g->o.auth_timeout_ms <= 0)
        g->o.auth_timeout_ms = 10000;
    pthread_mutex_init(&g->lock, NULL);
    memset(&so, 0, sizeof so);
    so.paths = paths;
    so.npaths = 2;
    so.namespaces = nsps;
    so.nnamespaces = 2;
    so.connect_timeout_ms = o->connect_timeout_ms;
    so.eio.ping_interval_ms = o->ping_interval_ms;
    so.eio.ping_timeout_ms = o->ping_timeout_ms;
    so.eio.max_payload = o->max_payload ? o->max_payload : 128 * 1024;
    so.eio.max_queue = o->max_queue ? o->max_queue : 1u << 20;
    so.max_attachments = 1;
    so.handlers.on_connect = on_connect;
    so.handlers.on_event = on_event;
    so.handlers.on_disconnect = on_disconnect;
    so.userdata = g;
    if ((rc = chat__pool_new(&g->pool, 2, "gateway")) != CHAT_OK ||
        (rc = chat__sio_new(&g->io, svc->http, &so)) != CHAT_OK ||
        (rc = chat__http_on_wake(svc->http, drain, g)) != CHAT_OK ||
        (rc = chat_bus_subscribe(svc->bus, on_bus, g)) != CHAT_OK) {
        chat__gateway_free(g);
        return rc;
    }
    *out = g;
    return CHAT_OK;
}

void chat__gateway_stop(chat__gateway *g)
{
    int i;

    if (g == NULL)
        return;
    atomic_store(&g->stopping, 1);
    /* appends in flight call back into the gateway: let them land */
    for (i = 0; i < 1000 && atomic_load(&g->inflight) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void chat__gateway_free(chat__gateway *g)
{
    item *it;
    unsigned i;

    if (g == NULL)
        return;
    chat__gateway_stop(g);
    chat__pool_free(g->pool); /* runs what is queued; posts stay queued */
    chat__sio_free(g->io);
    while ((it = g->in_head) != NULL) {
        g->in_head = it->next;
        if (it->gs)
            gs_unref(it->gs);
        item_free(it);
    }
    for (i = 0; i < CONV_BUCKETS; i++) {
        while (g->convs[i]) {
            centry *e = g->convs[i];
            g->convs[i] = e->next;
            while ((it = e->head) != NULL) {
                e->head = it->next;
                if (it->gs)
                    gs_unref(it->gs);
                item_free(it);
            }
            chat__free(e->members);
            chat__free(e);
        }
    }
    for (i = 0; i < IP_BUCKETS; i++) {
        while (g->ips[i]) {
            ipcount *c = g->ips[i];
            g->ips[i] = c->next;
            chat__free(c);
        }
    }
    while (g->typing) {
        typing *t = g->typing;
        g->typing = t->next;
        chat__free(t);
    }
    pthread_mutex_destroy(&g->lock);
    chat__free(g);
}

size_t chat__gateway_sockets(const chat__gateway *g)
{
    return chat__sio_count(g->io);
}
