/* The event bus interface and its in-process backend. */
#include <pthread.h>
#include <string.h>

#include <chat/bus.h>

#include "core/internal.h"

#define LOCAL_MAX_SUBS 16

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
    pthread_rwlock_t lock;
    int n;
    struct {
        chat_event_fn fn;
        void *userdata;
    } subs[LOCAL_MAX_SUBS];
} local_bus;

static int local_publish(chat_bus *b, const chat_event *ev)
{
    local_bus *l = (local_bus *)b;
    int i;

    pthread_rwlock_rdlock(&l->lock);
    for (i = 0; i < l->n; i++)
        l->subs[i].fn(ev, l->subs[i].userdata);
    pthread_rwlock_unlock(&l->lock);
    return CHAT_OK;
}

static int local_subscribe(chat_bus *b, chat_event_fn fn, void *userdata)
{
    local_bus *l = (local_bus *)b;
    int rc = CHAT_OK;

    pthread_rwlock_wrlock(&l->lock);
    if (l->n == LOCAL_MAX_SUBS) {
        rc = chat__error(CHAT_ELIMIT, "at most %d subscribers", LOCAL_MAX_SUBS);
    } else {
        l->subs[l->n].fn = fn;
        l->subs[l->n].userdata = userdata;
        l->n++;
    }
    pthread_rwlock_unlock(&l->lock);
    return rc;
}

static void local_free(chat_bus *b)
{
    local_bus *l = (local_bus *)b;

    pthread_rwlock_destroy(&l->lock);
    chat__free(l);
}

static const chat_bus_ops g_local_ops = {"local", local_publish,
                                         local_subscribe, local_free};

int chat_bus_local_new(chat_bus **out)
{
    local_bus *l;

    CHAT_ASSERT_ARG(out);
    l = chat__calloc(1, sizeof *l);
    if (l == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (pthread_rwlock_init(&l->lock, NULL) != 0) {
        chat__free(l);
        return chat__error(CHAT_ERROR, "rwlock init failed");
    }
    l->base.ops = &g_local_ops;
    *out = &l->base;
    return CHAT_OK;
}
