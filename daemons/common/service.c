/* The wiring of the distributed daemons: configuration from the seed's
 * environment names, PostgreSQL for the store, the message log on
 * PostgreSQL or DynamoDB, events over Redis, one chat_server with the
 * daemon's services mounted. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
static int g_fetch_wait_ms; /* KAFKA_FETCH_WAIT_MS; 0 = the default */

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

/* With Kafka: what must not be lost (messages, membership, read markers)
 * goes through Kafka to the fanout-workers, which hand it to the gateways
 * over Redis; typing and presence, which are worth nothing late, go
 * straight to Redis. Subscribers listen on Redis. */
typedef struct split_bus {
    chat_bus base;
    chat_bus *kafka, *redis;
} split_bus;

static int split_publish(chat_bus *b, const chat_event *ev)
{
    split_bus *s = (split_bus *)b;

    if (ev->type == CHAT_EVENT_TYPING || ev->type == CHAT_EVENT_PRESENCE)
        return chat_bus_publish(s->redis, ev);
    return chat_bus_publish(s->kafka, ev);
}

static int split_publish_to(chat_bus *b, const char *gateway,
                            const chat_event *ev)
{
    return chat_bus_publish_to(((split_bus *)b)->redis, gateway, ev);
}

static int split_publish_each(chat_bus *b, const char *const *gateways, int n,
                              const chat_event *ev)
{
    return chat_bus_publish_each(((split_bus *)b)->redis, gateways, n, ev);
}

static int split_subscribe(chat_bus *b, chat_event_fn fn, void *userdata)
{
    return chat_bus_subscribe(((split_bus *)b)->redis, fn, userdata);
}

static void split_free(chat_bus *b)
{
    split_bus *s = (split_bus *)b;

    chat_bus_free(s->kafka); /* flushes what is queued */
    chat_bus_free(s->redis);
    free(s);
}

static int split_ping(chat_bus *b)
{
    int rc = chat_bus_ping(((split_bus *)b)->redis);

    return rc != CHAT_OK ? rc : chat_bus_ping(((split_bus *)b)->kafka);
}

static const chat_bus_ops g_split_ops = {
    "kafka+redis",    split_publish, split_subscribe,   split_free,
    split_publish_to, split_ping,    split_publish_each};

/* The fanout-worker's job: every record from Kafka to the channels of the
 * gateways where its recipients are (chat_fanout_route). It returns only
 * once the event is handed on (or the worker stops), so the record's
 * offset is committed only after routing. */
typedef struct router {
    chat_store *store;
    chat_presence *presence;
    chat_bus *out;
    chat_fanout *fan;
    int cache_ms; /* CHAT_ROUTE_CACHE_MS */
    chat_bus *in; /* Kafka, for readiness */
} router;

static int route(const chat_event *ev, void *ud)
{
    router *r = ud;
    unsigned ms = 50;
    int stopping;

    while (chat_fanout_event(r->fan, ev) != CHAT_OK) {
        chatd_log(CHAT_LOG_WARN, "event=route_retry msg=\"%s\"",
                  chat_error_last()->message);
        pthread_mutex_lock(&g_lock);
        stopping = g_stop;
        pthread_mutex_unlock(&g_lock);
        if (stopping) /* refused: not committed, routed again later */
            return CHAT_ECLOSED;
        usleep(ms * 1000);
        ms = ms < 2000 ? ms * 2 : 2000;
    }
    return CHAT_OK;
}

/* The fanout-worker's /readyz: Kafka in, Redis out, the registry (the
 * server itself checks PostgreSQL). */
static int fanout_ready(void *ud, const char **backend)
{
    router *r = ud;
    int64_t epoch;

    if (r->in && chat_bus_ping(r->in) != CHAT_OK)
        *backend = "kafka";
    else if (r->out && chat_bus_ping(r->out) != CHAT_OK)
        *backend = "redis";
    else if (r->presence && chat_presence_epoch(r->presence, &epoch) != CHAT_OK)
        *backend = "presence";
    else
        return CHAT_OK;
    return CHAT_EUNAVAIL;
}

static void kafka_opts(chat_kafka_opts *ko, const char *brokers,
                       const char *group)
{
    chat_kafka_opts_init(ko);
    ko->brokers = brokers;
    ko->messages_topic = getenv("KAFKA_TOPIC_MESSAGES");
    ko->events_topic = getenv("KAFKA_TOPIC_EVENTS");
    ko->group_id = group;
    ko->fetch_wait_ms = g_fetch_wait_ms;
}

/* An integer from env into *out (left alone if unset): lo..hi, and not 0
 * unless zero_ok. 0, or 1 after saying on stderr what it must be. */
static int env_int(const service_def *d, const char *name, long lo, long hi,
                   int zero_ok, const char *must_be, int *out)
{
    const char *v = getenv(name);
    char *end;
    long n;

    if (v == NULL || *v == '\0')
        return 0;
    n = strtol(v, &end, 10);
    if (*end || n < lo || n > hi || (n == 0 && !zero_ok)) {
        fprintf(stderr, "%s: %s must be %s\n", d->name, name, must_be);
        return 1;
    }
    *out = (int)n;
    return 0;
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
        "                      (not used by the fanout-worker)\n"
        "  DATABASE_URL        PostgreSQL (or POSTGRES_HOST, POSTGRES_PORT,\n"
        "                      POSTGRES_USER, POSTGRES_PASSWORD,"
        " POSTGRES_DB)\n",
        d->name, d->summary, d->default_port);
    if (d->needs_log)
        printf(
            "  DYNAMODB_ENDPOINT   messages on DynamoDB (with AWS_REGION,\n"
            "                      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\n"
            "                      DYNAMODB_TABLE); unset: on PostgreSQL\n");
    if (d->services & CHAT_SERVICE_REALTIME)
        printf("  GATEWAY_ID          this gateway's id in the presence"
               " registry (a UUID;\n"
               "                      default: a new one per start)\n");
    if (d->services & CHAT_SERVICE_REALTIME || d->fanout)
        printf("  CHAT_PRESENCE_TTL_MS presence entries live this long,"
               " renewed every\n"
               "                      third of it (30000)\n");
    if (d->fanout)
        printf(
            "  REDIS_URL           required: the presence registry and the\n"
            "                      gateways' channels\n"
            "  KAFKA_BROKERS       required (KAFKA_GROUP_ID: fanout-worker;\n"
            "                      KAFKA_TOPIC_MESSAGES, "
            "KAFKA_TOPIC_EVENTS)\n"
            "  KAFKA_FETCH_WAIT_MS longest wait of an idle fetch (20; "
            "1..1000)\n"
            "  CHAT_ROUTE_CACHE_MS reuse a conversation's gateways this long\n"
            "                      (0 = 100; -1 = look up every event)\n");
    if (d->needs_bus)
        printf(
            "  REDIS_URL           required: events between services\n"
            "                      (redis://[:password@]host[:port])\n"
            "  KAFKA_BROKERS       messages, membership and read events\n"
            "                      through Kafka and the fanout-workers\n"
            "                      (KAFKA_TOPIC_MESSAGES, KAFKA_TOPIC_EVENTS:\n"
            "                      chat.messages, chat.events)\n");
    printf("  CHAT_RATE_LOGIN_IP, CHAT_RATE_LOGIN_ACCOUNT, CHAT_RATE_SEND,\n"
           "  CHAT_RATE_TOKEN, CHAT_RATE_EVENTS, CHAT_MAX_CONN_USER,\n"
           "  CHAT_MAX_CONN_IP    limits, as in chatd --help; with REDIS_URL,\n"
           "                      every CHAT_RATE_* limit but the per-socket\n"
           "                      EVENTS one is shared by all instances\n");
    printf("\nGET /healthz: alive; GET /readyz: the backends answer;"
           " GET /metrics.\n"
           "SIGTERM or SIGINT: stop accepting, answer what is in flight,"
           " exit 0.\n");
}

static const char fanout_secret[] =
    "fanout-worker-serves-no-authenticated-route";

/* The bus of a service: Redis, with Kafka in front when configured; a
 * gateway's also listens on its own channel. */
static int open_bus(const char *redis, const char *kafka, const char *gateway,
                    chat_bus **out)
{
    chat_redis_opts ro;
    chat_kafka_opts ko;
    split_bus *sb = NULL;
    chat_bus *r = NULL, *k = NULL;
    int rc;

    chat_redis_opts_init(&ro);
    ro.url = redis;
    ro.gateway_id = gateway;
    if ((rc = chat_bus_redis_new(&r, &ro)) != CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR, "event=start_failed backend=redis msg=\"%s\"",
                  chat_error_last()->message);
        return rc;
    }
    if (kafka == NULL) {
        *out = r;
        return CHAT_OK;
    }
    kafka_opts(&ko, kafka, NULL); /* publish only */
    if ((rc = chat_bus_kafka_new(&k, &ko)) == CHAT_OK &&
        (sb = calloc(1, sizeof *sb)) == NULL)
        rc = CHAT_ENOMEM;
    if (rc != CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR, "event=start_failed backend=kafka msg=\"%s\"",
                  rc == CHAT_ENOMEM ? "out of memory"
                                    : chat_error_last()->message);
        chat_bus_free(k);
        chat_bus_free(r);
        return rc;
    }
    sb->base.ops = &g_split_ops;
    sb->kafka = k;
    sb->redis = r;
    *out = &sb->base;
    return CHAT_OK;
}

/* The presence registry: a gateway records its users under its id, the
 * fanout-worker (gateway NULL) only looks them up. */
static int open_presence(const char *redis, const char *gateway,
                         chat_presence **out)
{
    chat_presence_redis_opts o;
    const char *ttl = getenv("CHAT_PRESENCE_TTL_MS");
    int rc;

    chat_presence_redis_opts_init(&o);
    o.url = redis;
    o.gateway_id = gateway;
    o.ttl_ms = ttl && *ttl ? atoi(ttl) : 0;
    if ((rc = chat_presence_redis_new(out, &o)) != CHAT_OK)
        chatd_log(CHAT_LOG_ERROR,
                  "event=start_failed backend=redis what=presence msg=\"%s\"",
                  chat_error_last()->message);
    return rc;
}

/* The fanout-worker's two buses: records consumed from Kafka in a
 * consumer group (KAFKA_GROUP_ID, default fanout-worker) are routed to
 * the gateways' channels on Redis. */
static int fanout_start(const char *redis, const char *kafka, router *r,
                        chat_bus **kafka_in)
{
    const char *group = getenv("KAFKA_GROUP_ID");
    chat_redis_opts ro;
    chat_kafka_opts ko;
    chat_fanout_opts fo;
    int rc;

    chat_redis_opts_init(&ro);
    ro.url = redis;
    kafka_opts(&ko, kafka, group && *group ? group : "fanout-worker");
    if ((rc = open_presence(redis, NULL, &r->presence)) != CHAT_OK)
        return rc;
    chat_fanout_opts_init(&fo);
    fo.store = r->store;
    fo.presence = r->presence;
    fo.cache_ms = r->cache_ms;
    if ((rc = chat_bus_redis_new(&r->out, &ro)) != CHAT_OK ||
        (fo.bus = r->out, rc = chat_fanout_new(&r->fan, &fo)) != CHAT_OK ||
        (rc = chat_bus_kafka_new(kafka_in, &ko)) != CHAT_OK ||
        (r->in = *kafka_in, rc = chat_bus_subscribe(*kafka_in, route, r)) !=
            CHAT_OK) {
        chatd_log(CHAT_LOG_ERROR, "event=start_failed msg=\"%s\"",
                  chat_error_last()->message);
        return rc;
    }
    return CHAT_OK;
}

int service_main(const service_def *d, int argc, char **argv)
{
    chat_server_opts so = CHAT_SERVER_OPTS_INIT;
    chat_pg_opts po;
    chat_store *store = NULL;
    chat_log *log = NULL;
    chat_bus *bus = NULL, *in = NULL;
    chat_presence *presence = NULL;
    router fan = {NULL, NULL, NULL, NULL, 0, NULL};
    chat_server *srv = NULL;
    char conninfo[2048], def_listen[32], host[256], gateway[CHAT_ID_LEN + 1];
    const char *listen, *secret, *redis, *dynamo, *kafka, *w;
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
    if (d->fanout && (!secret || !*secret))
        secret = fanout_secret; /* it serves no route that needs one */
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
    if ((d->needs_bus || d->fanout) && (!redis || !*redis)) {
        fprintf(stderr, "%s: REDIS_URL must be set\n", d->name);
        return 2;
    }
    kafka = getenv("KAFKA_BROKERS");
    if (kafka && !*kafka)
        kafka = NULL;
    if (d->fanout && !kafka) {
        fprintf(stderr, "%s: KAFKA_BROKERS must be set\n", d->name);
        return 2;
    }
    /* the same limits as chatd, from the same variables; checked before
     * any backend is opened, so a typo is a clear exit 2 */
    so.rate_login_ip = getenv("CHAT_RATE_LOGIN_IP");
    so.rate_login_account = getenv("CHAT_RATE_LOGIN_ACCOUNT");
    so.rate_send = getenv("CHAT_RATE_SEND");
    so.rate_token = getenv("CHAT_RATE_TOKEN");
    so.rate_events = getenv("CHAT_RATE_EVENTS");
    so.rate_redis_url = redis; /* limits shared by every instance */
    if (env_int(d, "CHAT_MAX_CONN_USER", -1, 1000000, 0,
                "-1 (no limit) or 1..1000000", &so.rt_max_per_user) ||
        env_int(d, "CHAT_MAX_CONN_IP", -1, 1000000, 0,
                "-1 (no limit) or 1..1000000", &so.rt_max_per_ip) ||
        env_int(d, "KAFKA_FETCH_WAIT_MS", 1, 1000, 0, "1..1000",
                &g_fetch_wait_ms) ||
        (d->fanout && env_int(d, "CHAT_ROUTE_CACHE_MS", -1, 60000, 1,
                              "-1 (off) or 0..60000", &fan.cache_ms)))
        return 2;
    if (chat_server_opts_check(&so) != CHAT_OK) {
        fprintf(stderr, "%s: %s\n", d->name, chat_error_last()->message);
        return 2;
    }
    dynamo = getenv("DYNAMODB_ENDPOINT");
    gateway[0] = '\0';
    if (d->services & CHAT_SERVICE_REALTIME) {
        w = getenv("GATEWAY_ID");
        if (w && *w && !chat_uuid_valid(w)) {
            fprintf(stderr, "%s: GATEWAY_ID must be a UUID\n", d->name);
            return 2;
        }
        if (w && *w)
            snprintf(gateway, sizeof gateway, "%s", w);
        else if (chat_uuid_v7(gateway) != CHAT_OK)
            return 1;
    }
    w = getenv("CHAT_PRESENCE_TTL_MS");
    if (w && *w && (strtol(w, &end, 10) < 300 || *end)) {
        fprintf(stderr, "%s: CHAT_PRESENCE_TTL_MS must be >= 300\n", d->name);
        return 2;
    }

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
    if (d->fanout) {
        fan.store = store;
        if ((rc = fanout_start(redis, kafka, &fan, &in)) != CHAT_OK) {
            status = rc == CHAT_EINVAL ? 2 : 1;
            goto out;
        }
    }
    if (gateway[0] &&
        (rc = open_presence(redis, gateway, &presence)) != CHAT_OK) {
        status = rc == CHAT_EINVAL ? 2 : 1;
        goto out;
    }
    if (d->needs_bus &&
        (rc = open_bus(redis, kafka, gateway[0] ? gateway : NULL, &bus)) !=
            CHAT_OK) {
        status = rc == CHAT_EINVAL ? 2 : 1;
        goto out;
    }

    so.listen_host = host;
    so.port = port;
    so.store = store;
    so.log = log;
    so.bus = bus;
    so.presence = presence;
    if (d->fanout) {
        so.ready = fanout_ready;
        so.ready_ud = &fan;
    }
    so.services = d->services;
    so.workers = workers;
    so.jwt_secret = (const uint8_t *)secret;
    so.jwt_secret_len = strlen(secret);
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
              "event=listening url=http://%s:%d log=%s bus=%s gateway=%s"
              " version=%s",
              host, chat_server_port(srv),
              !log                ? "none"
              : dynamo && *dynamo ? "dynamodb"
                                  : "postgres",
              d->fanout ? "kafka->redis"
              : !bus    ? "none"
              : kafka   ? "kafka+redis"
                        : "redis",
              gateway[0] ? gateway : "-", chat_version());
    chat_server_run(srv);
    status = 0;
out:
    publish(NULL);
    chat_server_free(srv);
    chat_log_free(log);
    chat_bus_free(bus);
    chat_presence_free(presence); /* this gateway's users leave the registry */
    chat_bus_free(in);            /* stops consuming, commits what was routed */
    chat_fanout_free(fan.fan);
    chat_bus_free(fan.out); /* then the Redis side */
    chat_presence_free(fan.presence);
    chat_store_free(store);
    chatd_log(CHAT_LOG_INFO, "event=stopped status=%d", status);
    return status;
}
