/* Prometheus metrics: lock-free counters any thread may bump, rendered
 * in the text exposition format 0.0.4. */
#include <stdatomic.h>
#include <string.h>

#include <chat/version.h>

#include "http/http.h"

static const int g_statuses[] = {200, 201, 204, 400, 401, 403, 404, 405,
                                 409, 413, 415, 422, 429, 500, 503};
#define NSTATUS    ((int)CHAT__ARRAY_LEN(g_statuses))
#define SLOT_OTHER NSTATUS /* any status not in the table */

static const double g_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NBOUNDS ((int)CHAT__ARRAY_LEN(g_bounds))

typedef struct route_stats {
    atomic_uint_fast64_t status[NSTATUS + 1];
    atomic_uint_fast64_t bucket[NBOUNDS + 1]; /* last: +Inf */
    atomic_uint_fast64_t sum_us;
} route_stats;

struct chat__metrics {
    int nroutes;
    int64_t start_ms;
    atomic_uint_fast64_t counters[CHAT__C_COUNT];
    route_stats routes[]; /* [0] = unmatched, [i + 1] = route i */
};

int chat__metrics_new(chat__metrics **out, int nroutes)
{
    chat__metrics *m;

    CHAT_ASSERT_ARG(out != NULL && nroutes >= 0);
    m = chat__calloc(1,
                     sizeof *m + (size_t)(nroutes + 1) * sizeof(route_stats));
    if (m == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    m->nroutes = nroutes;
    m->start_ms = chat_time_now_ms();
    *out = m;
    return CHAT_OK;
}

void chat__metrics_free(chat__metrics *m)
{
    chat__free(m);
}

void chat__metrics_inc(chat__metrics *m, int counter)
{
    if (m && counter >= 0 && counter < CHAT__C_COUNT)
        atomic_fetch_add_explicit(&m->counters[counter], 1,
                                  memory_order_relaxed);
}

void chat__metrics_add(chat__metrics *m, int counter, unsigned long long n)
{
    if (m && counter >= 0 && counter < CHAT__C_COUNT)
        atomic_fetch_add_explicit(&m->counters[counter], n,
                                  memory_order_relaxed);
}

void chat__metrics_request(chat__metrics *m, int route, int status,
                           int64_t micros)
{
    route_stats *rs;
    int i, slot = SLOT_OTHER;

    if (m == NULL || route < -1 || route >= m->nroutes)
        return;
    rs = &m->routes[route + 1];
    for (i = 0; i < NSTATUS; i++)
        if (g_statuses[i] == status)
            slot = i;
    atomic_fetch_add_explicit(&rs->status[slot], 1, memory_order_relaxed);
    for (i = 0; i < NBOUNDS && (double)micros / 1e6 > g_bounds[i]; i++)
        ;
    atomic_fetch_add_explicit(&rs->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rs->sum_us,
                              (uint_fast64_t)(micros > 0 ? micros : 0),
                              memory_order_relaxed);
}

/* Label value escaping per the exposition format. */
static void put_label(chat__buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            chat__buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            chat__buf_puts(b, "\\n");
        else
            chat__buf_append(b, s, 1);
    }
}

static unsigned long long load(atomic_uint_fast64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

static const char *route_name(const chat__route *routes, int nroutes, int i)
{
    return i == 0 ? "unmatched"
                  : (routes && i - 1 < nroutes ? routes[i - 1].pattern : "?");
}

int chat__metrics_render(chat__metrics *m, const chat__route *routes,
                         int nroutes, chat__buf *b)
{
    static const struct {
        int id;
        const char *name, *label;
    } counters[] = {
        {CHAT__C_MESSAGES_STORED, "chat_messages_stored_total", NULL},
        {CHAT__C_MESSAGES_DEDUPED, "chat_messages_deduplicated_total", NULL},
        {CHAT__C_USERS_REGISTERED, "chat_users_registered_total", NULL},
        {CHAT__C_AUTH_FAIL_LOGIN, "chat_auth_failures_total",
         "reason=\"login\""},
        {CHAT__C_AUTH_FAIL_TOKEN, "chat_auth_failures_total",
         "reason=\"token\""},
        {CHAT__C_AUTH_FAIL_REFRESH, "chat_auth_failures_total",
         "reason=\"refresh\""},
        {CHAT__C_AUTH_REFRESH_REUSE, "chat_auth_failures_total",
         "reason=\"refresh_reuse\""},
        {CHAT__C_RATE_LOGIN, "chat_rate_limited_total", "limit=\"login\""},
        {CHAT__C_RATE_SEND, "chat_rate_limited_total", "limit=\"send\""},
        {CHAT__C_RATE_TOKEN, "chat_rate_limited_total", "limit=\"token\""},
        {CHAT__C_RATE_EVENTS, "chat_rate_limited_total", "limit=\"events\""},
        {CHAT__C_RT_AUTHENTICATED, "chat_realtime_sockets_total",
         "result=\"authenticated\""},
        {CHAT__C_RT_UNAUTHORIZED, "chat_realtime_sockets_total",
         "result=\"unauthorized\""},
        {CHAT__C_RT_CLOSED, "chat_realtime_sockets_closed_total", NULL},
        {CHAT__C_RT_SLOW, "chat_realtime_slow_consumers_total", NULL},
        {CHAT__C_RT_DELIVERIES, "chat_realtime_deliveries_total", NULL},
    };
    const char *last = "";
    int i, k, n = m->nroutes + 1;
    size_t c;

    (void)nroutes;
    chat__buf_puts(b, "# HELP chat_http_requests_total HTTP requests by "
                      "route and status.\n"
                      "# TYPE chat_http_requests_total counter\n");
    for (i = 0; i < n; i++) {
        const char *name = route_name(routes, m->nroutes, i);
        for (k = 0; k <= NSTATUS; k++) {
            unsigned long long v = load(&m->routes[i].status[k]);
            if (v == 0)
                continue;
            chat__buf_puts(b, "chat_http_requests_total{route=\"");
            put_label(b, name);
            if (k < NSTATUS)
                chat__buf_printf(b, "\",status=\"%d\"} %llu\n", g_statuses[k],
                                 v);
            else
                chat__buf_printf(b, "\",status=\"other\"} %llu\n", v);
        }
    }
    chat__buf_puts(b, "# HELP chat_http_request_duration_seconds Time from "
                      "request to response.\n"
                      "# TYPE chat_http_request_duration_seconds histogram\n");
    for (i = 0; i < n; i++) {
        unsigned long long cum = 0, count = 0;
        const char *name = route_name(routes, m->nroutes, i);
        for (k = 0; k <= NBOUNDS; k++)
            count += load(&m->routes[i].bucket[k]);
        if (count == 0)
            continue;
        for (k = 0; k <= NBOUNDS; k++) {
            cum += load(&m->routes[i].bucket[k]);
            chat__buf_puts(b, "chat_http_request_duration_seconds_bucket{"
                              "route=\"");
            put_label(b, name);
            if (k < NBOUNDS)
                chat__buf_printf(b, "\",le=\"%g\"} %llu\n", g_bounds[k], cum);
            else
                chat__buf_printf(b, "\",le=\"+Inf\"} %llu\n", cum);
        }
        chat__buf_puts(b, "chat_http_request_duration_seconds_sum{route=\"");
        put_label(b, name);
        chat__buf_printf(b, "\"} %.6f\n",
                         (double)load(&m->routes[i].sum_us) / 1e6);
        chat__buf_puts(b, "chat_http_request_duration_seconds_count{route=\"");
        put_label(b, name);
        chat__buf_printf(b, "\"} %llu\n", count);
    }
    for (c = 0; c < CHAT__ARRAY_LEN(counters); c++) {
        if (strcmp(last, counters[c].name)) {
            last = counters[c].name;
            chat__buf_printf(b, "# TYPE %s counter\n", last);
        }
        if (counters[c].label)
            chat__buf_printf(b, "%s{%s} %llu\n", last, counters[c].label,
                             load(&m->counters[counters[c].id]));
        else
            chat__buf_printf(b, "%s %llu\n", last,
                             load(&m->counters[counters[c].id]));
    }
    chat__buf_printf(b,
                     "# TYPE chat_build_info gauge\n"
                     "chat_build_info{version=\"%s\"} 1\n"
                     "# TYPE process_start_time_seconds gauge\n"
                     "process_start_time_seconds %.3f\n",
                     chat_version(), (double)m->start_ms / 1000.0);
    return b->failed ? chat__error(CHAT_ENOMEM, "out of memory") : CHAT_OK;
}
