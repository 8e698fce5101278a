/*
 * Socket.IO v5 client over WebSocket (Engine.IO v4, websocket transport
 * only) on the libwebsockets client API; the real-time half of the
 * client's network edge (net.h).
 *
 * Threads. Each chat__sioc has one lws service thread. It alone touches
 * the wsi, the timers and the receive buffer, and it alone calls the sink.
 * Other threads (start, stop, emit, free) only change the fields under
 * `lock` and wake it with lws_cancel_service(); it picks the change up in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * One connection at a time, through these phases:
 *   CONNECTING  TCP, TLS and the WebSocket upgrade
 *   OPENING     waiting for the Engine.IO OPEN packet
 *   JOINING     Socket.IO CONNECT sent with {"token"}, waiting for the answer
 *   AUTHING     namespace joined, waiting for the "authenticated" event
 *   UP          emits are accepted (WS_UP was posted)
 * The chat server answers the CONNECT of a bad token with a {sid} first
 * and refuses it only afterwards ("unauthorized" then a DISCONNECT), so
 * "ready" means its "authenticated" event, which it always sends after a
 * CONNECT that carried a token (docs/realtime.md). A connection that ends
 * before UP is a failed attempt: WS_DOWN, then a retry after a backoff
 * with full jitter.
 *
 * Timers are lws_sul on the service thread: `sul_retry` for the backoff,
 * `sul_hb` for the attempt deadline and then the heartbeat deadline
 * (pingInterval + pingTimeout after the last frame from the server).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "client/net.h"
#include "realtime/codec.h"

#define SIOC_PROTOCOL       "chat-sioc"
#define SIOC_PATH           "/socket.io/?EIO=4&transport=websocket"
#define SIOC_RX_MAX         (1024 * 1024)     /* one incoming packet */
#define SIOC_RX_KEEP        (64 * 1024)       /* bigger rx buffers are freed */
#define SIOC_QUEUE_FRAMES   1000              /* emits waiting to be written */
#define SIOC_QUEUE_BYTES    (4 * 1024 * 1024) /* and their bytes */
#define SIOC_TOKEN_MAX      (16 * 1024)
#define SIOC_HOST_MAX       255
#define SIOC_BACKOFF_MS     250   /* first retry cap; doubles per failure */
#define SIOC_BACKOFF_MAX    30000 /* cap of the cap */
#define SIOC_CONNECT_MS     10000 /* attempt deadline when cfg gives none */
#define SIOC_CONNECT_MAX_MS (10 * 60 * 1000)
#define SIOC_PING_MAX_MS    (10 * 60 * 1000) /* sanity bound for the server's */
#define SIOC_ACK_ID_LIMIT   1000000000000000LL /* 15 digits, codec's bound */
#define SIOC_FD_LIMIT       16 /* the socket, the wake pipe, spare */
#define SIOC_REASON_MAX     200

enum phase {
    PH_IDLE,
    PH_BACKOFF,
    PH_CONNECTING,
    PH_OPENING,
    PH_JOINING,
    PH_AUTHING,
    PH_UP,
};

/* conn_end flags */
#define END_KILL  1 /* the wsi is still open: have lws close it */
#define END_QUIET 2 /* the application stopped it: no retry, no failure */

/* One outgoing WebSocket text frame: LWS_PRE bytes of headroom for lws,
 * then an Engine.IO packet of len bytes. */
typedef struct frame {
    struct frame *next;
    char *mem;
    size_t len;
} frame;

struct chat__sioc {
    /* fixed at creation */
    chat__net_sink_fn sink;
    void *sink_userdata;
    const chat__log_scope *log; /* the service thread's log hook */
    char *address; /* what to connect to (an IPv6 literal without []) */
    char *host;    /* the Host header */
    char *path;
    char *user_agent;
    char *ca_file;
    int port;
    int tls;
    int insecure;
    int connect_timeout_ms;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    pthread_t thread;
    int thread_started;
    atomic_int quit; /* free() has begun: no more sink calls */

    /* shared with the application's threads, under lock */
    pthread_mutex_t lock;
    char *token;
    int want;           /* started and not stopped */
    unsigned start_gen; /* bumped by every start() */
    unsigned stop_gen;  /* bumped by every stop() */
    int up;             /* emits are accepted */
    size_t max_payload; /* the server's maxPayload, 0 = unknown */
    frame *q_head, *q_tail;
    size_t q_frames, q_bytes;

    /* service thread only */
    enum phase phase;
    int run; /* the service thread's copy of want */
    unsigned seen_start, seen_stop;
    struct lws *wsi;     /* the current connection, NULL when none */
    char *attempt_token; /* the token this attempt sends */
    char *down_reason;   /* why the server refused, for WS_DOWN */
    unsigned failures;   /* consecutive attempts that never got UP */
    lws_usec_t hb_us;    /* pingInterval + pingTimeout */
    chat__buf rx;        /* a message arriving in fragments */
    lws_sorted_usec_list_t sul_retry, sul_hb;
};

/* ---- small helpers ------------------------------------------------------- */

static void str_wipe_free(char *p)
{
    if (p) {
        sodium_memzero(p, strlen(p));
        chat__free(p);
    }
}

static void frame_free(frame *f)
{
    if (f) {
        chat__free(f->mem);
        chat__free(f);
    }
}

static void frames_free(frame *f)
{
    frame *next;

    for (; f; f = next) {
        next = f->next;
        frame_free(f);
    }
}

/* Wrap b (LWS_PRE bytes of headroom, then the packet) into a frame. */
static int frame_from_buf(frame **out, chat__buf *b)
{
    frame *f;

    *out = NULL;
    if (b->failed || b->len <= LWS_PRE) {
        chat__buf_free(b);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    f = chat__calloc(1, sizeof *f);
    if (f == NULL) {
        chat__buf_free(b);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    f->len = b->len - LWS_PRE;
    f->mem = chat__buf_detach(b, NULL);
    *out = f;
    return CHAT_OK;
}

/* Frames are encoded in place after the headroom lws_write needs. */
static void frame_headroom(chat__buf *b)
{
    static const char headroom[LWS_PRE];

    chat__buf_append(b, headroom, sizeof headroom);
}

/* The Engine.IO MESSAGE packet ("4" + Socket.IO packet) for p. */
static int frame_sio(frame **out, const chat__sio_packet *p)
{
    chat__buf b = CHAT__BUF_INIT;

    frame_headroom(&b);
    chat__buf_append(&b, "4", 1);
    if (chat__sio_encode(&b, p) != CHAT_OK)
        b.failed = 1;
    return frame_from_buf(out, &b);
}

/* An Engine.IO packet given as text, e.g. the PONG "3". */
static int frame_text(frame **out, const char *text)
{
    chat__buf b = CHAT__BUF_INIT;

    frame_headroom(&b);
    chat__buf_puts(&b, text);
    return frame_from_buf(out, &b);
}

/* Caller holds lock. */
static void queue_push_locked(chat__sioc *s, frame *f)
{
    f->next = NULL;
    if (s->q_tail)
        s->q_tail->next = f;
    else
        s->q_head = f;
    s->q_tail = f;
    s->q_frames++;
    s->q_bytes += f->len;
}

/* Caller holds lock; returns the frames for the caller to free. */
static frame *queue_take_all_locked(chat__sioc *s)
{
    frame *f = s->q_head;

    s->q_head = s->q_tail = NULL;
    s->q_frames = s->q_bytes = 0;
    return f;
}

/* ---- sink ---------------------------------------------------------------- */

/* Hand one input to the sink; takes name and data either way. */
static void post(chat__sioc *s, int kind, int64_t id, char *name, cJSON *data)
{
    chat__net_input *in;

    if (atomic_load(&s->quit))
        goto drop;
    in = chat__calloc(1, sizeof *in);
    if (in == NULL) {
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=sioc event=drop kind=%d reason=out_of_memory",
                 kind);
        goto drop;
    }
    in->kind = kind;
    in->id = id;
    in->name = name;
    in->data = data;
    s->sink(in, s->sink_userdata);
    return;
drop:
    chat__free(name);
    cJSON_Delete(data);
}

/* ---- connection lifecycle (service thread) ------------------------------- */

static void conn_start(chat__sioc *s);

static void retry_cb(lws_sorted_usec_list_t *sul)
{
    chat__sioc *s = lws_container_of(sul, chat__sioc, sul_retry);

    if (s->phase == PH_BACKOFF && s->run)
        conn_start(s);
}

/* Full jitter: a delay uniform in [0, cap], the cap doubling with every
 * consecutive failure, so a server coming back is not hit by every client
 * at once. */
static void schedule_retry(chat__sioc *s)
{
    uint32_t cap = SIOC_BACKOFF_MAX, delay;

    if (s->failures < 7 && ((uint32_t)SIOC_BACKOFF_MS << s->failures) < cap)
        cap = (uint32_t)SIOC_BACKOFF_MS << s->failures;
    s->failures++;
    delay = randombytes_uniform(cap + 1);
    s->phase = PH_BACKOFF;
    CHAT_LOG(CHAT_LOG_DEBUG,
             "component=sioc event=backoff delay_ms=%u failures=%u",
             (unsigned)delay, s->failures);
    lws_sul_schedule(s->ctx, 0, &s->sul_retry, retry_cb,
                     (lws_usec_t)delay * LWS_US_PER_MS);
}

/* End the current attempt or connection: forget the wsi (its later
 * callbacks are ignored), drop what was queued for it, tell the sink and
 * plan the next attempt. */
static void conn_end(chat__sioc *s, const char *reason, int flags)
{
    int was_up = s->phase == PH_UP;
    frame *dropped;

    if (s->phase < PH_CONNECTING)
        return;
    if (s->wsi && (flags & END_KILL))
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    s->wsi = NULL;
    lws_sul_cancel(&s->sul_hb);
    pthread_mutex_lock(&s->lock);
    s->up = 0;
    s->max_payload = 0;
    dropped = queue_take_all_locked(s);
    pthread_mutex_unlock(&s->lock);
    frames_free(dropped);
    str_wipe_free(s->attempt_token);
    s->attempt_token = NULL;
    if (s->down_reason)
        reason = s->down_reason;
    CHAT_LOG(was_up ? CHAT_LOG_INFO : CHAT_LOG_DEBUG,
             "component=sioc event=down reason=\"%s\" was_up=%d", reason,
             was_up);
    if (was_up || !(flags & END_QUIET))
        post(s, CHAT__NET_WS_DOWN, 0, chat__strdup(reason), NULL);
    chat__free(s->down_reason);
    s->down_reason = NULL;
    s->phase = PH_IDLE;
    if (!(flags & END_QUIET) && s->run)
        schedule_retry(s);
}

static void hb_cb(lws_sorted_usec_list_t *sul)
{
    chat__sioc *s = lws_container_of(sul, chat__sioc, sul_hb);

    if (s->phase < PH_JOINING) {
        CHAT_LOG(CHAT_LOG_INFO, "component=sioc event=connect_timeout");
        conn_end(s, "connect timeout", END_KILL);
    } else {
        CHAT_LOG(CHAT_LOG_WARN, "component=sioc event=ping_timeout");
        conn_end(s, "ping timeout", END_KILL);
    }
}

static void conn_start(chat__sioc *s)
{
    struct lws_client_connect_info ci;
    struct lws *wsi;

    pthread_mutex_lock(&s->lock);
    s->attempt_token = s->token ? chat__strdup(s->token) : NULL;
    pthread_mutex_unlock(&s->lock);
    s->phase = PH_CONNECTING;
    chat__buf_free(&s->rx);
    if (s->attempt_token == NULL) {
        conn_end(s, "out of memory", 0);
        return;
    }
    memset(&ci, 0, sizeof ci);
    ci.context = s->ctx;
    ci.address = s->address;
    ci.port = s->port;
    ci.path = s->path;
    ci.host = s->host;
    /* no .protocol: Socket.IO servers do not negotiate a subprotocol */
    ci.local_protocol_name = SIOC_PROTOCOL;
    if (s->tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (s->insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                 LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED;
    }
    lws_sul_schedule(s->ctx, 0, &s->sul_hb, hb_cb,
                     (lws_usec_t)s->connect_timeout_ms * LWS_US_PER_MS);
    CHAT_LOG(CHAT_LOG_DEBUG, "component=sioc event=connect host=%s port=%d",
             s->address, s->port);
    /* A NULL return means it failed before any callback could say so
     * (lws suppresses CONNECTION_ERROR until it returns). */
    wsi = lws_client_connect_via_info(&ci);
    if (wsi == NULL) {
        conn_end(s, "connect failed", 0);
        return;
    }
    s->wsi = wsi;
}

/* A malformed or unexpected packet: log it, close and retry. Returns -1
 * for the lws callback, which closes the wsi. */
static int proto_fail(chat__sioc *s, const char *why)
{
    CHAT_LOG(CHAT_LOG_WARN, "component=sioc event=protocol_error why=\"%s\"",
             why);
    conn_end(s, "protocol error", 0);
    return -1;
}

/* ---- incoming packets (service thread) ----------------------------------- */

static void queue_control(chat__sioc *s, frame *f)
{
    /* the service thread's own frames skip the emit bounds */
    pthread_mutex_lock(&s->lock);
    queue_push_locked(s, f);
    pthread_mutex_unlock(&s->lock);
    lws_callback_on_writable(s->wsi);
}

/* Engine.IO OPEN: read the session's limits, then join namespace "/". */
static int on_open(chat__sioc *s, const char *data, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(data, len), *auth = NULL;
    const cJSON *pi, *pt, *mp;
    chat__sio_packet p;
    frame *f = NULL;
    int rc;

    pi = cJSON_GetObjectItemCaseSensitive(o, "pingInterval");
    pt = cJSON_GetObjectItemCaseSensitive(o, "pingTimeout");
    mp = cJSON_GetObjectItemCaseSensitive(o, "maxPayload");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(pi) || !cJSON_IsNumber(pt) ||
        !(pi->valuedouble >= 1 && pi->valuedouble <= SIOC_PING_MAX_MS) ||
        !(pt->valuedouble >= 1 && pt->valuedouble <= SIOC_PING_MAX_MS)) {
        cJSON_Delete(o);
        return proto_fail(s, "bad OPEN packet");
    }
    s->hb_us = ((lws_usec_t)pi->valuedouble + (lws_usec_t)pt->valuedouble) *
               LWS_US_PER_MS;
    pthread_mutex_lock(&s->lock);
    s->max_payload = cJSON_IsNumber(mp) && mp->valuedouble >= 1 &&
                             mp->valuedouble < (double)SIZE_MAX
                         ? (size_t)mp->valuedouble
                         : 0;
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(o);

    memset(&p, 0, sizeof p);
    p.type = CHAT__SIO_CONNECT;
    p.nsp[0] = '/';
    p.id = -1;
    p.data = auth = cJSON_CreateObject();
    rc = auth && cJSON_AddStringToObject(auth, "token", s->attempt_token)
             ? frame_sio(&f, &p)
             : CHAT_ENOMEM;
    cJSON_Delete(auth);
    if (rc != CHAT_OK) {
        conn_end(s, "out of memory", 0);
        return -1;
    }
    s->phase = PH_JOINING;
    /* from now on the server's heartbeat tells whether it is alive */
    lws_sul_schedule(s->ctx, 0, &s->sul_hb, hb_cb, s->hb_us);
    queue_control(s, f);
    return 0;
}

static void go_up(chat__sioc *s)
{
    int ok;

    /* a stop() the service thread has not seen yet wins */
    pthread_mutex_lock(&s->lock);
    ok = s->want && s->stop_gen == s->seen_stop;
    if (ok)
        s->up = 1;
    pthread_mutex_unlock(&s->lock);
    if (!ok)
        return;
    s->phase = PH_UP;
    s->failures = 0;
    CHAT_LOG(CHAT_LOG_INFO, "component=sioc event=up");
    post(s, CHAT__NET_WS_UP, 0, NULL, NULL);
}

/* The "message" of a CONNECT_ERROR or refusal payload, or NULL. */
static const char *payload_message(const cJSON *d)
{
    const cJSON *m;

    if (cJSON_IsString(d))
        return d->valuestring;
    m = cJSON_GetObjectItemCaseSensitive(d, "message");
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

/* The server says why it is about to disconnect us ("unauthorized",
 * "error"): keep it as the reason of the WS_DOWN that follows. */
static void note_refusal(chat__sioc *s, const char *event, const cJSON *arg)
{
    const char *msg = payload_message(arg);
    char reason[SIOC_REASON_MAX];

    if (s->down_reason)
        return;
    snprintf(reason, sizeof reason, "%s: %s", event, msg ? msg : "");
    s->down_reason = chat__strdup(reason);
}

static int on_event(chat__sioc *s, chat__sio_packet *p)
{
    const cJSON *first = cJSON_GetArrayItem(p->data, 0);
    const char *name;
    char *copy;

    /* names may be numbers on the wire; the chat server never sends one */
    if (!cJSON_IsString(first) || s->phase < PH_AUTHING)
        return 0;
    name = first->valuestring;
    if (s->phase == PH_AUTHING && !strcmp(name, "authenticated")) {
        go_up(s);
    } else if (!strcmp(name, "unauthorized") || !strcmp(name, "error")) {
        note_refusal(s, name, cJSON_GetArrayItem(p->data, 1));
    }
    /* an ack id here asks us to answer; the chat server never does */
    copy = chat__strdup(name);
    if (copy == NULL) {
        conn_end(s, "out of memory", 0);
        return -1;
    }
    post(s, CHAT__NET_WS_EVENT, 0, copy, cJSON_DetachItemFromArray(p->data, 1));
    return 0;
}

static int on_sio(chat__sioc *s, const char *data, size_t len)
{
    static const chat__sio_limits lim = {SIOC_RX_MAX, 0};
    chat__sio_packet p;
    const char *msg;
    int rc = 0;

    if (chat__sio_decode(data, len, &lim, &p) != CHAT_OK)
        return proto_fail(s, chat_error_last()->message);
    if (strcmp(p.nsp, "/")) /* we never join another namespace */
        goto done;
    switch (p.type) {
    case CHAT__SIO_CONNECT:
        if (s->phase == PH_JOINING)
            s->phase = PH_AUTHING;
        break;
    case CHAT__SIO_CONNECT_ERROR:
        msg = payload_message(p.data);
        chat__free(s->down_reason);
        s->down_reason = chat__strdup(msg ? msg : "connect error");
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=sioc event=connect_error message=\"%s\"",
                 msg ? msg : "");
        conn_end(s, "connect error", 0);
        rc = -1;
        break;
    case CHAT__SIO_DISCONNECT:
        conn_end(s, "server disconnect", 0);
        rc = -1;
        break;
    case CHAT__SIO_EVENT:
        rc = on_event(s, &p);
        break;
    case CHAT__SIO_ACK:
        if (p.id < 0) {
            rc = proto_fail(s, "ACK without an id");
            break;
        }
        if (s->phase >= PH_AUTHING)
            post(s, CHAT__NET_WS_ACK, p.id, NULL,
                 cJSON_DetachItemFromArray(p.data, 0));
        break;
    default: /* binary packets: we never announce support for them */
        rc = proto_fail(s, "binary Socket.IO packet");
    }
done:
    chat__sio_packet_clear(&p);
    return rc;
}

/* One complete WebSocket message = one Engine.IO packet. Returns -1 when
 * the connection must close (conn_end was called). */
static int on_packet(chat__sioc *s, const char *data, size_t len)
{
    chat__eio_packet p;
    frame *f;

    /* no scratch: "b<base64>" is polling-only and fails here */
    if (chat__eio_decode(data, len, &p, NULL, 0) != CHAT_OK)
        return proto_fail(s, chat_error_last()->message);
    if (s->phase == PH_OPENING)
        return p.type == CHAT__EIO_OPEN ? on_open(s, p.data, p.len)
                                        : proto_fail(s, "expected OPEN");
    /* anything from the server proves it alive */
    lws_sul_schedule(s->ctx, 0, &s->sul_hb, hb_cb, s->hb_us);
    switch (p.type) {
    case CHAT__EIO_PING:
        if (frame_text(&f, "3") != CHAT_OK) {
            conn_end(s, "out of memory", 0);
            return -1;
        }
        queue_control(s, f);
        return 0;
    case CHAT__EIO_MESSAGE:
        return on_sio(s, p.data, p.len);
    case CHAT__EIO_CLOSE:
        conn_end(s, "server close", 0);
        return -1;
    case CHAT__EIO_OPEN:
        return proto_fail(s, "second OPEN");
    default: /* PONG, NOOP, UPGRADE carry nothing for us */
        return 0;
    }
}

static int on_receive(chat__sioc *s, struct lws *wsi, const char *in,
                      size_t len)
{
    int rc;

    if (lws_frame_is_binary(wsi))
        return proto_fail(s, "binary frame");
    if (lws_is_first_fragment(wsi))
        s->rx.len = 0;
    if (len > SIOC_RX_MAX - s->rx.len)
        return proto_fail(s, "message over 1 MiB");
    if (chat__buf_append(&s->rx, in, len) != CHAT_OK) {
        conn_end(s, "out of memory", 0);
        return -1;
    }
    if (!lws_is_final_fragment(wsi))
        return 0;
    rc = on_packet(s, s->rx.data, s->rx.len);
    /* keep a big buffer no longer than the message that needed it */
    if (s->rx.cap > SIOC_RX_KEEP)
        chat__buf_free(&s->rx);
    s->rx.len = 0;
    return rc;
}

/* One queued frame per writable callback, as lws wants. */
static int on_writable(chat__sioc *s, struct lws *wsi)
{
    frame *f;
    size_t len;
    int more, n;

    pthread_mutex_lock(&s->lock);
    f = s->q_head;
    if (f) {
        s->q_head = f->next;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        s->q_frames--;
        s->q_bytes -= f->len;
    }
    more = s->q_head != NULL;
    pthread_mutex_unlock(&s->lock);
    if (f == NULL)
        return 0;
    len = f->len;
    n = lws_write(wsi, (unsigned char *)f->mem + LWS_PRE, len, LWS_WRITE_TEXT);
    frame_free(f);
    if (n < 0 || (size_t)n < len) {
        conn_end(s, "write failed", 0);
        return -1;
    }
    if (more)
        lws_callback_on_writable(wsi);
    return 0;
}

/* Commands from other threads: stop, start, frames to write. */
static void on_wake(chat__sioc *s)
{
    unsigned start_gen, stop_gen;
    int want, pending;

    pthread_mutex_lock(&s->lock);
    start_gen = s->start_gen;
    stop_gen = s->stop_gen;
    want = s->want;
    pending = s->q_head != NULL;
    pthread_mutex_unlock(&s->lock);

    if (stop_gen != s->seen_stop) {
        s->seen_stop = stop_gen;
        s->run = 0;
        lws_sul_cancel(&s->sul_retry);
        conn_end(s, "stopped", END_KILL | END_QUIET);
        s->phase = PH_IDLE;
    }
    s->run = want;
    if (start_gen != s->seen_start) {
        s->seen_start = start_gen;
        if (want && (s->phase == PH_IDLE || s->phase == PH_BACKOFF)) {
            lws_sul_cancel(&s->sul_retry);
            conn_start(s);
        }
    }
    if (pending && s->wsi && s->phase >= PH_OPENING)
        lws_callback_on_writable(s->wsi);
}

/* lws gave up on the attempt; in is its reason (a string) or NULL. */
static void connect_error(chat__sioc *s, const char *in)
{
    char reason[SIOC_REASON_MAX];

    snprintf(reason, sizeof reason, "connect failed%s%s", in ? ": " : "",
             in ? in : "");
    conn_end(s, reason, 0);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    chat__sioc *s = ctx ? lws_context_user(ctx) : NULL;
    int current;

    /* during free: the thread is gone and the context is being torn down */
    if (s == NULL || atomic_load(&s->quit))
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    current = wsi == s->wsi && s->phase >= PH_CONNECTING;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        on_wake(s);
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        char **p = in;
        int n;

        if (s->user_agent == NULL)
            return 0;
        n = snprintf(*p, len, "User-Agent: %s\r\n", s->user_agent);
        if (n > 0 && (size_t)n < len)
            *p += n;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (current)
            connect_error(s, in);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (current)
            s->phase = PH_OPENING;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        /* a forgotten connection still talking: close it */
        return current ? on_receive(s, wsi, in, len) : -1;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return current ? on_writable(s, wsi) : -1;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        /* WSI_DESTROY catches ends no other callback reported */
        if (current)
            conn_end(s, "connection closed", 0);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static void *service_main(void *arg)
{
    chat__sioc *s = arg;

    chat__log_scope_set(s->log);
    while (!atomic_load(&s->quit))
        if (lws_service(s->ctx, 0) < 0) {
            CHAT_LOG(CHAT_LOG_ERROR, "component=sioc event=service_failed");
            break;
        }
    return NULL;
}

/* ---- setup --------------------------------------------------------------- */

static void lws_log_hook(int level, const char *line)
{
    chat__log_line(level == LLL_ERR ? CHAT_LOG_ERROR : CHAT_LOG_WARN, "lws",
                   line);
}

/* A copy of s without control characters (they would end a header). */
static char *header_safe_dup(const char *v)
{
    char *c = chat__strdup(v), *p;

    for (p = c; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return c;
}

static int valid_text(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f || p[i] == '?' ||
            p[i] == '#' || p[i] == '@')
            return 0;
    return 1;
}

/* "http[s]://host[:port][/prefix]" (ws[s]:// too) into address, port,
 * Host header and the Engine.IO path. */
static int parse_base_url(chat__sioc *s, const char *url)
{
    const char *h, *hend, *rest, *port = NULL;
    size_t hlen, plen;
    long v = 0;
    chat__buf b = CHAT__BUF_INIT;

    if (!strncmp(url, "http://", 7) || !strncmp(url, "ws://", 5)) {
        h = strstr(url, "//") + 2;
        s->port = 80;
    } else if (!strncmp(url, "https://", 8) || !strncmp(url, "wss://", 6)) {
        h = strstr(url, "//") + 2;
        s->tls = 1;
        s->port = 443;
    } else {
        return chat__error(CHAT_EINVAL, "base_url must be http(s)://");
    }
    rest = h + strcspn(h, "/");
    if (*h == '[') { /* IPv6 literal */
        hend = memchr(h, ']', (size_t)(rest - h));
        if (hend == NULL)
            return chat__error(CHAT_EINVAL, "bad IPv6 host in base_url");
        h++;
        if (hend + 1 < rest) {
            if (hend[1] != ':')
                return chat__error(CHAT_EINVAL, "bad port in base_url");
            port = hend + 2;
        }
    } else {
        hend = memchr(h, ':', (size_t)(rest - h));
        if (hend)
            port = hend + 1;
        else
            hend = rest;
    }
    hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen > SIOC_HOST_MAX || !valid_text(h, hlen))
        return chat__error(CHAT_EINVAL, "bad host in base_url");
    if (port) {
        if (port == rest)
            return chat__error(CHAT_EINVAL, "bad port in base_url");
        for (; port < rest; port++) {
            if (*port < '0' || *port > '9' || v > 65535)
                return chat__error(CHAT_EINVAL, "bad port in base_url");
            v = v * 10 + (*port - '0');
        }
        if (v < 1 || v > 65535)
            return chat__error(CHAT_EINVAL, "bad port in base_url");
        s->port = (int)v;
    }
    plen = strlen(rest);
    while (plen && rest[plen - 1] == '/')
        plen--;
    if (!valid_text(rest, plen))
        return chat__error(CHAT_EINVAL, "bad path in base_url");

    s->address = chat__strndup(h, hlen);
    /* the default port stays out of Host, as browsers do */
    if (strchr(s->address ? s->address : "", ':'))
        chat__buf_printf(&b, "[%s]", s->address);
    else
        chat__buf_puts(&b, s->address ? s->address : "");
    if (s->port != (s->tls ? 443 : 80))
        chat__buf_printf(&b, ":%d", s->port);
    s->host = chat__buf_detach(&b, NULL);
    chat__buf_append(&b, rest, plen);
    chat__buf_puts(&b, SIOC_PATH);
    s->path = chat__buf_detach(&b, NULL);
    if (s->address == NULL || s->host == NULL || s->path == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    return CHAT_OK;
}

static int context_new(chat__sioc *s)
{
    struct lws_context_creation_info info;
    unsigned secs = (unsigned)(s->connect_timeout_ms + 999) / 1000;

    s->protocols[0].name = SIOC_PROTOCOL;
    s->protocols[0].callback = callback;
    s->protocols[0].rx_buffer_size = 16384;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s->protocols;
    info.user = s;
    /* one connection: a small fd table instead of one sized by ulimit */
    info.fd_limit_per_thread = SIOC_FD_LIMIT;
    /* our own attempt deadline fires first; these are the backstop */
    info.connect_timeout_secs = secs + 1;
    info.timeout_secs = secs + 1;
    if (s->tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = s->ca_file;
    }
    s->ctx = lws_create_context(&info);
    if (s->ctx == NULL)
        return chat__error(CHAT_EIO, "cannot create the lws client context");
    return CHAT_OK;
}

int chat__sioc_new(chat__sioc **out, const chat__net_config *cfg)
{
    chat__sioc *s;
    int rc;

    CHAT_ASSERT_ARG(out && cfg && cfg->base_url && cfg->sink);
    *out = NULL;
    if ((rc = chat__sodium_init()) != CHAT_OK)
        return rc;
    s = chat__calloc(1, sizeof *s);
    if (s == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->sink = cfg->sink;
    s->sink_userdata = cfg->sink_userdata;
    s->log = cfg->log;
    s->insecure = cfg->insecure;
    s->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 &&
                cfg->connect_timeout_ms <= SIOC_CONNECT_MAX_MS
            ? cfg->connect_timeout_ms
            : SIOC_CONNECT_MS;
    if ((rc = parse_base_url(s, cfg->base_url)) != CHAT_OK)
        goto fail;
    if ((cfg->user_agent &&
         (s->user_agent = header_safe_dup(cfg->user_agent)) == NULL) ||
        (cfg->ca_file && (s->ca_file = chat__strdup(cfg->ca_file)) == NULL)) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto fail;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_hook);
    if ((rc = context_new(s)) != CHAT_OK)
        goto fail;
    if (pthread_create(&s->thread, NULL, service_main, s) != 0) {
        rc = chat__error(CHAT_ERROR, "cannot start the Socket.IO thread");
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return CHAT_OK;
fail:
    chat__sioc_free(s);
    return rc;
}

/* ---- the application's side ---------------------------------------------- */

int chat__sioc_start(chat__sioc *s, const char *token)
{
    char *copy, *old;

    CHAT_ASSERT_ARG(s && token);
    if (strlen(token) > SIOC_TOKEN_MAX)
        return chat__error(CHAT_ELIMIT, "token over %d bytes", SIOC_TOKEN_MAX);
    if ((copy = chat__strdup(token)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    pthread_mutex_lock(&s->lock);
    old = s->token;
    s->token = copy;
    s->want = 1;
    s->start_gen++;
    pthread_mutex_unlock(&s->lock);
    str_wipe_free(old);
    lws_cancel_service(s->ctx);
    return CHAT_OK;
}

void chat__sioc_stop(chat__sioc *s)
{
    frame *dropped;

    if (s == NULL)
        return;
    /* emits fail from now on, not only once the service thread acts */
    pthread_mutex_lock(&s->lock);
    s->want = 0;
    s->stop_gen++;
    s->up = 0;
    dropped = queue_take_all_locked(s);
    pthread_mutex_unlock(&s->lock);
    frames_free(dropped);
    lws_cancel_service(s->ctx);
}

/* [event, copy of data] (no data: [event]). */
static cJSON *event_array(const char *event, const cJSON *data)
{
    cJSON *arr = cJSON_CreateArray(), *item;

    if (arr == NULL || (item = cJSON_CreateString(event)) == NULL)
        goto fail;
    cJSON_AddItemToArray(arr, item);
    if (data) {
        if ((item = cJSON_Duplicate(data, 1)) == NULL)
            goto fail;
        cJSON_AddItemToArray(arr, item);
    }
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}

int chat__sioc_emit(chat__sioc *s, const char *event, const cJSON *data,
                    int64_t ack_id)
{
    chat__sio_packet p;
    cJSON *arr;
    frame *f = NULL;
    int rc;

    CHAT_ASSERT_ARG(s && event && event[0]);
    CHAT_ASSERT_ARG(ack_id < SIOC_ACK_ID_LIMIT);
    if ((arr = event_array(event, data)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    memset(&p, 0, sizeof p);
    p.type = CHAT__SIO_EVENT;
    p.nsp[0] = '/';
    p.id = ack_id > 0 ? ack_id : -1;
    p.data = arr;
    rc = frame_sio(&f, &p);
    cJSON_Delete(arr);
    if (rc != CHAT_OK)
        return rc;
    pthread_mutex_lock(&s->lock);
    if (!s->up)
        rc = chat__error(CHAT_ECLOSED, "Socket.IO is not connected");
    else if (s->max_payload && f->len > s->max_payload)
        rc = chat__error(CHAT_ELIMIT, "packet over the server's %zu bytes",
                         s->max_payload);
    else if (s->q_frames >= SIOC_QUEUE_FRAMES ||
             f->len > SIOC_QUEUE_BYTES - s->q_bytes)
        rc = chat__error(CHAT_ELIMIT, "send queue full");
    else {
        queue_push_locked(s, f);
        f = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    frame_free(f);
    if (rc == CHAT_OK)
        lws_cancel_service(s->ctx);
    return rc;
}

void chat__sioc_free(chat__sioc *s)
{
    if (s == NULL)
        return;
    /* no sink call after this line returns: callbacks see quit */
    atomic_store(&s->quit, 1);
    if (s->thread_started) {
        lws_cancel_service(s->ctx);
        pthread_join(s->thread, NULL);
    }
    if (s->ctx)
        lws_context_destroy(s->ctx);
    frames_free(s->q_head);
    chat__buf_free(&s->rx);
    str_wipe_free(s->token);
    str_wipe_free(s->attempt_token);
    chat__free(s->down_reason);
    chat__free(s->address);
    chat__free(s->host);
    chat__free(s->path);
    chat__free(s->user_agent);
    chat__free(s->ca_file);
    pthread_mutex_destroy(&s->lock);
    chat__free(s);
}
