/* The Socket.IO client (lib/client/sio_client.c) against a real chatd:
 * connect and authenticate, server events, acks, a refused token, a server
 * crash and the reconnect that follows, emits while offline, and that
 * chat__sioc_free returns promptly in every state. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_run.h"
#include "integration/harness.h"

#include "client/net.h"

static const char *const no_limits[] = {
    "CHAT_RATE_SEND=off", "CHAT_RATE_TOKEN=off", "CHAT_RATE_LOGIN_IP=off",
    "CHAT_RATE_LOGIN_ACCOUNT=off", NULL};

static th_server S;

/* ---- what the sink received ---------------------------------------------- */

typedef struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chat__net_input *head, *tail;
    int ups; /* WS_UPs counted as they arrive, also if discarded later */
} inbox;

static void sink(chat__net_input *in, void *ud)
{
    inbox *b = ud;

    pthread_mutex_lock(&b->lock);
    in->next = NULL;
    if (b->tail)
        b->tail->next = in;
    else
        b->head = in;
    b->tail = in;
    if (in->kind == CHAT__NET_WS_UP)
        b->ups++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void inbox_init(inbox *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
}

static void inbox_clear(inbox *b)
{
    chat__net_input *in, *next;

    for (in = b->head; in; in = next) {
        next = in->next;
        chat__net_input_free(in);
    }
    b->head = b->tail = NULL;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The next input, waiting up to ms; NULL on timeout. */
static chat__net_input *take(inbox *b, int ms)
{
    struct timespec until;
    chat__net_input *in;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->lock);
    while (b->head == NULL)
        if (pthread_cond_timedwait(&b->cond, &b->lock, &until) != 0)
            break;
    in = b->head;
    if (in) {
        b->head = in->next;
        if (b->head == NULL)
            b->tail = NULL;
    }
    pthread_mutex_unlock(&b->lock);
    return in;
}

/* The first input of kind (and event name, when given) within ms,
 * dropping the others on the way; NULL on timeout. */
static chat__net_input *wait_for(inbox *b, int kind, const char *name, int ms)
{
    double end = now_s() + ms / 1000.0;
    chat__net_input *in;
    double left;

    while ((left = end - now_s()) > 0) {
        in = take(b, (int)(left * 1000) + 1);
        if (in == NULL)
            return NULL;
        if (in->kind == kind &&
            (name == NULL || (in->name && !strcmp(in->name, name))))
            return in;
        chat__net_input_free(in);
    }
    return NULL;
}

static int count_ups(inbox *b)
{
    int n;

    pthread_mutex_lock(&b->lock);
    n = b->ups;
    pthread_mutex_unlock(&b->lock);
    return n;
}

/* ---- helpers ------------------------------------------------------------- */

static void log_hook(int level, const char *line, void *ud)
{
    (void)ud;
    fprintf(stderr, "[%s] %s\n", chat_log_level_name(level), line);
}

static void setup(void)
{
    /* SIOC_SMOKE_DEBUG=1 shows the client's whole story */
    chat_log_set(log_hook,
                 getenv("SIOC_SMOKE_DEBUG") ? CHAT_LOG_DEBUG : CHAT_LOG_WARN,
                 NULL);
    th_start(&S, no_limits);
}

static void teardown(void)
{
    th_cleanup(&S);
}

static chat__sioc *client_new(inbox *b)
{
    chat__net_config cfg;
    chat__sioc *s = NULL;

    memset(&cfg, 0, sizeof cfg);
    cfg.base_url = S.base;
    cfg.connect_timeout_ms = 5000;
    cfg.user_agent = "sioc-smoke/1";
    cfg.sink = sink;
    cfg.sink_userdata = b;
    ck_assert_int_eq(chat__sioc_new(&s, &cfg), CHAT_OK);
    return s;
}

/* Free, and check it took less than a second. */
static void client_free_quickly(chat__sioc *s)
{
    double t0 = now_s(), dt;

    chat__sioc_free(s);
    dt = now_s() - t0;
    ck_assert_msg(dt < 1.0, "chat__sioc_free took %.3f s", dt);
}

static void expect_up(inbox *b, int ms)
{
    chat__net_input *in = wait_for(b, CHAT__NET_WS_UP, NULL, ms);

    ck_assert_msg(in != NULL, "no WS_UP within %d ms", ms);
    chat__net_input_free(in);
}

static char *make_dm(th_user *a, th_user *b)
{
    th_resp r = th_req(&S, "POST", "/api/chats/conversations/dm", a->token,
                       th_fmt("{\"user_id\":\"%s\"}", b->id), NULL);
    char *id;

    ck_assert_msg(r.status == 200 || r.status == 201, "dm: %ld %s", r.status,
                  r.body ? r.body : "");
    id = strdup(th_str(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static void send_msg(th_user *u, const char *conv, const char *content)
{
    th_resp r = th_req(&S, "POST",
                       th_fmt("/api/messages/conversations/%s/messages", conv),
                       u->token, th_fmt("{\"content\":\"%s\"}", content), NULL);

    ck_assert_msg(r.status == 201 || r.status == 200, "send: %ld %s", r.status,
                  r.body ? r.body : "");
    th_resp_free(&r);
}

/* A message:new for conv with this seq arrives within ms. */
static void expect_message(inbox *b, const char *conv, int seq, int ms)
{
    chat__net_input *in = wait_for(b, CHAT__NET_WS_EVENT, "message:new", ms);

    ck_assert_msg(in != NULL, "no message:new within %d ms", ms);
    ck_assert_ptr_nonnull(in->data);
    ck_assert_str_eq(th_str(in->data, "conversation_id"), conv);
    ck_assert_int_eq((int)th_num(in->data, "seq"), seq);
    chat__net_input_free(in);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(events_acks_stop_start)
{
    inbox b;
    th_user alice, bob;
    chat__sioc *s;
    chat__net_input *in;
    cJSON *typing;
    char *conv;

    inbox_init(&b);
    th_user_new(&S, "alice", &alice);
    th_user_new(&S, "bob", &bob);
    s = client_new(&b);
    ck_assert_int_eq(chat__sioc_emit(s, "typing", NULL, 0), CHAT_ECLOSED);
    ck_assert_int_eq(chat__sioc_start(s, alice.token), CHAT_OK);
    expect_up(&b, 10000);

    /* a REST send reaches the socket */
    conv = make_dm(&alice, &bob);
    send_msg(&bob, conv, "hi");
    expect_message(&b, conv, 1, 10000);

    /* an emit with an ack id gets its ack back */
    typing = cJSON_CreateObject();
    cJSON_AddStringToObject(typing, "conversation_id", conv);
    cJSON_AddBoolToObject(typing, "is_typing", 1);
    ck_assert_int_eq(chat__sioc_emit(s, "typing", typing, 7), CHAT_OK);
    in = wait_for(&b, CHAT__NET_WS_ACK, NULL, 10000);
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(in->id, 7);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in->data, "ok")));
    chat__net_input_free(in);

    /* stop: WS_DOWN, emits refused at once; start again: WS_UP */
    chat__sioc_stop(s);
    ck_assert_int_eq(chat__sioc_emit(s, "typing", typing, 8), CHAT_ECLOSED);
    in = wait_for(&b, CHAT__NET_WS_DOWN, NULL, 5000);
    ck_assert_ptr_nonnull(in);
    chat__net_input_free(in);
    ck_assert_int_eq(chat__sioc_start(s, alice.token), CHAT_OK);
    expect_up(&b, 10000);
    send_msg(&bob, conv, "again");
    expect_message(&b, conv, 2, 10000);

    client_free_quickly(s);
    cJSON_Delete(typing);
    free(conv);
    inbox_clear(&b);
}
END_TEST

START_TEST(bad_token_never_up)
{
    inbox b;
    chat__sioc *s;
    chat__net_input *in;
    int unauthorized = 0, down = 0;
    double end;

    inbox_init(&b);
    s = client_new(&b);
    ck_assert_int_eq(chat__sioc_start(s, "not-a-token"), CHAT_OK);
    /* an "unauthorized" event, then WS_DOWN; never WS_UP */
    end = now_s() + 10;
    while (!down && now_s() < end) {
        if ((in = take(&b, 200)) == NULL)
            continue;
        if (in->kind == CHAT__NET_WS_EVENT && in->name &&
            !strcmp(in->name, "unauthorized"))
            unauthorized = 1;
        if (in->kind == CHAT__NET_WS_DOWN) {
            down = 1;
            ck_assert_ptr_nonnull(in->name);
            ck_assert_msg(strstr(in->name, "unauthorized") != NULL,
                          "WS_DOWN reason: %s", in->name);
        }
        chat__net_input_free(in);
    }
    ck_assert_msg(down, "no WS_DOWN");
    ck_assert_msg(unauthorized, "no unauthorized event");
    ck_assert_int_eq(count_ups(&b), 0);
    ck_assert_int_eq(chat__sioc_emit(s, "typing", NULL, 1), CHAT_ECLOSED);
    /* it keeps retrying (with backoff): a second refusal comes */
    in = wait_for(&b, CHAT__NET_WS_DOWN, NULL, 10000);
    ck_assert_ptr_nonnull(in);
    chat__net_input_free(in);
    ck_assert_int_eq(count_ups(&b), 0);
    /* free while in backoff or connecting */
    client_free_quickly(s);
    inbox_clear(&b);
}
END_TEST

START_TEST(reconnects_after_crash)
{
    inbox b;
    th_user alice, bob;
    chat__sioc *s;
    chat__net_input *in;
    char *conv;
    int i;

    inbox_init(&b);
    th_user_new(&S, "alice", &alice);
    th_user_new(&S, "bob", &bob);
    conv = make_dm(&alice, &bob);
    s = client_new(&b);
    ck_assert_int_eq(chat__sioc_start(s, alice.token), CHAT_OK);
    expect_up(&b, 10000);

    th_stop(&S, SIGKILL);
    in = wait_for(&b, CHAT__NET_WS_DOWN, NULL, 10000);
    ck_assert_ptr_nonnull(in);
    chat__net_input_free(in);
    ck_assert_int_eq(chat__sioc_emit(s, "typing", NULL, 0), CHAT_ECLOSED);
    /* a few failed attempts while the server is away */
    for (i = 0; i < 2; i++) {
        in = wait_for(&b, CHAT__NET_WS_DOWN, NULL, 5000);
        ck_assert_ptr_nonnull(in);
        chat__net_input_free(in);
    }

    th_restart_after_crash(&S);
    expect_up(&b, 40000);
    send_msg(&bob, conv, "after the crash");
    expect_message(&b, conv, 1, 10000);
    client_free_quickly(s);
    free(conv);
    inbox_clear(&b);
}
END_TEST

START_TEST(free_in_backoff)
{
    inbox b;
    th_user alice;
    chat__sioc *s;
    chat__net_input *in;

    inbox_init(&b);
    th_user_new(&S, "alice", &alice);
    s = client_new(&b);
    th_stop(&S, SIGKILL);
    ck_assert_int_eq(chat__sioc_start(s, alice.token), CHAT_OK);
    /* a failed attempt is reported, then the client waits to retry */
    in = wait_for(&b, CHAT__NET_WS_DOWN, NULL, 10000);
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(in->name);
    chat__net_input_free(in);
    client_free_quickly(s);
    ck_assert_int_eq(count_ups(&b), 0);
    inbox_clear(&b);
}
END_TEST

START_TEST(bad_config)
{
    static const char *const bad[] = {
        "ftp://127.0.0.1:1", "http://",          "http://:80",  "http://h:0",
        "http://h:65536",    "http://h:8x",      "http://[::1", "http://u@h:80",
        "http://h:80/a b",   "http://h:80/?x=1",
    };
    chat__net_config cfg;
    chat__sioc *s = NULL;
    inbox b;
    size_t i;

    inbox_init(&b);
    memset(&cfg, 0, sizeof cfg);
    cfg.sink = sink;
    cfg.sink_userdata = &b;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.base_url = bad[i];
        ck_assert_msg(chat__sioc_new(&s, &cfg) == CHAT_EINVAL, "accepted %s",
                      bad[i]);
        ck_assert_ptr_null(s);
    }
    /* a path prefix and an IPv6 literal are fine; nothing connects yet */
    cfg.base_url = "http://[::1]:8088/chat/";
    ck_assert_int_eq(chat__sioc_new(&s, &cfg), CHAT_OK);
    ck_assert_int_eq(chat__sioc_emit(s, "x", NULL, 0), CHAT_ECLOSED);
    client_free_quickly(s);
    chat__net_input_free(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sioc");
    TCase *tc = tcase_create("smoke");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 110);
    tcase_add_test(tc, events_acks_stop_start);
    tcase_add_test(tc, bad_token_never_up);
    tcase_add_test(tc, reconnects_after_crash);
    tcase_add_test(tc, free_in_backoff);
    suite_add_tcase(s, tc);
    tc = tcase_create("config");
    tcase_add_test(tc, bad_config);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return chat_test_run(suite());
}
