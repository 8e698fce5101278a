/**
 * @file chat/chat.h
 * @brief libchat umbrella header: include this one.
 */
#ifndef CHAT_CHAT_H
#define CHAT_CHAT_H

#include <chat/common.h>
#include <chat/version.h>
#include <chat/errors.h>
#include <chat/limits.h>
#include <chat/core.h>
#include <chat/auth.h>
#include <chat/store.h>
#include <chat/bus.h>
#include <chat/presence.h>
#include <chat/server.h>
#include <chat/client.h>

#endif /* CHAT_CHAT_H */
