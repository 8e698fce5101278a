/* message-service: the ordered message log over HTTP.
 * Edge prefix /api/messages. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "services/services.h"

#define P "/api/messages"

/* Runs on the log's writer thread once the batch is durable. */
static void on_appended(int rc, const chat_message *m, int created, void *ud)
{
    chat__req *r = ud;
    chat__svc *svc = r->route->userdata;

    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto done;
    }
    chat__svc_message_stored(svc, m, created);
    chat__metrics_inc(chat__http_metrics(r->http),
                      created ? CHAT__C_MESSAGES_STORED
                              : CHAT__C_MESSAGES_DEDUPED);
    r->status = created ? 201 : 200;
    if (chat__req_body_reset(r) != CHAT_OK ||
        chat__json_put_message(&r->out, m, NULL) != CHAT_OK)
        chat__req_fail(r, CHAT_ENOMEM);
done:
    chat__req_finish(r);
}

static int client_msg_id_valid(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return 0;
    return 1;
}

static void h_send(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    const char *content, *cmid;
    chat_append req;
    cJSON *body = NULL;
    int retry, rc, log_checks = chat_log_touches_store(svc->log);

    /* A log that shares the store's database checks membership inside the
     * append's transaction; then this handler never blocks and runs on the
     * service thread (see chat__messages_mount). */
    if (id == NULL || (!log_checks && chat__svc_conv(svc, r, id, NULL)))
        return;
    if (chat__ratelimit_take(chat__http_ratelimit(r->http), &svc->rate_send,
                             r->user_id, &retry) != CHAT_OK) {
        chat__metrics_inc(chat__http_metrics(r->http), CHAT__C_RATE_SEND);
        r->retry_after = retry;
        chat__req_error(r, 429, "rate_limited",
                        "sending too fast; retry in %d s", retry);
        return;
    }
    if ((body = chat__req_json(r)) == NULL)
        return;
    content = chat__field_str(r, body, "content", CHAT_MESSAGE_MAX_BYTES, 1);
    if (content == NULL)
        goto out;
    cmid = chat__field_str(r, body, "client_msg_id", CHAT_CLIENT_MSG_ID_MAX, 0);
    if (r->status)
        goto out;
    if (cmid && !client_msg_id_valid(cmid)) {
        chat__req_error(r, 422, "validation_failed",
                        "client_msg_id must be printable ASCII");
        goto out;
    }
    req.conversation_id = id;
    req.sender_id = r->user_id;
    req.client_msg_id = cmid;
    req.content = content;
    req.content_len = strlen(content);
    req.require_member = log_checks;
    /* The log copies the request; the answer comes from its writer once
     * the batch holding this message is committed. */
    chat__req_defer(r);
    rc = chat_log_append(svc->log, &req, on_appended, r);
    if (rc != CHAT_OK) {
        chat__req_undefer(r);
        chat__req_fail(r, rc);
    }
out:
    cJSON_Delete(body);
}

/* Parse a non-negative integer query value; -1 absent, -2 invalid. */
static int64_t query_int(const chat__req *r, const char *key, int64_t max)
{
    const char *v = chat__req_query(r, key);
    char *end;
    long long n;

    if (v == NULL || v[0] == '\0')
        return -1;
    n = strtoll(v, &end, 10);
    if (end == v || *end || n < 0 || n > max || v[0] == '-' || v[0] == '+')
        return -2;
    return n;
}

/* A page of up to CHAT_PAGE_MAX messages is ~200 KiB: each worker keeps
 * one instead of allocating (and faulting in) a fresh one per request. */
static pthread_key_t g_page_key;
static pthread_once_t g_page_once = PTHREAD_ONCE_INIT;

static void page_key_init(void)
{
    pthread_key_create(&g_page_key, chat__free);
}

static chat_message *page_buffer(void)
{
    chat_message *p;

    pthread_once(&g_page_once, page_key_init);
    p = pthread_getspecific(g_page_key);
    if (p == NULL) {
        p = chat__malloc(CHAT_PAGE_MAX * sizeof *p);
        if (p && pthread_setspecific(g_page_key, p) != 0) {
            chat__free(p);
            p = NULL;
        }
    }
    return p;
}

static void h_history(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    int64_t after = query_int(r, "after_seq", INT64_MAX / 2);
    int64_t before = query_int(r, "before_seq", INT64_MAX / 2);
    int64_t limit = query_int(r, "limit", CHAT_PAGE_MAX);
    chat_message *msgs;
    int n = 0, rc, i;

    if (id == NULL)
        return;
    if (after == -2 || before == -2) {
        chat__req_error(r, 422, "validation_failed",
                        "after_seq and before_seq must be integers >= 0");
        return;
    }
    if (limit == -2 || limit == 0) {
        chat__req_error(r, 422, "validation_failed", "limit must be 1 to %d",
                        CHAT_PAGE_MAX);
        return;
    }
    if (after >= 0 && before >= 0) {
        chat__req_error(r, 422, "validation_failed",
                        "give after_seq or before_seq, not both");
        return;
    }
    if (limit < 0)
        limit = CHAT_PAGE_DEFAULT;
    if (chat__svc_conv(svc, r, id, NULL))
        return;
    if ((msgs = page_buffer()) == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
        return;
    }
    rc = chat_log_range(svc->log, id, after < 0 ? 0 : after,
                        before < 0 ? 0 : before, (int)limit, msgs, &n);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        return;
    }
    r->status = 200;
    chat__req_body_reset(r);
    chat__buf_puts(&r->out, "{\"messages\":[");
    for (i = 0; i < n; i++) {
        if (i)
            chat__buf_append(&r->out, ",", 1);
        chat__json_put_message(&r->out, &msgs[i], NULL);
    }
    if (chat__buf_puts(&r->out, "]}") != CHAT_OK)
        chat__req_fail(r, CHAT_ENOMEM);
}

static void h_message(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    const char *mid = id ? chat__param_id(r, 1, "message") : NULL;
    const char *fields = chat__req_query(r, "fields");
    char *content = NULL;
    chat_message m;
    int rc;

    if (mid == NULL || chat__svc_conv(svc, r, id, NULL))
        return;
    if (fields && strcmp(fields, "full") && strcmp(fields, "preview")) {
        chat__req_error(r, 422, "validation_failed",
                        "fields must be full or preview");
        return;
    }
    rc = chat_log_get(svc->log, id, mid, &m, &content);
    if (rc == CHAT_ENOTFOUND) {
        chat__req_error(r, 404, "not_found", "no such message");
        return;
    }
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        return;
    }
    r->status = 200;
    if (chat__req_body_reset(r) != CHAT_OK ||
        chat__json_put_message(
            &r->out, &m, fields && !strcmp(fields, "full") ? content : NULL) !=
            CHAT_OK)
        chat__req_fail(r, CHAT_ENOMEM);
    chat_free(content);
}

int chat__messages_mount(chat__svc *svc)
{
    chat__http *h = svc->http;
    const unsigned A = CHAT__ROUTE_AUTH;
    int rc;

    if ((rc = chat__http_route(
             h, CHAT__POST, P "/conversations/{id}/messages",
             A | (chat_log_touches_store(svc->log) ? CHAT__ROUTE_INLINE : 0u),
             h_send, svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/conversations/{id}/messages",
                               A, h_history, svc)) ||
        (rc = chat__http_route(h, CHAT__GET,
                               P "/conversations/{id}/messages/{mid}", A,
                               h_message, svc)))
        return rc;
    return CHAT_OK;
}
