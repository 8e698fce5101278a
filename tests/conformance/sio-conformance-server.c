/* The server the official protocol test suites of socketio/socket.io run
 * against (docs/engine.io-protocol/v4-test-suite and
 * docs/socket.io-protocol/v5-test-suite), with the options and handlers
 * their READMEs give: pingInterval 300 ms, pingTimeout 200 ms, maxPayload
 * 1000000, connectTimeout 1000 ms.
 *   --engine  an Engine.IO echo server at /engine.io/
 *   default   a Socket.IO server at /socket.io/ with namespaces / and
 *             /custom: every socket gets "auth" with its CONNECT payload;
 *             on /, "message" is echoed as "message-back" and
 *             "message-with-ack" is acked with its arguments. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/sio_server.h"

static chat__http *g_http;

static void on_signal(int sig)
{
    (void)sig;
    chat__http_stop(g_http);
}

static void echo(chat__eio_session *s, const char *data, size_t len, int binary,
                 void *ud)
{
    (void)ud;
    chat__eio_send(s, data, len, binary);
}

static int sio_connect(chat__sio_socket *s, const cJSON *auth, const char **err,
                       void *ud)
{
    cJSON *ev = cJSON_CreateArray();

    (void)err;
    (void)ud;
    cJSON_AddItemToArray(ev, cJSON_CreateString("auth"));
    cJSON_AddItemToArray(ev, auth ? cJSON_Duplicate(auth, 1)
                                  : cJSON_CreateObject());
    chat__sio_emit(s, ev, NULL, 0);
    cJSON_Delete(ev);
    return 0;
}

static void sio_event(chat__sio_socket *s, const cJSON *data,
                      const chat__sio_bin *bins, int nbins, int64_t id,
                      void *ud)
{
    const char *name = cJSON_GetArrayItem(data, 0)->valuestring;
    cJSON *out;

    (void)ud;
    if (strcmp(chat__sio_socket_nsp(s), "/") || name == NULL)
        return;
    out = cJSON_Duplicate(data, 1);
    if (out == NULL)
        return;
    if (!strcmp(name, "message")) {
        cJSON_ReplaceItemInArray(out, 0, cJSON_CreateString("message-back"));
        chat__sio_emit(s, out, bins, nbins);
    } else if (!strcmp(name, "message-with-ack") && id >= 0) {
        cJSON_DeleteItemFromArray(out, 0);
        chat__sio_ack(s, id, out, bins, nbins);
    }
    cJSON_Delete(out);
}

int main(int argc, char **argv)
{
    static const uint8_t key[] = "conformance-server-key-0123456789abcdef";
    chat__http_opts ho;
    static const char *const paths[] = {"/socket.io/"};
    static const char *const nsps[] = {"/", "/custom"};
    chat__eio_opts eo;
    chat__sio_opts so;
    chat__eio *eio = NULL;
    chat__sio *sio = NULL;
    int port = 3000, engine = 0, i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--engine")) {
            engine = 1;
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: sio-conformance-server [--engine] [--port N]\n");
            return 2;
        }
    }
    memset(&ho, 0, sizeof ho);
    ho.port = port;
    ho.jwt_key = key;
    ho.jwt_key_len = sizeof key - 1;
    ho.workers = 1;
    ho.slow_workers = 1;
    memset(&eo, 0, sizeof eo);
    eo.path = "/engine.io/";
    eo.ping_interval_ms = 300;
    eo.ping_timeout_ms = 200;
    eo.max_payload = 1000000;
    eo.handlers.on_message = echo;
    memset(&so, 0, sizeof so);
    so.paths = paths;
    so.npaths = 1;
    so.namespaces = nsps;
    so.nnamespaces = 2;
    so.connect_timeout_ms = 1000;
    so.eio = eo;
    so.eio.handlers.on_message = NULL;
    so.handlers.on_connect = sio_connect;
    so.handlers.on_event = sio_event;
    if (chat__http_new(&g_http, &ho) != CHAT_OK ||
        (engine ? chat__eio_new(&eio, g_http, &eo)
                : chat__sio_new(&sio, g_http, &so)) != CHAT_OK ||
        chat__http_listen(g_http) != CHAT_OK) {
        fprintf(stderr, "sio-conformance-server: %s\n",
                chat_error_last()->message);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "%s server on http://localhost:%d%s\n",
            engine ? "Engine.IO echo" : "Socket.IO", chat__http_port(g_http),
            engine ? "/engine.io/" : "/socket.io/");
    chat__http_run(g_http);
    chat__http_free(g_http);
    chat__eio_free(eio);
    chat__sio_free(sio);
    return 0;
}
