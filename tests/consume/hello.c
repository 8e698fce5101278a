/* A program outside the tree, built against the installed libchat. */
#include <stdio.h>
#include <string.h>

#include <chat/chat.h>

int main(void)
{
    char id[CHAT_ID_LEN + 1];

    if (chat_uuid_v7(id) != CHAT_OK || !chat_uuid_valid(id))
        return 1;
    if (strcmp(chat_version(), CHAT_VERSION_STRING) != 0)
        return 1;
    printf("libchat %s id %s\n", chat_version(), id);
    return 0;
}
