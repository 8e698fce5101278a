/* The bytes of an event between processes, and the subscriber list. */
#include <string.h>

#include <cjson/cJSON.h>

#include "bus/wire.h"

void chat__subs_init(chat__subs *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
}

void chat__subs_destroy(chat__subs *s)
{
    pthread_mutex_destroy(&s->lock);
}

int chat__subs_add(chat__subs *s, chat_event_fn fn, void *userdata)
{
    int rc = CHAT_OK;

    pthread_mutex_lock(&s->lock);
    if (s->n == CHAT__BUS_MAX_SUBS) {
        rc = chat__error(CHAT_ELIMIT, "at most %d bus subscribers",
                         CHAT__BUS_MAX_SUBS);
    } else {
        s->s[s->n].fn = fn;
        s->s[s->n].userdata = userdata;
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int chat__subs_call(chat__subs *s, const chat_event *ev)
{
    int i, n, rc = CHAT_OK, r;

    pthread_mutex_lock(&s->lock);
    n = s->n;
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < n; i++) { /* entries never change once added */
        r = s->s[i].fn(ev, s->s[i].userdata);
        if (r != CHAT_OK && rc == CHAT_OK)
            rc = r;
    }
    return rc;
}

int chat__event_encode(const chat_event *ev, chat__buf *out)
{
    cJSON *h = cJSON_CreateObject(), *rc;
    char *text;
    int i, ok;

    ok = h && cJSON_AddNumberToObject(h, "type", ev->type) &&
         (!ev->conversation_id ||
          cJSON_AddStringToObject(h, "conversation_id", ev->conversation_id)) &&
         (!ev->user_id || cJSON_AddStringToObject(h, "user_id", ev->user_id)) &&
         cJSON_AddNumberToObject(h, "to_members", ev->to_members != 0) &&
         cJSON_AddNumberToObject(h, "members_changed",
                                 ev->members_changed != 0) &&
         (rc = cJSON_AddArrayToObject(h, "recipients")) != NULL;
    for (i = 0; ok && i < ev->nrecipients; i++)
        ok = cJSON_AddItemToArray(rc, cJSON_CreateString(ev->recipients[i]));
    text = ok ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (text == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    out->len = 0;
    chat__buf_puts(out, text);
    chat__buf_append(out, "\n", 1);
    chat__buf_append(out, ev->payload, ev->payload_len);
    cJSON_free(text);
    return out->failed ? chat__error(CHAT_ENOMEM, "out of memory") : CHAT_OK;
}

int chat__event_dispatch(chat__subs *subs, const char *data, size_t len,
                         int64_t received_us)
{
    const char *nl = memchr(data, '\n', len);
    const char *ids[CHAT_GROUP_MAX_MEMBERS + 8];
    const cJSON *t, *c, *u, *m, *x, *rc, *it;
    cJSON *h;
    chat_event ev;
    int n = 0, handled;

    if (nl == NULL)
        goto bad;
    h = cJSON_ParseWithLength(data, (size_t)(nl - data));
    t = cJSON_GetObjectItemCaseSensitive(h, "type");
    c = cJSON_GetObjectItemCaseSensitive(h, "conversation_id");
    u = cJSON_GetObjectItemCaseSensitive(h, "user_id");
    m = cJSON_GetObjectItemCaseSensitive(h, "to_members");
    x = cJSON_GetObjectItemCaseSensitive(h, "members_changed");
    rc = cJSON_GetObjectItemCaseSensitive(h, "recipients");
    if (!cJSON_IsNumber(t) || !chat_event_name((chat_event_type)t->valueint) ||
        !cJSON_IsArray(rc) ||
        cJSON_GetArraySize(rc) > (int)CHAT__ARRAY_LEN(ids)) {
        cJSON_Delete(h);
        goto bad;
    }
    cJSON_ArrayForEach(it, rc)
    {
        if (!cJSON_IsString(it)) {
            cJSON_Delete(h);
            goto bad;
        }
        ids[n++] = it->valuestring;
    }
    memset(&ev, 0, sizeof ev);
    ev.type = (chat_event_type)t->valueint;
    ev.conversation_id = cJSON_IsString(c) ? c->valuestring : NULL;
    ev.user_id = cJSON_IsString(u) ? u->valuestring : NULL;
    ev.to_members = cJSON_IsNumber(m) && m->valueint != 0;
    ev.members_changed = cJSON_IsNumber(x) && x->valueint != 0;
    ev.recipients = n ? ids : NULL;
    ev.nrecipients = n;
    ev.payload = nl + 1;
    ev.payload_len = len - (size_t)(nl + 1 - data);
    ev.received_us = received_us;
    handled = chat__subs_call(subs, &ev) == CHAT_OK;
    cJSON_Delete(h);
    return handled ? CHAT_OK : CHAT_EAGAIN;
bad:
    return chat__error(CHAT_EPROTO, "not a bus event (%zu bytes)", len);
}
