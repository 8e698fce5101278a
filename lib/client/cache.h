/*
 * The client's local SQLite cache: session, users, conversations with
 * members and sync positions, messages with an FTS5 index, and the
 * outbox. Only the thread that owns the chat_client touches it.
 *
 * Sync positions, per conversation:
 *   base_seq      messages at or below it were never asked for (history
 *                 depth); fetch_history can still bring them in
 *   synced_seq    every seq in (base_seq, synced_seq] is in the cache
 *   delivered_seq every seq up to it went through CHAT_CLIENT_EVENT_MESSAGE
 *   server_seq    the newest seq the server is known to have
 */
#ifndef CHAT_CLIENT_CACHE_H
#define CHAT_CLIENT_CACHE_H

#include <sqlite3.h>

#include <cjson/cJSON.h>

#include <chat/client.h>

#include "core/internal.h"

typedef struct chat__cache chat__cache;

typedef struct chat__conv_pos {
    int64_t base_seq;
    int64_t synced_seq;
    int64_t delivered_seq;
    int64_t server_seq;
    int64_t read_seq;
    int left;
    int64_t read_push; /* your read marker still to reach the server, or 0 */
} chat__conv_pos;

/* A read marker to tell the server. */
typedef struct chat__read_push {
    char conversation_id[CHAT_ID_LEN + 1];
    int64_t seq;
} chat__read_push;

/* A row of the outbox. */
typedef struct chat__outbox_item {
    int64_t id;
    char client_msg_id[CHAT_CLIENT_MSG_ID_MAX + 1];
    char conversation_id[CHAT_ID_LEN + 1];
    char *content; /* owned */
    int64_t created_at_ms;
    int state; /* chat_msg_state */
} chat__outbox_item;

int chat__cache_open(chat__cache **out, const char *path);
void chat__cache_close(chat__cache *c);
sqlite3 *chat__cache_db(chat__cache *c);
/* Keep at most n prepared statements (tests: the path of a full cache). */
void chat__cache_stmt_limit(chat__cache *c, size_t n);

int chat__cache_begin(chat__cache *c);
int chat__cache_commit(chat__cache *c);
void chat__cache_rollback(chat__cache *c);

/* meta: the session and settings; *val owned by the caller (NULL when
 * absent). Setting NULL deletes. */
int chat__cache_meta_get(chat__cache *c, const char *key, char **val);
int chat__cache_meta_set(chat__cache *c, const char *key, const char *val);
/* Forget everything but the schema (another user or server). */
int chat__cache_wipe(chat__cache *c);

int chat__cache_user_put(chat__cache *c, const char *id, const char *username,
                         const char *email);
int chat__cache_user_get(chat__cache *c, const char *id, chat_client_user *out);

/* Upsert a conversation from the server's JSON (list or single form, with
 * or without members); seqs only move forward. A conversation seen for
 * the first time starts its positions at max(0, last_seq - depth) (depth
 * 0 = from the start). *is_new says whether it was unknown. */
int chat__cache_conv_put(chat__cache *c, const cJSON *conv, int64_t depth,
                         int *is_new);
int chat__cache_conv_pos(chat__cache *c, const char *id, chat__conv_pos *pos);
int chat__cache_conv_server_seq(chat__cache *c, const char *id, int64_t seq);
int chat__cache_conv_read(chat__cache *c, const char *id, int64_t seq);
/* chat_client_mark_read: move your read marker (forward only, never past
 * the newest message known) and remember to push it to the server. */
int chat__cache_read_mark(chat__cache *c, const char *id, int64_t seq);
/* The server holds a read marker >= seq: nothing up to it is left to push. */
int chat__cache_read_acked(chat__cache *c, const char *id, int64_t seq);
/* Read markers to push, of conversations still joined, up to max. */
int chat__cache_read_pushes(chat__cache *c, chat__read_push *items, size_t max,
                            size_t *n);
int chat__cache_conv_left(chat__cache *c, const char *id);
int chat__cache_member_read(chat__cache *c, const char *conv, const char *user,
                            int64_t seq);
/* Ids of the conversations still joined (owned array of owned strings). */
int chat__cache_conv_ids(chat__cache *c, char ***ids, size_t *n);

/* Insert a message from the server's JSON (preview form, or full when it
 * has "content"; full_text overrides). Known ones only gain full text.
 * Like the server, it raises the sender's read marker to the message (the
 * member row, and the conversation's read_seq when the sender is you). */
int chat__cache_msg_put(chat__cache *c, const cJSON *msg,
                        const char *full_text);
/* Move synced_seq over the contiguous messages now cached. */
int chat__cache_advance(chat__cache *c, const char *conv, int64_t *synced);
/* Messages in (delivered_seq, synced_seq], in order, for the event
 * callback; then chat__cache_delivered moves delivered_seq. */
int chat__cache_undelivered(chat__cache *c, const char *conv, int limit,
                            chat_client_message_list *out);
int chat__cache_delivered(chat__cache *c, const char *conv, int64_t seq);
int chat__cache_msg_get(chat__cache *c, const char *message_id,
                        chat_client_message_list *out);

int chat__cache_outbox_add(chat__cache *c, const char *conv, const char *text,
                           const char *client_msg_id, int64_t now_ms);
/* The oldest pending item of each conversation not in busy (NULL-terminated
 * list of conversation ids being sent), up to max. */
int chat__cache_outbox_next(chat__cache *c, chat__outbox_item *items,
                            size_t max, size_t *n);
int chat__cache_outbox_get(chat__cache *c, const char *client_msg_id,
                           chat__outbox_item *item);
int chat__cache_outbox_done(chat__cache *c, const char *client_msg_id);
int chat__cache_outbox_fail(chat__cache *c, const char *client_msg_id,
                            const char *error);
void chat__outbox_item_clear(chat__outbox_item *it);

/* The reads behind the public API. */
int chat__cache_conversations(chat__cache *c,
                              chat_client_conversation_list *out);
int chat__cache_conversation(chat__cache *c, const char *id,
                             chat_client_conversation **out);
int chat__cache_history(chat__cache *c, const char *conv, int64_t before_seq,
                        int limit, chat_client_message_list *out);
int chat__cache_history_after(chat__cache *c, const char *conv,
                              int64_t after_seq, int limit,
                              chat_client_message_list *out);
int chat__cache_search(chat__cache *c, const char *query, const char *conv,
                       int limit, chat_client_message_list *out);

#endif /* CHAT_CLIENT_CACHE_H */
