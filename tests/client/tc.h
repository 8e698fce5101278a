/*
 * Client test helpers: a chat_client wrapped with an event recorder and a
 * loop that runs until a condition holds or a deadline passes.
 */
#ifndef CHAT_TEST_TC_H
#define CHAT_TEST_TC_H

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chat/chat.h>
#include <chat/client.h>

#define TC_MAX_MSGS 4096

typedef struct tc_msg {
    char conv[CHAT_ID_LEN + 1];
    char cmid[CHAT_CLIENT_MSG_ID_MAX + 1];
    int64_t seq;
    char text[64];
} tc_msg;

typedef struct tc {
    chat_client *c;
    char path[512];
    int connected, disconnected, synced, ended, failed, conv_events;
    int typing, reads;
    size_t n;
    tc_msg msgs[TC_MAX_MSGS];
    int order_errors; /* a message not at last seq + 1 of its conversation */
} tc;

static inline int64_t tc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t tc_last_seq(const tc *t, const char *conv)
{
    for (size_t i = t->n; i-- > 0;)
        if (strcmp(t->msgs[i].conv, conv) == 0)
            return t->msgs[i].seq;
    return 0;
}

static inline void tc_on_event(chat_client *c, const chat_client_event *ev,
                               void *ud)
{
    tc *t = ud;
    (void)c;
    switch (ev->type) {
    case CHAT_CLIENT_EVENT_MESSAGE: {
        const chat_client_message *m = ev->message;
        int64_t last = tc_last_seq(t, m->conversation_id);
        /* With a history depth the first one may start later; the tests
         * use depth 0, so every conversation starts at 1. */
        if (m->seq != last + 1)
            t->order_errors++;
        if (t->n < TC_MAX_MSGS) {
            tc_msg *r = &t->msgs[t->n++];
            snprintf(r->conv, sizeof r->conv, "%s", m->conversation_id);
            snprintf(r->cmid, sizeof r->cmid, "%s", m->client_msg_id);
            snprintf(r->text, sizeof r->text, "%s", m->text);
            r->seq = m->seq;
        }
        break;
    }
    case CHAT_CLIENT_EVENT_CONNECTED:
        t->connected++;
        break;
    case CHAT_CLIENT_EVENT_DISCONNECTED:
        t->disconnected++;
        break;
    case CHAT_CLIENT_EVENT_SYNCED:
        t->synced++;
        break;
    case CHAT_CLIENT_EVENT_SESSION_ENDED:
        t->ended++;
        break;
    case CHAT_CLIENT_EVENT_SEND_FAILED:
        t->failed++;
        break;
    case CHAT_CLIENT_EVENT_CONVERSATION:
        t->conv_events++;
        break;
    case CHAT_CLIENT_EVENT_TYPING:
        t->typing++;
        break;
    case CHAT_CLIENT_EVENT_READ:
        t->reads++;
        break;
    default:
        break;
    }
}

/* Open a client on base with the cache at path (NULL = memory). The
 * recorder starts empty; msgs survive only in memory. */
/* tc_open with a log hook of the client's own (NULL: the process's). */
static inline void tc_open_log(tc *t, const char *base, const char *path,
                               chat_log_fn log_fn, void *log_ud)
{
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    memset(t, 0, sizeof *t);
    o.log_fn = log_fn;
    o.log_level = CHAT_LOG_DEBUG;
    o.log_userdata = log_ud;
    if (path)
        snprintf(t->path, sizeof t->path, "%s", path);
    o.base_url = base;
    o.cache_path = path;
    o.on_event = tc_on_event;
    o.userdata = t;
    o.connect_timeout_ms = 2000;
    o.request_timeout_ms = 5000;
    ck_assert_int_eq(chat_client_new(&t->c, &o), CHAT_OK);
}

static inline void tc_open(tc *t, const char *base, const char *path)
{
    tc_open_log(t, base, path, NULL, NULL);
}

static inline void tc_close(tc *t)
{
    chat_client_free(t->c);
    t->c = NULL;
}

/* Run the clients' loops round-robin for up to ms. */
static inline void tc_pump(tc **ts, size_t n, int ms)
{
    struct pollfd p[8];
    for (size_t i = 0; i < n; i++) {
        p[i].fd = chat_client_fd(ts[i]->c);
        p[i].events = POLLIN;
    }
    poll(p, (nfds_t)n, ms);
    for (size_t i = 0; i < n; i++)
        chat_client_process(ts[i]->c);
}

/* Pump until cond (an expression over the clients) holds, or fail. */
#define TC_UNTIL(ts, n, ms, cond)                                              \
    do {                                                                       \
        int64_t tc_end_ = tc_now_ms() + (ms);                                  \
        while (!(cond)) {                                                      \
            ck_assert_msg(tc_now_ms() < tc_end_, "timed out waiting for %s",   \
                          #cond);                                              \
            tc_pump(ts, n, 20);                                                \
        }                                                                      \
    } while (0)

/* Log in (blocking) as name with the harness's password convention. */
static inline void tc_login(tc *t, const char *name)
{
    char pw[96];
    int64_t id;
    snprintf(pw, sizeof pw, "password-%s", name);
    id = chat_client_login(t->c, name, pw, NULL, NULL);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(chat_client_wait(t->c, id, 10000), CHAT_OK);
}

typedef struct tc_done {
    int calls, code;
    char id[CHAT_ID_LEN + 1];
    size_t fetched, users;
    char text[128];
} tc_done;

static inline void tc_on_done(chat_client *c, const chat_client_result *r,
                              void *ud)
{
    tc_done *d = ud;
    (void)c;
    d->calls++;
    d->code = r->code;
    snprintf(d->id, sizeof d->id, "%s", r->id);
    d->fetched = r->fetched;
    d->users = r->user_count;
    if (r->message)
        snprintf(d->text, sizeof d->text, "%s", r->message->text);
}

#endif
