/* chat-service: conversations, memberships and read states.
 * Edge prefix /api/chats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/services.h"

#define P "/api/chats"

/* Largest integer a JSON number carries exactly (2^53). */
#define JSON_INT_MAX 9007199254740992.0

/* Answer the conversation with its member list. */
static void reply_conv(chat__svc *svc, chat__req *r, const char *id, int status)
{
    chat_member *members = NULL;
    chat_conv c;
    cJSON *o;
    int n = 0, rc;

    if (chat__svc_conv(svc, r, id, &c))
        return;
    members = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *members);
    if (members == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
        return;
    }
    rc = chat_store_conv_members(svc->store, id, members,
                                 CHAT_GROUP_MAX_MEMBERS, &n);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
    } else if ((o = chat__json_conv(&c, members, n)) == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
    } else {
        chat__req_reply(r, status, o);
    }
    chat__free(members);
}

static const char *body_user_id(chat__req *r, const cJSON *body)
{
    const char *uid = chat__field_str(r, body, "user_id", CHAT_ID_LEN, 1);

    if (uid && !chat_uuid_valid(uid)) {
        chat__req_error(r, 422, "validation_failed", "user_id is not a UUID");
        return NULL;
    }
    return uid;
}

static void h_dm(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    cJSON *body = chat__req_json(r);
    const char *peer;
    chat_conv c;
    int created = 0, rc;

    if (body == NULL || (peer = body_user_id(r, body)) == NULL)
        goto out;
    if (!strcasecmp(peer, r->user_id)) {
        chat__req_error(r, 422, "validation_failed",
                        "cannot open a direct message with yourself");
        goto out;
    }
    rc = chat_store_conv_dm(svc->store, r->user_id, peer, &c, &created);
    if (rc == CHAT_ENOTFOUND) {
        chat__req_error(r, 404, "not_found", "no such user");
        goto out;
    }
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    if (created)
        chat__svc_publish_conv(svc, c.id, "created", r->user_id, NULL);
    reply_conv(svc, r, c.id, created ? 201 : 200);
out:
    cJSON_Delete(body);
}

static void h_group(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    cJSON *body = chat__req_json(r);
    const cJSON *ids, *it;
    const char *title, **members = NULL;
    chat_conv c;
    int n = 0, rc;

    if (body == NULL)
        return;
    title = chat__field_str(r, body, "title", CHAT_TITLE_MAX_BYTES, 1);
    if (title == NULL)
        goto out;
    if (chat_utf8_chars(title, strlen(title)) > CHAT_TITLE_MAX_CHARS) {
        chat__req_error(r, 422, "validation_failed",
                        "title must be at most %d characters",
                        CHAT_TITLE_MAX_CHARS);
        goto out;
    }
    ids = cJSON_GetObjectItemCaseSensitive(body, "member_ids");
    if (ids != NULL && !cJSON_IsArray(ids)) {
        chat__req_error(r, 400, "invalid_type",
                        "member_ids must be an array of user ids");
        goto out;
    }
    /* Count before allocating: a hostile array can be long. Duplicates
     * are folded by the store, so only the raw count is capped here. */
    if (cJSON_GetArraySize(ids) > 4 * CHAT_GROUP_MAX_MEMBERS) {
        chat__req_error(r, 422, "limit_exceeded",
                        "a group has at most %d members",
                        CHAT_GROUP_MAX_MEMBERS);
        goto out;
    }
    members =
        chat__calloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof *members);
    if (members == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
        goto out;
    }
    cJSON_ArrayForEach(it, ids)
    {
        if (!cJSON_IsString(it) || !chat_uuid_valid(it->valuestring)) {
            chat__req_error(r, 422, "validation_failed",
                            "member_ids must hold user ids");
            goto out;
        }
        members[n++] = it->valuestring;
    }
    rc = chat_store_conv_group(svc->store, r->user_id, title, members, n, &c);
    if (rc == CHAT_ELIMIT) {
        chat__req_error(r, 422, "limit_exceeded",
                        "a group has at most %d members",
                        CHAT_GROUP_MAX_MEMBERS);
        goto out;
    }
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    chat__svc_publish_conv(svc, c.id, "created", r->user_id, NULL);
    reply_conv(svc, r, c.id, 201);
out:
    chat__free(members);
    cJSON_Delete(body);
}

/* Cursor text: "<activity ms>_<conversation id>". Opaque to clients. */
static int cursor_parse(const char *s, chat_conv_cursor *c)
{
    char *end;
    long long ms = strtoll(s, &end, 10);

    if (end == s || *end != '_' || ms < 0 || !chat_uuid_valid(end + 1))
        return -1;
    c->activity_at = ms;
    memcpy(c->id, end + 1, sizeof c->id);
    return 0;
}

static void h_list(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *cur = chat__req_query(r, "cursor");
    const char *lim = chat__req_query(r, "limit");
    chat_conv_cursor after;
    chat_conv *convs = NULL;
    cJSON *o = NULL, *arr;
    long limit = CHAT_PAGE_DEFAULT;
    char next[CHAT_ID_LEN + 32];
    int n = 0, rc, i;

    if (cur && cur[0] && cursor_parse(cur, &after)) {
        chat__req_error(r, 400, "invalid_cursor", "cursor is not valid");
        return;
    }
    if (lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (end == lim || *end || limit < 1 || limit > CHAT_PAGE_MAX) {
            chat__req_error(r, 422, "validation_failed",
                            "limit must be 1 to %d", CHAT_PAGE_MAX);
            return;
        }
    }
    convs = chat__calloc((size_t)limit, sizeof *convs);
    if (convs == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
        return;
    }
    rc = chat_store_conv_list(svc->store, r->user_id,
                              cur && cur[0] ? &after : NULL, (int)limit, convs,
                              &n);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    o = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(o, "conversations");
    if (arr == NULL)
        goto oom;
    for (i = 0; i < n; i++) {
        cJSON *c = chat__json_conv(&convs[i], NULL, 0);
        if (c == NULL)
            goto oom;
        cJSON_AddItemToArray(arr, c);
    }
    if (n == limit) {
        snprintf(next, sizeof next, "%lld_%s",
                 (long long)convs[n - 1].last_activity_at, convs[n - 1].id);
        if (!cJSON_AddStringToObject(o, "next_cursor", next))
            goto oom;
    } else if (!cJSON_AddNullToObject(o, "next_cursor")) {
        goto oom;
    }
    chat__req_reply(r, 200, o);
    o = NULL;
    goto out;
oom:
    chat__req_fail(r, CHAT_ENOMEM);
out:
    cJSON_Delete(o);
    chat__free(convs);
}

static void h_get(chat__req *r, void *ud)
{
    const char *id = chat__param_id(r, 0, "conversation");

    if (id)
        reply_conv(ud, r, id, 200);
}

static void h_invite(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation"), *uid;
    cJSON *body = NULL, *o;
    chat_conv c;
    int rc;

    if (id == NULL || chat__svc_conv(svc, r, id, &c))
        return;
    if (c.kind != CHAT_CONV_GROUP) {
        chat__req_error(r, 422, "validation_failed",
                        "members can only be invited to groups");
        return;
    }
    if (c.role < CHAT_ROLE_ADMIN) {
        chat__req_error(r, 403, "forbidden",
                        "only the owner or an admin can invite");
        return;
    }
    if ((body = chat__req_json(r)) == NULL ||
        (uid = body_user_id(r, body)) == NULL)
        goto out;
    rc = chat_store_member_add(svc->store, id, uid, CHAT_ROLE_MEMBER);
    switch (rc) {
    case CHAT_OK:
        chat__svc_publish_conv(svc, id, "member_added", r->user_id, uid);
        o = cJSON_CreateObject();
        if (!cJSON_AddStringToObject(o, "conversation_id", id) ||
            !cJSON_AddStringToObject(o, "user_id", uid) ||
            !cJSON_AddStringToObject(o, "role",
                                     chat_role_name(CHAT_ROLE_MEMBER))) {
            cJSON_Delete(o);
            chat__req_fail(r, CHAT_ENOMEM);
            break;
        }
        chat__req_reply(r, 201, o);
        break;
    case CHAT_ECONFLICT:
        chat__req_error(r, 409, "already_member", "user is already a member");
        break;
    case CHAT_ELIMIT:
        chat__req_error(r, 422, "limit_exceeded",
                        "a group has at most %d members",
                        CHAT_GROUP_MAX_MEMBERS);
        break;
    case CHAT_ENOTFOUND:
        chat__req_error(r, 404, "not_found", "no such user");
        break;
    default:
        chat__req_fail(r, rc);
    }
out:
    cJSON_Delete(body);
}

static void h_remove(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    const char *uid = id ? chat__param_id(r, 1, "member") : NULL;
    chat_conv c;
    chat_member target;
    int self, rc, n = 0;

    if (uid == NULL || chat__svc_conv(svc, r, id, &c))
        return;
    if (c.kind != CHAT_CONV_GROUP) {
        chat__req_error(r, 422, "validation_failed",
                        "nobody can leave or be removed from a direct "
                        "message");
        return;
    }
    self = !strcasecmp(uid, r->user_id);
    if (!self) {
        /* the target's role decides: an admin removes members only */
        chat_member *all = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *all);
        int i, found = 0;
        if (all == NULL) {
            chat__req_fail(r, CHAT_ENOMEM);
            return;
        }
        rc = chat_store_conv_members(svc->store, id, all,
                                     CHAT_GROUP_MAX_MEMBERS, &n);
        for (i = 0; rc == CHAT_OK && i < n; i++) {
            if (!strcasecmp(all[i].user_id, uid)) {
                target = all[i];
                found = 1;
            }
        }
        chat__free(all);
        if (rc != CHAT_OK) {
            chat__req_fail(r, rc);
            return;
        }
        if (!found) {
            chat__req_error(r, 404, "not_found", "no such member");
            return;
        }
        if (c.role < CHAT_ROLE_ADMIN || target.role >= c.role) {
            chat__req_error(r, 403, "forbidden",
                            "you cannot remove this member");
            return;
        }
    }
    rc = chat_store_member_remove(svc->store, id, uid);
    if (rc == CHAT_ENOTFOUND)
        chat__req_error(r, 404, "not_found", "no such member");
    else if (rc != CHAT_OK)
        chat__req_fail(r, rc);
    else {
        chat__svc_publish_conv(svc, id, self ? "member_left" : "member_removed",
                               r->user_id, uid);
        chat__req_reply(r, 204, NULL);
    }
}

static void h_read_put(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    cJSON *body = NULL, *seq, *o;
    chat_conv c;
    int64_t stored = 0;
    int rc;

    if (id == NULL || chat__svc_conv(svc, r, id, &c))
        return;
    if ((body = chat__req_json(r)) == NULL)
        return;
    seq = cJSON_GetObjectItemCaseSensitive(body, "seq");
    if (!cJSON_IsNumber(seq)) {
        chat__req_error(r, seq ? 400 : 422,
                        seq ? "invalid_type" : "validation_failed",
                        "seq must be a number");
        goto out;
    }
    if (seq->valuedouble < 0 || seq->valuedouble > JSON_INT_MAX ||
        seq->valuedouble != (double)(int64_t)seq->valuedouble) {
        chat__req_error(r, 422, "validation_failed",
                        "seq must be a non-negative integer");
        goto out;
    }
    rc = chat_store_read_set(svc->store, id, r->user_id,
                             (int64_t)seq->valuedouble, &stored);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    chat__svc_publish_read(svc, id, r->user_id, stored);
    o = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(o, "conversation_id", id) ||
        !cJSON_AddStringToObject(o, "user_id", r->user_id) ||
        !cJSON_AddNumberToObject(o, "seq", (double)stored) ||
        !cJSON_AddNumberToObject(o, "last_seq", (double)c.last_seq)) {
        cJSON_Delete(o);
        chat__req_fail(r, CHAT_ENOMEM);
        goto out;
    }
    chat__req_reply(r, 200, o);
out:
    cJSON_Delete(body);
}

static void h_read_get(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *id = chat__param_id(r, 0, "conversation");
    chat_member *all = NULL;
    cJSON *o = NULL, *arr;
    chat_conv c;
    int n = 0, rc, i;

    if (id == NULL || chat__svc_conv(svc, r, id, &c))
        return;
    all = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *all);
    if (all == NULL) {
        chat__req_fail(r, CHAT_ENOMEM);
        return;
    }
    rc = chat_store_conv_members(svc->store, id, all, CHAT_GROUP_MAX_MEMBERS,
                                 &n);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    o = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(o, "read_states");
    if (arr == NULL ||
        !cJSON_AddNumberToObject(o, "last_seq", (double)c.last_seq))
        goto oom;
    for (i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, m);
        if (!cJSON_AddStringToObject(m, "user_id", all[i].user_id) ||
            !cJSON_AddNumberToObject(m, "seq", (double)all[i].read_seq))
            goto oom;
    }
    chat__req_reply(r, 200, o);
    o = NULL;
    goto out;
oom:
    chat__req_fail(r, CHAT_ENOMEM);
out:
    cJSON_Delete(o);
    chat__free(all);
}

int chat__chats_mount(chat__svc *svc)
{
    chat__http *h = svc->http;
    const unsigned A = CHAT__ROUTE_AUTH;
    int rc;

    if ((rc = chat__http_route(h, CHAT__POST, P "/conversations/dm", A, h_dm,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__POST, P "/conversations/group", A,
                               h_group, svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/conversations", A, h_list,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/conversations/{id}", A, h_get,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__POST, P "/conversations/{id}/invite", A,
                               h_invite, svc)) ||
        (rc = chat__http_route(h, CHAT__DELETE,
                               P "/conversations/{id}/members/{uid}", A,
                               h_remove, svc)) ||
        (rc = chat__http_route(h, CHAT__PUT, P "/conversations/{id}/read", A,
                               h_read_put, svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/conversations/{id}/read", A,
                               h_read_get, svc)))
        return rc;
    return CHAT_OK;
}
