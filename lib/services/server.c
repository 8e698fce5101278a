/* chat_server: the HTTP front end with the selected services mounted,
 * plus /healthz (alive), /readyz (the backends answer) and /metrics. */
#include <string.h>

#include <sodium.h>

#include <chat/server.h>

#include "bus/redis_conn.h"
#include "services/gateway.h"

struct chat_server {
    chat__http *http;
    chat__svc svc;
    uint8_t *jwt_key;
    chat_bus *own_bus;
    chat__gateway *gateway;
    int (*ready)(void *ud, const char **backend);
    void *ready_ud;
};

void chat_server_opts_init(chat_server_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_SERVER_OPTS_VERSION;
    }
}

static void h_health(chat__req *r, void *ud)
{
    (void)ud;
    r->status = 200;
    chat__buf_puts(&r->out, "{\"status\":\"ok\"}");
}

/* Readiness: the backends answer (a lookup that finds nothing is an
 * answer). Runs on a worker: it may wait on the network. */
static void h_ready(chat__req *r, void *ud)
{
    static const char nil[] = "00000000-0000-7000-8000-000000000000";
    chat_server *s = ud;
    chat_message m;
    chat_user u;
    const char *failed = NULL;
    int64_t epoch;
    int rc, n;

    rc = s->svc.store ? chat_store_user_get(s->svc.store, nil, &u)
                      : CHAT_ENOTFOUND;
    if (rc != CHAT_OK && rc != CHAT_ENOTFOUND)
        failed = "store";
    else if (s->svc.log &&
             chat_log_range(s->svc.log, nil, 0, 0, 1, &m, &n) != CHAT_OK)
        failed = "log";
    else if (s->svc.bus != s->own_bus && chat_bus_ping(s->svc.bus) != CHAT_OK)
        failed = "bus";
    else if (s->svc.presence &&
             chat_presence_epoch(s->svc.presence, &epoch) != CHAT_OK)
        failed = "presence";
    else if (s->ready && s->ready(s->ready_ud, &failed) != CHAT_OK && !failed)
        failed = "backend";
    if (failed) {
        r->status = 503;
        chat__buf_printf(
            &r->out, "{\"status\":\"unavailable\",\"backend\":\"%s\"}", failed);
    } else {
        r->status = 200;
        chat__buf_puts(&r->out, "{\"status\":\"ready\"}");
    }
}

static void h_metrics(chat__req *r, void *ud)
{
    chat_server *s = ud;

    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (chat__http_metrics_render(s->http, &r->out))
        chat__req_fail(r, CHAT_ENOMEM);
}

static int rate_opt(const char *s, const char *def, chat__rate *out,
                    const char *what)
{
    if (chat__rate_parse(s ? s : def, out) != CHAT_OK)
        return chat__error(CHAT_EINVAL, "bad rate for %s: \"%s\"", what,
                           s ? s : def);
    return CHAT_OK;
}

int chat_server_opts_check(const chat_server_opts *opts)
{
    chat__redis_target t;
    chat__rate r;
    int rc;

    CHAT_ASSERT_ARG(opts);
    if ((rc = rate_opt(opts->rate_login_ip, "30/m", &r, "login per IP")) ||
        (rc = rate_opt(opts->rate_login_account, "10/m", &r,
                       "login per account")) ||
        (rc = rate_opt(opts->rate_send, "20/s", &r, "sends per user")) ||
        (rc = rate_opt(opts->rate_token, "100/s", &r, "requests per token")) ||
        (rc = rate_opt(opts->rate_events, "20/s", &r, "events per socket")))
        return rc;
    if (opts->rt_max_per_user < -1 || opts->rt_max_per_ip < -1)
        return chat__error(CHAT_EINVAL, "connection caps are -1 or more");
    if (opts->version >= 2 && opts->rate_redis_url && *opts->rate_redis_url) {
        if ((rc = chat__redis_target_parse(&t, opts->rate_redis_url, 0)) !=
            CHAT_OK)
            return rc;
        chat__redis_target_free(&t);
    }
    return CHAT_OK;
}

int chat_server_new(chat_server **out, const chat_server_opts *opts)
{
    chat__http_opts ho;
    chat__gateway_opts go;
    chat__rate token;
    chat_server *s;
    unsigned svcs;
    int rc;

    CHAT_ASSERT_ARG(out && opts);
    CHAT_ASSERT_ARG(opts->store || opts->services == CHAT_SERVICE_NONE);
    CHAT_ASSERT_ARG(opts->jwt_secret &&
                    opts->jwt_secret_len >= CHAT_JWT_SECRET_MIN);
    svcs = opts->services ? opts->services : CHAT_SERVICE_ALL;
    CHAT_ASSERT_ARG(!(svcs & CHAT_SERVICE_MESSAGES) || opts->log);
    *out = NULL;
    s = chat__calloc(1, sizeof *s);
    if (s == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    s->svc.store = opts->store;
    s->svc.log = opts->log;
    s->svc.access_ttl_s =
        opts->access_ttl_s > 0 ? opts->access_ttl_s : CHAT_ACCESS_TTL_DEFAULT;
    s->svc.refresh_ttl_s = opts->refresh_ttl_s > 0 ? opts->refresh_ttl_s
                                                   : CHAT_REFRESH_TTL_DEFAULT;
    if ((rc = rate_opt(opts->rate_login_ip, "30/m", &s->svc.rate_login_ip,
                       "login per IP")) ||
        (rc = rate_opt(opts->rate_login_account, "10/m",
                       &s->svc.rate_login_account, "login per account")) ||
        (rc = rate_opt(opts->rate_send, "20/s", &s->svc.rate_send,
                       "sends per user")) ||
        (rc =
             rate_opt(opts->rate_token, "100/s", &token, "requests per token")))
        goto fail;
    chat__gateway_opts_init(&go);
    if ((svcs & CHAT_SERVICE_REALTIME) &&
        (rc = rate_opt(opts->rate_events, "20/s", &go.events,
                       "events per socket")))
        goto fail;
    s->svc.bus = opts->bus;
    s->svc.presence = opts->presence;
    if (opts->version >= 2) {
        s->ready = opts->ready;
        s->ready_ud = opts->ready_ud;
    }
    if (s->svc.bus == NULL) {
        if ((rc = chat_bus_local_new(&s->own_bus)) != CHAT_OK)
            goto fail;
        s->svc.bus = s->own_bus;
    }
    s->jwt_key = chat__malloc(opts->jwt_secret_len);
    if (s->jwt_key == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(s->jwt_key, opts->jwt_secret, opts->jwt_secret_len);
    s->svc.jwt_key = s->jwt_key;
    s->svc.jwt_key_len = opts->jwt_secret_len;

    memset(&ho, 0, sizeof ho);
    ho.host = opts->listen_host;
    ho.port = opts->port;
    ho.workers = opts->workers;
    ho.max_body = opts->max_body;
    ho.cors_origins = opts->cors_origins;
    ho.trust_proxy = opts->trust_proxy;
    ho.jwt_key = s->jwt_key;
    ho.jwt_key_len = opts->jwt_secret_len;
    ho.token_rate = token.per_second;
    ho.token_burst = token.burst;
    if ((rc = chat__http_new(&s->http, &ho)) != CHAT_OK)
        goto fail;
    s->svc.http = s->http;
    if (opts->version >= 2 && opts->rate_redis_url && *opts->rate_redis_url &&
        (rc = chat__ratelimit_share(chat__http_ratelimit(s->http),
                                    opts->rate_redis_url)) != CHAT_OK)
        goto fail;
    if ((rc = chat__http_route(s->http, CHAT__GET, "/healthz",
                               CHAT__ROUTE_INLINE, h_health, s)) ||
        (rc = chat__http_route(s->http, CHAT__GET, "/readyz", 0, h_ready, s)) ||
        (rc = chat__http_route(s->http, CHAT__GET, "/metrics",
                               CHAT__ROUTE_INLINE, h_metrics, s)))
        goto fail;
    if (((svcs & CHAT_SERVICE_USERS) &&
         (rc = chat__users_mount(&s->svc)) != CHAT_OK) ||
        ((svcs & CHAT_SERVICE_CHATS) &&
         (rc = chat__chats_mount(&s->svc)) != CHAT_OK) ||
        ((svcs & CHAT_SERVICE_MESSAGES) &&
         (rc = chat__messages_mount(&s->svc)) != CHAT_OK))
        goto fail;
    if (svcs & CHAT_SERVICE_REALTIME) {
        CHAT_ASSERT_ARG(opts->log != NULL);
        go.ping_interval_ms = opts->rt_ping_interval_ms;
        go.ping_timeout_ms = opts->rt_ping_timeout_ms;
        go.auth_timeout_ms = opts->rt_auth_timeout_ms;
        go.max_per_user = opts->rt_max_per_user == 0  ? 20
                          : opts->rt_max_per_user < 0 ? 0
                                                      : opts->rt_max_per_user;
        go.max_per_ip = opts->rt_max_per_ip == 0  ? 1000
                        : opts->rt_max_per_ip < 0 ? 0
                                                  : opts->rt_max_per_ip;
        if ((rc = chat__gateway_new(&s->gateway, &s->svc, &go)) != CHAT_OK)
            goto fail;
    }
    if ((rc = chat__http_listen(s->http)) != CHAT_OK)
        goto fail;
    *out = s;
    return CHAT_OK;
fail:
    chat_server_free(s);
    return rc;
}

int chat_server_port(const chat_server *s)
{
    return s ? chat__http_port(s->http) : -1;
}

int chat_server_run(chat_server *s)
{
    CHAT_ASSERT_ARG(s != NULL);
    return chat__http_run(s->http);
}

void chat_server_stop(chat_server *s)
{
    if (s)
        chat__http_stop(s->http);
}

void chat_server_free(chat_server *s)
{
    if (s == NULL)
        return;
    chat__gateway_stop(s->gateway);
    chat__http_free(s->http);
    chat__gateway_free(s->gateway);
    chat_bus_free(s->own_bus);
    if (s->jwt_key)
        sodium_memzero(s->jwt_key, s->svc.jwt_key_len);
    chat__free(s->jwt_key);
    chat__free(s);
}
