/* Worker pool: one mutex-protected FIFO, n threads. */
#include <pthread.h>
#include <stdio.h>

#include "core/internal.h"
#include "core/pool.h"

struct chat__pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chat__task *head, *tail;
    size_t pending;
    int stopping;
    int nthreads;
    pthread_t threads[];
};

static void *worker_main(void *arg)
{
    chat__pool *p = arg;
    chat__task *t;

    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        t = p->head;
        if (t == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = t->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->pending--;
        pthread_mutex_unlock(&p->lock);
        t->next = NULL;
        t->fn(t);
    }
}

int chat__pool_new(chat__pool **out, int n, const char *name)
{
    chat__pool *p;
    char tname[16];
    int i;

    CHAT_ASSERT_ARG(out != NULL && n >= 1 && n <= 64);
    p = chat__calloc(1, sizeof *p + (size_t)n * sizeof(pthread_t));
    if (p == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            chat__pool_free(p);
            return chat__error(CHAT_ERROR, "cannot start worker thread");
        }
        p->nthreads++;
        snprintf(tname, sizeof tname, "%.10s-%d", name ? name : "pool", i);
        pthread_setname_np(p->threads[i], tname);
    }
    *out = p;
    return CHAT_OK;
}

int chat__pool_submit(chat__pool *p, chat__task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return chat__error(CHAT_ECLOSED, "worker pool is stopping");
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    p->pending++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return CHAT_OK;
}

size_t chat__pool_pending(chat__pool *p)
{
    size_t n;

    pthread_mutex_lock(&p->lock);
    n = p->pending;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void chat__pool_free(chat__pool *p)
{
    int i;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    chat__free(p);
}
