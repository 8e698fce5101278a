/*
 * The distributed daemons (user-service, chat-service, message-service,
 * realtime-gateway) are one wiring with different services mounted: each
 * main describes itself and calls service_main(). Not part of the library.
 */
#ifndef CHAT_DAEMON_SERVICE_H
#define CHAT_DAEMON_SERVICE_H

typedef struct service_def {
    const char *name;    /* "user-service" */
    const char *summary; /* one line for --help */
    unsigned services;   /* CHAT_SERVICE_* */
    int default_port;    /* PORT when unset */
    int needs_log;       /* opens the message log */
    int needs_bus;       /* publishes or listens to events: REDIS_URL */
    int fanout;          /* the fanout-worker: Kafka in, routed to Redis */
} service_def;

/* Parse flags/env, open the backends, serve until SIGTERM/SIGINT.
 * Exit status: 0 clean stop, 1 cannot start, 2 bad configuration. */
int service_main(const service_def *def, int argc, char **argv);

#endif
