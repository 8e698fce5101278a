/*
 * The sync engine: keeps the cache equal to the server and surfaces each
 * message once, in order.
 *
 *  - Every message that arrives (live event, catch-up page, send answer,
 *    history page) is stored first; then synced_seq moves over whatever is
 *    now contiguous, and the messages in (delivered_seq, synced_seq] go to
 *    CHAT_CLIENT_EVENT_MESSAGE before delivered_seq moves. A message past a gap
 *    waits in the cache while a catch-up fetches the gap.
 *  - After every (re)connect a full sync lists the conversations (new ones,
 *    ones left while offline) and catches up each one from synced_seq.
 *  - The outbox sends the oldest pending message of each conversation, one
 *    at a time per conversation so the server assigns seqs in send order,
 *    and retries with backoff under the same client_msg_id.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include <chat/core.h>

#include "client/client_int.h"

#define SURFACE_BATCH 256
#define SYNC_RETRY_MS 2000

static int64_t now_ms(void)
{
    return chat__mono_us() / 1000;
}

static csync *csync_get(chat_client *c, const char *id)
{
    csync *s;
    for (s = c->convs; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    if (!(s = chat__calloc(1, sizeof *s)))
        return NULL;
    chat__strlcpy(s->id, id, sizeof s->id);
    s->next = c->convs;
    c->convs = s;
    return s;
}

void chat__sync_reset(chat_client *c)
{
    csync *s;
    while ((s = c->convs)) {
        c->convs = s->next;
        chat__free(s);
    }
    for (size_t i = 0; i < c->seen_n; i++)
        chat__free(c->seen[i]);
    chat__free(c->seen);
    c->seen = NULL;
    c->seen_n = c->seen_cap = 0;
    c->syncing = c->sync_ops = c->sync_again = 0;
}

/* ---- surfacing --------------------------------------------------------- */

/* Hand the conversation's newly contiguous messages to the application,
 * then record how far it got. */
static void surface(chat_client *c, const char *conv)
{
    for (;;) {
        chat_client_message_list list;
        if (chat__cache_undelivered(c->cache, conv, SURFACE_BATCH, &list) !=
                CHAT_OK ||
            list.count == 0) {
            chat_client_message_list_free(&list);
            return;
        }
        for (size_t i = 0; i < list.count; i++) {
            chat_client_event ev = {0};
            ev.type = CHAT_CLIENT_EVENT_MESSAGE;
            ev.conversation_id = list.items[i].conversation_id;
            ev.user_id = list.items[i].sender_id;
            ev.seq = list.items[i].seq;
            ev.time_ms = list.items[i].created_at_ms;
            ev.message = &list.items[i];
            chat__client_emit(c, &ev);
            chat__cache_delivered(c->cache, conv, ev.seq);
        }
        chat_client_message_list_free(&list);
    }
}

/* Store messages (an array, or one object) in one transaction and move
 * synced_seq. *n counts the stored ones; *synced is the new position. */
static int store_messages(chat_client *c, const char *conv, const cJSON *msgs,
                          const char *full_text, size_t *n, int64_t *synced)
{
    const cJSON *m;
    int rc;
    *n = 0;
    if ((rc = chat__cache_begin(c->cache)) != CHAT_OK)
        return rc;
    if (cJSON_IsObject(msgs)) {
        rc = chat__cache_msg_put(c->cache, msgs, full_text);
        *n = rc == CHAT_OK;
    } else {
        cJSON_ArrayForEach(m, msgs)
        {
            const cJSON *mc =
                cJSON_GetObjectItemCaseSensitive(m, "conversation_id");
            /* A page of another conversation would be a server bug. */
            if (!cJSON_IsString(mc) || strcmp(mc->valuestring, conv) != 0)
                continue;
            if ((rc = chat__cache_msg_put(c->cache, m, NULL)) != CHAT_OK)
                break;
            (*n)++;
        }
    }
    if (rc == CHAT_OK) {
        rc = chat__cache_advance(c->cache, conv, synced);
        if (rc == CHAT_ENOTFOUND) { /* not a known conversation (yet) */
            *synced = 0;
            rc = CHAT_OK;
        }
    }
    if (rc == CHAT_OK)
        rc = chat__cache_commit(c->cache);
    if (rc != CHAT_OK)
        chat__cache_rollback(c->cache);
    return rc;
}

/* ---- requests the engine makes
 * ------------------------------------------------ */

static void sync_done_one(chat_client *c);

static void catchup(chat_client *c, const char *conv)
{
    chat__conv_pos pos;
    char path[192];
    csync *s = csync_get(c, conv);
    creq *r;
    if (!s)
        return;
    if (s->fetching) {
        s->again = 1;
        return;
    }
    if (chat__cache_conv_pos(c->cache, conv, &pos) != CHAT_OK || pos.left)
        return;
    snprintf(path, sizeof path,
             "/api/messages/conversations/%s/messages?after_seq=%lld"
             "&limit=%d",
             conv, (long long)pos.synced_seq, CHAT_PAGE_MAX);
    if (chat__client_request(c, CREQ_CATCHUP, "GET", path, NULL, 1, NULL, NULL,
                             &r) < 0 ||
        !r) {
        s->stale = 1;
        return;
    }
    chat__strlcpy(r->conv, conv, sizeof r->conv);
    s->fetching = 1;
    s->again = 0;
    s->stale = 0;
    c->sync_ops++;
}

/* Fetch one conversation with its members; action (may be "") is what
 * the CHAT_CLIENT_EVENT_CONVERSATION after it will say. */
static void sync_conv(chat_client *c, const char *conv, const char *action,
                      const char *actor, const char *user)
{
    char path[128];
    creq *r;
    snprintf(path, sizeof path, "/api/chats/conversations/%s", conv);
    if (chat__client_request(c, CREQ_SYNC_CONV, "GET", path, NULL, 1, NULL,
                             NULL, &r) < 0 ||
        !r)
        return;
    chat__strlcpy(r->conv, conv, sizeof r->conv);
    chat__strlcpy(r->arg, action ? action : "", sizeof r->arg);
    chat__strlcpy(r->actor, actor ? actor : "", sizeof r->actor);
    if (user)
        chat__strlcpy(r->user, user, sizeof r->user);
    c->sync_ops++;
}

static void list_page(chat_client *c, const char *cursor)
{
    char path[512];
    char *esc = cursor ? curl_easy_escape(NULL, cursor, 0) : NULL;
    if (cursor && !esc)
        return;
    snprintf(path, sizeof path, "/api/chats/conversations?limit=%d%s%s",
             CHAT_PAGE_MAX, esc ? "&cursor=" : "", esc ? esc : "");
    curl_free(esc);
    if (chat__client_request(c, CREQ_SYNC_LIST, "GET", path, NULL, 1, NULL,
                             NULL, NULL) < 0) {
        c->sync_retry_at = now_ms() + SYNC_RETRY_MS;
        return;
    }
    c->sync_ops++;
}

void chat__sync_start(chat_client *c)
{
    if (!c->access)
        return;
    if (c->syncing) {
        c->sync_again = 1;
        return;
    }
    for (size_t i = 0; i < c->seen_n; i++)
        chat__free(c->seen[i]);
    c->seen_n = 0;
    c->syncing = 1;
    c->sync_again = 0;
    list_page(c, NULL);
    if (c->sync_ops == 0)
        c->syncing = 0;
}

static void sync_done_one(chat_client *c)
{
    if (c->sync_ops > 0)
        c->sync_ops--;
    if (c->sync_ops > 0 || !c->syncing)
        return;
    c->syncing = 0;
    if (c->sync_again) {
        chat__sync_start(c);
        return;
    }
    chat_client_event ev = {0};
    ev.type = CHAT_CLIENT_EVENT_SYNCED;
    chat__client_emit(c, &ev);
}

static int seen_add(chat_client *c, const char *id)
{
    if (c->seen_n == c->seen_cap) {
        size_t cap = c->seen_cap ? c->seen_cap * 2 : 64;
        char **v = chat__realloc(c->seen, cap * sizeof *v);
        if (!v)
            return CHAT_ENOMEM;
        c->seen = v;
        c->seen_cap = cap;
    }
    if (!(c->seen[c->seen_n] = chat__strdup(id)))
        return CHAT_ENOMEM;
    c->seen_n++;
    return CHAT_OK;
}

/* A conversation learned outside the list while a sync runs (created, or
 * announced live): a list page answered before it existed must not sweep
 * it as left. */
static void sync_saw(chat_client *c, const char *id)
{
    if (c->syncing)
        seen_add(c, id);
}

/* The server's list is complete: conversations it no longer lists were
 * left (or we were removed) while we were away. */
static void sweep_left(chat_client *c)
{
    char **ids;
    size_t n;
    if (chat__cache_conv_ids(c->cache, &ids, &n) != CHAT_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t k = 0; k < c->seen_n && !found; k++)
            found = strcmp(ids[i], c->seen[k]) == 0;
        if (!found) {
            chat_client_event ev = {0};
            chat__cache_conv_left(c->cache, ids[i]);
            ev.type = CHAT_CLIENT_EVENT_CONVERSATION;
            ev.conversation_id = ids[i];
            ev.action = "removed";
            ev.user_id = c->user_id;
            chat__client_emit(c, &ev);
        }
        chat__free(ids[i]);
    }
    chat__free(ids);
}

static void on_list(chat_client *c, const cJSON *j)
{
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(j, "conversations");
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next_cursor");
    const cJSON *v;
    /* A page of a sync that go_offline() abandoned (logout, another
     * account): its list is no longer the one to sweep against. */
    if (!c->syncing || chat__cache_begin(c->cache) != CHAT_OK)
        return;
    cJSON_ArrayForEach(v, convs)
    {
        int is_new = 0;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
        if (chat__cache_conv_put(c->cache, v, c->opts.history_depth, &is_new) !=
                CHAT_OK ||
            !cJSON_IsString(id))
            continue;
        seen_add(c, id->valuestring);
        if (is_new) /* mark it for members below */
            cJSON_AddTrueToObject((cJSON *)v, "_new");
    }
    if (chat__cache_commit(c->cache) != CHAT_OK) {
        chat__cache_rollback(c->cache);
        return;
    }
    cJSON_ArrayForEach(v, convs)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
        chat__conv_pos pos;
        if (!cJSON_IsString(id) || !chat_uuid_valid(id->valuestring))
            continue;
        if (cJSON_GetObjectItemCaseSensitive(v, "_new")) {
            sync_conv(c, id->valuestring, "", NULL, NULL);
            continue;
        }
        if (chat__cache_conv_pos(c->cache, id->valuestring, &pos) == CHAT_OK &&
            pos.server_seq > pos.synced_seq)
            catchup(c, id->valuestring);
        else if (pos.delivered_seq < pos.synced_seq)
            surface(c, id->valuestring);
    }
    if (!c->syncing) /* a callback above logged out */
        return;
    if (cJSON_IsString(next) && next->valuestring[0])
        list_page(c, next->valuestring);
    else
        sweep_left(c);
}

/* ---- answers
 * ------------------------------------------------------------------- */

static int transient(int code)
{
    return code == CHAT_EIO || code == CHAT_ETIMEDOUT ||
           code == CHAT_EUNAVAIL || code == CHAT_ERATE || code == CHAT_EPROTO ||
           code == CHAT_EAUTH || code == CHAT_EEXPIRED || code == CHAT_ENOMEM ||
           code == CHAT_ECLOSED;
}

static void on_send(chat_client *c, creq *r, int code, const cJSON *j)
{
    chat__outbox_item it;
    csync *s = csync_get(c, r->conv);
    size_t n;
    int64_t synced = 0;
    if (s)
        s->sending = 0;
    if (code == CHAT_OK) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "seq");
        /* The outbox row and the stored message change in one transaction:
         * a crash leaves either the pending send (resent, deduplicated by
         * the server) or the message, never both, never neither. */
        if (chat__cache_outbox_get(c->cache, r->arg, &it) != CHAT_OK) {
            /* The live copy got here first (and took the row), or the
             * send was discarded meanwhile. */
            c->outbox_backoff_ms = 250;
            chat__outbox_kick(c);
            return;
        }
        if (chat__cache_begin(c->cache) == CHAT_OK) {
            /* stores the full text and drops the outbox row */
            int rc = chat__cache_msg_put(c->cache, j, it.content);
            if (rc == CHAT_OK) {
                rc = chat__cache_advance(c->cache, r->conv, &synced);
                if (rc == CHAT_ENOTFOUND)
                    rc = CHAT_OK;
            }
            if (rc == CHAT_OK && chat__cache_commit(c->cache) == CHAT_OK) {
                c->outbox_backoff_ms = 250;
                if (cJSON_IsNumber(seq) && (int64_t)seq->valuedouble > synced)
                    catchup(c, r->conv); /* others wrote in between */
                surface(c, r->conv);
            } else {
                chat__cache_rollback(c->cache);
            }
        }
        chat__outbox_item_clear(&it);
        (void)n;
    } else if (transient(code)) {
        chat__client_jitter_backoff(&c->outbox_backoff_ms, &c->outbox_retry_at);
        return;
    } else if (chat__cache_outbox_get(c->cache, r->arg, &it) == CHAT_OK) {
        chat_client_message m;
        chat_client_event ev = {0};
        chat__cache_outbox_fail(c->cache, r->arg, chat_strerror(code));
        memset(&m, 0, sizeof m);
        chat__strlcpy(m.conversation_id, it.conversation_id,
                      sizeof m.conversation_id);
        chat__strlcpy(m.client_msg_id, it.client_msg_id,
                      sizeof m.client_msg_id);
        chat__strlcpy(m.sender_id, c->user_id ? c->user_id : "",
                      sizeof m.sender_id);
        m.created_at_ms = it.created_at_ms;
        m.text = it.content;
        m.state = CHAT_MSG_FAILED;
        ev.type = CHAT_CLIENT_EVENT_SEND_FAILED;
        ev.conversation_id = m.conversation_id;
        ev.code = code;
        ev.message = &m;
        chat__client_emit(c, &ev);
        chat__outbox_item_clear(&it);
    }
    chat__outbox_kick(c);
}

/* The answer to a read marker sent (r->n), by chat_client_mark_read() or
 * by the push of one kept in the cache. */
static void on_read(chat_client *c, creq *r, int code, const cJSON *j)
{
    csync *s = csync_get(c, r->conv);
    if (s && s->pushing > 0)
        s->pushing--;
    if (code == CHAT_OK) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "seq");
        int64_t acked = r->n;
        if (cJSON_IsNumber(seq)) {
            int64_t v = (int64_t)seq->valuedouble;
            chat__cache_conv_read(c->cache, r->conv, v);
            if (v > acked)
                acked = v;
        }
        /* The server merges by max and stops at its newest message, so
         * what it answered is as far as the value sent will ever get; a
         * marker moved further meanwhile stays to be pushed. */
        chat__cache_read_acked(c->cache, r->conv, acked);
        c->read_backoff_ms = 250;
        chat__read_kick(c);
    } else if (transient(code)) {
        chat__read_retry_later(c);
    } else {
        /* Refused for good (no longer a member): nothing to retry. */
        chat__cache_read_acked(c->cache, r->conv, r->n);
    }
}

static void on_catchup(chat_client *c, creq *r, int code, const cJSON *j)
{
    csync *s = csync_get(c, r->conv);
    chat__conv_pos pos;
    size_t n = 0;
    int64_t synced = 0;
    if (s)
        s->fetching = 0;
    if (code == CHAT_EPERM || code == CHAT_ENOTFOUND) {
        chat__cache_conv_left(c->cache, r->conv);
        return;
    }
    if (code != CHAT_OK ||
        store_messages(c, r->conv,
                       cJSON_GetObjectItemCaseSensitive(j, "messages"), NULL,
                       &n, &synced) != CHAT_OK) {
        if (s)
            s->stale = 1;
        if (!c->sync_retry_at)
            c->sync_retry_at = now_ms() + SYNC_RETRY_MS;
        return;
    }
    surface(c, r->conv);
    /* A callback may have logged out, which frees the csyncs. */
    s = csync_get(c, r->conv);
    if (chat__cache_conv_pos(c->cache, r->conv, &pos) != CHAT_OK)
        return;
    /* A full page, or news during the fetch, or still behind: go on. A
     * page that brought nothing stops here (no busy loop on a server that
     * lists a seq it cannot serve). */
    if (n == CHAT_PAGE_MAX || (s && s->again) ||
        (n > 0 && pos.server_seq > pos.synced_seq))
        catchup(c, r->conv);
}

static void on_conv(chat_client *c, creq *r, int code, const cJSON *j,
                    const char *user)
{
    chat_client_event ev = {0};
    int is_new = 0;
    ev.type = CHAT_CLIENT_EVENT_CONVERSATION;
    ev.conversation_id = r->conv;
    ev.action = r->arg;
    ev.actor_id = r->actor;
    ev.user_id = user;
    if (code == CHAT_EPERM || code == CHAT_ENOTFOUND) {
        chat__cache_conv_left(c->cache, r->conv);
        ev.action = "removed";
        ev.user_id = c->user_id;
        chat__client_emit(c, &ev);
        return;
    }
    if (code != CHAT_OK)
        return;
    if (chat__cache_begin(c->cache) != CHAT_OK)
        return;
    if (chat__cache_conv_put(c->cache, j, c->opts.history_depth, &is_new) !=
            CHAT_OK ||
        chat__cache_commit(c->cache) != CHAT_OK) {
        chat__cache_rollback(c->cache);
        return;
    }
    sync_saw(c, r->conv);
    catchup(c, r->conv);
    if (r->arg[0])
        chat__client_emit(c, &ev);
}

int chat__sync_answer(chat_client *c, creq *r, int code, const cJSON *j)
{
    size_t n = 0;
    int64_t synced;
    int is_new = 0;
    switch (r->kind) {
    case CREQ_SYNC_LIST:
        if (code == CHAT_OK)
            on_list(c, j);
        else if (!c->sync_retry_at)
            c->sync_retry_at = now_ms() + SYNC_RETRY_MS;
        sync_done_one(c);
        return code;
    case CREQ_SYNC_CONV:
        on_conv(c, r, code, j, r->user);
        sync_done_one(c);
        return code;
    case CREQ_CATCHUP:
        on_catchup(c, r, code, j);
        sync_done_one(c);
        return code;
    case CREQ_SEND:
        on_send(c, r, code, j);
        return code;
    case CREQ_CONV_CREATE:
        if (code == CHAT_OK) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
            if (!cJSON_IsString(id) || !chat_uuid_valid(id->valuestring))
                return chat__error(CHAT_EPROTO, "conversation without an id");
            chat__strlcpy(r->conv, id->valuestring, sizeof r->conv);
            if ((code = chat__cache_begin(c->cache)) != CHAT_OK)
                return code;
            if ((code = chat__cache_conv_put(c->cache, j, c->opts.history_depth,
                                             &is_new)) != CHAT_OK ||
                (code = chat__cache_commit(c->cache)) != CHAT_OK) {
                chat__cache_rollback(c->cache);
                return code;
            }
            sync_saw(c, r->conv);
            catchup(c, r->conv);
        }
        return code;
    case CREQ_INVITE:
        return code;
    case CREQ_REMOVE:
        if (code == CHAT_OK && c->user_id && strcmp(r->arg, c->user_id) == 0)
            chat__cache_conv_left(c->cache, r->conv);
        return code;
    case CREQ_HISTORY:
        if (code == CHAT_OK) {
            code = store_messages(
                c, r->conv, cJSON_GetObjectItemCaseSensitive(j, "messages"),
                NULL, &n, &synced);
            r->n = (int64_t)n;
            surface(c, r->conv);
        }
        return code;
    case CREQ_READ:
    case CREQ_READ_PUSH:
        on_read(c, r, code, j);
        return code;
    default:
        return code;
    }
}

/* ---- live events
 * ------------------------------------------------------------- */

static const char *dstr(const cJSON *d, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t dint(const cJSON *d, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static void on_message_event(chat_client *c, const cJSON *d)
{
    const char *conv = dstr(d, "conversation_id");
    chat__conv_pos pos;
    size_t n;
    int64_t synced, seq = dint(d, "seq");
    if (!conv || !chat_uuid_valid(conv) || seq <= 0)
        return;
    if (chat__cache_conv_pos(c->cache, conv, &pos) == CHAT_ENOTFOUND) {
        /* A conversation we have not heard of (created while the list was
         * in flight): learn it, which catches it up. */
        sync_conv(c, conv, "", NULL, NULL);
        return;
    }
    if (pos.left || seq <= pos.synced_seq)
        return; /* a replay or a duplicate */
    if (store_messages(c, conv, d, NULL, &n, &synced) != CHAT_OK)
        return;
    if (seq > synced)
        catchup(c, conv); /* a gap before it: fill, then surface */
    surface(c, conv);
}

static void on_conversation_event(chat_client *c, const cJSON *d)
{
    const char *conv = dstr(d, "conversation_id"), *action = dstr(d, "action");
    const char *user = dstr(d, "user_id"), *actor = dstr(d, "actor_id");
    if (!conv || !chat_uuid_valid(conv) || !action)
        return;
    if (user && c->user_id && strcmp(user, c->user_id) == 0 &&
        (strcmp(action, "member_removed") == 0 ||
         strcmp(action, "member_left") == 0)) {
        chat_client_event ev = {0};
        chat__cache_conv_left(c->cache, conv);
        ev.type = CHAT_CLIENT_EVENT_CONVERSATION;
        ev.conversation_id = conv;
        ev.action = strcmp(action, "member_left") == 0 ? action : "removed";
        ev.actor_id = actor;
        ev.user_id = user;
        chat__client_emit(c, &ev);
        return;
    }
    sync_conv(c, conv, action, actor, user);
}

void chat__sync_ws(chat_client *c, chat__net_input *in)
{
    chat_client_event ev = {0};
    const cJSON *d = in->data;
    switch (in->kind) {
    case CHAT__NET_WS_UP:
        c->online = 1;
        ev.type = CHAT_CLIENT_EVENT_CONNECTED;
        chat__client_emit(c, &ev);
        chat__sync_start(c);
        c->outbox_backoff_ms = 250;
        c->outbox_retry_at = 0;
        chat__outbox_kick(c);
        c->read_backoff_ms = 250;
        c->read_retry_at = 0;
        chat__read_kick(c);
        return;
    case CHAT__NET_WS_DOWN:
        /* Also a failed attempt (flag 0), so a tool can tell "cannot
         * reach the server" from "still connecting". */
        ev.type = CHAT_CLIENT_EVENT_DISCONNECTED;
        ev.flag = c->online;
        ev.action = in->name;
        c->online = 0;
        chat__client_emit(c, &ev);
        return;
    case CHAT__NET_WS_EVENT:
        break;
    default:
        return; /* acks of typing: nothing to do */
    }
    if (!in->name || !cJSON_IsObject(d))
        return;
    if (strcmp(in->name, "message:new") == 0) {
        on_message_event(c, d);
    } else if (strcmp(in->name, "conversation:updated") == 0) {
        on_conversation_event(c, d);
    } else if (strcmp(in->name, "read:updated") == 0) {
        const char *conv = dstr(d, "conversation_id"),
                   *user = dstr(d, "user_id");
        if (!conv || !user)
            return;
        if (c->user_id && strcmp(user, c->user_id) == 0) {
            chat__cache_conv_read(c->cache, conv, dint(d, "seq"));
            chat__cache_read_acked(c->cache, conv, dint(d, "seq"));
        }
        chat__cache_member_read(c->cache, conv, user, dint(d, "seq"));
        ev.type = CHAT_CLIENT_EVENT_READ;
        ev.conversation_id = conv;
        ev.user_id = user;
        ev.seq = dint(d, "seq");
        chat__client_emit(c, &ev);
    } else if (strcmp(in->name, "typing") == 0) {
        ev.type = CHAT_CLIENT_EVENT_TYPING;
        ev.conversation_id = dstr(d, "conversation_id");
        ev.user_id = dstr(d, "user_id");
        ev.flag =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "is_typing"));
        if (ev.conversation_id && ev.user_id)
            chat__client_emit(c, &ev);
    } else if (strcmp(in->name, "presence") == 0) {
        const char *seen = dstr(d, "last_seen");
        ev.type = CHAT_CLIENT_EVENT_PRESENCE;
        ev.user_id = dstr(d, "user_id");
        ev.flag = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "online"));
        if (seen)
            chat_time_parse(seen, &ev.time_ms);
        if (ev.user_id)
            chat__client_emit(c, &ev);
    }
}

/* ---- outbox and timers
 * --------------------------------------------------------- */

void chat__outbox_kick(chat_client *c)
{
    chat__outbox_item items[32];
    size_t n = 0;
    if (!c->access || (c->outbox_retry_at && c->outbox_retry_at > now_ms()))
        return;
    c->outbox_retry_at = 0;
    if (chat__cache_outbox_next(c->cache, items, CHAT__ARRAY_LEN(items), &n) !=
        CHAT_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        csync *s = csync_get(c, items[i].conversation_id);
        char path[128];
        cJSON *body = cJSON_CreateObject();
        creq *r = NULL;
        if (s && !s->sending && body &&
            cJSON_AddStringToObject(body, "content", items[i].content) &&
            cJSON_AddStringToObject(body, "client_msg_id",
                                    items[i].client_msg_id)) {
            snprintf(path, sizeof path,
                     "/api/messages/conversations/%s/messages",
                     items[i].conversation_id);
            if (chat__client_request(c, CREQ_SEND, "POST", path, body, 1, NULL,
                                     NULL, &r) > 0 &&
                r) {
                chat__strlcpy(r->conv, items[i].conversation_id,
                              sizeof r->conv);
                chat__strlcpy(r->arg, items[i].client_msg_id, sizeof r->arg);
                s->sending = 1;
            }
        }
        cJSON_Delete(body);
        chat__outbox_item_clear(&items[i]);
    }
}

/* Push the read markers the cache keeps for the server (set by
 * chat_client_mark_read(), offline or not), one request in flight per
 * conversation; a failure retries them all after a backoff. */
void chat__read_kick(chat_client *c)
{
    chat__read_push items[32];
    size_t n = 0;
    if (!c->access || (c->read_retry_at && c->read_retry_at > now_ms()))
        return;
    c->read_retry_at = 0;
    if (chat__cache_read_pushes(c->cache, items, CHAT__ARRAY_LEN(items), &n) !=
        CHAT_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        csync *s = csync_get(c, items[i].conversation_id);
        if (s && !s->pushing &&
            chat__read_send(c, CREQ_READ_PUSH, items[i].conversation_id,
                            items[i].seq, NULL, NULL) < 0)
            chat__read_retry_later(c);
    }
}

int64_t chat__read_send(chat_client *c, int kind, const char *conv, int64_t seq,
                        chat_client_done_fn done, void *ud)
{
    char path[128];
    cJSON *body = cJSON_CreateObject();
    csync *s = csync_get(c, conv);
    creq *r = NULL;
    int64_t id;
    if (!body || !s || !cJSON_AddNumberToObject(body, "seq", (double)seq)) {
        cJSON_Delete(body);
        return CHAT_ENOMEM;
    }
    snprintf(path, sizeof path, "/api/chats/conversations/%s/read", conv);
    id = chat__client_request(c, kind, "PUT", path, body, 1, done, ud, &r);
    cJSON_Delete(body);
    if (r) {
        chat__strlcpy(r->conv, conv, sizeof r->conv);
        r->n = seq;
        s->pushing++;
    }
    return id;
}

void chat__read_retry_later(chat_client *c)
{
    /* One backoff step per round of failures, not per conversation. */
    if (!c->read_retry_at)
        chat__client_jitter_backoff(&c->read_backoff_ms, &c->read_retry_at);
}

void chat__sync_timers(chat_client *c, int64_t now)
{
    if (c->outbox_retry_at && c->outbox_retry_at <= now)
        chat__outbox_kick(c);
    if (c->read_retry_at && c->read_retry_at <= now) {
        c->read_retry_at = 0;
        chat__read_kick(c);
    }
    if (c->sync_retry_at && c->sync_retry_at <= now) {
        c->sync_retry_at = 0;
        if (c->online || c->opts.no_realtime)
            chat__sync_start(c);
        for (csync *s = c->convs; s; s = s->next)
            if (s->stale && !s->fetching)
                catchup(c, s->id);
    }
}

int64_t chat__sync_next_timer(const chat_client *c)
{
    int64_t t = c->outbox_retry_at;

    /* without a session none of these can fire: a retry that was due when
     * the user logged out must not make the loop spin */
    if (!c->access)
        return 0;
    if (c->sync_retry_at && (!t || c->sync_retry_at < t))
        t = c->sync_retry_at;
    if (c->read_retry_at && (!t || c->read_retry_at < t))
        t = c->read_retry_at;
    return t;
}
