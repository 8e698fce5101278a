/* Socket.IO v5 server: one "client" per Engine.IO session, one socket per
 * namespace it connected to (see sio_server.h). */
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "realtime/sio_server.h"

#define ROOM_BUCKETS  1024
#define SOCKET_ID_LEN 20

typedef struct room room;

typedef struct client {
    chat__sio *io;
    chat__eio_session *es;
    chat__sio_socket *sockets;
    lws_sorted_usec_list_t connect_sul;
    int connected_once;
    /* a binary packet waiting for its attachments */
    chat__sio_packet pending;
    int have_pending;
    int nbins;        /* attachments received so far */
    chat__buf bins[]; /* max_attachments of them */
} client;

struct chat__sio_socket {
    client *c;
    chat__sio_socket *next; /* in the client's list */
    char id[SOCKET_ID_LEN + 1];
    char nsp[CHAT__SIO_NSP_MAX + 1];
    void *user;
    room **rooms; /* the rooms this socket is in */
    int nrooms, caprooms;
    int gone;                 /* left while a room walk was running */
    chat__sio_socket *zombie; /* in io->zombies until the walk ends */
};

struct room {
    room *next;
    chat__sio_socket **members;
    size_t n, cap;
    char name[];
};

struct chat__sio {
    chat__http *http;
    chat__sio_opts o;
    chat__eio **eio;
    int neio;
    char **nsps;
    room *rooms[ROOM_BUCKETS];
    size_t count;
    int walking;               /* room walks running (they nest) */
    chat__sio_socket *zombies; /* sockets gone during them */
};

/* ---- rooms ----------------------------------------------------------------
 */

static unsigned room_hash(const char *s)
{
    return chat__str_hash(s) % ROOM_BUCKETS;
}

static room *room_find(chat__sio *io, const char *name, room ***slot)
{
    room **pp;

    for (pp = &io->rooms[room_hash(name)]; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, name))
            break;
    if (slot)
        *slot = pp;
    return *pp;
}

int chat__sio_join(chat__sio_socket *s, const char *room_name)
{
    chat__sio *io = s->c->io;
    room **slot, *r = room_find(io, room_name, &slot);
    int i;

    if (r) {
        for (i = 0; i < s->nrooms; i++)
            if (s->rooms[i] == r)
                return CHAT_OK;
    } else {
        size_t n = strlen(room_name);
        r = chat__calloc(1, sizeof *r + n + 1);
        if (r == NULL)
            return chat__error(CHAT_ENOMEM, "out of memory");
        memcpy(r->name, room_name, n + 1);
        *slot = r;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        void *m = chat__realloc(r->members, cap * sizeof *r->members);
        if (m == NULL)
            goto nomem;
        r->members = m;
        r->cap = cap;
    }
    if (s->nrooms == s->caprooms) {
        int cap = s->caprooms ? s->caprooms * 2 : 2;
        void *m = chat__realloc(s->rooms, (size_t)cap * sizeof *s->rooms);
        if (m == NULL)
            goto nomem;
        s->rooms = m;
        s->caprooms = cap;
    }
    r->members[r->n++] = s;
    s->rooms[s->nrooms++] = r;
    return CHAT_OK;
nomem:
    if (r->n == 0) {
        *slot = r->next;
        chat__free(r->members);
        chat__free(r);
    }
    return chat__error(CHAT_ENOMEM, "out of memory");
}

static void room_remove(chat__sio *io, room *r, chat__sio_socket *s)
{
    room **pp;
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (r->members[i] == s) {
            r->members[i] = r->members[--r->n];
            break;
        }
    }
    if (r->n > 0)
        return;
    for (pp = &io->rooms[room_hash(r->name)]; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    chat__free(r->members);
    chat__free(r);
}

void chat__sio_leave(chat__sio_socket *s, const char *room_name)
{
    int i;

    for (i = 0; i < s->nrooms; i++) {
        if (!strcmp(s->rooms[i]->name, room_name)) {
            room_remove(s->c->io, s->rooms[i], s);
            s->rooms[i] = s->rooms[--s->nrooms];
            return;
        }
    }
}

size_t chat__sio_room_each(chat__sio *io, const char *room_name,
                           void (*fn)(chat__sio_socket *s, void *arg),
                           void *arg)
{
    room *r = room_find(io, room_name, NULL);
    chat__sio_socket *stack[64], **list;
    size_t n, i;

    if (r == NULL)
        return 0;
    /* fn may end a socket, and with its Engine.IO session every other
     * socket of that client, which edits this room: walk a copy, and keep
     * sockets that go meanwhile allocated (and skipped) until the walk is
     * over */
    n = r->n;
    list = n <= 64 ? stack : chat__malloc(n * sizeof *list);
    if (list == NULL)
        return 0;
    memcpy(list, r->members, n * sizeof *list);
    io->walking++;
    for (i = 0; i < n; i++)
        if (!list[i]->gone)
            fn(list[i], arg);
    if (--io->walking == 0) {
        while (io->zombies) {
            chat__sio_socket *z = io->zombies;
            io->zombies = z->zombie;
            chat__free(z);
        }
    }
    if (list != stack)
        chat__free(list);
    return n;
}

size_t chat__sio_room_size(chat__sio *io, const char *room_name)
{
    room *r = room_find(io, room_name, NULL);

    return r ? r->n : 0;
}

/* ---- sending --------------------------------------------------------------
 */

static int send_packet(chat__sio_socket *s, int type, int64_t id,
                       const cJSON *data, const chat__sio_bin *bins, int nbins)
{
    chat__sio_packet p;
    chat__buf b = CHAT__BUF_INIT;
    int rc, i;

    memset(&p, 0, sizeof p);
    p.type = nbins > 0 ? (type == CHAT__SIO_EVENT ? CHAT__SIO_BINARY_EVENT
                                                  : CHAT__SIO_BINARY_ACK)
                       : type;
    snprintf(p.nsp, sizeof p.nsp, "%s", s->nsp);
    p.id = id;
    p.attachments = nbins;
    p.data = (cJSON *)data; /* encode only reads it */
    rc = chat__sio_encode(&b, &p);
    if (rc == CHAT_OK)
        rc = chat__eio_send(s->c->es, b.data, b.len, 0);
    chat__buf_free(&b);
    for (i = 0; rc == CHAT_OK && i < nbins; i++)
        rc = chat__eio_send(s->c->es, bins[i].data, bins[i].len, 1);
    return rc;
}

int chat__sio_emit(chat__sio_socket *s, const cJSON *data,
                   const chat__sio_bin *bins, int nbins)
{
    return send_packet(s, CHAT__SIO_EVENT, -1, data, bins, nbins);
}

int chat__sio_ack(chat__sio_socket *s, int64_t id, const cJSON *args,
                  const chat__sio_bin *bins, int nbins)
{
    return send_packet(s, CHAT__SIO_ACK, id, args, bins, nbins);
}

int chat__sio_send_encoded(chat__sio_socket *s, const char *pkt, size_t len)
{
    return chat__eio_send(s->c->es, pkt, len, 0);
}

/* ---- sockets --------------------------------------------------------------
 */

static chat__sio_socket *socket_find(client *c, const char *nsp)
{
    chat__sio_socket *s;

    for (s = c->sockets; s; s = s->next)
        if (!strcmp(s->nsp, nsp))
            return s;
    return NULL;
}

/* Unlink and free; the handler is told first. */
static void socket_gone(chat__sio_socket *s, const char *reason)
{
    client *c = s->c;
    chat__sio *io = c->io;
    chat__sio_socket **pp;
    int i;

    if (io->o.handlers.on_disconnect)
        io->o.handlers.on_disconnect(s, reason, io->o.userdata);
    for (i = 0; i < s->nrooms; i++)
        room_remove(io, s->rooms[i], s);
    chat__free(s->rooms);
    for (pp = &c->sockets; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    io->count--;
    if (io->walking > 0) { /* a room walk may still hold s */
        s->gone = 1;
        s->c = NULL;
        s->zombie = io->zombies;
        io->zombies = s;
        return;
    }
    chat__free(s);
}

void chat__sio_disconnect(chat__sio_socket *s, int close_transport)
{
    chat__eio_session *es = s->c->es;
    chat__sio_packet p;
    chat__buf b = CHAT__BUF_INIT;

    memset(&p, 0, sizeof p);
    p.type = CHAT__SIO_DISCONNECT;
    p.id = -1;
    snprintf(p.nsp, sizeof p.nsp, "%s", s->nsp);
    if (chat__sio_encode(&b, &p) == CHAT_OK)
        chat__eio_send(es, b.data, b.len, 0);
    chat__buf_free(&b);
    socket_gone(s, "server namespace disconnect");
    if (close_transport)
        chat__eio_close(es, "server disconnect");
}

const char *chat__sio_socket_id(const chat__sio_socket *s)
{
    return s->id;
}

const char *chat__sio_socket_nsp(const chat__sio_socket *s)
{
    return s->nsp;
}

const char *chat__sio_socket_ip(const chat__sio_socket *s)
{
    return chat__eio_ip(s->c->es);
}

void chat__sio_set_user(chat__sio_socket *s, void *user)
{
    s->user = user;
}

void *chat__sio_user(const chat__sio_socket *s)
{
    return s->user;
}

size_t chat__sio_count(const chat__sio *io)
{
    return io->count;
}

/* ---- packets from a client ------------------------------------------------
 */

static int nsp_served(chat__sio *io, const char *nsp)
{
    int i;

    for (i = 0; i < io->o.nnamespaces; i++)
        if (!strcmp(io->nsps[i], nsp))
            return 1;
    return 0;
}

static void connect_error(client *c, const char *nsp, const char *msg)
{
    chat__sio_packet p;
    chat__buf b = CHAT__BUF_INIT;

    memset(&p, 0, sizeof p);
    p.type = CHAT__SIO_CONNECT_ERROR;
    p.id = -1;
    snprintf(p.nsp, sizeof p.nsp, "%s", nsp);
    p.data = cJSON_CreateObject();
    if (p.data && cJSON_AddStringToObject(p.data, "message", msg) &&
        chat__sio_encode(&b, &p) == CHAT_OK)
        chat__eio_send(c->es, b.data, b.len, 0);
    cJSON_Delete(p.data);
    chat__buf_free(&b);
}

static void on_connect(client *c, const chat__sio_packet *p)
{
    chat__sio *io = c->io;
    const char *err = "Not authorized";
    chat__sio_socket *s;
    cJSON *reply;
    uint8_t raw[15];

    if (!nsp_served(io, p->nsp)) {
        connect_error(c, p->nsp, "Invalid namespace");
        return;
    }
    if (socket_find(c, p->nsp)) /* connected already: ignore */
        return;
    if (!c->connected_once) {
        c->connected_once = 1;
        lws_sul_cancel(&c->connect_sul);
    }
    s = chat__calloc(1, sizeof *s);
    if (s == NULL) {
        chat__eio_close(c->es, "out of memory");
        return;
    }
    s->c = c;
    snprintf(s->nsp, sizeof s->nsp, "%s", p->nsp);
    randombytes_buf(raw, sizeof raw);
    chat__b64url_encode(s->id, raw, sizeof raw);
    s->next = c->sockets;
    c->sockets = s;
    io->count++;
    /* the {sid} reply goes first so the handler's emits follow it */
    reply = cJSON_CreateObject();
    if (reply == NULL || !cJSON_AddStringToObject(reply, "sid", s->id) ||
        send_packet(s, CHAT__SIO_CONNECT, -1, reply, NULL, 0) != CHAT_OK) {
        cJSON_Delete(reply);
        socket_gone(s, "server error");
        return;
    }
    cJSON_Delete(reply);
    if (io->o.handlers.on_connect &&
        io->o.handlers.on_connect(s, p->data, &err, io->o.userdata) != 0) {
        /* refused after the reply: say why, then leave */
        connect_error(c, p->nsp, err);
        socket_gone(s, "server namespace disconnect");
    }
}

static void dispatch(client *c, chat__sio_packet *p, const chat__sio_bin *bins,
                     int nbins)
{
    chat__sio *io = c->io;
    chat__sio_socket *s;

    switch (p->type) {
    case CHAT__SIO_CONNECT:
        on_connect(c, p);
        return;
    case CHAT__SIO_DISCONNECT:
        if ((s = socket_find(c, p->nsp)) != NULL)
            socket_gone(s, "client namespace disconnect");
        return;
    case CHAT__SIO_EVENT:
    case CHAT__SIO_BINARY_EVENT:
        /* events for a namespace the client is not in are dropped */
        if ((s = socket_find(c, p->nsp)) != NULL && io->o.handlers.on_event)
            io->o.handlers.on_event(s, p->data, bins, nbins, p->id,
                                    io->o.userdata);
        return;
    default:
        /* acks to server emits: the server never asks for one */
        return;
    }
}

static void pending_clear(client *c)
{
    int i;

    for (i = 0; i < c->nbins; i++)
        c->bins[i].len = 0; /* keep the buffers for the next packet */
    chat__sio_packet_clear(&c->pending);
    c->have_pending = 0;
    c->nbins = 0;
}

/* One binary message: the next attachment of the pending packet. */
static void on_attachment(client *c, const char *data, size_t len)
{
    chat__eio_session *es = c->es;
    chat__sio_bin bins[64];
    chat__sio_packet p;
    int i, n;

    if (chat__buf_append(&c->bins[c->nbins], data, len) != CHAT_OK) {
        chat__eio_close(es, "out of memory");
        return;
    }
    if (++c->nbins < c->pending.attachments)
        return;
    n = c->nbins;
    for (i = 0; i < n; i++) {
        bins[i].data = c->bins[i].data ? c->bins[i].data : "";
        bins[i].len = c->bins[i].len;
    }
    /* the packet leaves the client before the handler runs: it may close
     * the session, and c with it */
    p = c->pending;
    c->have_pending = 0;
    c->pending.data = NULL;
    dispatch(c, &p, bins, n);
    chat__sio_packet_clear(&p);
    if ((c = chat__eio_user(es)) != NULL)
        pending_clear(c);
}

static void eio_message(chat__eio_session *es, const char *data, size_t len,
                        int binary, void *ud)
{
    client *c = chat__eio_user(es);
    chat__sio *io = ud;
    chat__sio_limits lim;
    chat__sio_packet p;

    if (c == NULL)
        return;
    if (binary) {
        if (!c->have_pending)
            chat__eio_close(es, "parse error"); /* nothing to attach to */
        else
            on_attachment(c, data, len);
        return;
    }
    if (c->have_pending) {
        /* a text packet before the attachments were complete */
        chat__eio_close(es, "parse error");
        return;
    }
    lim.max_len = io->o.eio.max_payload;
    lim.max_attachments = io->o.max_attachments;
    if (chat__sio_decode(data, len, &lim, &p) != CHAT_OK) {
        chat__eio_close(es, "parse error");
        return;
    }
    if ((p.type == CHAT__SIO_BINARY_EVENT || p.type == CHAT__SIO_BINARY_ACK) &&
        p.attachments > 0) {
        if (!chat__sio_placeholders_valid(p.data, p.attachments)) {
            chat__sio_packet_clear(&p);
            chat__eio_close(es, "parse error");
            return;
        }
        c->pending = p;
        c->have_pending = 1;
        return;
    }
    dispatch(c, &p, NULL, 0);
    chat__sio_packet_clear(&p);
}

static void connect_timeout(lws_sorted_usec_list_t *sul)
{
    client *c = lws_container_of(sul, client, connect_sul);

    chat__eio_close(c->es, "connect timeout");
}

static void eio_open(chat__eio_session *es, void *ud)
{
    chat__sio *io = ud;
    client *c = chat__calloc(1, sizeof *c + (size_t)io->o.max_attachments *
                                                sizeof(chat__buf));

    if (c == NULL) {
        chat__eio_close(es, "out of memory");
        return;
    }
    c->io = io;
    c->es = es;
    c->pending.id = -1;
    chat__eio_set_user(es, c);
    lws_sul_schedule(chat__http_lws_context(io->http), 0, &c->connect_sul,
                     connect_timeout,
                     (lws_usec_t)io->o.connect_timeout_ms * LWS_US_PER_MS);
}

static void eio_close(chat__eio_session *es, const char *reason, void *ud)
{
    client *c = chat__eio_user(es);
    int i;

    (void)ud;
    if (c == NULL)
        return;
    chat__eio_set_user(es, NULL);
    lws_sul_cancel(&c->connect_sul);
    while (c->sockets)
        socket_gone(c->sockets, reason);
    for (i = 0; i < c->io->o.max_attachments; i++)
        chat__buf_free(&c->bins[i]);
    chat__sio_packet_clear(&c->pending);
    chat__free(c);
}

/* ---- setup ----------------------------------------------------------------
 */

int chat__sio_new(chat__sio **out, chat__http *http, const chat__sio_opts *o)
{
    chat__sio *io;
    int i, rc = CHAT_OK;

    CHAT_ASSERT_ARG(out && http && o && o->npaths > 0 && o->paths &&
                    o->nnamespaces > 0 && o->namespaces);
    io = chat__calloc(1, sizeof *io);
    if (io == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    io->http = http;
    io->o = *o;
    if (io->o.connect_timeout_ms <= 0)
        io->o.connect_timeout_ms = 45000;
    if (io->o.max_attachments <= 0)
        io->o.max_attachments = 10;
    if (io->o.max_attachments > 64)
        io->o.max_attachments = 64;
    if (io->o.eio.max_payload == 0)
        io->o.eio.max_payload = 1000000;
    io->o.eio.handlers.on_open = eio_open;
    io->o.eio.handlers.on_message = eio_message;
    io->o.eio.handlers.on_close = eio_close;
    io->o.eio.userdata = io;
    io->nsps = chat__calloc((size_t)o->nnamespaces, sizeof *io->nsps);
    io->eio = chat__calloc((size_t)o->npaths, sizeof *io->eio);
    if (io->nsps == NULL || io->eio == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto fail;
    }
    for (i = 0; i < o->nnamespaces; i++) {
        if ((io->nsps[i] = chat__strdup(o->namespaces[i])) == NULL) {
            rc = chat__error(CHAT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (i = 0; i < o->npaths; i++) {
        io->o.eio.path = o->paths[i];
        if ((rc = chat__eio_new(&io->eio[i], http, &io->o.eio)) != CHAT_OK)
            goto fail;
        io->neio++;
    }
    io->o.eio.path = NULL;
    *out = io;
    return CHAT_OK;
fail:
    chat__sio_free(io);
    return rc;
}

void chat__sio_free(chat__sio *io)
{
    int i;

    if (io == NULL)
        return;
    /* the lws context is gone: no callbacks run; free what is left */
    for (i = 0; i < io->neio; i++)
        chat__eio_free(io->eio[i]);
    for (i = 0; io->nsps && i < io->o.nnamespaces; i++)
        chat__free(io->nsps[i]);
    for (i = 0; i < ROOM_BUCKETS; i++) {
        while (io->rooms[i]) {
            room *r = io->rooms[i];
            io->rooms[i] = r->next;
            chat__free(r->members);
            chat__free(r);
        }
    }
    while (io->zombies) {
        chat__sio_socket *z = io->zombies;
        io->zombies = z->zombie;
        chat__free(z);
    }
    chat__free(io->nsps);
    chat__free(io->eio);
    chat__free(io);
}
