/* Hostile input against every endpoint of a real chatd: each gets the
 * right 4xx with an error body, and the server keeps serving. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>

#include "harness.h"
#include "check_run.h"

#define SECRET "integration-test-secret-0123456789abcdef"

static const char *const no_limits[] = {
    "CHAT_RATE_SEND=off", "CHAT_RATE_TOKEN=off", "CHAT_RATE_LOGIN_IP=off",
    "CHAT_RATE_LOGIN_ACCOUNT=off", NULL};

static th_server S;
static th_user A, B, C;
static char DM[64], GRP[64], MSG[64];

#define EXPECT_ERR(resp, code, errcode)                                        \
    do {                                                                       \
        ck_assert_msg((resp).status == (code), "%s:%d: want %d, got %ld: %s",  \
                      __FILE__, __LINE__, (code), (resp).status,               \
                      (resp).body ? (resp).body : "");                         \
        if ((code) >= 400)                                                     \
            ck_assert_msg(th_err(&(resp))[0] != '\0',                          \
                          "%s:%d: no error body: %s", __FILE__, __LINE__,      \
                          (resp).body ? (resp).body : "");                     \
        if (errcode)                                                           \
            ck_assert_str_eq(th_err(&(resp)), (const char *)(errcode));        \
    } while (0)

static void check(const char *method, const char *path, const char *token,
                  const char *body, int status, const char *errcode)
{
    th_resp r = th_req(&S, method, path, token, body, NULL);
    EXPECT_ERR(r, status, errcode);
    th_resp_free(&r);
}

static void setup(void)
{
    th_resp r;

    th_start(&S, no_limits);
    th_user_new(&S, "alice", &A);
    th_user_new(&S, "bob", &B);
    th_user_new(&S, "mallory", &C);
    r = th_req(&S, "POST", "/api/chats/conversations/dm", A.token,
               th_fmt("{\"user_id\":\"%s\"}", B.id), NULL);
    snprintf(DM, sizeof DM, "%s", th_str(r.json, "id"));
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/chats/conversations/group", A.token,
               th_fmt("{\"title\":\"t\",\"member_ids\":[\"%s\"]}", B.id), NULL);
    snprintf(GRP, sizeof GRP, "%s", th_str(r.json, "id"));
    th_resp_free(&r);
    r = th_req(&S, "POST",
               th_fmt("/api/messages/conversations/%s/messages", DM), A.token,
               "{\"content\":\"secret\"}", NULL);
    snprintf(MSG, sizeof MSG, "%s", th_str(r.json, "message_id"));
    th_resp_free(&r);
}

static void still_serving(void)
{
    th_resp r = th_req(&S, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    th_resp_free(&r);
    r = th_req(&S, "POST",
               th_fmt("/api/messages/conversations/%s/messages", DM), B.token,
               "{\"content\":\"still here\"}", NULL);
    ck_assert_int_eq(r.status, 201);
    th_resp_free(&r);
    ck_assert_msg(kill(S.pid, 0) == 0, "chatd died");
}

static void teardown(void)
{
    still_serving();
    th_cleanup(&S);
}

/* Every JSON endpoint, for the body battery. */
static const struct {
    const char *method;
    const char *path; /* "{conv}" stands for a conversation id */
    int auth;
} json_endpoints[] = {
    {"POST", "/api/users/auth/register", 0},
    {"POST", "/api/users/auth/login", 0},
    {"POST", "/api/users/auth/refresh", 0},
    {"POST", "/api/users/auth/logout", 0},
    {"POST", "/api/chats/conversations/dm", 1},
    {"POST", "/api/chats/conversations/group", 1},
    {"POST", "/api/chats/conversations/{conv}/invite", 1},
    {"PUT", "/api/chats/conversations/{conv}/read", 1},
    {"POST", "/api/messages/conversations/{conv}/messages", 1},
};

START_TEST(malformed_bodies)
{
    static const char *const bad[] = {
        "{",
        "{\"email\":",
        "[1,2,3]",
        "\"text\"",
        "nul",
        "42",
        "{\"a\":1}}",
        "{'a':1}",
        "{\"a\":\"\\x\"}",
        "{\"content\":\"\\ud800\"}", /* lone surrogate */
    };
    size_t e, i;

    for (e = 0; e < sizeof json_endpoints / sizeof json_endpoints[0]; e++) {
        const char *tpl = json_endpoints[e].path, *at = strstr(tpl, "{conv}");
        const char *path =
            at ? th_fmt("%.*s%s%s", (int)(at - tpl), tpl, GRP, at + 6) : tpl;
        const char *tok = json_endpoints[e].auth ? A.token : NULL;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
            check(json_endpoints[e].method, path, tok, bad[i], 400, NULL);
        /* empty body */
        check(json_endpoints[e].method, path, tok, "", 400, "invalid_json");
        /* invalid UTF-8 */
        {
            th_resp r = th_req_raw(&S, json_endpoints[e].method, path, tok,
                                   "{\"content\":\"\xff\xfe\"}", 16, NULL);
            EXPECT_ERR(r, 400, "invalid_utf8");
            th_resp_free(&r);
        }
    }
}
END_TEST

START_TEST(wrong_types_and_missing_fields)
{
    const char *send = th_fmt("/api/messages/conversations/%s/messages", DM);
    const char *read = th_fmt("/api/chats/conversations/%s/read", DM);

    check("POST", "/api/users/auth/register", NULL,
          "{\"email\":123,\"password\":\"password1\",\"username\":\"zed\"}",
          400, "invalid_type");
    check("POST", "/api/users/auth/register", NULL,
          "{\"email\":\"z@test.io\",\"password\":null,\"username\":\"zed\"}",
          422, NULL);
    check("POST", "/api/users/auth/register", NULL, "{}", 422, NULL);
    check("POST", "/api/users/auth/register", NULL,
          th_fmt("{\"email\":\"z@test.io\",\"password\":\"password1\","
                 "\"username\":\"%0200d\"}",
                 0),
          422, NULL);
    check("POST", "/api/users/auth/login", NULL, "{\"password\":\"x\"}", 422,
          NULL);
    check("POST", "/api/users/auth/login", NULL,
          "{\"email\":[],\"password\":\"password1\"}", 400, "invalid_type");
    check("POST", "/api/users/auth/refresh", NULL, "{\"refresh_token\":7}", 400,
          "invalid_type");
    check("POST", "/api/users/auth/refresh", NULL,
          "{\"refresh_token\":\"not-a-token\"}", 401, NULL);
    check("POST", "/api/chats/conversations/dm", A.token, "{\"user_id\":1}",
          400, "invalid_type");
    check("POST", "/api/chats/conversations/dm", A.token,
          "{\"user_id\":\"../../etc/passwd\"}", 422, NULL);
    check("POST", "/api/chats/conversations/group", A.token,
          "{\"title\":\"x\",\"member_ids\":\"abc\"}", 400, "invalid_type");
    check("POST", "/api/chats/conversations/group", A.token,
          "{\"title\":\"x\",\"member_ids\":[1,2]}", 422, NULL);
    check("POST", "/api/chats/conversations/group", A.token,
          "{\"member_ids\":[]}", 422, NULL);
    check("POST", send, A.token, "{\"content\":42}", 400, "invalid_type");
    check("POST", send, A.token, "{\"content\":{}}", 400, "invalid_type");
    check("POST", send, A.token, "{\"content\":\"\"}", 422, NULL);
    check("POST", send, A.token, "{}", 422, NULL);
    check("POST", send, A.token, "{\"content\":\"a\\u0000b\"}", 400,
          "invalid_json");
    check("POST", send, A.token,
          "{\"content\":\"x\",\"client_msg_id\":\"has space\"}", 422, NULL);
    check("POST", send, A.token, "{\"content\":\"x\",\"client_msg_id\":5}", 400,
          "invalid_type");
    check("PUT", read, A.token, "{\"seq\":\"5\"}", 400, "invalid_type");
    check("PUT", read, A.token, "{\"seq\":-1}", 422, NULL);
    check("PUT", read, A.token, "{\"seq\":1.5}", 422, NULL);
    check("PUT", read, A.token, "{\"seq\":1e300}", 422, NULL);
    check("PUT", read, A.token, "{}", 422, NULL);
}
END_TEST

START_TEST(huge_bodies)
{
    size_t n = 4 * 1024 * 1024, i;
    char *big = malloc(n + 64);
    const char *send = th_fmt("/api/messages/conversations/%s/messages", DM);
    th_resp r;

    /* over the body limit: 413, connection closed, nothing stored */
    memcpy(big, "{\"content\":\"", 12);
    memset(big + 12, 'a', n);
    memcpy(big + 12 + n, "\"}", 3);
    r = th_req(&S, "POST", send, A.token, big, NULL);
    EXPECT_ERR(r, 413, "payload_too_large");
    th_resp_free(&r);
    /* under the body limit but over 64 KiB of content */
    i = 65537;
    memcpy(big + 12 + i, "\"}", 3);
    r = th_req(&S, "POST", send, A.token, big, NULL);
    EXPECT_ERR(r, 422, NULL);
    th_resp_free(&r);
    /* exactly 64 KiB is fine */
    i = 65536;
    memcpy(big + 12 + i, "\"}", 3);
    r = th_req(&S, "POST", send, A.token, big, NULL);
    EXPECT_ERR(r, 201, NULL);
    th_resp_free(&r);
    free(big);
    /* a huge array of members */
    {
        size_t k, o = 0, cap = 1024 * 100;
        char *b = malloc(cap);
        o += (size_t)snprintf(b + o, cap - o,
                              "{\"title\":\"x\",\"member_ids\":[");
        for (k = 0; k < 2000 && o + 50 < cap; k++)
            o += (size_t)snprintf(b + o, cap - o, "%s\"%s\"", k ? "," : "",
                                  B.id);
        snprintf(b + o, cap - o, "]}");
        r = th_req(&S, "POST", "/api/chats/conversations/group", A.token, b,
                   NULL);
        EXPECT_ERR(r, 422, "limit_exceeded");
        th_resp_free(&r);
        free(b);
    }
}
END_TEST

START_TEST(bad_queries)
{
    char h[256];
    static const char *const q[] = {
        "?after_seq=-1",
        "?after_seq=abc",
        "?after_seq=1e5",
        "?limit=0",
        "?limit=201",
        "?limit=-5",
        "?limit=99999999999999999999",
        "?before_seq=-3",
        "?after_seq=99999999999999999999",
        "?after_seq=1&before_seq=5",
        "?after_seq=%2B5",
    };
    size_t i;

    snprintf(h, sizeof h, "/api/messages/conversations/%s/messages", DM);
    for (i = 0; i < sizeof q / sizeof q[0]; i++)
        check("GET", th_fmt("%s%s", h, q[i]), A.token, NULL, 422, NULL);
    check("GET", th_fmt("%s?after_seq=4611686018427387903", h), A.token, NULL,
          200, NULL);
    check("GET", "/api/chats/conversations?cursor=garbage", A.token, NULL, 400,
          "invalid_cursor");
    check("GET", "/api/chats/conversations?limit=0", A.token, NULL, 422, NULL);
    check("GET", "/api/users/users", A.token, NULL, 422, NULL);
    check("GET", "/api/users/users?query=a&limit=500", A.token, NULL, 422,
          NULL);
    check("GET", th_fmt("%s/%s?fields=everything", h, MSG), A.token, NULL, 422,
          NULL);
}
END_TEST

static void forge(char *out, size_t size, const char *key, int64_t exp_delta)
{
    chat_jwt_claims c;

    memset(&c, 0, sizeof c);
    memcpy(c.sub, A.id, CHAT_ID_LEN);
    ck_assert_int_eq(chat_uuid_v7(c.jti), CHAT_OK);
    c.iat = chat_time_now_ms() / 1000 - 3600;
    c.exp = c.iat + 3600 + exp_delta;
    ck_assert_int_eq(
        chat_jwt_sign((const uint8_t *)key, strlen(key), &c, out, size),
        CHAT_OK);
}

START_TEST(bad_tokens)
{
    char tok[CHAT_JWT_MAX], none[CHAT_JWT_MAX], *dot;
    const char *me = "/api/users/me";
    th_resp r;

    check("GET", me, NULL, NULL, 401, "unauthorized");
    check("GET", me, "garbage", NULL, 401, "invalid_token");
    check("GET", me, "a.b.c", NULL, 401, "invalid_token");
    /* expired, signed with the real secret */
    forge(tok, sizeof tok, SECRET, -10);
    check("GET", me, tok, NULL, 401, "token_expired");
    /* valid shape, another key */
    forge(tok, sizeof tok, "another-secret-another-secret-another", 600);
    check("GET", me, tok, NULL, 401, "invalid_token");
    /* alg none: {"alg":"none","typ":"JWT"} + the real payload, no sig */
    forge(tok, sizeof tok, SECRET, 600);
    dot = strchr(tok, '.');
    snprintf(none, sizeof none, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0%.*s.",
             (int)(strrchr(tok, '.') - dot), dot);
    check("GET", me, none, NULL, 401, "invalid_token");
    /* tampered payload */
    forge(tok, sizeof tok, SECRET, 600);
    dot = strchr(tok, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    check("GET", me, tok, NULL, 401, "invalid_token");
    /* a refresh token is not an access token */
    check("GET", me, A.refresh, NULL, 401, "invalid_token");
    /* a long token is refused as a token ... */
    {
        char *huge = malloc(65536);
        memset(huge, 'x', 65535);
        huge[6000] = '\0';
        r = th_req(&S, "GET", me, huge, NULL, NULL);
        EXPECT_ERR(r, 401, "invalid_token");
        th_resp_free(&r);
        /* ... and headers past the server's header space (8 KiB) close the
         * connection without an answer; the server goes on serving */
        huge[6000] = 'x';
        huge[65535] = '\0';
        r = th_req(&S, "GET", me, huge, NULL, NULL);
        ck_assert(r.status == 0 || r.status == 431 || r.status == 400);
        th_resp_free(&r);
        free(huge);
    }
    /* and the real token still works */
    forge(tok, sizeof tok, SECRET, 600);
    check("GET", me, tok, NULL, 200, NULL);
}
END_TEST

START_TEST(another_users_conversation)
{
    const char *m = th_fmt("/api/messages/conversations/%s/messages", DM);

    check("GET", th_fmt("/api/chats/conversations/%s", DM), C.token, NULL, 403,
          "forbidden");
    check("GET", m, C.token, NULL, 403, "forbidden");
    check("POST", m, C.token, "{\"content\":\"hi\"}", 403, "forbidden");
    check("GET", th_fmt("%s/%s?fields=full", m, MSG), C.token, NULL, 403,
          "forbidden");
    check("PUT", th_fmt("/api/chats/conversations/%s/read", DM), C.token,
          "{\"seq\":1}", 403, "forbidden");
    check("GET", th_fmt("/api/chats/conversations/%s/read", DM), C.token, NULL,
          403, "forbidden");
    check("POST", th_fmt("/api/chats/conversations/%s/invite", GRP), C.token,
          th_fmt("{\"user_id\":\"%s\"}", C.id), 403, "forbidden");
    check("DELETE", th_fmt("/api/chats/conversations/%s/members/%s", GRP, B.id),
          C.token, NULL, 403, "forbidden");
    /* a message id from another conversation is not found here */
    check("GET", th_fmt("/api/messages/conversations/%s/messages/%s", GRP, MSG),
          A.token, NULL, 404, "not_found");
    /* ids that are not UUIDs */
    check("GET", "/api/chats/conversations/1%20OR%201=1", A.token, NULL, 404,
          NULL);
    check("GET", "/api/messages/conversations/xyz/messages", A.token, NULL, 404,
          NULL);
    check("GET", "/api/users/users/not-a-uuid", A.token, NULL, 404, NULL);
}
END_TEST

START_TEST(routing_and_media_type)
{
    th_resp r;
    const char *const text[] = {"Content-Type: text/plain", NULL};

    check("GET", "/nope", NULL, NULL, 404, "not_found");
    check("GET", "/api/users/auth/login", NULL, NULL, 405,
          "method_not_allowed");
    r = th_req(&S, "DELETE", "/api/chats/conversations", A.token, NULL, NULL);
    EXPECT_ERR(r, 405, "method_not_allowed");
    ck_assert_str_eq(r.allow, "GET");
    th_resp_free(&r);
    r = th_req_raw(&S, "POST", "/api/users/auth/login", NULL, "hello", 5, text);
    EXPECT_ERR(r, 415, NULL);
    th_resp_free(&r);
    /* chunked request bodies are refused, not waited for */
    {
        const char *const chunked[] = {"Transfer-Encoding: chunked", NULL};
        r = th_req(&S, "POST", "/api/users/auth/login", NULL,
                   "{\"email\":\"a@b.io\",\"password\":\"password1\"}",
                   chunked);
        EXPECT_ERR(r, 411, "length_required");
        th_resp_free(&r);
    }
}
END_TEST

START_TEST(floods_hit_rate_limits)
{
    static const char *const env[] = {
        "CHAT_RATE_LOGIN_IP=8/m", "CHAT_RATE_LOGIN_ACCOUNT=3/m",
        "CHAT_RATE_SEND=5/m", "CHAT_RATE_TOKEN=off", NULL};
    th_resp r;
    int i, limited = 0;

    th_cleanup(&S);
    th_start(&S, env);
    th_user_new(&S, "alice", &A); /* 2 of the IP's 8 */
    th_user_new(&S, "bob", &B);   /* 4 of 8 */
    r = th_req(&S, "POST", "/api/chats/conversations/dm", A.token,
               th_fmt("{\"user_id\":\"%s\"}", B.id), NULL);
    snprintf(DM, sizeof DM, "%s", th_str(r.json, "id"));
    th_resp_free(&r);

    /* per account: the 2nd, 3rd failed login pass, the 4th is refused */
    for (i = 0; i < 3; i++) {
        r = th_req(&S, "POST", "/api/users/auth/login", NULL,
                   "{\"email\":\"alice@test.io\",\"password\":\"wrong!!!\"}",
                   NULL);
        if (r.status == 429) {
            ck_assert_int_ge(atoi(r.retry_after), 1);
            limited++;
        }
        th_resp_free(&r);
    }
    ck_assert_int_ge(limited, 1);
    /* per IP: the rest of the 8 go, then 429 */
    for (i = 0, limited = 0; i < 6; i++) {
        r = th_req(&S, "POST", "/api/users/auth/login", NULL,
                   "{\"email\":\"bob@test.io\",\"password\":\"wrong!!!\"}",
                   NULL);
        if (r.status == 429)
            limited++;
        th_resp_free(&r);
    }
    ck_assert_int_ge(limited, 1);
    /* sends per user */
    for (i = 0, limited = 0; i < 8; i++) {
        r = th_req(&S, "POST",
                   th_fmt("/api/messages/conversations/%s/messages", DM),
                   A.token, "{\"content\":\"flood\"}", NULL);
        if (r.status == 429) {
            EXPECT_ERR(r, 429, "rate_limited");
            ck_assert_int_ge(atoi(r.retry_after), 1);
            limited++;
        }
        th_resp_free(&r);
    }
    ck_assert_int_eq(limited, 3);
    /* B can still send: limits are per sender */
    r = th_req(&S, "POST",
               th_fmt("/api/messages/conversations/%s/messages", DM), B.token,
               "{\"content\":\"not me\"}", NULL);
    ck_assert_int_eq(r.status, 201);
    th_resp_free(&r);
    /* teardown's still_serving sends as B (4 of 5 left) */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("chatd");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, malformed_bodies);
    tcase_add_test(tc, wrong_types_and_missing_fields);
    tcase_add_test(tc, huge_bodies);
    tcase_add_test(tc, bad_queries);
    tcase_add_test(tc, bad_tokens);
    tcase_add_test(tc, another_users_conversation);
    tcase_add_test(tc, routing_and_media_type);
    tcase_add_test(tc, floods_hit_rate_limits);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
