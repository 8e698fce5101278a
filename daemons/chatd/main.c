/* chatd: users, chats and messages services in one process on SQLite.
 * The embedded default: no server to install. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <chat/chat.h>

#include "common/daemon.h"

static const char usage[] =
    "Usage: chatd [options]\n"
    "\n"
    "Serve the libchat REST API (/api/users, /api/chats, /api/messages)\n"
    "from one process, with all data in one SQLite file.\n"
    "\n"
    "Options (environment variable in brackets):\n"
    "  --listen HOST:PORT   address to serve on [CHAT_LISTEN]\n"
    "                       (default 127.0.0.1:8080; port 0 = any free)\n"
    "  --data-dir DIR       where chat.db and jwt.secret live\n"
    "                       [CHAT_DATA_DIR] (default ./var)\n"
    "  --workers N          request worker threads [CHAT_WORKERS] (4)\n"
    "  --sync full|normal   SQLite durability [CHAT_SYNC] (full: an\n"
    "                       acknowledged send survives power loss;\n"
    "                       normal: it survives a crash of chatd)\n"
    "  --log sqlite|dynamodb  where the message log lives\n"
    "                       [CHAT_LOG_BACKEND] (sqlite: chat.db; dynamodb:\n"
    "                       DYNAMODB_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID,\n"
    "                       AWS_SECRET_ACCESS_KEY, DYNAMODB_TABLE)\n"
    "  --bus local|redis    how live events travel [CHAT_BUS] (local:\n"
    "                       in this process; redis: pub/sub at REDIS_URL,\n"
    "                       so several chatd or gateways share them, and\n"
    "                       the rate limits too)\n"
    "  --cors ORIGINS       allowed browser origins, '*' or a comma\n"
    "                       list [CHAT_CORS_ORIGINS] (default: none)\n"
    "  --trust-proxy        client IP from X-Forwarded-For\n"
    "                       [CHAT_TRUST_PROXY]\n"
    "  --rate-login-ip R    login/register per IP [CHAT_RATE_LOGIN_IP]\n"
    "                       (30/m)\n"
    "  --rate-login-account R  login per account\n"
    "                       [CHAT_RATE_LOGIN_ACCOUNT] (10/m)\n"
    "  --rate-send R        messages per user [CHAT_RATE_SEND] (20/s)\n"
    "  --rate-token R       requests per access token [CHAT_RATE_TOKEN]\n"
    "                       (100/s)\n"
    "  --rate-events R      Socket.IO events per socket [CHAT_RATE_EVENTS]\n"
    "                       (20/s; excess: an error event, then disconnect)\n"
    "                       R is N/s, N/m, N/h or off\n"
    "  --max-conn-user N    sockets per user [CHAT_MAX_CONN_USER] (20)\n"
    "  --max-conn-ip N      sockets per client address [CHAT_MAX_CONN_IP]\n"
    "                       (1000)\n"
    "  --auth-timeout MS    Socket.IO authenticate within [CHAT_AUTH_TIMEOUT]\n"
    "                       (10000)\n"
    "  --ping-interval MS   Engine.IO pingInterval [CHAT_PING_INTERVAL]\n"
    "                       (25000)\n"
    "  --ping-timeout MS    Engine.IO pingTimeout [CHAT_PING_TIMEOUT]\n"
    "                       (20000)\n"
    "  --access-ttl SECS    access token lifetime [CHAT_ACCESS_TTL] (900)\n"
    "  --log-level LEVEL    debug|info|warn|error [CHAT_LOG_LEVEL] (info)\n"
    "  --log-format FMT     text|json [CHAT_LOG_FORMAT] (text)\n"
    "  --help, --version\n"
    "\n"
    "JWT_SECRET (>= 32 bytes) signs access tokens; without it chatd makes\n"
    "one and keeps it in DATA_DIR/jwt.secret (mode 0600).\n"
    "SIGTERM or SIGINT stop chatd cleanly: requests in flight are answered\n"
    "and every acknowledged message is on disk.\n";

static const char *const with_value[] = {
    "--listen",        "--data-dir",      "--workers",
    "--sync",          "--log",           "--bus",
    "--cors",          "--rate-login-ip", "--rate-login-account",
    "--rate-send",     "--rate-token",    "--rate-events",
    "--max-conn-user", "--max-conn-ip",   "--auth-timeout",
    "--ping-interval", "--ping-timeout",  "--access-ttl",
    "--log-level",     "--log-format",    NULL};
static const char *const bools[] = {"--trust-proxy", "--help", "--version",
                                    "-h", NULL};

/* The signal thread may fire before the server exists or while it is
 * being freed: it reaches the server only under this lock. */
static pthread_mutex_t g_srv_lock = PTHREAD_MUTEX_INITIALIZER;
static chat_server *g_srv;
static int g_stop_requested;

static void on_signal(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_srv_lock);
    g_stop_requested = 1;
    chat_server_stop(g_srv);
    pthread_mutex_unlock(&g_srv_lock);
}

static void publish_server(chat_server *srv)
{
    pthread_mutex_lock(&g_srv_lock);
    g_srv = srv;
    if (srv && g_stop_requested)
        chat_server_stop(srv);
    pthread_mutex_unlock(&g_srv_lock);
}

static int positive(const char *s, const char *what, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (end == s || *end || v < 1 || v > 1000000) {
        fprintf(stderr, "chatd: %s must be a positive integer, not '%s'\n",
                what, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    chat_sqlite_opts sq = CHAT_SQLITE_OPTS_INIT;
    chat_server_opts so = CHAT_SERVER_OPTS_INIT;
    chat_store *store = NULL;
    chat_log *log = NULL;
    chat_server *srv = NULL;
    const char *listen, *dir, *sync, *log_backend, *bus_backend;
    chat_bus *bus = NULL;
    char host[256], path[4096];
    uint8_t *secret = NULL;
    size_t secret_len = 0;
    int port, rc, status = 1, workers = 4, ttl = CHAT_ACCESS_TTL_DEFAULT;

    if (chatd_check_args(argc, argv, with_value, bools, "chatd"))
        return 2;
    if (chatd_flag(argc, argv, "--help", NULL) ||
        chatd_flag(argc, argv, "-h", NULL)) {
        fputs(usage, stdout);
        return 0;
    }
    if (chatd_flag(argc, argv, "--version", NULL)) {
        printf("chatd (libchat) %s\n", chat_version());
        return 0;
    }
    if (chatd_log_setup(
            chatd_opt(argc, argv, "--log-level", "CHAT_LOG_LEVEL", "info"),
            chatd_opt(argc, argv, "--log-format", "CHAT_LOG_FORMAT", "text"),
            "chatd")) {
        fprintf(stderr, "chatd: bad --log-level or --log-format\n");
        return 2;
    }
    listen = chatd_opt(argc, argv, "--listen", "CHAT_LISTEN", "127.0.0.1:8080");
    if (chatd_parse_listen(listen, host, sizeof host, &port)) {
        fprintf(stderr, "chatd: bad --listen '%s' (want HOST:PORT)\n", listen);
        return 2;
    }
    dir = chatd_opt(argc, argv, "--data-dir", "CHAT_DATA_DIR", "./var");
    sync = chatd_opt(argc, argv, "--sync", "CHAT_SYNC", "full");
    if (strcmp(sync, "full") && strcmp(sync, "normal")) {
        fprintf(stderr, "chatd: --sync must be full or normal\n");
        return 2;
    }
    log_backend = chatd_opt(argc, argv, "--log", "CHAT_LOG_BACKEND", "sqlite");
    if (strcmp(log_backend, "sqlite") && strcmp(log_backend, "dynamodb")) {
        fprintf(stderr, "chatd: --log must be sqlite or dynamodb\n");
        return 2;
    }
    bus_backend = chatd_opt(argc, argv, "--bus", "CHAT_BUS", "local");
    if (strcmp(bus_backend, "local") && strcmp(bus_backend, "redis")) {
        fprintf(stderr, "chatd: --bus must be local or redis\n");
        return 2;
    }
    if (positive(chatd_opt(argc, argv, "--workers", "CHAT_WORKERS", "4"),
                 "--workers", &workers) ||
        positive(
            chatd_opt(argc, argv, "--access-ttl", "CHAT_ACCESS_TTL", "900"),
            "--access-ttl", &ttl) ||
        positive(chatd_opt(argc, argv, "--max-conn-user", "CHAT_MAX_CONN_USER",
                           "20"),
                 "--max-conn-user", &so.rt_max_per_user) ||
        positive(
            chatd_opt(argc, argv, "--max-conn-ip", "CHAT_MAX_CONN_IP", "1000"),
            "--max-conn-ip", &so.rt_max_per_ip) ||
        positive(chatd_opt(argc, argv, "--auth-timeout", "CHAT_AUTH_TIMEOUT",
                           "10000"),
                 "--auth-timeout", &so.rt_auth_timeout_ms) ||
        positive(chatd_opt(argc, argv, "--ping-interval", "CHAT_PING_INTERVAL",
                           "25000"),
                 "--ping-interval", &so.rt_ping_interval_ms) ||
        positive(chatd_opt(argc, argv, "--ping-timeout", "CHAT_PING_TIMEOUT",
                           "20000"),
                 "--ping-timeout", &so.rt_ping_timeout_ms))
        return 2;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "chatd: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (getenv("JWT_SECRET") && getenv("JWT_SECRET")[0] &&
        strlen(getenv("JWT_SECRET")) < CHAT_JWT_SECRET_MIN) {
        fprintf(stderr, "chatd: JWT_SECRET must be at least %d bytes\n",
                CHAT_JWT_SECRET_MIN);
        return 2;
    }
    if ((secret = chatd_jwt_secret(dir, &secret_len)) == NULL)
        return 1;

    /* Signals are blocked before any library thread starts (the log's
     * writer is one) so that only the signal thread ever sees them. */
    if (chatd_signals_start(on_signal, NULL) != 0) {
        fprintf(stderr, "chatd: cannot set up signal handling\n");
        goto out;
    }
    snprintf(path, sizeof path, "%s/chat.db", dir);
    sq.sync_full = !strcmp(sync, "full");
    sq.readers = workers;
    sq.touch_store = 1;
    if ((rc = chat_store_sqlite_open(&store, path, &sq)) != CHAT_OK) {
        fprintf(stderr, "chatd: cannot open %s: %s\n", path,
                chat_error_last()->message);
        goto out;
    }
    if (!strcmp(log_backend, "dynamodb")) {
        chat_dynamodb_opts dy;
        chat_dynamodb_opts_init(&dy);
        chat_dynamodb_opts_from_env(&dy);
        if ((rc = chat_log_dynamodb_open(&log, &dy)) != CHAT_OK) {
            fprintf(stderr, "chatd: DynamoDB message log: %s\n",
                    chat_error_last()->message);
            if (rc == CHAT_EINVAL)
                status = 2;
            goto out;
        }
    } else if ((rc = chat_log_sqlite_open(&log, path, &sq)) != CHAT_OK) {
        fprintf(stderr, "chatd: cannot open %s: %s\n", path,
                chat_error_last()->message);
        goto out;
    }

    if (!strcmp(bus_backend, "redis")) {
        chat_redis_opts ro;
        chat_redis_opts_init(&ro);
        ro.url = getenv("REDIS_URL");
        if ((rc = chat_bus_redis_new(&bus, &ro)) != CHAT_OK) {
            fprintf(stderr, "chatd: Redis bus: %s\n",
                    chat_error_last()->message);
            if (rc == CHAT_EINVAL)
                status = 2;
            goto out;
        }
    }

    so.listen_host = host;
    so.bus = bus;
    so.port = port;
    so.store = store;
    so.log = log;
    so.jwt_secret = secret;
    so.jwt_secret_len = secret_len;
    so.access_ttl_s = ttl;
    so.workers = workers;
    so.cors_origins =
        chatd_opt(argc, argv, "--cors", "CHAT_CORS_ORIGINS", NULL);
    so.trust_proxy =
        chatd_flag(argc, argv, "--trust-proxy", "CHAT_TRUST_PROXY");
    so.rate_login_ip =
        chatd_opt(argc, argv, "--rate-login-ip", "CHAT_RATE_LOGIN_IP", NULL);
    so.rate_login_account = chatd_opt(argc, argv, "--rate-login-account",
                                      "CHAT_RATE_LOGIN_ACCOUNT", NULL);
    so.rate_send = chatd_opt(argc, argv, "--rate-send", "CHAT_RATE_SEND", NULL);
    so.rate_token =
        chatd_opt(argc, argv, "--rate-token", "CHAT_RATE_TOKEN", NULL);
    so.rate_events =
        chatd_opt(argc, argv, "--rate-events", "CHAT_RATE_EVENTS", NULL);
    if (bus) { /* several chatd on one Redis: one set of limits */
        const char *u = getenv("REDIS_URL");
        so.rate_redis_url = u && *u ? u : "redis://127.0.0.1:6379";
    }

    if ((rc = chat_server_new(&srv, &so)) != CHAT_OK) {
        fprintf(stderr, "chatd: %s\n", chat_error_last()->message);
        if (rc == CHAT_EINVAL)
            status = 2; /* a bad value, e.g. a rate */
        goto out;
    }
    publish_server(srv);
    chatd_log(CHAT_LOG_INFO,
              "event=listening url=http://%s:%d data_dir=%s sync=%s "
              "log=%s bus=%s version=%s",
              host, chat_server_port(srv), dir, sync, log_backend, bus_backend,
              chat_version());
    chat_server_run(srv);
    status = 0;
out:
    publish_server(NULL);
    chat_server_free(srv);
    chat_log_free(log); /* commits whatever is still queued */
    chat_bus_free(bus);
    chat_store_free(store);
    free(secret);
    chatd_log(CHAT_LOG_INFO, "event=stopped status=%d", status);
    return status;
}
