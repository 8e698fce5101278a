/* Routing an event to the gateways of its recipients (chat/presence.h).
 *
 * Runs on the fanout-worker's consumer thread: one members query, one
 * pipelined presence lookup, one pipelined PUBLISH to each gateway that
 * has a recipient. chat_fanout keeps the gateways found per conversation
 * for a short time, so a busy conversation costs one read of the
 * registry's epoch per batch of events and the lookups once per
 * cache_ms, not once per event.
 * An entry is used only while the epoch is the one read before its
 * lookup: a user who got a socket on a gateway since is seen at once. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <chat/presence.h>

#include "core/internal.h"

#define ROUTE_GATEWAYS_MAX 256
#define CACHE_SLOTS        1024 /* conversations remembered, direct-mapped */
#define CACHE_MS_DEFAULT   100

/* The live gateways of conv's members (when conv) and of extra[0..nextra)
 * into gw (ROUTE_GATEWAYS_MAX), their number into *ngw. CHAT_ELIMIT when
 * there are more gateways than that. */
static int locate(chat_store *store, chat_presence *presence, const char *conv,
                  const char *const *extra, int nextra, chat_id *gw, int *ngw)
{
    chat_member *members = NULL;
    const char **users = NULL;
    int nmembers = 0, nusers = 0, i, rc = CHAT_OK;

    *ngw = 0;
    if (conv) {
        members = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *members);
        if (members == NULL)
            return chat__error(CHAT_ENOMEM, "out of memory");
        rc = chat_store_conv_members(store, conv, members,
                                     CHAT_GROUP_MAX_MEMBERS, &nmembers);
        if (rc == CHAT_ENOTFOUND) {
            nmembers = 0; /* deleted meanwhile: only explicit recipients */
            rc = CHAT_OK;
        } else if (rc != CHAT_OK) {
            goto out;
        }
    }
    if (nmembers + nextra == 0)
        goto out;
    users = chat__calloc((size_t)(nmembers + nextra), sizeof *users);
    if (users == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < nmembers; i++)
        users[nusers++] = members[i].user_id;
    for (i = 0; i < nextra; i++)
        users[nusers++] = extra[i];
    rc = chat_presence_locate(presence, users, nusers, gw, ROUTE_GATEWAYS_MAX,
                              ngw);
out:
    chat__free(users);
    chat__free(members);
    return rc;
}

/* ev to each of gw[0..ngw) (one round trip), or to every gateway after
 * CHAT_ELIMIT. */
static int publish(chat_bus *bus, const chat_event *ev, int located,
                   const chat_id *gw, int ngw)
{
    const char *ids[ROUTE_GATEWAYS_MAX];
    int i;

    if (located == CHAT_ELIMIT) /* more gateways than we track: all */
        return chat_bus_publish(bus, ev);
    for (i = 0; i < ngw; i++)
        ids[i] = gw[i].id;
    return chat_bus_publish_each(bus, ids, ngw, ev);
}

int chat_fanout_route(chat_store *store, chat_presence *presence, chat_bus *bus,
                      const chat_event *ev)
{
    chat_id *gw;
    int ngw = 0, rc;

    CHAT_ASSERT_ARG(store && presence && bus && ev);
    if (ev->members_changed)
        return chat_bus_publish(bus, ev); /* every gateway's cache */
    gw = chat__calloc(ROUTE_GATEWAYS_MAX, sizeof *gw);
    if (gw == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    rc = locate(store, presence, ev->to_members ? ev->conversation_id : NULL,
                ev->recipients, ev->nrecipients, gw, &ngw);
    if (rc == CHAT_OK || rc == CHAT_ELIMIT)
        rc = publish(bus, ev, rc, gw, ngw);
    chat__free(gw);
    return rc;
}

/* ---- the cached router ------------------------------------------------------
 */

typedef struct slot {
    char conv[CHAT_ID_LEN + 1]; /* "" = empty */
    int64_t expires_us;
    int64_t epoch; /* the registry's, read before the lookup */
    int all;       /* more gateways than tracked: publish to every one */
    int ngw;
    chat_id *gw; /* ngw of them; owned */
} slot;

struct chat_fanout {
    chat_fanout_opts o;
    pthread_mutex_t lock;
    slot slots[CACHE_SLOTS];
    /* the last epoch read, and when it was asked for: it holds for every
     * event that had arrived by then */
    int64_t epoch, epoch_asked_us;
};

void chat_fanout_opts_init(chat_fanout_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_FANOUT_OPTS_VERSION;
    }
}

int chat_fanout_new(chat_fanout **out, const chat_fanout_opts *o)
{
    chat_fanout *f;

    CHAT_ASSERT_ARG(out && o && o->version >= 1);
    CHAT_ASSERT_ARG(o->store && o->presence && o->bus);
    *out = NULL;
    f = chat__calloc(1, sizeof *f);
    if (f == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    f->o = *o;
    if (f->o.cache_ms == 0)
        f->o.cache_ms = CACHE_MS_DEFAULT;
    pthread_mutex_init(&f->lock, NULL);
    *out = f;
    return CHAT_OK;
}

void chat_fanout_free(chat_fanout *f)
{
    int i;

    if (f == NULL)
        return;
    for (i = 0; i < CACHE_SLOTS; i++)
        chat__free(f->slots[i].gw);
    pthread_mutex_destroy(&f->lock);
    chat__free(f);
}

static slot *slot_of(chat_fanout *f, const char *conv)
{
    return &f->slots[chat__str_hash(conv) % CACHE_SLOTS];
}

/* A copy of conv's cached gateways into gw: 1 if there was one young
 * enough (*all, *ngw set), else 0. */
static int cache_get(chat_fanout *f, const char *conv, int64_t epoch,
                     chat_id *gw, int *ngw, int *all)
{
    slot *s;
    int hit;

    pthread_mutex_lock(&f->lock);
    s = slot_of(f, conv);
    hit = !strcmp(s->conv, conv) && s->epoch == epoch &&
          s->expires_us > chat__mono_us();
    if (hit) {
        *all = s->all;
        *ngw = s->ngw;
        if (s->ngw)
            memcpy(gw, s->gw, (size_t)s->ngw * sizeof *gw);
    }
    pthread_mutex_unlock(&f->lock);
    return hit;
}

static void cache_put(chat_fanout *f, const char *conv, int64_t epoch,
                      const chat_id *gw, int ngw, int all, int64_t born_us)
{
    chat_id *copy = NULL;
    slot *s;

    if (ngw > 0 && (copy = chat__malloc((size_t)ngw * sizeof *copy)) == NULL)
        return; /* not cached: the next event looks up again */
    if (ngw > 0)
        memcpy(copy, gw, (size_t)ngw * sizeof *copy);
    pthread_mutex_lock(&f->lock);
    s = slot_of(f, conv);
    chat__free(s->gw);
    snprintf(s->conv, sizeof s->conv, "%s", conv);
    s->expires_us = born_us + (int64_t)f->o.cache_ms * 1000;
    s->epoch = epoch;
    s->all = all;
    s->ngw = ngw;
    s->gw = copy;
    pthread_mutex_unlock(&f->lock);
}

static void cache_drop(chat_fanout *f, const char *conv)
{
    slot *s;

    pthread_mutex_lock(&f->lock);
    s = slot_of(f, conv);
    if (!strcmp(s->conv, conv))
        s->conv[0] = '\0';
    pthread_mutex_unlock(&f->lock);
}

/* The registry's epoch as of some moment after ev arrived. */
static int epoch_after(chat_fanout *f, const chat_event *ev, int64_t *epoch)
{
    int64_t asked;
    int rc;

    pthread_mutex_lock(&f->lock);
    if (ev->received_us > 0 && f->epoch_asked_us >= ev->received_us) {
        *epoch = f->epoch;
        pthread_mutex_unlock(&f->lock);
        return CHAT_OK;
    }
    pthread_mutex_unlock(&f->lock);
    asked = chat__mono_us();
    if ((rc = chat_presence_epoch(f->o.presence, epoch)) != CHAT_OK)
        return rc;
    pthread_mutex_lock(&f->lock);
    if (asked > f->epoch_asked_us) {
        f->epoch = *epoch;
        f->epoch_asked_us = asked;
    }
    pthread_mutex_unlock(&f->lock);
    return CHAT_OK;
}

int chat_fanout_event(chat_fanout *f, const chat_event *ev)
{
    chat_id *gw;
    int ngw = 0, all = 0, rc;
    int64_t born, epoch = 0;

    CHAT_ASSERT_ARG(f && ev);
    if (f->o.cache_ms < 0 || !ev->to_members || !ev->conversation_id ||
        ev->nrecipients > 0 || ev->members_changed ||
        epoch_after(f, ev, &epoch) != CHAT_OK) {
        if (ev->members_changed && ev->conversation_id)
            cache_drop(f, ev->conversation_id);
        return chat_fanout_route(f->o.store, f->o.presence, f->o.bus, ev);
    }
    gw = chat__calloc(ROUTE_GATEWAYS_MAX, sizeof *gw);
    if (gw == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (cache_get(f, ev->conversation_id, epoch, gw, &ngw, &all)) {
        rc = publish(f->o.bus, ev, all ? CHAT_ELIMIT : CHAT_OK, gw, ngw);
    } else {
        born = chat__mono_us(); /* the age counts from before the lookup */
        rc = locate(f->o.store, f->o.presence, ev->conversation_id, NULL, 0, gw,
                    &ngw);
        if (rc == CHAT_OK || rc == CHAT_ELIMIT) {
            cache_put(f, ev->conversation_id, epoch, gw, ngw, rc == CHAT_ELIMIT,
                      born);
            rc = publish(f->o.bus, ev, rc, gw, ngw);
        }
    }
    chat__free(gw);
    return rc;
}
