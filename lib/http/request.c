/* Request helpers for handlers: query/params, JSON in, JSON and errors
 * out. They touch only the request, so any thread may call them. */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

const char *chat__req_param(const chat__req *r, int i)
{
    return i >= 0 && i < r->nparams ? r->params[i] : "";
}

const char *chat__req_query(const chat__req *r, const char *key)
{
    int i;

    for (i = r->nquery - 1; i >= 0; i--)
        if (!strcmp(r->query[i].key, key))
            return r->query[i].val;
    return NULL;
}

int chat__req_body_reset(chat__req *r)
{
    if (r->out.failed)
        chat__buf_free(&r->out);
    if (chat__buf_reserve(&r->out, CHAT__OUT_RESERVE) != CHAT_OK)
        return CHAT_ENOMEM;
    r->out.len = CHAT__OUT_RESERVE;
    return CHAT_OK;
}

void chat__req_reply(chat__req *r, int status, cJSON *body)
{
    char *s;

    r->status = status;
    chat__req_body_reset(r);
    if (body == NULL)
        return;
    s = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (s == NULL || chat__buf_puts(&r->out, s) != CHAT_OK) {
        chat__free(s);
        chat__req_body_reset(r);
        r->status = 500;
        chat__buf_puts(&r->out, "{\"error\":{\"code\":\"internal\","
                                "\"message\":\"out of memory\"}}");
        return;
    }
    chat__free(s);
}

void chat__req_error(chat__req *r, int status, const char *code,
                     const char *fmt, ...)
{
    char msg[512];
    cJSON *root, *err;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");
    if (err == NULL || !cJSON_AddStringToObject(err, "code", code) ||
        !cJSON_AddStringToObject(err, "message", msg)) {
        cJSON_Delete(root);
        root = NULL;
    }
    chat__req_reply(r, status, root);
    if (root == NULL) {
        r->status = status;
        chat__buf_puts(&r->out, "{\"error\":{\"code\":\"internal\","
                                "\"message\":\"out of memory\"}}");
    }
}

void chat__req_fail(chat__req *r, int rc)
{
    const char *msg = chat_error_last()->message;

    if (chat_error_last()->code != rc || msg[0] == '\0')
        msg = chat_strerror(rc);
    switch (rc) {
    case CHAT_EINVAL:
        chat__req_error(r, 422, "validation_failed", "%s", msg);
        break;
    case CHAT_EAUTH:
        chat__req_error(r, 401, "unauthorized", "%s", msg);
        break;
    case CHAT_EEXPIRED:
        chat__req_error(r, 401, "token_expired", "%s", msg);
        break;
    case CHAT_EPERM:
        chat__req_error(r, 403, "forbidden", "%s", msg);
        break;
    case CHAT_ENOTFOUND:
        chat__req_error(r, 404, "not_found", "%s", msg);
        break;
    case CHAT_ECONFLICT:
        chat__req_error(r, 409, "conflict", "%s", msg);
        break;
    case CHAT_ELIMIT:
        chat__req_error(r, 422, "limit_exceeded", "%s", msg);
        break;
    case CHAT_ERATE:
        chat__req_error(r, 429, "rate_limited", "%s", msg);
        break;
    case CHAT_EAGAIN:
    case CHAT_EUNAVAIL:
    case CHAT_ECLOSED:
        chat__req_error(r, 503, "unavailable", "service unavailable");
        break;
    default:
        /* details of internal failures go to the log, not the client */
        CHAT_LOG(CHAT_LOG_ERROR, "req=%s event=internal_error rc=%d msg=\"%s\"",
                 r->request_id, rc, msg);
        chat__req_error(r, 500, "internal", "internal error");
        break;
    }
}

/* 1 if the JSON text has a \u0000 escape outside of an escaped backslash:
 * cJSON would cut the string there and silently lose data. */
static int json_has_nul_escape(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i + 5 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
            return 1;
        i++; /* skip the escaped character */
    }
    return 0;
}

cJSON *chat__req_json(chat__req *r)
{
    const char *end = NULL;
    cJSON *root;

    if (r->body.len == 0) {
        chat__req_error(r, 400, "invalid_json", "a JSON body is required");
        return NULL;
    }
    if (!chat_utf8_valid(r->body.data, r->body.len)) {
        chat__req_error(r, 400, "invalid_utf8", "body is not valid UTF-8");
        return NULL;
    }
    if (json_has_nul_escape(r->body.data, r->body.len)) {
        chat__req_error(r, 400, "invalid_json", "\\u0000 is not allowed");
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(r->body.data, r->body.len, &end, 0);
    /* one value, then only white space */
    while (root && end < r->body.data + r->body.len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (root && end != r->body.data + r->body.len) {
        cJSON_Delete(root);
        root = NULL;
    }
    if (root == NULL) {
        chat__req_error(r, 400, "invalid_json", "body is not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        chat__req_error(r, 400, "invalid_json", "body must be a JSON object");
        return NULL;
    }
    return root;
}
