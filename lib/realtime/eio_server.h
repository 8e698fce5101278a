/*
 * Engine.IO v4 server on the HTTP front end: HTTP long-polling and
 * WebSocket transports, the polling -> websocket upgrade, heartbeats.
 * Everything here runs on the lws service thread.
 */
#ifndef CHAT_REALTIME_EIO_SERVER_H
#define CHAT_REALTIME_EIO_SERVER_H

#include "http/http.h"
#include "realtime/codec.h"

typedef struct chat__eio chat__eio;
typedef struct chat__eio_session chat__eio_session;

typedef struct chat__eio_handlers {
    /* a session opened (handshake sent) */
    void (*on_open)(chat__eio_session *s, void *userdata);
    /* a message packet: text (valid UTF-8) or binary */
    void (*on_message)(chat__eio_session *s, const char *data, size_t len,
                       int binary, void *userdata);
    /* the session is gone; s is freed after this returns */
    void (*on_close)(chat__eio_session *s, const char *reason, void *userdata);
} chat__eio_handlers;

typedef struct chat__eio_opts {
    const char *path;     /* "/engine.io/", "/socket.io/" */
    int ping_interval_ms; /* 0 = 25000 */
    int ping_timeout_ms;  /* 0 = 20000 */
    size_t max_payload;   /* 0 = 1000000 */
    size_t max_queue;     /* bytes queued per session; 0 = 4 MiB */
    chat__eio_handlers handlers;
    void *userdata;
} chat__eio_opts;

/* Attach an Engine.IO endpoint to an HTTP server (before it listens). */
int chat__eio_new(chat__eio **out, chat__http *http, const chat__eio_opts *o);
void chat__eio_free(chat__eio *e);

/* Queue a message packet. CHAT_ECLOSED for a closing session, CHAT_ELIMIT
 * when the session's queue is full (a slow consumer: it is closed). */
int chat__eio_send(chat__eio_session *s, const char *data, size_t len,
                   int binary);
/* Close the session (its on_close runs). */
void chat__eio_close(chat__eio_session *s, const char *reason);
const char *chat__eio_sid(const chat__eio_session *s);
void chat__eio_set_user(chat__eio_session *s, void *user);
void *chat__eio_user(const chat__eio_session *s);
/* The peer's address as text. */
const char *chat__eio_ip(const chat__eio_session *s);
/* Sessions open now. */
size_t chat__eio_count(const chat__eio *e);

#endif
