/* realtime-gateway: Socket.IO v4 gateway at /socket.io/ and /ws/socket.io/:
 * live events to connected clients. */
#include <chat/chat.h>

#include "common/service.h"

int main(int argc, char **argv)
{
    static const service_def def = {
        "realtime-gateway",
        "Socket.IO v4 gateway at /socket.io/ and /ws/socket.io/: live events "
        "to connected clients.",
        CHAT_SERVICE_REALTIME,
        3004,
        1,
        1,
        0};

    return service_main(&def, argc, argv);
}
