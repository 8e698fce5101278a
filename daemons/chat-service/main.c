/* chat-service: Conversations, memberships and read states: /api/chats. */
#include <chat/chat.h>

#include "common/service.h"

int main(int argc, char **argv)
{
    static const service_def def = {
        "chat-service",
        "Conversations, memberships and read states: /api/chats.",
        CHAT_SERVICE_CHATS,
        3002,
        0,
        1,
        0};

    return service_main(&def, argc, argv);
}
