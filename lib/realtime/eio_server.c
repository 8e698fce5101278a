/* Engine.IO v4 server: sessions over HTTP long-polling and WebSocket on the
 * HTTP front end's service thread (see eio_server.h). */
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "realtime/eio_server.h"

#define SID_LEN 20
#define BUCKETS 256

enum { T_POLLING, T_WEBSOCKET };
enum { C_REPLY, C_POLL, C_POST, C_WS, C_PROBE, C_DONE };

/* A queued packet. Its bytes sit after LWS_PRE bytes and the type digit,
 * so a websocket frame goes out from where it lies. */
typedef struct outpkt {
    struct outpkt *next;
    int type;
    int binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE, type digit, data */
} outpkt;

#define PKT_DATA(p) ((char *)(p)->buf + LWS_PRE + 1)
/* Most bytes framed for one websocket write. */
#define WS_BATCH_BYTES (64 * 1024)

struct chat__eio_session {
    chat__eio *e;
    char sid[SID_LEN + 1];
    int transport;
    int closing;
    int refs;         /* the table + each connection that points here */
    struct lws *poll; /* the pending GET */
    struct lws *ws;   /* the websocket carrying the session */
    struct lws *probe;
    outpkt *head, *tail;
    size_t queued;
    lws_sorted_usec_list_t sul;
    int awaiting_pong;
    int upgrading;     /* "2probe" seen on the probe websocket */
    int close_on_poll; /* the client closed; its next poll gets a noop */
    int lingering;     /* closed by the server; waits for a last poll */
    void *user;
    char ip[48];
    chat__eio_session *next; /* bucket chain */
};

struct chat__eio {
    chat__http *http;
    chat__eio_opts o;
    char *path;
    chat__eio_session *table[BUCKETS];
    size_t count;
};

typedef struct conn {
    int kind;
    chat__eio_session *s;
    /* C_REPLY */
    int status;
    const char *ctype;
    chat__buf reply;
    /* C_POST */
    chat__buf body;
    int too_large;
    /* websockets */
    chat__buf frag;
    int probe_reply; /* "3probe" to send */
    int close_sent;  /* the close handshake has begun */
    chat__buf out;   /* frames for one write, after LWS_PRE bytes */
} conn;

/* ---- sessions
 * ---------------------------------------------------------------- */

enum { CLOSE_CLIENT, CLOSE_ERROR, CLOSE_GRACEFUL };
static void close_session(chat__eio_session *s, const char *reason, int how);
#define fail_session(s, reason) close_session(s, reason, CLOSE_ERROR)

static unsigned bucket(const char *sid)
{
    unsigned h = 5381;

    for (; *sid; sid++)
        h = h * 33 + (unsigned char)*sid;
    return h % BUCKETS;
}

static chat__eio_session *find(chat__eio *e, const char *sid)
{
    chat__eio_session *s;

    for (s = e->table[bucket(sid)]; s; s = s->next)
        if (!strcmp(s->sid, sid))
            return s;
    return NULL;
}

static void unref(chat__eio_session *s)
{
    outpkt *p, *n;

    if (s == NULL || --s->refs > 0)
        return;
    for (p = s->head; p; p = n) {
        n = p->next;
        chat__free(p);
    }
    chat__free(s);
}

static void wake(chat__eio_session *s)
{
    if (s->ws)
        lws_callback_on_writable(s->ws);
    else if (s->poll)
        lws_callback_on_writable(s->poll);
}

/* Add a packet to the queue, no questions asked. */
static int append(chat__eio_session *s, int type, int binary, const char *data,
                  size_t len)
{
    outpkt *p = chat__malloc(sizeof *p + LWS_PRE + 1 + len);

    if (p == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    p->next = NULL;
    p->type = type;
    p->binary = binary;
    p->len = len;
    if (len)
        memcpy(PKT_DATA(p), data, len);
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    s->queued += len;
    wake(s);
    return CHAT_OK;
}

static int queue(chat__eio_session *s, int type, int binary, const char *data,
                 size_t len)
{
    if (s->queued + len > s->e->o.max_queue) {
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=eio event=slow_consumer sid=%s ip=%s queued=%zu",
                 s->sid, s->ip, s->queued);
        chat__metrics_inc(chat__http_metrics(s->e->http), CHAT__C_RT_SLOW);
        fail_session(s, "slow consumer");
        return chat__error(CHAT_ELIMIT, "send queue full");
    }
    return append(s, type, binary, data, len);
}

static void ping_cb(lws_sorted_usec_list_t *sul);
static void table_remove(chat__eio_session *s);

static void schedule(chat__eio_session *s, int ms)
{
    lws_sul_schedule(chat__http_lws_context(s->e->http), 0, &s->sul, ping_cb,
                     (lws_usec_t)ms * LWS_US_PER_MS);
}

static void ping_cb(lws_sorted_usec_list_t *sul)
{
    chat__eio_session *s = lws_container_of(sul, chat__eio_session, sul);

    if (s->lingering) { /* the last poll never came */
        s->lingering = 0;
        table_remove(s);
        return;
    }
    if (s->close_on_poll) {
        close_session(s, "client close", CLOSE_CLIENT);
        return;
    }
    if (s->awaiting_pong) {
        fail_session(s, "ping timeout");
        return;
    }
    s->awaiting_pong = 1;
    queue(s, CHAT__EIO_PING, 0, "", 0);
    schedule(s, s->e->o.ping_timeout_ms);
}

static chat__eio_session *session_new(chat__eio *e, struct lws *wsi,
                                      int transport)
{
    chat__eio_session *s = chat__calloc(1, sizeof *s);
    uint8_t raw[15];
    char open[256];
    unsigned b;

    if (s == NULL)
        return NULL;
    s->e = e;
    s->transport = transport;
    lws_get_peer_simple(wsi, s->ip, sizeof s->ip);
    s->refs = 1; /* the table's */
    randombytes_buf(raw, sizeof raw);
    chat__b64url_encode(s->sid, raw, sizeof raw);
    b = bucket(s->sid);
    s->next = e->table[b];
    e->table[b] = s;
    e->count++;
    snprintf(open, sizeof open,
             "{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%d,"
             "\"pingTimeout\":%d,\"maxPayload\":%zu}",
             s->sid, transport == T_POLLING ? "\"websocket\"" : "",
             e->o.ping_interval_ms, e->o.ping_timeout_ms, e->o.max_payload);
    queue(s, CHAT__EIO_OPEN, 0, open, strlen(open));
    schedule(s, e->o.ping_interval_ms);
    return s;
}

/* Take s out of the table (it may still be referenced by connections). */
static void table_remove(chat__eio_session *s)
{
    chat__eio_session **pp;

    for (pp = &s->e->table[bucket(s->sid)]; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            s->e->count--;
            unref(s); /* the table's reference */
            return;
        }
    }
}

static void free_queue(chat__eio_session *s)
{
    outpkt *p, *n;

    for (p = s->head; p; p = n) {
        n = p->next;
        chat__free(p);
    }
    s->head = s->tail = NULL;
    s->queued = 0;
}

static void close_session(chat__eio_session *s, const char *reason, int how)
{
    chat__eio *e = s->e;

    if (s->closing)
        return;
    s->closing = 1;
    lws_sul_cancel(&s->sul);
    CHAT_LOG(CHAT_LOG_DEBUG, "component=eio event=close sid=%s reason=\"%s\"",
             s->sid, reason);
    if (e->o.handlers.on_close)
        e->o.handlers.on_close(s, reason, e->o.userdata);
    if (s->probe)
        lws_set_timeout(s->probe, PENDING_TIMEOUT_CLOSE_SEND,
                        LWS_TO_KILL_ASYNC);
    if (s->ws) {
        lws_callback_on_writable(s->ws); /* closes once drained */
        table_remove(s);
        return;
    }
    if (how == CLOSE_CLIENT || how == CLOSE_ERROR || s->head == NULL) {
        /* nothing more to say: a pending poll ends with a noop when the
         * client closed (it knows), with a close packet otherwise */
        free_queue(s);
        if (s->poll)
            append(s, how == CLOSE_CLIENT ? CHAT__EIO_NOOP : CHAT__EIO_CLOSE, 0,
                   "", 0);
        table_remove(s);
        return;
    }
    /* The application ends a polling session with packets still queued
     * (say, why it is refused): they and a close packet go to the pending
     * poll, or to the next one, which has ping_timeout to come. */
    append(s, CHAT__EIO_CLOSE, 0, "", 0);
    if (s->poll) {
        table_remove(s);
        return;
    }
    s->lingering = 1;
    schedule(s, e->o.ping_timeout_ms);
}

void chat__eio_close(chat__eio_session *s, const char *reason)
{
    close_session(s, reason, CLOSE_GRACEFUL);
}

int chat__eio_send(chat__eio_session *s, const char *data, size_t len,
                   int binary)
{
    if (s->closing)
        return chat__error(CHAT_ECLOSED, "session is closing");
    return queue(s, CHAT__EIO_MESSAGE, binary, data, len);
}

const char *chat__eio_sid(const chat__eio_session *s)
{
    return s->sid;
}

void chat__eio_set_user(chat__eio_session *s, void *user)
{
    s->user = user;
}

void *chat__eio_user(const chat__eio_session *s)
{
    return s->user;
}

const char *chat__eio_ip(const chat__eio_session *s)
{
    return s->ip;
}

size_t chat__eio_count(const chat__eio *e)
{
    return e->count;
}

/* A packet from the client, on either transport. 0, or -1 to end the
 * session (protocol error). */
static int on_packet(chat__eio_session *s, const chat__eio_packet *p)
{
    chat__eio *e = s->e;

    switch (p->type) {
    case CHAT__EIO_PONG:
        s->awaiting_pong = 0;
        schedule(s, e->o.ping_interval_ms);
        return 0;
    case CHAT__EIO_MESSAGE:
        if (e->o.handlers.on_message)
            e->o.handlers.on_message(s, p->data, p->len, p->binary,
                                     e->o.userdata);
        return 0;
    case CHAT__EIO_CLOSE:
        if (s->transport == T_POLLING && s->poll == NULL) {
            /* as engine.io does: the poll the client may still have on the
             * way gets a noop rather than an error */
            s->close_on_poll = 1;
            schedule(s, e->o.ping_timeout_ms);
            return 0;
        }
        close_session(s, "client close", CLOSE_CLIENT);
        return 0;
    case CHAT__EIO_NOOP:
        return 0;
    default:
        return -1;
    }
}

/* ---- HTTP long-polling ------------------------------------------------------
 */

static int write_http(struct lws *wsi, int status, const char *ctype,
                      const char *body, size_t len)
{
    unsigned char *buf = chat__malloc(LWS_PRE + 512 + len), *p, *end, *start;
    size_t total;
    int rc = -1;

    if (buf == NULL)
        return -1;
    start = p = buf + LWS_PRE;
    end = p + 511;
    if (lws_add_http_common_headers(wsi, (unsigned)status, ctype, len, &p,
                                    end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &p, end) ||
        (chat__http_client_closes(wsi) &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                     (const unsigned char *)"close", 5, &p,
                                     end)) ||
        lws_finalize_http_header(wsi, &p, end))
        goto out;
    memcpy(p, body, len);
    total = (size_t)(p - start) + len;
    if (lws_write(wsi, start, total, LWS_WRITE_HTTP_HEADERS) == (int)total)
        rc = 0;
out:
    chat__free(buf);
    return rc;
}

static void reply(struct lws *wsi, conn *c, int status, const char *ctype,
                  const char *body)
{
    c->kind = C_REPLY;
    c->status = status;
    c->ctype = ctype;
    chat__buf_puts(&c->reply, body);
    lws_callback_on_writable(wsi);
}

static void reply_error(struct lws *wsi, conn *c, int code, const char *msg)
{
    char body[128];

    snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, msg);
    reply(wsi, c, 400, "application/json", body);
}

/* The value of query argument "name=" (name given with its '='). */
static int query(struct lws *wsi, const char *name, char *out, int size)
{
    char frag[256]; /* the whole "name=value" fragment */
    const char *v;

    out[0] = '\0';
    v = lws_get_urlarg_by_name(wsi, name, frag, (int)sizeof frag);
    if (v == NULL || (int)strlen(v) >= size)
        return 0;
    memcpy(out, v, strlen(v) + 1);
    return 1;
}

static void attach(conn *c, chat__eio_session *s, int kind)
{
    c->kind = kind;
    c->s = s;
    s->refs++;
}

static int on_http(chat__eio *e, struct lws *wsi, conn *c)
{
    char eio[8], transport[16], sid[64], clen[24];
    int post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    int get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    chat__eio_session *s;

    if (!query(wsi, "EIO=", eio, sizeof eio) || strcmp(eio, "4")) {
        reply_error(wsi, c, 5, "Unsupported protocol version");
        return 0;
    }
    if (!query(wsi, "transport=", transport, sizeof transport) ||
        strcmp(transport, "polling")) {
        reply_error(wsi, c, 0, "Transport unknown");
        return 0;
    }
    if (!query(wsi, "sid=", sid, sizeof sid)) {
        if (!get) {
            reply_error(wsi, c, 2, "Bad handshake method");
            return 0;
        }
        s = session_new(e, wsi, T_POLLING);
        if (s == NULL)
            return -1;
        attach(c, s, C_POLL);
        s->poll = wsi;
        lws_callback_on_writable(wsi); /* the open packet is queued */
        if (e->o.handlers.on_open)
            e->o.handlers.on_open(s, e->o.userdata);
        return 0;
    }
    s = find(e, sid);
    if (s == NULL) {
        reply_error(wsi, c, 1, "Session ID unknown");
        return 0;
    }
    if (s->transport != T_POLLING || (!get && !post) ||
        (s->lingering && (!get || s->poll))) {
        reply_error(wsi, c, 3, "Bad request");
        return 0;
    }
    if (s->lingering) { /* the last poll: queued packets and close */
        attach(c, s, C_POLL);
        s->poll = wsi;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (get) {
        if (s->close_on_poll) {
            reply(wsi, c, 200, "text/plain; charset=UTF-8", "6");
            close_session(s, "client close", CLOSE_CLIENT);
            return 0;
        }
        if (s->upgrading) {
            /* the client is switching to websocket: end this poll now */
            reply(wsi, c, 200, "text/plain; charset=UTF-8", "6");
            return 0;
        }
        if (s->poll) {
            /* two polls at once: the protocol says end the session */
            fail_session(s, "duplicate poll");
            reply_error(wsi, c, 3, "Bad request");
            return 0;
        }
        attach(c, s, C_POLL);
        s->poll = wsi;
        if (s->head)
            lws_callback_on_writable(wsi);
        return 0;
    }
    attach(c, s, C_POST);
    if (lws_hdr_copy(wsi, clen, sizeof clen, WSI_TOKEN_HTTP_CONTENT_LENGTH) <=
            0 ||
        atol(clen) <= 0) {
        fail_session(s, "empty payload");
        reply_error(wsi, c, 3, "Bad request");
    } else if ((size_t)atol(clen) > e->o.max_payload) {
        fail_session(s, "payload too large");
        reply(wsi, c, 413, "text/plain", "Payload Too Large");
    }
    return 0;
}

static void on_post_done(chat__eio *e, struct lws *wsi, conn *c)
{
    chat__eio_session *s = c->s;
    chat__eio_packet pk[64];
    char *scratch;
    size_t n, i;

    if (c->too_large) {
        fail_session(s, "payload too large");
        reply(wsi, c, 413, "text/plain", "Payload Too Large");
        return;
    }
    scratch = chat__malloc(c->body.len + 1);
    if (scratch == NULL ||
        chat__eio_decode_payload(c->body.data, c->body.len, pk, 64, &n, scratch,
                                 c->body.len + 1) != CHAT_OK) {
        chat__free(scratch);
        fail_session(s, "parse error");
        reply_error(wsi, c, 3, "Bad request");
        return;
    }
    for (i = 0; i < n && !s->closing; i++) {
        if (on_packet(s, &pk[i]) != 0) {
            fail_session(s, "parse error");
            break;
        }
    }
    chat__free(scratch);
    (void)e;
    reply(wsi, c, 200, "text/html", "ok");
}

/* Write the queued packets as one polling payload. */
static int write_poll(struct lws *wsi, conn *c)
{
    chat__eio_session *s = c->s;
    chat__buf b = CHAT__BUF_INIT;
    outpkt *p, *n;
    int rc;

    /* a poll left over from before an upgrade: the queue is the
     * websocket's now */
    for (p = s->transport == T_POLLING ? s->head : NULL; p; p = n) {
        chat__eio_packet pk = {p->type, p->binary, PKT_DATA(p), p->len};
        n = p->next;
        if (b.len)
            chat__buf_append(&b, "\x1e", 1);
        chat__eio_encode(&b, &pk);
        chat__free(p);
    }
    if (s->transport == T_POLLING) {
        s->head = s->tail = NULL;
        s->queued = 0;
    } else {
        chat__buf_puts(&b, "6");
    }
    rc = write_http(wsi, 200, "text/plain; charset=UTF-8", b.data ? b.data : "",
                    b.len);
    chat__buf_free(&b);
    s->poll = NULL;
    c->kind = C_DONE;
    if (s->lingering) {
        s->lingering = 0;
        lws_sul_cancel(&s->sul);
        table_remove(s);
    }
    unref(s);
    c->s = NULL;
    return rc;
}

/* ---- WebSocket
 * ------------------------------------------------------------------ */

static int on_established(chat__eio *e, struct lws *wsi, conn *c)
{
    char eio[8], transport[16], sid[64];
    chat__eio_session *s;

    if (!query(wsi, "EIO=", eio, sizeof eio) || strcmp(eio, "4") ||
        !query(wsi, "transport=", transport, sizeof transport) ||
        strcmp(transport, "websocket"))
        return -1;
    if (!query(wsi, "sid=", sid, sizeof sid)) {
        s = session_new(e, wsi, T_WEBSOCKET);
        if (s == NULL)
            return -1;
        attach(c, s, C_WS);
        s->ws = wsi;
        lws_callback_on_writable(wsi);
        if (e->o.handlers.on_open)
            e->o.handlers.on_open(s, e->o.userdata);
        return 0;
    }
    s = find(e, sid);
    if (s == NULL || s->transport != T_POLLING || s->probe || s->closing)
        return -1;
    attach(c, s, C_PROBE);
    s->probe = wsi;
    return 0;
}

static int on_frame(chat__eio *e, struct lws *wsi, conn *c, int binary)
{
    chat__eio_session *s = c->s;
    chat__eio_packet pk;

    if (s == NULL)
        return -1;
    if (s->closing)
        return 0; /* draining what is queued before the close: ignore */
    if (binary) {
        if (c->kind != C_WS)
            return -1;
        pk.type = CHAT__EIO_MESSAGE;
        pk.binary = 1;
        pk.data = c->frag.data;
        pk.len = c->frag.len;
        return on_packet(s, &pk);
    }
    if (chat__eio_decode(c->frag.data, c->frag.len, &pk, NULL, 0) != CHAT_OK) {
        fail_session(s, "parse error");
        return -1;
    }
    if (c->kind == C_PROBE) {
        if (pk.type == CHAT__EIO_PING && pk.len == 5 &&
            !memcmp(pk.data, "probe", 5)) {
            c->probe_reply = 1;
            s->upgrading = 1;
            lws_callback_on_writable(wsi);
            /* end the pending poll so the client can switch */
            if (s->poll)
                queue(s, CHAT__EIO_NOOP, 0, "", 0);
            return 0;
        }
        if (pk.type == CHAT__EIO_UPGRADE && s->upgrading) {
            s->upgrading = 0;
            s->transport = T_WEBSOCKET;
            s->probe = NULL;
            s->ws = wsi;
            c->kind = C_WS;
            if (s->poll)
                lws_callback_on_writable(s->poll);
            if (s->head)
                lws_callback_on_writable(wsi);
            return 0;
        }
        return -1;
    }
    (void)e;
    if (on_packet(s, &pk) != 0) {
        fail_session(s, "parse error");
        return -1;
    }
    return 0;
}

/* Append one unmasked WebSocket frame (RFC 6455 5.2): FIN, opcode, the
 * length in 7, 16 or 64 bits, the payload. */
static int put_frame(chat__buf *b, int binary, int type, const char *data,
                     size_t len)
{
    unsigned char h[10];
    size_t hl = 2, n = binary ? len : len + 1;
    int i;

    h[0] = binary ? 0x82 : 0x81;
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (chat__buf_append(b, h, hl) != CHAT_OK)
        return CHAT_ENOMEM;
    if (!binary) {
        char t = (char)('0' + type);
        if (chat__buf_append(b, &t, 1) != CHAT_OK)
            return CHAT_ENOMEM;
    }
    return chat__buf_append(b, data, len);
}

static int write_ws(struct lws *wsi, conn *c)
{
    chat__eio_session *s = c->s;
    outpkt *p;
    int frames = 0;

    if (c->probe_reply) {
        unsigned char probe[LWS_PRE + 8];
        c->probe_reply = 0;
        memcpy(probe + LWS_PRE, "3probe", 6);
        return lws_write(wsi, probe + LWS_PRE, 6, LWS_WRITE_TEXT) < 6 ? -1 : 0;
    }
    if (s == NULL || c->kind != C_WS)
        return 0;
    /* Frame what is queued ourselves (no extension is ever negotiated)
     * and hand lws one buffer: one write for many frames, where a frame
     * per callback would cost a service-loop turn and a syscall each. */
    c->out.len = 0;
    if (chat__buf_reserve(&c->out, LWS_PRE) != CHAT_OK)
        return -1;
    c->out.len = LWS_PRE;
    while ((p = s->head) != NULL && c->out.len < LWS_PRE + WS_BATCH_BYTES) {
        /* noop only ever ends a poll; it means nothing on a websocket */
        if (p->type != CHAT__EIO_NOOP) {
            if (put_frame(&c->out, p->binary, p->type, PKT_DATA(p), p->len))
                return -1;
            frames++;
        }
        s->head = p->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued -= p->len;
        chat__free(p);
    }
    if (frames > 0) {
        size_t n = c->out.len - LWS_PRE;
        /* lws keeps what the socket does not take and sends it first */
        if (lws_write(wsi, (unsigned char *)c->out.data + LWS_PRE, n,
                      LWS_WRITE_RAW) < (int)n)
            return -1;
        if (c->out.cap > 16 * 1024) /* idle sockets stay small */
            chat__buf_free(&c->out);
        if (s->head || s->closing)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (!s->closing)
        return 0;
    /* a close frame, and lws waits for the peer's: closing the socket
     * with data still unread would send a reset that can destroy what
     * the peer has not read yet */
    if (c->close_sent)
        return 0; /* lws is sending the close frame, then waits */
    c->close_sent = 1;
    lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
    return -1;
}

/* ---- the raw endpoint callback
 * ------------------------------------------------- */

static void conn_free(struct lws *wsi, conn *c)
{
    chat__eio_session *s = c->s;

    if (s) {
        if (c->kind == C_POLL && s->poll == wsi) {
            s->poll = NULL;
            /* a poll the client gave up on ends the session */
            fail_session(s, "poll cancelled");
        }
        if (s->ws == wsi) {
            s->ws = NULL;
            fail_session(s, "transport close");
        }
        if (s->probe == wsi) {
            s->probe = NULL;
            s->upgrading = 0;
        }
        unref(s);
    }
    chat__buf_free(&c->reply);
    chat__buf_free(&c->body);
    chat__buf_free(&c->frag);
    chat__buf_free(&c->out);
    chat__free(c);
}

static int eio_cb(void *vwsi, int reason, void **state, void *in, size_t len,
                  void *ud)
{
    struct lws *wsi = vwsi;
    chat__eio *e = ud;
    conn *c = state ? *state : NULL;

    switch (reason) {
    case CHAT__HTTP_RAW_STOP: {
        /* the server is stopping: end every session while lws still runs */
        size_t i;
        for (i = 0; i < BUCKETS; i++) {
            while (e->table[i]) {
                chat__eio_session *s = e->table[i];
                chat__eio_close(s, "server shutting down");
                if (e->table[i] == s) { /* lingering for a last poll */
                    s->lingering = 0;
                    lws_sul_cancel(&s->sul);
                    table_remove(s);
                }
            }
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_ESTABLISHED:
        c = chat__calloc(1, sizeof *c);
        if (c == NULL)
            return -1;
        *state = c;
        return reason == LWS_CALLBACK_HTTP ? on_http(e, wsi, c)
                                           : on_established(e, wsi, c);

    case LWS_CALLBACK_HTTP_BODY:
        if (c == NULL || c->kind != C_POST)
            return 0;
        if (c->body.len + len > e->o.max_payload)
            c->too_large = 1;
        else
            chat__buf_append(&c->body, in, len);
        return 0;

    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c && c->kind == C_POST && c->s)
            on_post_done(e, wsi, c);
        return 0;

    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (c == NULL)
            return 0;
        if (c->kind == C_REPLY) {
            c->kind = C_DONE;
            if (write_http(wsi, c->status, c->ctype,
                           c->reply.data ? c->reply.data : "",
                           c->reply.len) < 0)
                return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        if (c->kind == C_POLL && c->s &&
            (c->s->head || c->s->transport != T_POLLING)) {
            if (write_poll(wsi, c) < 0)
                return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        return 0;

    case LWS_CALLBACK_RECEIVE:
        if (c == NULL)
            return -1;
        if (c->frag.len + len > e->o.max_payload) {
            if (c->s)
                fail_session(c->s, "payload too large");
            return -1;
        }
        chat__buf_append(&c->frag, in, len);
        if (!lws_is_final_fragment(wsi))
            return 0;
        {
            int rc = on_frame(e, wsi, c, lws_frame_is_binary(wsi));
            c->frag.len = 0;
            return rc;
        }

    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? write_ws(wsi, c) : 0;

    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_CLOSED:
        if (c) {
            conn_free(wsi, c);
            *state = NULL;
        }
        return 0;

    default:
        return 0;
    }
}

int chat__eio_new(chat__eio **out, chat__http *http, const chat__eio_opts *o)
{
    chat__eio *e;
    int rc;

    CHAT_ASSERT_ARG(out && http && o && o->path && o->path[0] == '/');
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    e = chat__calloc(1, sizeof *e);
    if (e == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    e->http = http;
    e->o = *o;
    if (e->o.ping_interval_ms <= 0)
        e->o.ping_interval_ms = 25000;
    if (e->o.ping_timeout_ms <= 0)
        e->o.ping_timeout_ms = 20000;
    if (e->o.max_payload == 0)
        e->o.max_payload = 1000000;
    if (e->o.max_queue == 0)
        e->o.max_queue = 4u << 20;
    e->path = chat__strdup(o->path);
    e->o.path = e->path;
    rc = e->path ? chat__http_raw(http, e->path, eio_cb, e)
                 : chat__error(CHAT_ENOMEM, "out of memory");
    if (rc != CHAT_OK) {
        chat__free(e->path);
        chat__free(e);
        return rc;
    }
    *out = e;
    return CHAT_OK;
}

void chat__eio_free(chat__eio *e)
{
    size_t i;

    if (e == NULL)
        return;
    /* the lws context is gone by now: sessions just go */
    for (i = 0; i < BUCKETS; i++) {
        while (e->table[i]) {
            chat__eio_session *s = e->table[i];
            e->table[i] = s->next;
            s->refs = 1;
            unref(s);
        }
    }
    chat__free(e->path);
    chat__free(e);
}
