/*
 * The client's sync engine against a scripted server: the test plays the
 * network (every HTTP request the engine makes is recorded and answered by
 * hand, Socket.IO events are injected), so gaps, duplicates, replays,
 * out-of-order delivery and token refresh races happen exactly when the
 * test says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chat/chat.h>

#include "check_run.h"
#include "client/client_int.h"

/* ---- the scripted net -----------------------------------------------------
 */

#define MAX_CALLS 256

typedef struct call {
    int64_t id;
    char method[8];
    char path[256];
    char bearer[64];
    char body[512];
    int answered;
} call;

typedef struct script {
    call calls[MAX_CALLS];
    int ncalls;
    char ws_token[64];
    int ws_starts, ws_stops, emits;
} script;

static int s_http(void *net, int64_t id, const char *method, const char *path,
                  const char *bearer, const char *body)
{
    script *s = net;
    call *c;
    ck_assert_int_lt(s->ncalls, MAX_CALLS);
    c = &s->calls[s->ncalls++];
    memset(c, 0, sizeof *c);
    c->id = id;
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->bearer, sizeof c->bearer, "%s", bearer ? bearer : "");
    snprintf(c->body, sizeof c->body, "%s", body ? body : "");
    return CHAT_OK;
}

static int s_ws_start(void *net, const char *token)
{
    script *s = net;
    snprintf(s->ws_token, sizeof s->ws_token, "%s", token);
    s->ws_starts++;
    return CHAT_OK;
}

static void s_ws_stop(void *net)
{
    ((script *)net)->ws_stops++;
}

static int s_ws_emit(void *net, const char *event, const cJSON *data,
                     int64_t ack_id)
{
    (void)event;
    (void)data;
    (void)ack_id;
    ((script *)net)->emits++;
    return CHAT_OK;
}

static void s_free(void *net)
{
    (void)net;
}

static const chat__net_ops script_ops = {s_http, s_ws_start, s_ws_stop,
                                         s_ws_emit, s_free};

/* The oldest unanswered call whose "METHOD path" starts with prefix. */
static call *pending(script *s, const char *prefix)
{
    for (int i = 0; i < s->ncalls; i++) {
        char line[300];
        snprintf(line, sizeof line, "%s %s", s->calls[i].method,
                 s->calls[i].path);
        if (!s->calls[i].answered && strncmp(line, prefix, strlen(prefix)) == 0)
            return &s->calls[i];
    }
    return NULL;
}

static int count_pending(script *s, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < s->ncalls; i++) {
        char line[300];
        snprintf(line, sizeof line, "%s %s", s->calls[i].method,
                 s->calls[i].path);
        n +=
            !s->calls[i].answered && strncmp(line, prefix, strlen(prefix)) == 0;
    }
    return n;
}

/* ---- the recorder -----------------------------------------------------------
 */

typedef struct rec {
    int64_t seqs[512];
    int n;
    int synced, ended, failed, conv_events;
    int logout_on_message; /* the next message's callback logs out */
    int64_t die_at;        /* the callback of this seq ends the process */
} rec;

static void on_event(chat_client *c, const chat_client_event *ev, void *ud)
{
    rec *r = ud;
    if (ev->type == CHAT_CLIENT_EVENT_MESSAGE && r->die_at &&
        ev->message->seq == r->die_at)
        _exit(0); /* as kill -9 inside the application's callback */
    if (ev->type == CHAT_CLIENT_EVENT_MESSAGE && r->logout_on_message) {
        r->logout_on_message = 0;
        ck_assert_int_gt(chat_client_logout(c, NULL, NULL), 0);
    }
    if (ev->type == CHAT_CLIENT_EVENT_MESSAGE && r->n < 512)
        r->seqs[r->n++] = ev->message->seq;
    else if (ev->type == CHAT_CLIENT_EVENT_SYNCED)
        r->synced++;
    else if (ev->type == CHAT_CLIENT_EVENT_SESSION_ENDED)
        r->ended++;
    else if (ev->type == CHAT_CLIENT_EVENT_SEND_FAILED)
        r->failed++;
    else if (ev->type == CHAT_CLIENT_EVENT_CONVERSATION)
        r->conv_events++;
}

typedef struct fixture {
    script s;
    rec r;
    chat_client *c;
    char me[37], other[37], conv[37];
    char path[128];
} fixture;

static fixture *fx;

static void post(chat__net_input *in)
{
    chat__client_post(in, fx->c);
    ck_assert_int_ge(chat_client_process(fx->c), 0);
}

static void answer(call *c, int status, const char *body)
{
    chat__net_input *in = calloc(1, sizeof *in);
    ck_assert_ptr_nonnull(c);
    c->answered = 1;
    in->kind = CHAT__NET_HTTP_DONE;
    in->id = c->id;
    in->status = status;
    if (status == 0)
        in->error = CHAT_EIO;
    if (body) {
        in->body = strdup(body);
        in->len = strlen(body);
    }
    post(in);
}

static void ws(int kind, const char *name, const char *json)
{
    chat__net_input *in = calloc(1, sizeof *in);
    in->kind = kind;
    if (name)
        in->name = strdup(name);
    if (json)
        in->data = cJSON_Parse(json);
    post(in);
}

static const char *msg_json(int64_t seq)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    char mid[37];
    /* deterministic message ids per seq, so replays look the same */
    snprintf(mid, sizeof mid, "00000000-0000-7000-8000-%012lld",
             (long long)seq);
    snprintf(b, 512,
             "{\"message_id\":\"%s\",\"conversation_id\":\"%s\",\"seq\":%lld,"
             "\"sender_id\":\"%s\",\"created_at\":\"2026-11-25T10:00:00.000Z\","
             "\"preview\":\"m%lld\",\"has_more\":false}",
             mid, fx->conv, (long long)seq, fx->other, (long long)seq);
    return b;
}

/* {"messages":[from..to]} */
static const char *page(int64_t from, int64_t to)
{
    static char buf[65536];
    size_t len = (size_t)snprintf(buf, sizeof buf, "{\"messages\":[");
    for (int64_t s = from; s <= to; s++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s",
                                s > from ? "," : "", msg_json(s));
    snprintf(buf + len, sizeof buf - len, "]}");
    return buf;
}

static const char *conv_json(int64_t last_seq, int with_members)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"id\":\"%s\",\"kind\":\"dm\",\"title\":null,\"last_seq\":%lld,"
             "\"member_count\":2,\"read_seq\":0,\"role\":\"member\","
             "\"last_activity_at\":\"2026-11-25T10:00:00.000Z\"%s%s%s%s%s}",
             fx->conv, (long long)last_seq,
             with_members ? ",\"members\":[{\"user_id\":\"" : "",
             with_members ? fx->me : "",
             with_members ? "\",\"username\":\"me\",\"role\":\"member\"},"
                            "{\"user_id\":\""
                          : "",
             with_members ? fx->other : "",
             with_members ? "\",\"username\":\"other\",\"role\":\"member\"}]"
                          : "");
    return buf;
}

static void open_client(void)
{
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    o.base_url = "http://scripted.invalid";
    o.cache_path = fx->path;
    o.on_event = on_event;
    o.userdata = &fx->r;
    ck_assert_int_eq(chat__client_new_with_net(&fx->c, &o, &script_ops, &fx->s),
                     CHAT_OK);
}

static void login_answer(const char *access, const char *refresh)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"access_token\":\"%s\",\"refresh_token\":\"%s\","
             "\"token_type\":\"Bearer\",\"expires_in\":900,\"user\":{\"id\":"
             "\"%s\",\"username\":\"me\",\"email\":\"me@x.io\"}}",
             access, refresh, fx->me);
    answer(pending(&fx->s, "POST /api/users/auth/login"), 200, body);
}

static void setup(void)
{
    fx = calloc(1, sizeof *fx);
    chat_uuid_v7(fx->me);
    chat_uuid_v7(fx->other);
    chat_uuid_v7(fx->conv);
    snprintf(fx->path, sizeof fx->path, "/tmp/check-client-%d-%s.db",
             (int)getpid(), fx->conv);
    open_client();
}

static void teardown(void)
{
    char p[160];
    chat_client_free(fx->c);
    unlink(fx->path);
    snprintf(p, sizeof p, "%s-wal", fx->path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", fx->path);
    unlink(p);
    free(fx);
}

static const char *conv_list(int64_t last_seq)
{
    static char buf[1200];
    snprintf(buf, sizeof buf, "{\"conversations\":[%s],\"next_cursor\":null}",
             conv_json(last_seq, 0));
    return buf;
}

static void expect_seqs(int64_t from, int64_t to)
{
    ck_assert_int_eq(fx->r.n, (int)(to - from + 1));
    for (int i = 0; i < fx->r.n; i++)
        ck_assert_int_eq(fx->r.seqs[i], from + i);
}

static char *catchup_path(int64_t after)
{
    static char p[256];
    snprintf(p, sizeof p,
             "GET /api/messages/conversations/%s/messages?after_seq=%lld&",
             fx->conv, (long long)after);
    return p;
}

/* Log in, connect, and sync a conversation that has n messages. */
static void online_with(int64_t n)
{
    char p[128];
    ck_assert_int_gt(chat_client_login(fx->c, "me", "password", NULL, NULL), 0);
    login_answer("A1", "R1");
    ck_assert_str_eq(fx->s.ws_token, "A1");
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200, conv_list(n));
    /* a new conversation: its members first, then its messages */
    snprintf(p, sizeof p, "GET /api/chats/conversations/%s", fx->conv);
    answer(pending(&fx->s, p), 200, conv_json(n, 1));
    answer(pending(&fx->s, catchup_path(0)), 200, page(1, n));
}

START_TEST(first_sync_in_order)
{
    online_with(3);
    expect_seqs(1, 3);
    ck_assert_int_eq(fx->r.synced, 1);
    ck_assert_int_eq(count_pending(&fx->s, "GET"), 0);
}
END_TEST

START_TEST(gap_is_filled_before_later_messages)
{
    online_with(3);
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(5));
    expect_seqs(1, 3); /* 5 waits for 4 */
    ck_assert_ptr_nonnull(pending(&fx->s, catchup_path(3)));
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(6));
    expect_seqs(1, 3);
    answer(pending(&fx->s, catchup_path(3)), 200, page(4, 5));
    expect_seqs(1, 6); /* 4, 5 and the waiting 6, once each, in order */
}
END_TEST

START_TEST(duplicates_and_replays_are_dropped)
{
    online_with(3);
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(2));
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(3));
    expect_seqs(1, 3);
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(4));
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(4));
    expect_seqs(1, 4);
    /* a reconnect replays the whole list and a page that overlaps */
    ws(CHAT__NET_WS_DOWN, NULL, NULL);
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200, conv_list(6));
    answer(pending(&fx->s, catchup_path(4)), 200, page(3, 6));
    expect_seqs(1, 6);
    ck_assert_int_eq(fx->r.synced, 2);
}
END_TEST

START_TEST(out_of_order_live_delivery)
{
    online_with(6);
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(8));
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(7));
    expect_seqs(1, 8); /* 7 closed the gap before the fetch answered */
    answer(pending(&fx->s, catchup_path(6)), 200, page(7, 8));
    expect_seqs(1, 8);
}
END_TEST

START_TEST(delivered_position_survives_restart)
{
    online_with(3);
    chat_client_free(fx->c);
    memset(&fx->s, 0, sizeof fx->s);
    memset(&fx->r, 0, sizeof fx->r);
    open_client();
    /* the session is restored from the cache: it goes online by itself */
    ck_assert_int_eq(fx->s.ws_starts, 1);
    ck_assert_str_eq(fx->s.ws_token, "A1");
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200, conv_list(5));
    answer(pending(&fx->s, catchup_path(3)), 200, page(4, 5));
    ck_assert_int_eq(fx->r.n, 2);
    ck_assert_int_eq(fx->r.seqs[0], 4);
    ck_assert_int_eq(fx->r.seqs[1], 5);
}
END_TEST

/* A process that dies inside the callback of seq 3 gets seq 3 again on
 * the next start, and not 1 or 2: the position is stored per callback. */
START_TEST(killed_inside_a_callback_repeats_only_that_message)
{
    pid_t pid;
    int status;

    chat_client_free(fx->c); /* no SQLite handle across fork */
    fx->c = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        open_client();
        fx->r.die_at = 3;
        online_with(5);
        _exit(1); /* the callback of seq 3 never came */
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    memset(&fx->s, 0, sizeof fx->s);
    memset(&fx->r, 0, sizeof fx->r);
    open_client(); /* the session comes back from the cache */
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200, conv_list(5));
    /* all five are in the cache already: nothing to fetch, 3..5 to hand
     * over */
    ck_assert_int_eq(count_pending(&fx->s, "GET"), 0);
    expect_seqs(3, 5);
}
END_TEST

static int done_calls, done_code;
static void on_done(chat_client *c, const chat_client_result *r, void *ud)
{
    (void)c;
    (void)ud;
    done_calls++;
    done_code = r->code;
}

START_TEST(refresh_during_requests)
{
    call *a, *b;
    online_with(1);
    done_calls = 0;
    ck_assert_int_gt(chat_client_users_search(fx->c, "x", 5, on_done, NULL), 0);
    a = pending(&fx->s, "GET /api/users/users?");
    ck_assert_str_eq(a->bearer, "A1");
    answer(a, 401,
           "{\"error\":{\"code\":\"token_expired\",\"message\":\"x\"}}");
    ck_assert_ptr_nonnull(pending(&fx->s, "POST /api/users/auth/refresh"));
    /* a call made while the refresh runs waits for it */
    ck_assert_int_gt(chat_client_user_get(fx->c, fx->other, on_done, NULL), 0);
    ck_assert_ptr_null(pending(&fx->s, "GET /api/users/users/"));
    answer(pending(&fx->s, "POST /api/users/auth/refresh"), 200,
           "{\"access_token\":\"A2\",\"refresh_token\":\"R2\",\"expires_in\":"
           "900,\"user\":{\"id\":\"00000000-0000-7000-8000-000000000001\"}}");
    /* both go (again) with the new token, once each */
    a = pending(&fx->s, "GET /api/users/users?");
    b = pending(&fx->s, "GET /api/users/users/");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(a->bearer, "A2");
    ck_assert_str_eq(b->bearer, "A2");
    ck_assert_str_eq(fx->s.ws_token, "A2");
    answer(a, 200, "{\"users\":[]}");
    answer(b, 200,
           "{\"id\":\"00000000-0000-7000-8000-000000000002\","
           "\"username\":\"other\"}");
    ck_assert_int_eq(done_calls, 2);
    ck_assert_int_eq(done_code, CHAT_OK);
}
END_TEST

/* A token near expiry whose renewal fails (the server is down) is
 * retried with backoff, not at once in a loop (a client left running
 * against a dead server used a third of a core). */
START_TEST(failed_refresh_backs_off)
{
    call *r;
    int64_t start;
    int refreshes = 0;

    online_with(1);
    ck_assert_int_gt(chat_client_users_search(fx->c, "x", 5, on_done, NULL), 0);
    answer(pending(&fx->s, "GET /api/users/users?"), 401,
           "{\"error\":{\"code\":\"token_expired\",\"message\":\"x\"}}");
    /* renewed, but for 30 s only: inside the 60 s margin, due again now */
    answer(pending(&fx->s, "POST /api/users/auth/refresh"), 200,
           "{\"access_token\":\"A2\",\"refresh_token\":\"R2\",\"expires_in\":"
           "30,\"user\":{\"id\":\"00000000-0000-7000-8000-000000000001\"}}");
    answer(pending(&fx->s, "GET /api/users/users?"), 200, "{\"users\":[]}");
    start = chat__mono_us();
    while (chat__mono_us() - start < 300000) {
        chat_client_process(fx->c);
        if ((r = pending(&fx->s, "POST /api/users/auth/refresh"))) {
            refreshes++;
            answer(r, 0, NULL); /* unreachable */
        }
        usleep(1000);
    }
    /* 250 ms doubling, full jitter: a handful at most, not hundreds */
    ck_assert_int_ge(refreshes, 1);
    ck_assert_int_le(refreshes, 8);
}
END_TEST

START_TEST(refresh_rejected_ends_session)
{
    online_with(1);
    done_calls = 0;
    ck_assert_int_gt(chat_client_users_search(fx->c, "x", 5, on_done, NULL), 0);
    answer(pending(&fx->s, "GET /api/users/users?"), 401,
           "{\"error\":{\"code\":\"invalid_token\",\"message\":\"x\"}}");
    answer(
        pending(&fx->s, "POST /api/users/auth/refresh"), 401,
        "{\"error\":{\"code\":\"invalid_refresh_token\",\"message\":\"x\"}}");
    ck_assert_int_eq(fx->r.ended, 1);
    ck_assert_int_eq(done_calls, 1);
    ck_assert_int_eq(done_code, CHAT_EAUTH);
    ck_assert_ptr_null(chat_client_user_id(fx->c));
}
END_TEST

START_TEST(outbox_retries_with_the_same_id)
{
    char cmid[37], p[128], first[512];
    call *c;
    chat_client_message_list h;
    online_with(1);
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "hi", cmid), CHAT_OK);
    snprintf(p, sizeof p, "POST /api/messages/conversations/%s/messages",
             fx->conv);
    c = pending(&fx->s, p);
    ck_assert_ptr_nonnull(strstr(c->body, cmid));
    snprintf(first, sizeof first, "%s", c->body);
    /* one in flight per conversation keeps the order */
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "second", NULL),
                     CHAT_OK);
    ck_assert_int_eq(count_pending(&fx->s, p), 1);
    answer(c, 0, NULL); /* no answer: offline */
    ck_assert_int_eq(count_pending(&fx->s, p), 0);
    /* after the backoff, the same body again */
    for (int i = 0; i < 200 && !pending(&fx->s, p); i++) {
        usleep(10000);
        chat_client_process(fx->c);
    }
    c = pending(&fx->s, p);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->body, first);
    {
        char body[600];
        snprintf(body, sizeof body,
                 "{\"message_id\":\"00000000-0000-7000-8000-000000000002\","
                 "\"conversation_id\":\"%s\",\"seq\":2,\"sender_id\":\"%s\","
                 "\"created_at\":\"2026-11-25T10:00:00.000Z\",\"preview\":"
                 "\"hi\",\"has_more\":false,\"client_msg_id\":\"%s\"}",
                 fx->conv, fx->me, cmid);
        answer(c, 201, body);
    }
    expect_seqs(1, 2);
    /* the second goes now; the server refuses it for good */
    answer(pending(&fx->s, p), 403,
           "{\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}}");
    ck_assert_int_eq(fx->r.failed, 1);
    ck_assert_int_eq(chat_client_history(fx->c, fx->conv, 0, 10, &h), CHAT_OK);
    ck_assert_uint_eq(h.count, 3);
    ck_assert_int_eq(h.items[1].state, CHAT_MSG_SENT);
    ck_assert_int_eq(h.items[2].state, CHAT_MSG_FAILED);
    chat_client_message_list_free(&h);
}
END_TEST

/* A send that failed for now leaves a retry due; logging out must not
 * leave chat_client_timeout_ms() at 0 (a loop that spins). */
START_TEST(no_spin_after_logout_with_a_retry_due)
{
    char p[128];
    int i;

    online_with(1);
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "hi", NULL), CHAT_OK);
    snprintf(p, sizeof p, "POST /api/messages/conversations/%s/messages",
             fx->conv);
    answer(pending(&fx->s, p), 0, NULL); /* offline: retried later */
    ck_assert_int_ge(chat_client_timeout_ms(fx->c), 0);
    ck_assert_int_gt(chat_client_logout(fx->c, NULL, NULL), 0);
    for (i = 0; i < 30; i++) { /* well past the first backoff */
        usleep(10000);
        chat_client_process(fx->c);
    }
    ck_assert_int_ne(chat_client_timeout_ms(fx->c), 0);
}
END_TEST

START_TEST(removed_while_offline)
{
    online_with(2);
    ws(CHAT__NET_WS_DOWN, NULL, NULL);
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200,
           "{\"conversations\":[],\"next_cursor\":null}");
    ck_assert_int_eq(fx->r.conv_events, 1);
    chat_client_conversation *v;
    ck_assert_int_eq(chat_client_conversation_get(fx->c, fx->conv, &v),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "x", NULL), CHAT_EPERM);
}
END_TEST

START_TEST(hostile_answers)
{
    online_with(1);
    /* garbage and wrong shapes from the server change nothing */
    ws(CHAT__NET_WS_EVENT, "message:new", "{\"seq\":\"x\"}");
    ws(CHAT__NET_WS_EVENT, "message:new", "[1,2]");
    ws(CHAT__NET_WS_EVENT, "conversation:updated", "{\"action\":5}");
    ws(CHAT__NET_WS_EVENT, "read:updated", "{}");
    ck_assert_int_gt(chat_client_users_search(fx->c, "x", 5, on_done, NULL), 0);
    done_calls = 0;
    answer(pending(&fx->s, "GET /api/users/users?"), 200, "not json");
    ck_assert_int_eq(done_calls, 1);
    ck_assert_int_eq(done_code, CHAT_EPROTO);
    expect_seqs(1, 1);
}
END_TEST

static int64_t unread(void)
{
    chat_client_conversation *v;
    int64_t n;
    ck_assert_int_eq(chat_client_conversation_get(fx->c, fx->conv, &v),
                     CHAT_OK);
    n = v->unread;
    chat_client_conversation_free(v);
    return n;
}

static const char *read_path(void)
{
    static char p[128];
    snprintf(p, sizeof p, "PUT /api/chats/conversations/%s/read", fx->conv);
    return p;
}

static void read_answer(call *c, int64_t seq)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"conversation_id\":\"%s\",\"user_id\":\"%s\",\"seq\":%lld,"
             "\"last_seq\":3}",
             fx->conv, fx->me, (long long)seq);
    answer(c, 200, body);
}

/* Reconnect and answer the catch-up's conversation list. */
static void reconnect(int64_t last_seq)
{
    ws(CHAT__NET_WS_DOWN, NULL, NULL);
    ws(CHAT__NET_WS_UP, NULL, NULL);
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200,
           conv_list(last_seq));
}

START_TEST(read_marker_set_offline_is_pushed_after_reconnect)
{
    call *c;
    online_with(3);
    ws(CHAT__NET_WS_DOWN, NULL, NULL);
    done_calls = 0;
    ck_assert_int_gt(chat_client_mark_read(fx->c, fx->conv, 2, on_done, NULL),
                     0);
    ck_assert_int_eq(unread(), 1);                 /* at once, offline */
    answer(pending(&fx->s, read_path()), 0, NULL); /* no answer: offline */
    ck_assert_int_eq(done_calls, 1);
    ck_assert_int_eq(done_code, CHAT_EIO);
    /* back online: the marker goes again, without being asked */
    ws(CHAT__NET_WS_UP, NULL, NULL);
    c = pending(&fx->s, read_path());
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->body, "{\"seq\":2}");
    answer(c, 503, "{\"error\":{\"code\":\"unavailable\",\"message\":\"x\"}}");
    /* it is kept in the cache: a restart pushes it as soon as the session
     * is restored */
    chat_client_free(fx->c);
    memset(&fx->s, 0, sizeof fx->s);
    open_client();
    c = pending(&fx->s, read_path());
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->body, "{\"seq\":2}");
    ck_assert_int_eq(unread(), 1);
    read_answer(c, 2);
    ck_assert_int_eq(done_calls, 1); /* internal: no callback */
    /* acknowledged: nothing is pushed on the next reconnect */
    reconnect(3);
    ck_assert_int_eq(count_pending(&fx->s, read_path()), 0);
    ck_assert_int_eq(unread(), 1);
}
END_TEST

START_TEST(read_ack_of_an_older_marker_keeps_the_newer)
{
    call *first, *second;
    online_with(3);
    ck_assert_int_gt(chat_client_mark_read(fx->c, fx->conv, 1, NULL, NULL), 0);
    ck_assert_int_gt(chat_client_mark_read(fx->c, fx->conv, 3, NULL, NULL), 0);
    first = pending(&fx->s, read_path());
    ck_assert_str_eq(first->body, "{\"seq\":1}");
    read_answer(first, 1);
    second = pending(&fx->s, read_path());
    ck_assert_str_eq(second->body, "{\"seq\":3}");
    answer(second, 0, NULL);
    ck_assert_int_eq(unread(), 0);
    reconnect(3);
    second = pending(&fx->s, read_path());
    ck_assert_ptr_nonnull(second);
    ck_assert_str_eq(second->body, "{\"seq\":3}");
    /* the server's own account of the marker (another device, or this
     * push landing) clears it as well */
    {
        char d[256];
        snprintf(d, sizeof d,
                 "{\"conversation_id\":\"%s\",\"user_id\":\"%s\",\"seq\":3}",
                 fx->conv, fx->me);
        ws(CHAT__NET_WS_EVENT, "read:updated", d);
    }
    answer(second, 0, NULL);
    reconnect(3);
    ck_assert_int_eq(count_pending(&fx->s, read_path()), 0);
}
END_TEST

static int events_at_done;
static void on_history_done(chat_client *c, const chat_client_result *r,
                            void *ud)
{
    (void)c;
    (void)ud;
    done_calls++;
    done_code = r->code;
    ck_assert_uint_eq(r->fetched, 3);
    events_at_done = fx->r.n;
}

START_TEST(fetch_history_events_as_documented)
{
    char p[192];
    online_with(3);
    /* scrolling back over what was delivered: stored, no event */
    done_calls = 0;
    ck_assert_int_gt(
        chat_client_fetch_history(fx->c, fx->conv, 4, 3, on_history_done, NULL),
        0);
    snprintf(p, sizeof p,
             "GET /api/messages/conversations/%s/messages?before_seq=4&",
             fx->conv);
    answer(pending(&fx->s, p), 200, page(1, 3));
    ck_assert_int_eq(done_calls, 1);
    expect_seqs(1, 3);
    /* behind the server (6 waits for 4 and 5): the newest page closes
     * the gap, and 4, 5, 6 are raised before the callback runs */
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(6));
    expect_seqs(1, 3);
    ck_assert_int_gt(
        chat_client_fetch_history(fx->c, fx->conv, 0, 3, on_history_done, NULL),
        0);
    snprintf(p, sizeof p,
             "GET /api/messages/conversations/%s/messages?before_seq=7&",
             fx->conv);
    answer(pending(&fx->s, p), 200, page(4, 6));
    ck_assert_int_eq(done_calls, 2);
    ck_assert_int_eq(events_at_done, 6);
    expect_seqs(1, 6);
}
END_TEST

START_TEST(history_after_pages_forward)
{
    chat_client_message_list h;
    online_with(5);
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "pending", NULL),
                     CHAT_OK);
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, 1, 2, &h),
                     CHAT_OK);
    ck_assert_uint_eq(h.count, 2);
    ck_assert_int_eq(h.items[0].seq, 2);
    ck_assert_int_eq(h.items[1].seq, 3);
    ck_assert_str_eq(h.items[1].text, "m3");
    chat_client_message_list_free(&h);
    /* the last page ends with the newest stored message, not the send */
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, 3, 200, &h),
                     CHAT_OK);
    ck_assert_uint_eq(h.count, 2);
    ck_assert_int_eq(h.items[1].seq, 5);
    chat_client_message_list_free(&h);
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, 0, 200, &h),
                     CHAT_OK);
    ck_assert_uint_eq(h.count, 5);
    ck_assert_int_eq(h.items[0].seq, 1);
    chat_client_message_list_free(&h);
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, 5, 10, &h),
                     CHAT_OK);
    ck_assert_uint_eq(h.count, 0);
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, 0, 0, &h),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_client_history_after(fx->c, fx->conv, -1, 10, &h),
                     CHAT_EINVAL);
}
END_TEST

/* Callbacks may call the client, logout included, even in the middle of a
 * catch-up page (the ASan build sees any state used after it is freed). */
START_TEST(logout_from_a_message_callback)
{
    online_with(3);
    ws(CHAT__NET_WS_EVENT, "message:new", msg_json(5));
    fx->r.logout_on_message = 1;
    answer(pending(&fx->s, catchup_path(3)), 200, page(4, 5));
    expect_seqs(1, 5);
    ck_assert_ptr_null(chat_client_user_id(fx->c));
    ck_assert_int_eq(fx->r.conv_events, 0);
}
END_TEST

/* A conversation created while the first sync's list is in flight is not
 * swept as left by a list the server made before it existed. */
START_TEST(conversation_created_during_a_sync_stays)
{
    chat_client_conversation *v;
    ck_assert_int_gt(chat_client_login(fx->c, "me", "password", NULL, NULL), 0);
    login_answer("A1", "R1");
    ws(CHAT__NET_WS_UP, NULL, NULL);
    ck_assert_ptr_nonnull(pending(&fx->s, "GET /api/chats/conversations?"));
    ck_assert_int_gt(chat_client_dm(fx->c, fx->other, NULL, NULL), 0);
    answer(pending(&fx->s, "POST /api/chats/conversations/dm"), 201,
           conv_json(0, 1));
    answer(pending(&fx->s, "GET /api/chats/conversations?"), 200,
           "{\"conversations\":[],\"next_cursor\":null}");
    ck_assert_int_eq(fx->r.conv_events, 0);
    ck_assert_int_eq(chat_client_conversation_get(fx->c, fx->conv, &v),
                     CHAT_OK);
    chat_client_conversation_free(v);
    ck_assert_int_eq(chat_client_send(fx->c, fx->conv, "x", NULL), CHAT_OK);
}
END_TEST

/* With the statement cache full, statements are prepared per call and
 * finalized after it (ASan's leak check sees any left behind). */
START_TEST(cache_works_with_its_statement_cache_full)
{
    chat__cache *k;
    chat_client_user u;
    chat_client_conversation_list list;
    char *v = NULL;
    ck_assert_int_eq(chat__cache_open(&k, NULL), CHAT_OK);
    chat__cache_stmt_limit(k, 1); /* the first one cached, no other */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chat__cache_meta_set(k, "user_id", "me"), CHAT_OK);
        ck_assert_int_eq(chat__cache_meta_get(k, "user_id", &v), CHAT_OK);
        ck_assert_str_eq(v, "me");
        chat__free(v);
        ck_assert_int_eq(chat__cache_user_put(k, "u1", "name", NULL), CHAT_OK);
        ck_assert_int_eq(chat__cache_user_get(k, "u1", &u), CHAT_OK);
        ck_assert_str_eq(u.username, "name");
        ck_assert_int_eq(chat__cache_conversations(k, &list), CHAT_OK);
        ck_assert_uint_eq(list.count, 0);
        chat_client_conversation_list_free(&list);
    }
    chat__cache_close(k);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client");
    TCase *t = tcase_create("sync engine");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, first_sync_in_order);
    tcase_add_test(t, gap_is_filled_before_later_messages);
    tcase_add_test(t, duplicates_and_replays_are_dropped);
    tcase_add_test(t, out_of_order_live_delivery);
    tcase_add_test(t, delivered_position_survives_restart);
    tcase_add_test(t, killed_inside_a_callback_repeats_only_that_message);
    tcase_add_test(t, refresh_during_requests);
    tcase_add_test(t, failed_refresh_backs_off);
    tcase_add_test(t, refresh_rejected_ends_session);
    tcase_add_test(t, outbox_retries_with_the_same_id);
    tcase_add_test(t, no_spin_after_logout_with_a_retry_due);
    tcase_add_test(t, removed_while_offline);
    tcase_add_test(t, hostile_answers);
    tcase_add_test(t, read_marker_set_offline_is_pushed_after_reconnect);
    tcase_add_test(t, read_ack_of_an_older_marker_keeps_the_newer);
    tcase_add_test(t, fetch_history_events_as_documented);
    tcase_add_test(t, history_after_pages_forward);
    tcase_add_test(t, logout_from_a_message_callback);
    tcase_add_test(t, conversation_created_during_a_sync_stays);
    suite_add_tcase(s, t);
    t = tcase_create("cache");
    tcase_add_test(t, cache_works_with_its_statement_cache_full);
    suite_add_tcase(s, t);
    return chat_test_run(s);
}
