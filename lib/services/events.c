/* What the services tell the event bus (see chat/bus.h). Publishing never
 * fails a request: the state change is committed already; a bus error is
 * logged and clients catch up from history. */
#include <stdio.h>
#include <string.h>

#include "services/services.h"

void chat__svc_publish(chat__svc *svc, const chat_event *ev)
{
    int rc;

    if (svc->bus == NULL)
        return;
    rc = chat_bus_publish(svc->bus, ev);
    if (rc != CHAT_OK)
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=bus event=publish_failed type=%s "
                 "conversation=%s rc=%d",
                 chat_event_name(ev->type),
                 ev->conversation_id ? ev->conversation_id : "-", rc);
}

void chat__svc_message_stored(chat__svc *svc, const chat_message *m,
                              int created)
{
    chat__buf b = CHAT__BUF_INIT;
    chat_event ev;

    if (!created)
        return; /* a retry: members were told the first time */
    if (!chat_log_touches_store(svc->log)) {
        /* TODO(distributed): hand this to a worker; it blocks the log's
         * thread. Only logs outside the store's database take this path. */
        int rc = chat_store_conv_touch(svc->store, m);
        if (rc != CHAT_OK)
            CHAT_LOG(CHAT_LOG_WARN,
                     "component=messages event=conv_touch_failed rc=%d", rc);
    }
    if (svc->bus == NULL || chat__json_put_message(&b, m, NULL) != CHAT_OK)
        goto out;
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = m->conversation_id;
    ev.user_id = m->sender_id;
    ev.to_members = 1;
    ev.payload = b.data;
    ev.payload_len = b.len;
    chat__svc_publish(svc, &ev);
out:
    chat__buf_free(&b);
}

void chat__svc_publish_read(chat__svc *svc, const char *conv_id,
                            const char *user_id, int64_t seq)
{
    char payload[160];
    chat_event ev;
    int n;

    n = snprintf(payload, sizeof payload,
                 "{\"conversation_id\":\"%s\",\"user_id\":\"%s\","
                 "\"seq\":%lld}",
                 conv_id, user_id, (long long)seq);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_READ_UPDATED;
    ev.conversation_id = conv_id;
    ev.user_id = user_id;
    ev.to_members = 1;
    ev.payload = payload;
    ev.payload_len = (size_t)n;
    chat__svc_publish(svc, &ev);
}

void chat__svc_publish_conv(chat__svc *svc, const char *conv_id,
                            const char *action, const char *actor,
                            const char *member)
{
    char payload[256];
    const char *recipients[1];
    chat_event ev;
    int n;

    if (member)
        n = snprintf(payload, sizeof payload,
                     "{\"conversation_id\":\"%s\",\"action\":\"%s\","
                     "\"actor_id\":\"%s\",\"user_id\":\"%s\"}",
                     conv_id, action, actor, member);
    else
        n = snprintf(payload, sizeof payload,
                     "{\"conversation_id\":\"%s\",\"action\":\"%s\","
                     "\"actor_id\":\"%s\"}",
                     conv_id, action, actor);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_CONVERSATION_UPDATED;
    ev.conversation_id = conv_id;
    ev.user_id = actor;
    ev.to_members = 1;
    ev.members_changed = 1;
    /* a member who left or was removed hears it too */
    if (member) {
        recipients[0] = member;
        ev.recipients = recipients;
        ev.nrecipients = 1;
    }
    ev.payload = payload;
    ev.payload_len = (size_t)n;
    chat__svc_publish(svc, &ev);
}
