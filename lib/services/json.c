/* JSON shapes shared by the services: one place defines each wire object. */
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

cJSON *chat__json_message(const chat_message *m)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL || !cJSON_AddStringToObject(o, "message_id", m->id) ||
        !cJSON_AddStringToObject(o, "conversation_id", m->conversation_id) ||
        !cJSON_AddNumberToObject(o, "seq", (double)m->seq) ||
        !cJSON_AddStringToObject(o, "sender_id", m->sender_id) ||
        !chat__json_add_time(o, "created_at", m->created_at) ||
        !cJSON_AddStringToObject(o, "preview", m->preview) ||
        !cJSON_AddBoolToObject(o, "has_more", m->has_more) ||
        (m->client_msg_id[0] &&
         !cJSON_AddStringToObject(o, "client_msg_id", m->client_msg_id))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
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
