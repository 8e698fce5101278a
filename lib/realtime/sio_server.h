/*
 * Socket.IO v5 server over the Engine.IO server: namespaces, CONNECT with
 * an auth payload, events and acks (binary attachments included), rooms.
 * Everything here runs on the lws service thread, handlers included.
 */
#ifndef CHAT_REALTIME_SIO_SERVER_H
#define CHAT_REALTIME_SIO_SERVER_H

#include "realtime/eio_server.h"

typedef struct chat__sio chat__sio;
/* One client's connection to one namespace (a socket.io "socket"). */
typedef struct chat__sio_socket chat__sio_socket;

/* A binary attachment: bytes borrowed for the duration of a call. */
typedef struct chat__sio_bin {
    const void *data;
    size_t len;
} chat__sio_bin;

typedef struct chat__sio_handlers {
    /* A CONNECT to a served namespace. auth is the payload (an object) or
     * NULL. Return 0 to accept (the {sid} reply follows the return, so
     * emits made here arrive after it), or non-zero with *err set to a
     * static message for CONNECT_ERROR. */
    int (*on_connect)(chat__sio_socket *s, const cJSON *auth, const char **err,
                      void *userdata);
    /* An EVENT or BINARY_EVENT: data is [name, args...] with placeholders
     * where bins go; id is the ack id or -1. Borrowed for the call. */
    void (*on_event)(chat__sio_socket *s, const cJSON *data,
                     const chat__sio_bin *bins, int nbins, int64_t id,
                     void *userdata);
    /* The socket left (client or server disconnect, transport close); it
     * is freed after this returns. */
    void (*on_disconnect)(chat__sio_socket *s, const char *reason,
                          void *userdata);
} chat__sio_handlers;

typedef struct chat__sio_opts {
    const char *const *paths; /* Engine.IO paths, e.g. "/socket.io/" */
    int npaths;
    const char *const *namespaces; /* served; others get "Invalid namespace" */
    int nnamespaces;
    int connect_timeout_ms; /* no CONNECT within this closes; 0 = 45000 */
    int max_attachments;    /* per packet; 0 = 10 */
    chat__eio_opts eio;     /* path and handlers are set here */
    chat__sio_handlers handlers;
    void *userdata;
} chat__sio_opts;

int chat__sio_new(chat__sio **out, chat__http *http, const chat__sio_opts *o);
void chat__sio_free(chat__sio *io);

/* Emit an event: data is [name, args...]; bins fill its placeholders. */
int chat__sio_emit(chat__sio_socket *s, const cJSON *data,
                   const chat__sio_bin *bins, int nbins);
/* Answer ack id with args (an array). */
int chat__sio_ack(chat__sio_socket *s, int64_t id, const cJSON *args,
                  const chat__sio_bin *bins, int nbins);
/* Send an already encoded text packet (chat__sio_encode output for this
 * socket's namespace): one encoding for many sockets. */
int chat__sio_send_encoded(chat__sio_socket *s, const char *pkt, size_t len);
/* Leave the namespace with a DISCONNECT packet; close_transport also ends
 * the Engine.IO session. on_disconnect runs before this returns. */
void chat__sio_disconnect(chat__sio_socket *s, int close_transport);

const char *chat__sio_socket_id(const chat__sio_socket *s);
const char *chat__sio_socket_nsp(const chat__sio_socket *s);
/* The peer's address as text. */
const char *chat__sio_socket_ip(const chat__sio_socket *s);
void chat__sio_set_user(chat__sio_socket *s, void *user);
void *chat__sio_user(const chat__sio_socket *s);

/* Rooms: named sets of sockets, left automatically on disconnect. */
int chat__sio_join(chat__sio_socket *s, const char *room);
void chat__sio_leave(chat__sio_socket *s, const char *room);
/* Call fn for each socket in room (fn may disconnect the socket it is
 * given, nothing else). Returns the number visited. */
size_t chat__sio_room_each(chat__sio *io, const char *room,
                           void (*fn)(chat__sio_socket *s, void *arg),
                           void *arg);
size_t chat__sio_room_size(chat__sio *io, const char *room);
/* Namespaces connected now, over all clients. */
size_t chat__sio_count(const chat__sio *io);

#endif
