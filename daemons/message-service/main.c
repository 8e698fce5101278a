/* message-service: The ordered message log: /api/messages (send, history, full
 * content). */
#include <chat/chat.h>

#include "common/service.h"

int main(int argc, char **argv)
{
    static const service_def def = {
        "message-service",
        "The ordered message log: /api/messages (send, history, full content).",
        CHAT_SERVICE_MESSAGES,
        3003,
        1,
        1,
        0};

    return service_main(&def, argc, argv);
}
