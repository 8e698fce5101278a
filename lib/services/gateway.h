/*
 * realtime-gateway: Socket.IO at /socket.io/ and /ws/socket.io/
 * (namespaces / and /ws) carrying the chat events of docs/realtime.md.
 * Subscribes to the services' bus; lives on the HTTP front end's service
 * thread.
 */
#ifndef CHAT_SERVICES_GATEWAY_H
#define CHAT_SERVICES_GATEWAY_H

#include "services/services.h"

typedef struct chat__gateway chat__gateway;

typedef struct chat__gateway_opts {
    int ping_interval_ms;   /* 0 = 25000 */
    int ping_timeout_ms;    /* 0 = 20000 */
    int connect_timeout_ms; /* no CONNECT: closed; 0 = 45000 */
    int auth_timeout_ms;    /* not authenticated: closed; 0 = 10000 */
    size_t max_payload;     /* Engine.IO maxPayload; 0 = 128 KiB */
    size_t max_queue;       /* bytes queued per connection; 0 = 1 MiB */
    int max_per_user;       /* authenticated sockets per user; 0 = none */
    int max_per_ip;         /* sockets per address; 0 = none */
    chat__rate events;      /* events per socket; per_second 0 = none */
} chat__gateway_opts;

void chat__gateway_opts_init(chat__gateway_opts *o);
/* svc->http, svc->bus, svc->store and svc->log must be set. */
int chat__gateway_new(chat__gateway **out, chat__svc *svc,
                      const chat__gateway_opts *o);
/* Before the HTTP server is freed: no more wakes, appends landed. */
void chat__gateway_stop(chat__gateway *g);
/* After the HTTP server is freed. */
void chat__gateway_free(chat__gateway *g);
size_t chat__gateway_sockets(const chat__gateway *g);

#endif
