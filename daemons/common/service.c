/* The wiring of the distributed daemons: configuration from the seed's
 * environment names, PostgreSQL for the store, the message log on
 * PostgreSQL or DynamoDB, events over Redis, one chat_server with the
 * daemon's services mounted. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>

#include "common/daemon.h"
#include "common/service.h"

static const char *const with_value[] = {"--listen", "--workers", "--log-level",
                                         "--log-format", NULL};
static const char *const bools[] = {"--trust-proxy", "--help", "--version",
                                    "-h", NULL};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static chat_server *g_srv;
static int g_stop;

static void on_signal(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    g_stop = 1;
    chat_server_stop(g_srv);
    pthread_mutex_unlock(&g_lock);
}

static void publish(chat_server *srv)
{
    pthread_mutex_lock(&g_lock);
    g_srv = srv;
    if (srv && g_stop)
        chat_server_stop(srv);
    pthread_mutex_unlock(&g_lock);
}

static void usage(const service_def *d)
{
    printf(
        "Usage: %s [options]\n\n%s\n\n"
        "Options (environment variable in brackets):\n"
        "  --listen HOST:PORT  [CHAT_LISTEN] (default 0.0.0.0:$PORT,"
        " PORT=%d)\n"
        "  --workers N         request worker threads [CHAT_WORKERS] (4)\n"
        "  --trust-proxy       client address from X-Forwarded-For (behind\n"
        "                      the nginx edge only) [CHAT_TRUST_PROXY]\n"
        "  --log-level LEVEL   debug|info|warn|error [CHAT_LOG_LEVEL]"
        " (info)\n"
        "  --log-format FMT    json|text [CHAT_LOG_FORMAT] (json)\n"
        "  --help, --version\n\n"
        "Environment:\n"
        "  JWT_SECRET          required, >= 32 bytes, the same in every"
        " service\n"
        "  DATABASE_URL        PostgreSQL (or POSTGRES_HOST, POSTGRES_PORT,\n"
        "                      POSTGRES_USER, POSTGRES_PASSWORD,"
        " POSTGRES_DB)\n",
        d->name, d->summary, d->default_port);
    if (d->needs_log)
        printf(
            "  DYNAMODB_ENDPOINT   messages on DynamoDB (with AWS_REGION,\n"
            "                      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\n"
            "                      DYNAMODB_TABLE); unset: on PostgreSQL\n");
    if (d->needs_bus)
        printf("  REDIS_URL           required: events between services\n"
               "                      (redis://[:password@]host[:port])\n");
    printf("  CHAT_RATE_LOGIN_IP, CHAT_RATE_LOGIN_ACCOUNT, CHAT_RATE_SEND,\n"
           "  CHAT_RATE_TOKEN, CHAT_RATE_EVENTS, CHAT_MAX_CONN_USER,\n"
           "  CHAT_MAX_CONN_IP    limits, as in chatd --help\n");
    printf("\nGET /healthz: alive; GET /readyz: the backends answer;"
           " GET /metrics.\n"
           "SIGTERM or SIGINT: stop accepting, answer what is in flight,"
           " exit 0.\n");
}

int service_main(const service_def *d, int argc, char **argv)
{
    chat_server_opts so = CHAT_SERVER_OPTS_INIT;
    chat_pg_opts po;
    chat_store *store = NULL;
    chat_log *log = NULL;
    chat_bus *bus = NULL;
    chat_server *srv = NULL;
    char conninfo[2048], def_listen[32], host[256];
    const char *listen, *secret, *redis, *dynamo, *w;
    int port, workers, rc, status = 1;
    char *end;

    if (chatd_check_args(argc, argv, with_value, bools, d->name))
        return 2;
    if (chatd_flag(argc, argv, "--help", NULL) ||
        chatd_flag(argc, argv, "-h", NULL)) {
        usage(d);
        return 0;
    }
    if (chatd_flag(argc, argv, "--version", NULL)) {
        printf("%s (libchat) %s\n", d->name, chat_version());
        return 0;
    }
    if (chatd_log_setup(
            chatd_opt(argc, argv, "--log-level", "CHAT_LOG_LEVEL", "info"),
            chatd_opt(argc, argv, "--log-format", "CHAT_LOG_FORMAT", "json"),
            d->name)) {
        fprintf(stderr, "%s: bad --log-level or --log-format\n", d->name);
        return 2;
    }
    if (getenv("PORT") && *getenv("PORT"))
        snprintf(def_listen, sizeof def_listen, "0.0.0.0:%.16s",
                 getenv("PORT"));
    else
        snprintf(def_listen, sizeof def_listen, "0.0.0.0:%d", d->default_port);
    listen = chatd_opt(argc, argv, "--listen", "CHAT_LISTEN", def_listen);
    if (chatd_parse_listen(listen, host, sizeof host, &port)) {
        fprintf(stderr, "%s: bad listen address '%s' (want HOST:PORT)\n",
                d->name, listen);
        return 2;
    }
    w = chatd_opt(argc, argv, "--workers", "CHAT_WORKERS", "4");
    workers = (int)strtol(w, &end, 10);
    if (*end || workers < 1 || workers > 256) {
        fprintf(stderr, "%s: --workers must be 1..256, not '%s'\n", d->name, w);
        return 2;
    }
    secret = getenv("JWT_SECRET");
    if (!secret || strlen(secret) < CHAT_JWT_SECRET_MIN) {
        fprintf(stderr, "%s: JWT_SECRET must be set, at least %d bytes\n",
                d->name, CHAT_JWT_SECRET_MIN);
        return 2;
    }
    if (chat_pg_conninfo_from_env(conninfo, sizeof conninfo) != CHAT_OK) {
        fprintf(stderr, "%s: set DATABASE_URL or POSTGRES_* (%s)\n", d->name,
                chat_error_last()->message);
        return 2;
    }
    redis = getenv("REDIS_URL");
    if (d->needs_bus && (!redis || !*redis)) {
        fprintf(stderr, "%s: REDIS_URL must be set\n", d->name);
        return 2;
    }
    dynamo = getenv("DYNAMODB_ENDPOINT");

    if (chatd_signals_start(on_signal, NULL) != 0) {
        fprintf(stderr, "%s: cannot set up signal handling\n", d->name);
        return 1;
    }
    chat_pg_opts_init(&po);
    po.conninfo = conninfo;
    po.pool_size = workers;
    if ((rc = chat_store_pg_open(&store, &po)) != CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR,
                  "event=start_failed backend=postgres"
                  " msg=\"%s\"",
                  chat_error_last()->message);
        status = rc == CHAT_EINVAL ? 2 : 1;
        goto out;
    }
    if (d->needs_log && dynamo && *dynamo) {
        chat_dynamodb_opts dy;
        chat_dynamodb_opts_init(&dy);
        chat_dynamodb_opts_from_env(&dy);
        rc = chat_log_dynamodb_open(&log, &dy);
    } else if (d->needs_log) {
        po.touch_store = 1; /* the store's tables are in this database */
        rc = chat_log_pg_open(&log, &po);
    }
    if (rc != CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR, "event=start_failed backend=log msg=\"%s\"",
                  chat_error_last()->message);
        status = rc == CHAT_EINVAL ? 2 : 1;
        goto out;
    }
    if (d->needs_bus) {
        chat_redis_opts ro;
        chat_redis_opts_init(&ro);
        ro.url = redis;
        if ((rc = chat_bus_redis_new(&bus, &ro)) != CHAT_OK) {
            chatd_log(CHAT_LOG_ERROR,
                      "event=start_failed backend=redis msg=\"%s\"",
                      chat_error_last()->message);
            status = rc == CHAT_EINVAL ? 2 : 1;
            goto out;
        }
    }

    so.listen_host = host;
    so.port = port;
    so.store = store;
    so.log = log;
    so.bus = bus;
    so.services = d->services;
    so.workers = workers;
    so.jwt_secret = (const uint8_t *)secret;
    so.jwt_secret_len = strlen(secret);
    /* the same limits as chatd, from the same variables */
    so.rate_login_ip = getenv("CHAT_RATE_LOGIN_IP");
    so.rate_login_account = getenv("CHAT_RATE_LOGIN_ACCOUNT");
    so.rate_send = getenv("CHAT_RATE_SEND");
    so.rate_token = getenv("CHAT_RATE_TOKEN");
    so.rate_events = getenv("CHAT_RATE_EVENTS");
    if (getenv("CHAT_MAX_CONN_USER"))
        so.rt_max_per_user = atoi(getenv("CHAT_MAX_CONN_USER"));
    if (getenv("CHAT_MAX_CONN_IP"))
        so.rt_max_per_ip = atoi(getenv("CHAT_MAX_CONN_IP"));
    /* behind the edge: the client's address is nginx's X-Forwarded-For */
    so.trust_proxy =
        chatd_flag(argc, argv, "--trust-proxy", "CHAT_TRUST_PROXY");
    if ((rc = chat_server_new(&srv, &so)) != CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR, "event=start_failed msg=\"%s\"",
                  chat_error_last()->message);
        status = rc == CHAT_EINVAL ? 2 : 1;
        goto out;
    }
    publish(srv);
    chatd_log(CHAT_LOG_INFO,
              "event=listening url=http://%s:%d log=%s bus=%s version=%s", host,
              chat_server_port(srv),
              !log                ? "none"
              : dynamo && *dynamo ? "dynamodb"
                                  : "postgres",
              bus ? "redis" : "none", chat_version());
    chat_server_run(srv);
    status = 0;
out:
    publish(NULL);
    chat_server_free(srv);
    chat_log_free(log);
    chat_bus_free(bus);
    chat_store_free(store);
    chatd_log(CHAT_LOG_INFO, "event=stopped status=%d", status);
    return status;
}
