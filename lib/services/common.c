/* What the services share: one place defines each wire object, and the
 * checks every handler makes. */
#include <string.h>

#include "services/services.h"

int chat__json_add_time(cJSON *o, const char *key, int64_t ms)
{
    char t[CHAT_TIME_LEN + 1];

    if (chat_time_format(ms, t) != CHAT_OK)
        return 0;
    return cJSON_AddStringToObject(o, key, t) != NULL;
}

cJSON *chat__json_user(const chat_user *u, int with_email)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL || !cJSON_AddStringToObject(o, "id", u->id) ||
        !cJSON_AddStringToObject(o, "username", u->username) ||
        (with_email && !cJSON_AddStringToObject(o, "email", u->email)) ||
        !chat__json_add_time(o, "created_at", u->created_at)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int chat__json_put_str(chat__buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;

    chat__buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6] = {'\\', 'u', '0', '0', 0, 0};
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        chat__buf_append(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
        }
        chat__buf_append(b, esc, n);
    }
    chat__buf_append(b, run, (size_t)(s - run));
    return chat__buf_append(b, "\"", 1);
}

int chat__json_put_message(chat__buf *b, const chat_message *m,
                           const char *content)
{
    char t[CHAT_TIME_LEN + 1];

    if (chat_time_format(m->created_at, t) != CHAT_OK)
        return CHAT_EINVAL;
    /* ids and times need no escaping: they are UUIDs and RFC 3339 */
    chat__buf_printf(b,
                     "{\"message_id\":\"%s\",\"conversation_id\":\"%s\","
                     "\"seq\":%lld,\"sender_id\":\"%s\",\"created_at\":\"%s\","
                     "\"preview\":",
                     m->id, m->conversation_id, (long long)m->seq, m->sender_id,
                     t);
    chat__json_put_str(b, m->preview);
    chat__buf_puts(b,
                   m->has_more ? ",\"has_more\":true" : ",\"has_more\":false");
    if (m->client_msg_id[0]) {
        chat__buf_puts(b, ",\"client_msg_id\":");
        chat__json_put_str(b, m->client_msg_id);
    }
    if (content) {
        chat__buf_puts(b, ",\"content\":");
        chat__json_put_str(b, content);
    }
    return chat__buf_append(b, "}", 1);
}

cJSON *chat__json_member(const chat_member *m)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL || !cJSON_AddStringToObject(o, "user_id", m->user_id) ||
        !cJSON_AddStringToObject(o, "username", m->username) ||
        !cJSON_AddStringToObject(o, "role", chat_role_name(m->role)) ||
        !chat__json_add_time(o, "joined_at", m->joined_at) ||
        !cJSON_AddNumberToObject(o, "read_seq", (double)m->read_seq)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *chat__json_conv(const chat_conv *c, const chat_member *members,
                       int nmembers)
{
    cJSON *o = cJSON_CreateObject(), *last, *arr;
    int64_t unread = c->last_seq - c->read_seq;
    int i;

    if (o == NULL || !cJSON_AddStringToObject(o, "id", c->id) ||
        !cJSON_AddStringToObject(o, "kind",
                                 c->kind == CHAT_CONV_DM ? "dm" : "group") ||
        !cJSON_AddStringToObject(o, "title", c->title) ||
        !cJSON_AddStringToObject(o, "created_by", c->created_by) ||
        !chat__json_add_time(o, "created_at", c->created_at) ||
        !chat__json_add_time(o, "last_activity_at", c->last_activity_at) ||
        !cJSON_AddNumberToObject(o, "last_seq", (double)c->last_seq) ||
        !cJSON_AddNumberToObject(o, "member_count", c->member_count) ||
        !cJSON_AddNumberToObject(o, "read_seq", (double)c->read_seq) ||
        !cJSON_AddNumberToObject(o, "unread_count",
                                 (double)(unread > 0 ? unread : 0)))
        goto fail;
    if (c->role >= 0 &&
        !cJSON_AddStringToObject(o, "role", chat_role_name(c->role)))
        goto fail;
    if (c->last_seq > 0) {
        last = cJSON_AddObjectToObject(o, "last_message");
        if (last == NULL ||
            !cJSON_AddStringToObject(last, "message_id", c->last_message_id) ||
            !cJSON_AddNumberToObject(last, "seq", (double)c->last_seq) ||
            !cJSON_AddStringToObject(last, "sender_id", c->last_sender_id) ||
            !chat__json_add_time(last, "created_at", c->last_activity_at) ||
            !cJSON_AddStringToObject(last, "preview", c->last_preview) ||
            !cJSON_AddBoolToObject(last, "has_more", c->last_has_more))
            goto fail;
    } else if (!cJSON_AddNullToObject(o, "last_message")) {
        goto fail;
    }
    if (members) {
        arr = cJSON_AddArrayToObject(o, "members");
        if (arr == NULL)
            goto fail;
        for (i = 0; i < nmembers; i++) {
            cJSON *m = chat__json_member(&members[i]);
            if (m == NULL)
                goto fail;
            cJSON_AddItemToArray(arr, m);
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

const char *chat__field_str(chat__req *r, const cJSON *obj, const char *key,
                            size_t max, int required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    size_t n;

    if (v == NULL || cJSON_IsNull(v)) {
        if (required)
            chat__req_error(r, 422, "validation_failed", "%s is required", key);
        return NULL;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        chat__req_error(r, 400, "invalid_type", "%s must be a string", key);
        return NULL;
    }
    n = strlen(v->valuestring);
    if (n == 0 || n > max) {
        chat__req_error(r, 422, "validation_failed",
                        "%s must be 1 to %zu bytes", key, max);
        return NULL;
    }
    return v->valuestring;
}

const char *chat__param_id(chat__req *r, int i, const char *what)
{
    const char *id = chat__req_param(r, i);

    if (!chat_uuid_valid(id)) {
        chat__req_error(r, 404, "not_found", "no such %s", what);
        return NULL;
    }
    return id;
}

int chat__svc_conv(chat__svc *svc, chat__req *r, const char *id, chat_conv *c)
{
    chat_conv tmp;
    int rc = chat_store_conv_get(svc->store, id, r->user_id, c ? c : &tmp);

    if (rc == CHAT_OK)
        return 0;
    if (rc == CHAT_ENOTFOUND)
        chat__req_error(r, 404, "not_found", "no such conversation");
    else if (rc == CHAT_EPERM)
        chat__req_error(r, 403, "forbidden",
                        "you are not a member of this conversation");
    else
        chat__req_fail(r, rc);
    return -1;
}
