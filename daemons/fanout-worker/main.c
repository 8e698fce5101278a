/* fanout-worker: consumes the services' events from Kafka in a consumer
 * group and hands them to the realtime gateways over Redis, committing
 * each record's offset only after it was handed on. */
#include <chat/chat.h>

#include "common/service.h"

int main(int argc, char **argv)
{
    static const service_def def = {
        "fanout-worker",
        "Routes events from Kafka (chat.messages, chat.events) to the "
        "realtime gateways over Redis; offsets are committed after routing.",
        CHAT_SERVICE_NONE,
        3005,
        0,
        0,
        1};

    return service_main(&def, argc, argv);
}
