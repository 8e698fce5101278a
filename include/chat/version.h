/**
 * @file chat/version.h
 * @brief Compile-time and run-time version of libchat.
 */
#ifndef CHAT_VERSION_H
#define CHAT_VERSION_H

#include <chat/common.h>

#define CHAT_VERSION_MAJOR  0
#define CHAT_VERSION_MINOR  1
#define CHAT_VERSION_PATCH  0
#define CHAT_VERSION_STRING "0.1.0"
/** Single number for comparisons: 0xMMmmpp. */
#define CHAT_VERSION_NUMBER                                                    \
    ((CHAT_VERSION_MAJOR << 16) | (CHAT_VERSION_MINOR << 8) |                  \
     CHAT_VERSION_PATCH)

CHAT_BEGIN_DECLS

/**
 * Version of the linked library, e.g. "0.1.0".
 *
 * @return a static string; never NULL, never freed. Thread-safe.
 */
CHAT_API const char *chat_version(void);

/** CHAT_VERSION_NUMBER of the linked library. Thread-safe. */
CHAT_API unsigned chat_version_number(void);

CHAT_END_DECLS

#endif /* CHAT_VERSION_H */
