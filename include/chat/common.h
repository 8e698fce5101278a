/**
 * @file chat/common.h
 * @brief Export and attribute macros shared by every libchat header.
 */
#ifndef CHAT_COMMON_H
#define CHAT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(CHAT_BUILDING)
#define CHAT_API __declspec(dllexport)
#else
#define CHAT_API
#endif
#elif defined(__GNUC__)
#define CHAT_API __attribute__((visibility("default")))
#else
#define CHAT_API
#endif

#if defined(__GNUC__)
#define CHAT_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define CHAT_WARN_UNUSED
#endif

#ifdef __cplusplus
#define CHAT_BEGIN_DECLS extern "C" {
#define CHAT_END_DECLS   }
#else
#define CHAT_BEGIN_DECLS
#define CHAT_END_DECLS
#endif

#endif /* CHAT_COMMON_H */
