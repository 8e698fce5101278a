/*
 * Inside the client: the chat_client struct shared by client.c (API,
 * loop, requests, session) and sync.c (catch-up, live events, outbox).
 * Everything here runs on the application's thread except the inbox,
 * which the network threads fill under `lock`.
 */
#ifndef CHAT_CLIENT_INT_H
#define CHAT_CLIENT_INT_H

#include <pthread.h>

#include <chat/client.h>

#include "client/cache.h"
#include "client/net.h"

/* What a request is for: its answer handler in client.c or sync.c. */
enum {
    CREQ_REGISTER = 1,
    CREQ_LOGIN,
    CREQ_LOGOUT,
    CREQ_REFRESH,
    CREQ_USERS,
    CREQ_USER,
    CREQ_CONV_CREATE, /* DM or group */
    CREQ_INVITE,
    CREQ_REMOVE,
    CREQ_HISTORY,
    CREQ_CONTENT,
    CREQ_READ,
    /* internal, no user callback */
    CREQ_SYNC_LIST, /* a page of the conversation list */
    CREQ_SYNC_CONV, /* one conversation with members */
    CREQ_CATCHUP,   /* messages after synced_seq */
    CREQ_SEND,      /* an outbox item */
    CREQ_READ_PUSH, /* a read marker kept in the cache */
};

typedef struct creq {
    struct creq *next;
    int64_t id;
    int kind;
    int auth;    /* sends the access token */
    int retried; /* already replayed once after a refresh */
    int parked;  /* waiting for a refresh to finish */
    chat_client_done_fn done;
    void *ud;
    char *method, *path, *body;
    char conv[CHAT_ID_LEN + 1];
    char arg[CHAT_CLIENT_MSG_ID_MAX + 1]; /* user id, client_msg_id, action */
    char actor[CHAT_ID_LEN + 1];
    char user[CHAT_ID_LEN + 1];
    int64_t n;
} creq;

/* Per conversation, in memory: catch-up requests in flight. */
typedef struct csync {
    struct csync *next;
    char id[CHAT_ID_LEN + 1];
    int fetching; /* a CREQ_CATCHUP is in flight */
    int again;    /* something arrived meanwhile: fetch once more */
    int sending;  /* a CREQ_SEND is in flight */
    int stale;    /* a catch-up failed; retried on the sync timer */
    int pushing;  /* read markers in flight (CREQ_READ, CREQ_READ_PUSH) */
} csync;

#define CLIENT_DONE_RING 64

struct chat_client {
    chat_client_opts opts;
    chat__log_scope log_scope; /* opts.log_fn's; fn NULL: the process's */
    char *base_url, *cache_path, *ca_file;
    chat__cache *cache;

    const chat__net_ops *ops;
    void *net;

    int efd; /* eventfd: readable while the inbox has input or on wakeup */
    pthread_mutex_t lock;
    chat__net_input *inbox, *inbox_tail; /* under lock */
    volatile int stop_flag;              /* chat_client_stop */

    /* session */
    char *user_id, *access, *refresh;
    int64_t access_exp_ms;
    int online; /* Socket.IO namespace connected */
    int refreshing;
    int64_t refresh_retry_at;
    int refresh_backoff_ms;

    creq *reqs;
    int64_t next_id;
    struct {
        int64_t id;
        int code;
    } done_ring[CLIENT_DONE_RING];
    unsigned done_pos;
    uint64_t callbacks; /* callbacks run, for chat_client_process */

    /* sync */
    csync *convs;
    int syncing;    /* a full sync runs; SYNCED when sync_ops drops to 0 */
    int sync_ops;   /* sync requests in flight */
    int sync_again; /* a (re)connect came during a sync: run another */
    char **seen;    /* conversations listed by the server during a sync */
    size_t seen_n, seen_cap;
    int64_t sync_retry_at;

    /* outbox */
    int64_t outbox_retry_at;
    int outbox_backoff_ms;

    /* read markers to push (conversations.read_push) */
    int64_t read_retry_at;
    int read_backoff_ms;
};

/* client.c */
int64_t chat__client_request(chat_client *c, int kind, const char *method,
                             const char *path, const cJSON *body, int auth,
                             chat_client_done_fn done, void *ud, creq **out);
void chat__client_emit(chat_client *c, const chat_client_event *ev);
int chat__client_http_code(int status, const char *error_code);
void chat__client_jitter_backoff(int *backoff_ms, int64_t *at);

/* sync.c */
void chat__sync_start(chat_client *c);
void chat__sync_ws(chat_client *c, chat__net_input *in);
int chat__sync_answer(chat_client *c, creq *r, int code, const cJSON *json);
void chat__sync_timers(chat_client *c, int64_t now);
int64_t chat__sync_next_timer(const chat_client *c);
void chat__outbox_kick(chat_client *c);
void chat__read_kick(chat_client *c);
/* PUT a read marker: CREQ_READ (the caller's) or CREQ_READ_PUSH. */
int64_t chat__read_send(chat_client *c, int kind, const char *conv, int64_t seq,
                        chat_client_done_fn done, void *ud);
void chat__read_retry_later(chat_client *c);
void chat__sync_reset(chat_client *c);

/* For tests: a client over a scripted net (see tests/unit/check_client.c).
 * net_input records are handed in with chat__client_post from any thread. */
int chat__client_new_with_net(chat_client **out, const chat_client_opts *opts,
                              const chat__net_ops *ops, void *net);
void chat__client_post(chat__net_input *in, void *client);

#endif /* CHAT_CLIENT_INT_H */
