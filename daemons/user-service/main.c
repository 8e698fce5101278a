/* user-service: Accounts and sessions: /api/users (register, login, refresh,
 * logout, me, lookup, search). */
#include <chat/chat.h>

#include "common/service.h"

int main(int argc, char **argv)
{
    static const service_def def = {
        "user-service",
        "Accounts and sessions: /api/users (register, login, refresh, logout, "
        "me, lookup, search).",
        CHAT_SERVICE_USERS,
        3001,
        0,
        0,
        0};

    return service_main(&def, argc, argv);
}
