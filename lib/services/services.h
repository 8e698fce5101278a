/*
 * The three REST services (users, chats, messages) on the HTTP front end.
 * Handlers run on worker threads and may block on the store.
 */
#ifndef CHAT_SERVICES_H
#define CHAT_SERVICES_H

#include <chat/auth.h>
#include <chat/bus.h>
#include <chat/server.h>
#include <chat/store.h>

#include "http/http.h"

typedef struct chat__svc {
    chat__http *http;
    chat_store *store;
    chat_log *log;
    chat_bus *bus;           /* NULL: nobody listens */
    chat_presence *presence; /* NULL: one gateway (chatd) */
    const uint8_t *jwt_key;  /* owned by the server */
    size_t jwt_key_len;
    int access_ttl_s;
    int refresh_ttl_s;
    chat__rate rate_login_ip;
    chat__rate rate_login_account;
    chat__rate rate_send;
} chat__svc;

int chat__users_mount(chat__svc *svc);
int chat__chats_mount(chat__svc *svc);
int chat__messages_mount(chat__svc *svc);

/* ---- events (events.c) ------------------------------------------------------
 */

void chat__svc_publish(chat__svc *svc, const chat_event *ev);
/* After an append is durable (any thread): touch the conversation when
 * the log does not, and publish message:new when created. */
void chat__svc_message_stored(chat__svc *svc, const chat_message *m,
                              int created);
void chat__svc_publish_read(chat__svc *svc, const char *conv_id,
                            const char *user_id, int64_t seq);
/* conversation:updated: action is "created", "member_added",
 * "member_left" or "member_removed"; member the user concerned (or NULL). */
void chat__svc_publish_conv(chat__svc *svc, const char *conv_id,
                            const char *action, const char *actor,
                            const char *member);

/* ---- shared by the services (common.c) ------------------------------------
 */

/* The user as others see it; with_email for the user themself. */
cJSON *chat__json_user(const chat_user *u, int with_email);
/* A message preview (the message:new shape), written straight into b
 * without building a cJSON tree: sends and history pages are the hot
 * paths. content (may be NULL) adds the "content" field. */
int chat__json_put_message(chat__buf *b, const chat_message *m,
                           const char *content);
/* Append s as a quoted, escaped JSON string. */
int chat__json_put_str(chat__buf *b, const char *s);
/* A conversation seen by its viewer; members may be NULL. */
cJSON *chat__json_conv(const chat_conv *c, const chat_member *members,
                       int nmembers);
cJSON *chat__json_member(const chat_member *m);
/* Add an RFC 3339 time field; returns 0 on failure like cJSON_Add*. */
int chat__json_add_time(cJSON *o, const char *key, int64_t ms);

/* String field of 1..max bytes. Returns NULL when absent (and then, if
 * required, answers 422) or invalid (answers 400/422): after NULL, a
 * non-zero r->status means the request has been answered. */
const char *chat__field_str(chat__req *r, const cJSON *obj, const char *key,
                            size_t max, int required);
/* Load conversation id for the requesting user into c (may be NULL).
 * Answers 404 (no such conversation) or 403 (not a member) and returns
 * non-zero when the user may not see it. */
int chat__svc_conv(chat__svc *svc, chat__req *r, const char *id, chat_conv *c);
/* A path parameter that must be a UUID; answers 404 and returns NULL. */
const char *chat__param_id(chat__req *r, int i, const char *what);

#endif /* CHAT_SERVICES_H */
