/*
 * The client's network edge. The sync engine (client.c) never touches a
 * socket: it asks a chat__net for HTTP requests and Socket.IO emits, and the
 * net's own threads hand back what happened as chat__net_input records
 * through the sink callback. The real net is libcurl multi (rest.c) plus
 * the libwebsockets Socket.IO client (sio_client.c); the unit tests plug in
 * a scripted one.
 */
#ifndef CHAT_CLIENT_NET_H
#define CHAT_CLIENT_NET_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/internal.h"

enum {
    CHAT__NET_HTTP_DONE = 1, /* an HTTP request finished (or failed)        */
    CHAT__NET_WS_UP,         /* Socket.IO namespace connected                */
    CHAT__NET_WS_DOWN,       /* connection lost or closed; it will retry     */
    CHAT__NET_WS_EVENT,      /* a server event: name + data                  */
    CHAT__NET_WS_ACK,        /* the answer to an emit that asked for one     */
};

/* One thing that happened on the network. Owned by whoever holds it;
 * chat__net_input_free releases it and everything it points to. */
typedef struct chat__net_input {
    struct chat__net_input *next;
    int kind;
    int64_t id; /* HTTP_DONE: the request id; WS_ACK: the emit's ack id */
    int status; /* HTTP_DONE: HTTP status, 0 when no answer arrived     */
    int error;  /* HTTP_DONE: CHAT_OK or CHAT_EIO/CHAT_ETIMEDOUT...     */
    char *body; /* HTTP_DONE: response body (NUL-terminated), may be NULL */
    size_t len;
    char *name;  /* WS_EVENT: event name; WS_DOWN: a reason, may be NULL  */
    cJSON *data; /* WS_EVENT: first argument; WS_ACK: first argument      */
} chat__net_input;

void chat__net_input_free(chat__net_input *in);

/* Called from a network thread for every input; takes ownership. */
typedef void (*chat__net_sink_fn)(chat__net_input *in, void *userdata);

typedef struct chat__net_config {
    const char *base_url;   /* "http://host:port" (no trailing slash)       */
    const char *ca_file;    /* PEM bundle for https/wss, NULL = system      */
    int insecure;           /* skip TLS verification (tests only)           */
    int connect_timeout_ms; /* TCP + TLS connect                            */
    int request_timeout_ms; /* whole HTTP request                           */
    const char *user_agent;
    chat__net_sink_fn sink;
    void *sink_userdata;
    const chat__log_scope *log; /* the threads' log hook; NULL: process's */
} chat__net_config;

/* What the engine asks of a net. Every function is called on the
 * application's (process) thread and must not block. */
typedef struct chat__net_ops {
    /* Start an HTTP request; its CHAT__NET_HTTP_DONE input carries id.
     * path starts with '/', bearer may be NULL, body may be NULL (no body). */
    int (*http)(void *net, int64_t id, const char *method, const char *path,
                const char *bearer, const char *body);
    /* Connect (or keep reconnecting, with backoff) the Socket.IO client
     * with this access token in the CONNECT auth payload. A later call
     * replaces the token for the next attempt. */
    int (*ws_start)(void *net, const char *token);
    /* Close the socket and stop reconnecting. */
    void (*ws_stop)(void *net);
    /* Emit event with data (copied). ack_id > 0 asks for an ack that comes
     * back as CHAT__NET_WS_ACK with that id. CHAT_ECLOSED when offline. */
    int (*ws_emit)(void *net, const char *event, const cJSON *data,
                   int64_t ack_id);
    /* Stop threads, drop pending work (no more sink calls after return). */
    void (*free)(void *net);
} chat__net_ops;

/* The real nets. */
int chat__rest_new(void **out, const chat__net_config *cfg);
int chat__rest_http(void *rest, int64_t id, const char *method,
                    const char *path, const char *bearer, const char *body);
void chat__rest_free(void *rest);

typedef struct chat__sioc chat__sioc;
int chat__sioc_new(chat__sioc **out, const chat__net_config *cfg);
int chat__sioc_start(chat__sioc *s, const char *token);
void chat__sioc_stop(chat__sioc *s);
int chat__sioc_emit(chat__sioc *s, const char *event, const cJSON *data,
                    int64_t ack_id);
void chat__sioc_free(chat__sioc *s);

#endif /* CHAT_CLIENT_NET_H */
