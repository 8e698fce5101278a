/* Where a Redis server is and how to open an authenticated connection to
 * it: shared by the Redis bus and the Redis presence registry. */
#ifndef CHAT_BUS_REDIS_CONN_H
#define CHAT_BUS_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <sys/time.h>

typedef struct chat__redis_target {
    char host[256];
    int port;
    char *password; /* NULL: no AUTH */
    struct timeval timeout;
} chat__redis_target;

/* redis://[:password@]host[:port] (NULL or "": redis://127.0.0.1:6379)
 * and a connect/command timeout (<= 0: 2000 ms) into t. CHAT_OK,
 * CHAT_EINVAL or CHAT_ENOMEM; t needs chat__redis_target_free after. */
int chat__redis_target_parse(chat__redis_target *t, const char *url,
                             int timeout_ms);
void chat__redis_target_free(chat__redis_target *t);

/* A connected, authenticated context with t's timeout; NULL and the last
 * error (CHAT_EUNAVAIL, CHAT_EAUTH, CHAT_ENOMEM) if not. */
redisContext *chat__redis_connect(const chat__redis_target *t);

#endif /* CHAT_BUS_REDIS_CONN_H */
