#include <chat/version.h>

const char *chat_version(void)
{
    return CHAT_VERSION_STRING;
}

unsigned chat_version_number(void)
{
    return CHAT_VERSION_NUMBER;
}
