/* The server the official Engine.IO v4 test suite runs against
 * (socket.io docs/engine.io-protocol/v4-test-suite): with --engine, an
 * Engine.IO echo server at /engine.io/ with pingInterval 300 ms,
 * pingTimeout 200 ms and maxPayload 1000000. The Socket.IO mode (for the
 * v5 suite) is not built yet and says so. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/eio_server.h"

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

int main(int argc, char **argv)
{
    static const uint8_t key[] = "conformance-server-key-0123456789abcdef";
    chat__http_opts ho;
    chat__eio_opts eo;
    chat__eio *eio = NULL;
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
    if (!engine) {
        fprintf(stderr, "sio-conformance-server: the Socket.IO mode is not "
                        "built yet; use --engine\n");
        return 2;
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
    if (chat__http_new(&g_http, &ho) != CHAT_OK ||
        chat__eio_new(&eio, g_http, &eo) != CHAT_OK ||
        chat__http_listen(g_http) != CHAT_OK) {
        fprintf(stderr, "sio-conformance-server: %s\n",
                chat_error_last()->message);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "Engine.IO echo server on http://localhost:%d/engine.io/\n",
            chat__http_port(g_http));
    chat__http_run(g_http);
    chat__http_free(g_http);
    chat__eio_free(eio);
    return 0;
}
