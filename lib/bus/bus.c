/* The event bus interface and its in-process backend. */
#include <string.h>

#include <chat/bus.h>

#include "bus/wire.h"
#include "core/internal.h"

const char *chat_event_name(chat_event_type type)
{
    switch (type) {
    case CHAT_EVENT_MESSAGE_NEW:
        return "message:new";
    case CHAT_EVENT_READ_UPDATED:
        return "read:updated";
    case CHAT_EVENT_CONVERSATION_UPDATED:
        return "conversation:updated";
    case CHAT_EVENT_TYPING:
        return "typing";
    case CHAT_EVENT_PRESENCE:
        return "presence";
    }
    return NULL;
}

int chat_bus_publish(chat_bus *b, const chat_event *ev)
{
    CHAT_ASSERT_ARG(b && ev && ev->payload && chat_event_name(ev->type));
    return b->ops->publish(b, ev);
}

int chat_bus_publish_to(chat_bus *b, const char *gateway_id,
                        const chat_event *ev)
{
    CHAT_ASSERT_ARG(b && gateway_id && ev && ev->payload &&
                    chat_event_name(ev->type));
    if (b->ops->publish_to == NULL)
        return chat__error(CHAT_EINVAL,
                           "the %s bus has no per-gateway delivery",
                           b->ops->name);
    return b->ops->publish_to(b, gateway_id, ev);
}

int chat_bus_publish_each(chat_bus *b, const char *const *gateway_ids, int n,
                          const chat_event *ev)
{
    int i, rc = CHAT_OK;

    CHAT_ASSERT_ARG(b && n >= 0 && (gateway_ids || n == 0) && ev &&
                    ev->payload && chat_event_name(ev->type));
    if (b->ops->publish_to == NULL)
        return chat__error(CHAT_EINVAL,
                           "the %s bus has no per-gateway delivery",
                           b->ops->name);
    if (b->ops->publish_each)
        return n > 0 ? b->ops->publish_each(b, gateway_ids, n, ev) : CHAT_OK;
    for (i = 0; rc == CHAT_OK && i < n; i++)
        rc = b->ops->publish_to(b, gateway_ids[i], ev);
    return rc;
}

int chat_bus_ping(chat_bus *b)
{
    CHAT_ASSERT_ARG(b);
    return b->ops->ping ? b->ops->ping(b) : CHAT_OK;
}

int chat_bus_subscribe(chat_bus *b, chat_event_fn fn, void *userdata)
{
    CHAT_ASSERT_ARG(b && fn);
    return b->ops->subscribe(b, fn, userdata);
}

void chat_bus_free(chat_bus *b)
{
    if (b)
        b->ops->free(b);
}

/* ---- local ------------------------------------------------------------------
 */

typedef struct local_bus {
    chat_bus base;
    chat__subs subs;
} local_bus;

static int local_publish(chat_bus *b, const chat_event *ev)
{
    chat_event e = *ev;

    e.received_us = chat__mono_us();
    (void)chat__subs_call(&((local_bus *)b)->subs, &e); /* at most once */
    return CHAT_OK;
}

static int local_subscribe(chat_bus *b, chat_event_fn fn, void *userdata)
{
    return chat__subs_add(&((local_bus *)b)->subs, fn, userdata);
}

static void local_free(chat_bus *b)
{
    local_bus *l = (local_bus *)b;

    chat__subs_destroy(&l->subs);
    chat__free(l);
}

static const chat_bus_ops g_local_ops = {
    "local", local_publish, local_subscribe, local_free, NULL, NULL, NULL};

int chat_bus_local_new(chat_bus **out)
{
    local_bus *l;

    CHAT_ASSERT_ARG(out);
    l = chat__calloc(1, sizeof *l);
    if (l == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    chat__subs_init(&l->subs);
    l->base.ops = &g_local_ops;
    *out = &l->base;
    return CHAT_OK;
}
