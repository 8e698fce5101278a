/* Public entry points of the store and log interfaces: argument checks,
 * then the backend's vtable. */
#include <pthread.h>
#include <string.h>

#include <chat/store.h>

#include "core/internal.h"

const char *chat_role_name(int role)
{
    switch (role) {
    case CHAT_ROLE_MEMBER:
        return "member";
    case CHAT_ROLE_ADMIN:
        return "admin";
    case CHAT_ROLE_OWNER:
        return "owner";
    default:
        return NULL;
    }
}

void chat_sqlite_opts_init(chat_sqlite_opts *o)
{
    static const chat_sqlite_opts d = CHAT_SQLITE_OPTS_INIT;

    if (o)
        *o = d;
}

void chat_store_free(chat_store *s)
{
    if (s)
        s->ops->free(s);
}

int chat_store_user_create(chat_store *s, const chat_user *u)
{
    CHAT_ASSERT_ARG(s && u && u->id[0] && u->email[0] && u->username[0]);
    return s->ops->user_create(s, u);
}

int chat_store_user_get(chat_store *s, const char *id, chat_user *out)
{
    CHAT_ASSERT_ARG(s && id && out);
    return s->ops->user_get(s, id, out);
}

int chat_store_user_find_login(chat_store *s, const char *login, chat_user *out)
{
    CHAT_ASSERT_ARG(s && login && out);
    return s->ops->user_find_login(s, login, out);
}

int chat_store_user_search(chat_store *s, const char *prefix, int limit,
                           chat_user *out, int *n)
{
    CHAT_ASSERT_ARG(s && prefix && out && n);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_SEARCH_MAX);
    return s->ops->user_search(s, prefix, limit, out, n);
}

int chat_store_token_insert(chat_store *s, const chat_refresh_rec *r)
{
    CHAT_ASSERT_ARG(s && r && r->user_id[0] && r->family_id[0]);
    return s->ops->token_insert(s, r);
}

int chat_store_token_rotate(chat_store *s, const uint8_t old_hash[32],
                            const uint8_t new_hash[32], int64_t new_expires_at,
                            int64_t now, chat_refresh_rec *out)
{
    CHAT_ASSERT_ARG(s && old_hash && new_hash && out);
    return s->ops->token_rotate(s, old_hash, new_hash, new_expires_at, now,
                                out);
}

int chat_store_token_revoke_family(chat_store *s, const uint8_t hash[32])
{
    CHAT_ASSERT_ARG(s && hash);
    return s->ops->token_revoke_family(s, hash);
}

int chat_store_conv_dm(chat_store *s, const char *a, const char *b,
                       chat_conv *out, int *created)
{
    CHAT_ASSERT_ARG(s && a && b && out);
    return s->ops->conv_dm(s, a, b, out, created);
}

int chat_store_conv_group(chat_store *s, const char *creator, const char *title,
                          const char *const *member_ids, int n, chat_conv *out)
{
    CHAT_ASSERT_ARG(s && creator && title && out && n >= 0);
    CHAT_ASSERT_ARG(n == 0 || member_ids);
    return s->ops->conv_group(s, creator, title, member_ids, n, out);
}

int chat_store_conv_get(chat_store *s, const char *conv_id, const char *viewer,
                        chat_conv *out)
{
    CHAT_ASSERT_ARG(s && conv_id && out);
    return s->ops->conv_get(s, conv_id, viewer, out);
}

int chat_store_conv_members(chat_store *s, const char *conv_id,
                            chat_member *out, int max, int *n)
{
    CHAT_ASSERT_ARG(s && conv_id && out && n && max > 0);
    return s->ops->conv_members(s, conv_id, out, max, n);
}

int chat_store_peers(chat_store *s, const char *user_id, chat_id *out, int max,
                     int *n)
{
    CHAT_ASSERT_ARG(s && user_id && out && n && max > 0);
    return s->ops->peers(s, user_id, out, max, n);
}

int chat_store_conv_list(chat_store *s, const char *user_id,
                         const chat_conv_cursor *after, int limit,
                         chat_conv *out, int *n)
{
    CHAT_ASSERT_ARG(s && user_id && out && n && limit > 0);
    return s->ops->conv_list(s, user_id, after, limit, out, n);
}

int chat_store_member_add(chat_store *s, const char *conv_id,
                          const char *user_id, int role)
{
    CHAT_ASSERT_ARG(s && conv_id && user_id && chat_role_name(role));
    return s->ops->member_add(s, conv_id, user_id, role);
}

int chat_store_member_remove(chat_store *s, const char *conv_id,
                             const char *user_id)
{
    CHAT_ASSERT_ARG(s && conv_id && user_id);
    return s->ops->member_remove(s, conv_id, user_id);
}

int chat_store_read_set(chat_store *s, const char *conv_id, const char *user_id,
                        int64_t seq, int64_t *result)
{
    CHAT_ASSERT_ARG(s && conv_id && user_id && seq >= 0);
    return s->ops->read_set(s, conv_id, user_id, seq, result);
}

int chat_store_conv_touch(chat_store *s, const chat_message *m)
{
    CHAT_ASSERT_ARG(s && m && m->seq > 0);
    return s->ops->conv_touch(s, m);
}

/* ---- the message log ---------------------------------------------------- */

void chat_log_free(chat_log *l)
{
    if (l)
        l->ops->free(l);
}

int chat_log_append(chat_log *l, const chat_append *req, chat_append_cb cb,
                    void *userdata)
{
    CHAT_ASSERT_ARG(l && req && cb);
    CHAT_ASSERT_ARG(req->conversation_id && req->sender_id && req->content);
    return l->ops->append(l, req, cb, userdata);
}

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, rc, created;
    chat_message *out;
    chat_error err;
    char msg[256];
} waiter;

static void wake(int rc, const chat_message *m, int created, void *ud)
{
    waiter *w = ud;

    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->created = created;
    if (rc == CHAT_OK && w->out)
        *w->out = *m;
    /* the error was recorded on the writer's thread: carry its text */
    if (rc != CHAT_OK)
        chat__strlcpy(w->msg, chat_error_last()->message, sizeof w->msg);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int chat_log_append_wait(chat_log *l, const chat_append *req, chat_message *out,
                         int *created)
{
    waiter w;
    int rc;

    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    w.out = out;
    rc = chat_log_append(l, req, wake, &w);
    if (rc == CHAT_OK) {
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        rc = w.rc;
        if (rc != CHAT_OK)
            chat__error(rc, "%s", w.msg);
        else if (created)
            *created = w.created;
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return rc;
}

int chat_log_range(chat_log *l, const char *conv_id, int64_t after_seq,
                   int64_t before_seq, int limit, chat_message *out, int *n)
{
    CHAT_ASSERT_ARG(l && conv_id && out && n);
    CHAT_ASSERT_ARG(after_seq >= 0 && before_seq >= 0);
    CHAT_ASSERT_ARG(limit >= 1 && limit <= CHAT_PAGE_MAX);
    return l->ops->range(l, conv_id, after_seq, before_seq, limit, out, n);
}

int chat_log_get(chat_log *l, const char *conv_id, const char *msg_id,
                 chat_message *out, char **content)
{
    CHAT_ASSERT_ARG(l && conv_id && msg_id && out);
    return l->ops->get(l, conv_id, msg_id, out, content);
}

int chat_log_touches_store(const chat_log *l)
{
    return l ? l->ops->touches_store : 0;
}
