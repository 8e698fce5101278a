/* Shared helpers of the client's network edge (net.h). */
#include "client/net.h"

void chat__net_input_free(chat__net_input *in)
{
    if (in == NULL)
        return;
    chat__free(in->body);
    chat__free(in->name);
    cJSON_Delete(in->data);
    chat__free(in);
}
