/* The presence registry interface (chat/presence.h); backends are
 * presence_<name>.c. */
#include <chat/presence.h>

#include "core/internal.h"

int chat_presence_set(chat_presence *p, const char *user_id, int online)
{
    CHAT_ASSERT_ARG(p && user_id);
    return p->ops->set(p, user_id, online);
}

int chat_presence_locate(chat_presence *p, const char *const *user_ids, int n,
                         chat_id *gateways, int max, int *ngateways)
{
    CHAT_ASSERT_ARG(p && (user_ids || n == 0) && n >= 0 && gateways &&
                    max > 0 && ngateways);
    *ngateways = 0;
    return p->ops->locate(p, user_ids, n, gateways, max, ngateways);
}

int chat_presence_epoch(chat_presence *p, int64_t *epoch)
{
    CHAT_ASSERT_ARG(p && epoch);
    if (p->ops->epoch == NULL)
        return chat__error(CHAT_EINVAL, "the %s registry has no epoch",
                           p->ops->name);
    return p->ops->epoch(p, epoch);
}

const char *chat_presence_gateway_id(const chat_presence *p)
{
    return p ? p->gateway_id : "";
}

void chat_presence_free(chat_presence *p)
{
    if (p)
        p->ops->free(p);
}
