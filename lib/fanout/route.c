/* Routing an event to the gateways of its recipients (chat/presence.h).
 *
 * Runs on the fanout-worker's consumer thread: one members query, one
 * pipelined presence lookup, one PUBLISH per gateway that has a
 * recipient. */
#include <string.h>

#include <chat/presence.h>

#include "core/internal.h"

#define ROUTE_GATEWAYS_MAX 256

int chat_fanout_route(chat_store *store, chat_presence *presence, chat_bus *bus,
                      const chat_event *ev)
{
    chat_member *members = NULL;
    const char **users = NULL;
    chat_id gw[ROUTE_GATEWAYS_MAX];
    int nmembers = 0, nusers = 0, ngw = 0, i, rc;

    CHAT_ASSERT_ARG(store && presence && bus && ev);
    if (ev->members_changed)
        return chat_bus_publish(bus, ev); /* every gateway's cache */
    if (ev->to_members && ev->conversation_id) {
        members = chat__calloc(CHAT_GROUP_MAX_MEMBERS, sizeof *members);
        if (members == NULL)
            return chat__error(CHAT_ENOMEM, "out of memory");
        rc = chat_store_conv_members(store, ev->conversation_id, members,
                                     CHAT_GROUP_MAX_MEMBERS, &nmembers);
        if (rc == CHAT_ENOTFOUND)
            nmembers = 0; /* deleted meanwhile: only explicit recipients */
        else if (rc != CHAT_OK)
            goto out;
    }
    rc = CHAT_OK;
    if (nmembers + ev->nrecipients == 0)
        goto out;
    users = chat__calloc((size_t)(nmembers + ev->nrecipients), sizeof *users);
    if (users == NULL) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < nmembers; i++)
        users[nusers++] = members[i].user_id;
    for (i = 0; i < ev->nrecipients; i++)
        users[nusers++] = ev->recipients[i];
    rc = chat_presence_locate(presence, users, nusers, gw, ROUTE_GATEWAYS_MAX,
                              &ngw);
    if (rc == CHAT_ELIMIT) {
        /* more gateways than we track: let every gateway have it */
        rc = chat_bus_publish(bus, ev);
        goto out;
    }
    for (i = 0; rc == CHAT_OK && i < ngw; i++)
        rc = chat_bus_publish_to(bus, gw[i].id, ev);
out:
    chat__free(users);
    chat__free(members);
    return rc;
}
