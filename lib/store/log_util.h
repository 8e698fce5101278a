/* What every message log backend shares: the checked copy of an append
 * that waits in a queue, the choice of queue per conversation, and the
 * answer once it is stored. */
#ifndef CHAT_STORE_LOG_UTIL_H
#define CHAT_STORE_LOG_UTIL_H

#include <pthread.h>

#include <chat/store.h>

#include "core/internal.h"

typedef struct chat__append_req {
    struct chat__append_req *next;
    chat_append_cb cb;
    void *userdata;
    char conv[CHAT_ID_LEN + 1];            /* lowercase */
    char sender[CHAT_ID_LEN + 1];          /* lowercase */
    char cmid[CHAT_CLIENT_MSG_ID_MAX + 1]; /* "" = none */
    int require_member;
    int order; /* place in its batch, for stable sorts */
    size_t len;
    /* the result, set by the backend */
    int rc;
    int created;
    chat_message msg;
    char content[]; /* len bytes + NUL */
} chat__append_req;

/* Check req as chat_log_append() documents it and copy it. can_check_member:
 * the log shares the store's transaction; text_only: the backend cannot
 * store NUL bytes. CHAT_OK and *out (free with chat__free), or
 * CHAT_EINVAL/CHAT_ENOMEM with the last error set. */
int chat__append_req_new(const chat_append *req, chat_append_cb cb,
                         void *userdata, int can_check_member, int text_only,
                         chat__append_req **out);

/* A FIFO of appends waiting for one writer thread. */
typedef struct chat__append_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chat__append_req *head, *tail;
    int closing;
} chat__append_queue;

void chat__append_queue_init(chat__append_queue *q);
/* No thread may still use q. */
void chat__append_queue_destroy(chat__append_queue *q);
/* Queue p; CHAT_ECLOSED (p freed) once the queue is closing. */
int chat__append_queue_push(chat__append_queue *q, chat__append_req *p);
/* Wait for appends and take up to max of them, in order (a list through
 * next). NULL once the queue is closing and drained. */
chat__append_req *chat__append_queue_take(chat__append_queue *q, int max);
/* Refuse new appends and wake the writer; what is queued is still taken. */
void chat__append_queue_close(chat__append_queue *q);

/* Answer p (its rc, created and msg) through its callback and free it. */
void chat__append_req_finish(chat__append_req *p);

/* Which of n queues conv's appends go to: always the same one, so one
 * conversation's appends keep their order. */
unsigned chat__conv_shard(const char *conv, unsigned n);

/* Reverse m[0..n): pages read newest first are returned ascending. */
void chat__messages_reverse(chat_message *m, int n);

#endif /* CHAT_STORE_LOG_UTIL_H */
