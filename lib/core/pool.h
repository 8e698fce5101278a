/*
 * A fixed pool of worker threads running intrusive tasks. Used wherever
 * blocking work (SQLite, argon2id, later libpq/hiredis) must stay off an
 * event loop. Tasks are embedded in the caller's objects: submitting never
 * allocates.
 */
#ifndef CHAT_CORE_POOL_H
#define CHAT_CORE_POOL_H

#include <stddef.h>

typedef struct chat__pool chat__pool;
typedef struct chat__task chat__task;
typedef void (*chat__task_fn)(chat__task *t);

struct chat__task {
    chat__task_fn fn;
    chat__task *next;
};

/* Start n threads (1..64) named "<name>-<i>". */
int chat__pool_new(chat__pool **out, int n, const char *name);
/* Queue t; CHAT_ECLOSED once the pool is stopping. Thread-safe. */
int chat__pool_submit(chat__pool *p, chat__task *t);
/* Tasks queued and not yet started. */
size_t chat__pool_pending(chat__pool *p);
/* Run every queued task, then join the threads and free. NULL is fine. */
void chat__pool_free(chat__pool *p);

#endif
