/* Shared by the message log backends. */
#include <string.h>

#include "store/log_util.h"

int chat__append_req_new(const chat_append *req, chat_append_cb cb,
                         void *userdata, int can_check_member, int text_only,
                         chat__append_req **out)
{
    size_t cmlen = req->client_msg_id ? strlen(req->client_msg_id) : 0;
    chat__append_req *p;

    if (req->content_len == 0 || req->content_len > CHAT_MESSAGE_MAX_BYTES)
        return chat__error(CHAT_EINVAL, "content must be 1 to %d bytes",
                           CHAT_MESSAGE_MAX_BYTES);
    if (!chat_utf8_valid(req->content, req->content_len) ||
        (text_only && memchr(req->content, '\0', req->content_len)))
        return chat__error(CHAT_EINVAL, "content is not valid UTF-8 text");
    if (strlen(req->conversation_id) != CHAT_ID_LEN ||
        strlen(req->sender_id) != CHAT_ID_LEN)
        return chat__error(CHAT_EINVAL, "ids must be UUIDs");
    if (req->require_member && !can_check_member)
        return chat__error(CHAT_EINVAL, "this log cannot check membership");
    if ((req->client_msg_id && cmlen == 0) || cmlen > CHAT_CLIENT_MSG_ID_MAX)
        return chat__error(CHAT_EINVAL, "client_msg_id must be 1 to %d bytes",
                           CHAT_CLIENT_MSG_ID_MAX);
    p = chat__malloc(sizeof *p + req->content_len + 1);
    if (p == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    memset(p, 0, sizeof *p);
    p->cb = cb;
    p->userdata = userdata;
    chat__ascii_lower(p->conv, req->conversation_id, sizeof p->conv);
    chat__ascii_lower(p->sender, req->sender_id, sizeof p->sender);
    if (cmlen)
        memcpy(p->cmid, req->client_msg_id, cmlen + 1);
    p->require_member = req->require_member;
    p->len = req->content_len;
    memcpy(p->content, req->content, req->content_len);
    p->content[p->len] = '\0';
    *out = p;
    return CHAT_OK;
}

void chat__append_queue_init(chat__append_queue *q)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
}

void chat__append_queue_destroy(chat__append_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

int chat__append_queue_push(chat__append_queue *q, chat__append_req *p)
{
    pthread_mutex_lock(&q->lock);
    if (q->closing) {
        pthread_mutex_unlock(&q->lock);
        chat__free(p);
        return chat__error(CHAT_ECLOSED, "message log is closing");
    }
    if (q->tail)
        q->tail->next = p;
    else
        q->head = p;
    q->tail = p;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return CHAT_OK;
}

chat__append_req *chat__append_queue_take(chat__append_queue *q, int max)
{
    chat__append_req *batch, *p;
    int n;

    pthread_mutex_lock(&q->lock);
    while (q->head == NULL && !q->closing)
        pthread_cond_wait(&q->cond, &q->lock);
    batch = q->head;
    if (batch) {
        for (p = batch, n = 1; p->next && n < max; p = p->next)
            n++;
        q->head = p->next;
        if (q->head == NULL)
            q->tail = NULL;
        p->next = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    return batch;
}

void chat__append_queue_close(chat__append_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closing = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

void chat__append_req_finish(chat__append_req *p)
{
    if (p->rc == CHAT_EPERM)
        chat__error(p->rc, "not a member of this conversation");
    else if (p->rc == CHAT_ENOTFOUND)
        chat__error(p->rc, "no such conversation");
    p->cb(p->rc, p->rc == CHAT_OK ? &p->msg : NULL, p->created, p->userdata);
    chat__free(p);
}

unsigned chat__conv_shard(const char *conv, unsigned n)
{
    return n ? chat__str_hash(conv) % n : 0;
}

void chat__messages_reverse(chat_message *m, int n)
{
    for (int i = 0; i < n / 2; i++) {
        chat_message t = m[i];
        m[i] = m[n - 1 - i];
        m[n - 1 - i] = t;
    }
}
