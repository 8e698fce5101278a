/* The whole REST API against a real chatd: every endpoint, the permission
 * matrix, idempotent sends, gapless seq under concurrency, token rotation
 * and reuse detection, restart persistence. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

static const char *const no_limits[] = {
    "CHAT_RATE_SEND=off", "CHAT_RATE_TOKEN=off", "CHAT_RATE_LOGIN_IP=off",
    "CHAT_RATE_LOGIN_ACCOUNT=off", NULL};

static th_server S;

static void setup(void)
{
    th_start(&S, no_limits);
}

static void teardown(void)
{
    th_cleanup(&S);
}

#define EXPECT(resp, code)                                                     \
    ck_assert_msg((resp).status == (code), "%s:%d: want %d, got %ld: %s",      \
                  __FILE__, __LINE__, (code), (resp).status,                   \
                  (resp).body ? (resp).body : "")

static char *make_dm(th_user *a, th_user *b)
{
    th_resp r = th_req(&S, "POST", "/api/chats/conversations/dm", a->token,
                       th_fmt("{\"user_id\":\"%s\"}", b->id), NULL);
    char *id;

    ck_assert(r.status == 200 || r.status == 201);
    id = strdup(th_str(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static th_resp send_msg(th_user *u, const char *conv, const char *content,
                        const char *cmid)
{
    cJSON *o = cJSON_CreateObject();
    char *body;
    th_resp r;

    cJSON_AddStringToObject(o, "content", content);
    if (cmid)
        cJSON_AddStringToObject(o, "client_msg_id", cmid);
    body = cJSON_PrintUnformatted(o);
    r = th_req(&S, "POST",
               th_fmt("/api/messages/conversations/%s/messages", conv),
               u->token, body, NULL);
    free(body);
    cJSON_Delete(o);
    return r;
}

START_TEST(users_register_login_lookup)
{
    th_user a, b;
    th_resp r;
    const cJSON *arr;

    th_user_new(&S, "alice", &a);
    th_user_new(&S, "bob", &b);

    /* taken email / username, case-insensitively */
    r = th_req(&S, "POST", "/api/users/auth/register", NULL,
               "{\"email\":\"ALICE@test.io\",\"password\":\"password1\","
               "\"username\":\"alice2\"}",
               NULL);
    EXPECT(r, 409);
    ck_assert_str_eq(th_err(&r), "conflict");
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/register", NULL,
               "{\"email\":\"x@test.io\",\"password\":\"password1\","
               "\"username\":\"Alice\"}",
               NULL);
    EXPECT(r, 409);
    th_resp_free(&r);
    /* invalid fields */
    r = th_req(&S, "POST", "/api/users/auth/register", NULL,
               "{\"email\":\"c@test.io\",\"password\":\"short\","
               "\"username\":\"carol\"}",
               NULL);
    EXPECT(r, 422);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/register", NULL,
               "{\"email\":\"not-an-email\",\"password\":\"password1\","
               "\"username\":\"carol\"}",
               NULL);
    EXPECT(r, 422);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/register", NULL,
               "{\"email\":\"c@test.io\",\"password\":\"password1\","
               "\"username\":\"no spaces\"}",
               NULL);
    EXPECT(r, 422);
    th_resp_free(&r);

    /* login by username, wrong password, unknown account */
    r = th_req(&S, "POST", "/api/users/auth/login", NULL,
               "{\"username\":\"bob\",\"password\":\"password-bob\"}", NULL);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "token_type"), "Bearer");
    ck_assert_int_eq((int)th_num(r.json, "expires_in"), 900);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/login", NULL,
               "{\"username\":\"bob\",\"password\":\"wrong-password\"}", NULL);
    EXPECT(r, 401);
    ck_assert_str_eq(th_err(&r), "invalid_credentials");
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/login", NULL,
               "{\"email\":\"nobody@test.io\",\"password\":\"password1\"}",
               NULL);
    EXPECT(r, 401);
    th_resp_free(&r);

    /* me, by id (no email for others), search */
    r = th_req(&S, "GET", "/api/users/me", a.token, NULL, NULL);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "id"), a.id);
    ck_assert_str_eq(th_str(r.json, "email"), "alice@test.io");
    th_resp_free(&r);
    r = th_req(&S, "GET", th_fmt("/api/users/users/%s", b.id), a.token, NULL,
               NULL);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "username"), "bob");
    ck_assert_ptr_null(th_str(r.json, "email"));
    th_resp_free(&r);
    r = th_req(&S, "GET",
               "/api/users/users/00000000-0000-7000-8000-000000000000", a.token,
               NULL, NULL);
    EXPECT(r, 404);
    th_resp_free(&r);
    r = th_req(&S, "GET", "/api/users/users?query=BO", a.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "users");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 1);
    ck_assert_str_eq(th_str(cJSON_GetArrayItem(arr, 0), "id"), b.id);
    th_resp_free(&r);
    r = th_req(&S, "GET", "/api/users/me", NULL, NULL, NULL);
    EXPECT(r, 401);
    th_resp_free(&r);
}
END_TEST

START_TEST(refresh_rotation_and_reuse)
{
    th_user a;
    th_resp r, r2;
    char second[128];

    th_user_new(&S, "alice", &a);
    r = th_req(&S, "POST", "/api/users/auth/refresh", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", a.refresh), NULL);
    EXPECT(r, 200);
    snprintf(second, sizeof second, "%s", th_str(r.json, "refresh_token"));
    ck_assert_str_ne(second, a.refresh);
    /* the new access token works */
    r2 = th_req(&S, "GET", "/api/users/me", th_str(r.json, "access_token"),
                NULL, NULL);
    EXPECT(r2, 200);
    th_resp_free(&r2);
    th_resp_free(&r);

    /* replaying the first token revokes the family ... */
    r = th_req(&S, "POST", "/api/users/auth/refresh", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", a.refresh), NULL);
    EXPECT(r, 401);
    th_resp_free(&r);
    /* ... so the rotated one is dead too */
    r = th_req(&S, "POST", "/api/users/auth/refresh", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", second), NULL);
    EXPECT(r, 401);
    th_resp_free(&r);

    /* logout revokes a fresh session */
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/login", NULL,
               "{\"email\":\"alice@test.io\",\"password\":\"password-alice\"}",
               NULL);
    EXPECT(r, 200);
    snprintf(second, sizeof second, "%s", th_str(r.json, "refresh_token"));
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/logout", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", second), NULL);
    EXPECT(r, 204);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/refresh", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", second), NULL);
    EXPECT(r, 401);
    th_resp_free(&r);
}
END_TEST

START_TEST(conversations_and_permissions)
{
    th_user a, b, c, d;
    th_resp r;
    char *dm, *grp;
    const cJSON *arr;

    th_user_new(&S, "alice", &a);
    th_user_new(&S, "bob", &b);
    th_user_new(&S, "carol", &c);
    th_user_new(&S, "dave", &d);

    /* DM create-or-get is symmetric */
    r = th_req(&S, "POST", "/api/chats/conversations/dm", a.token,
               th_fmt("{\"user_id\":\"%s\"}", b.id), NULL);
    EXPECT(r, 201);
    dm = strdup(th_str(r.json, "id"));
    ck_assert_str_eq(th_str(r.json, "kind"), "dm");
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/chats/conversations/dm", b.token,
               th_fmt("{\"user_id\":\"%s\"}", a.id), NULL);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "id"), dm);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/chats/conversations/dm", a.token,
               th_fmt("{\"user_id\":\"%s\"}", a.id), NULL);
    EXPECT(r, 422);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/chats/conversations/dm", a.token,
               "{\"user_id\":\"00000000-0000-7000-8000-000000000000\"}", NULL);
    EXPECT(r, 404);
    th_resp_free(&r);

    /* outsiders see nothing */
    r = th_req(&S, "GET", th_fmt("/api/chats/conversations/%s", dm), c.token,
               NULL, NULL);
    EXPECT(r, 403);
    th_resp_free(&r);
    r = th_req(&S, "GET",
               "/api/chats/conversations/00000000-0000-7000-8000-000000000000",
               c.token, NULL, NULL);
    EXPECT(r, 404);
    th_resp_free(&r);
    r = send_msg(&c, dm, "intrusion", NULL);
    EXPECT(r, 403);
    th_resp_free(&r);
    r = th_req(&S, "GET", th_fmt("/api/messages/conversations/%s/messages", dm),
               c.token, NULL, NULL);
    EXPECT(r, 403);
    th_resp_free(&r);

    /* group: owner alice, member bob */
    r = th_req(&S, "POST", "/api/chats/conversations/group", a.token,
               th_fmt("{\"title\":\"Team ✓\",\"member_ids\":[\"%s\"]}", b.id),
               NULL);
    EXPECT(r, 201);
    grp = strdup(th_str(r.json, "id"));
    ck_assert_int_eq((int)th_num(r.json, "member_count"), 2);
    ck_assert_str_eq(th_str(r.json, "role"), "owner");
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "members");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 2);
    th_resp_free(&r);

    /* invites: members can't, owners can, twice is a conflict */
    r = th_req(&S, "POST", th_fmt("/api/chats/conversations/%s/invite", grp),
               b.token, th_fmt("{\"user_id\":\"%s\"}", c.id), NULL);
    EXPECT(r, 403);
    th_resp_free(&r);
    r = th_req(&S, "POST", th_fmt("/api/chats/conversations/%s/invite", grp),
               a.token, th_fmt("{\"user_id\":\"%s\"}", c.id), NULL);
    EXPECT(r, 201);
    th_resp_free(&r);
    r = th_req(&S, "POST", th_fmt("/api/chats/conversations/%s/invite", grp),
               a.token, th_fmt("{\"user_id\":\"%s\"}", c.id), NULL);
    EXPECT(r, 409);
    th_resp_free(&r);
    r = th_req(&S, "POST", th_fmt("/api/chats/conversations/%s/invite", dm),
               a.token, th_fmt("{\"user_id\":\"%s\"}", c.id), NULL);
    EXPECT(r, 422);
    th_resp_free(&r);

    /* removal: a member can't remove others; the owner can; anyone leaves */
    r = th_req(&S, "DELETE",
               th_fmt("/api/chats/conversations/%s/members/%s", grp, c.id),
               b.token, NULL, NULL);
    EXPECT(r, 403);
    th_resp_free(&r);
    r = th_req(&S, "DELETE",
               th_fmt("/api/chats/conversations/%s/members/%s", grp, c.id),
               a.token, NULL, NULL);
    EXPECT(r, 204);
    th_resp_free(&r);
    r = send_msg(&c, grp, "still here?", NULL);
    EXPECT(r, 403);
    th_resp_free(&r);
    r = th_req(&S, "DELETE",
               th_fmt("/api/chats/conversations/%s/members/%s", grp, b.id),
               b.token, NULL, NULL);
    EXPECT(r, 204);
    th_resp_free(&r);
    r = th_req(&S, "DELETE",
               th_fmt("/api/chats/conversations/%s/members/%s", grp, d.id),
               a.token, NULL, NULL);
    EXPECT(r, 404);
    th_resp_free(&r);

    /* the list: newest activity first */
    r = send_msg(&a, dm, "latest", NULL);
    EXPECT(r, 201);
    th_resp_free(&r);
    r = th_req(&S, "GET", "/api/chats/conversations", a.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "conversations");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 2);
    ck_assert_str_eq(th_str(cJSON_GetArrayItem(arr, 0), "id"), dm);
    ck_assert_str_eq(th_str(cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetArrayItem(arr, 0), "last_message"),
                            "preview"),
                     "latest");
    th_resp_free(&r);
    /* bob sees one unread in the DM */
    r = th_req(&S, "GET", "/api/chats/conversations", b.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "conversations");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 1);
    ck_assert_int_eq((int)th_num(cJSON_GetArrayItem(arr, 0), "unread_count"),
                     1);
    th_resp_free(&r);
    free(dm);
    free(grp);
}
END_TEST

START_TEST(conversation_list_paging)
{
    th_user a, b[3];
    th_resp r;
    char cursor[256] = "";
    int seen = 0, pages = 0;

    th_user_new(&S, "alice", &a);
    for (int i = 0; i < 3; i++) {
        th_user_new(&S, th_fmt("peer%d", i), &b[i]);
        free(make_dm(&a, &b[i]));
    }
    for (int i = 0; i < 4; i++) {
        r = th_req(&S, "POST", "/api/chats/conversations/group", a.token,
                   th_fmt("{\"title\":\"g%d\",\"member_ids\":[]}", i), NULL);
        EXPECT(r, 201);
        th_resp_free(&r);
    }
    do {
        const cJSON *next;
        r = th_req(&S, "GET",
                   th_fmt("/api/chats/conversations?limit=3%s%s",
                          cursor[0] ? "&cursor=" : "", cursor),
                   a.token, NULL, NULL);
        EXPECT(r, 200);
        seen += cJSON_GetArraySize(
            cJSON_GetObjectItemCaseSensitive(r.json, "conversations"));
        next = cJSON_GetObjectItemCaseSensitive(r.json, "next_cursor");
        cursor[0] = '\0';
        if (cJSON_IsString(next))
            snprintf(cursor, sizeof cursor, "%s", next->valuestring);
        th_resp_free(&r);
        pages++;
    } while (cursor[0] && pages < 10);
    ck_assert_int_eq(seen, 7);
    ck_assert_int_eq(pages, 3);
}
END_TEST

START_TEST(group_member_limit)
{
    th_user a, extra;
    th_resp r;
    cJSON *ids = cJSON_CreateArray(), *body = cJSON_CreateObject();
    char *text, *grp;
    int i;

    th_user_new(&S, "owner", &a);
    th_user_new(&S, "extra", &extra);
    /* 99 more users straight through the store would be faster, but the
     * API is what is under test: register them (no login needed). */
    for (i = 0; i < 99; i++) {
        r = th_req(&S, "POST", "/api/users/auth/register", NULL,
                   th_fmt("{\"email\":\"m%d@test.io\",\"password\":"
                          "\"password1\",\"username\":\"member%d\"}",
                          i, i),
                   NULL);
        EXPECT(r, 201);
        cJSON_AddItemToArray(ids, cJSON_CreateString(th_str(r.json, "id")));
        th_resp_free(&r);
    }
    cJSON_AddStringToObject(body, "title", "full house");
    cJSON_AddItemToObject(body, "member_ids", ids);
    text = cJSON_PrintUnformatted(body);
    r = th_req(&S, "POST", "/api/chats/conversations/group", a.token, text,
               NULL);
    EXPECT(r, 201);
    ck_assert_int_eq((int)th_num(r.json, "member_count"), 100);
    grp = strdup(th_str(r.json, "id"));
    th_resp_free(&r);
    r = th_req(&S, "POST", th_fmt("/api/chats/conversations/%s/invite", grp),
               a.token, th_fmt("{\"user_id\":\"%s\"}", extra.id), NULL);
    EXPECT(r, 422);
    th_resp_free(&r);
    /* 101 at creation */
    cJSON_AddItemToArray(ids, cJSON_CreateString(extra.id));
    free(text);
    text = cJSON_PrintUnformatted(body);
    r = th_req(&S, "POST", "/api/chats/conversations/group", a.token, text,
               NULL);
    EXPECT(r, 422);
    th_resp_free(&r);
    free(text);
    free(grp);
    cJSON_Delete(body);
}
END_TEST

START_TEST(messages_send_history_read)
{
    th_user a, b;
    th_resp r;
    char *dm, mid[64], cmid[] = "0193a3e0-0000-7000-8000-00000000c0de";
    char big[1001];
    const cJSON *arr;
    int i;

    th_user_new(&S, "alice", &a);
    th_user_new(&S, "bob", &b);
    dm = make_dm(&a, &b);

    r = send_msg(&a, dm, "hello bob", cmid);
    EXPECT(r, 201);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 1);
    ck_assert_str_eq(th_str(r.json, "preview"), "hello bob");
    ck_assert_str_eq(th_str(r.json, "sender_id"), a.id);
    ck_assert_str_eq(th_str(r.json, "conversation_id"), dm);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "has_more")));
    ck_assert_int_eq((int)strlen(th_str(r.json, "created_at")), 24);
    snprintf(mid, sizeof mid, "%s", th_str(r.json, "message_id"));
    th_resp_free(&r);

    /* an idempotent retry returns the original */
    r = send_msg(&a, dm, "hello bob", cmid);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "message_id"), mid);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 1);
    th_resp_free(&r);

    /* a long message: 200-char preview, full text on demand */
    for (i = 0; i < 1000; i++)
        big[i] = (char)('a' + i % 26);
    big[1000] = '\0';
    r = send_msg(&b, dm, big, NULL);
    EXPECT(r, 201);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 2);
    ck_assert_int_eq((int)strlen(th_str(r.json, "preview")), 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "has_more")));
    snprintf(mid, sizeof mid, "%s", th_str(r.json, "message_id"));
    th_resp_free(&r);
    r = th_req(&S, "GET",
               th_fmt("/api/messages/conversations/%s/messages/%s?fields=full",
                      dm, mid),
               a.token, NULL, NULL);
    EXPECT(r, 200);
    ck_assert_str_eq(th_str(r.json, "content"), big);
    th_resp_free(&r);

    for (i = 3; i <= 10; i++) {
        r = send_msg(&a, dm, th_fmt("message %d", i), NULL);
        EXPECT(r, 201);
        ck_assert_int_eq((int)th_num(r.json, "seq"), i);
        th_resp_free(&r);
    }
    /* pages forward and back, ascending */
    r = th_req(&S, "GET",
               th_fmt("/api/messages/conversations/%s/messages?after_seq=4&"
                      "limit=3",
                      dm),
               b.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
    ck_assert_int_eq((int)th_num(cJSON_GetArrayItem(arr, 0), "seq"), 5);
    ck_assert_int_eq((int)th_num(cJSON_GetArrayItem(arr, 2), "seq"), 7);
    th_resp_free(&r);
    r = th_req(
        &S, "GET",
        th_fmt("/api/messages/conversations/%s/messages?before_seq=4", dm),
        b.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
    ck_assert_int_eq((int)th_num(cJSON_GetArrayItem(arr, 0), "seq"), 1);
    th_resp_free(&r);
    r = th_req(&S, "GET", th_fmt("/api/messages/conversations/%s/messages", dm),
               b.token, NULL, NULL);
    EXPECT(r, 200);
    ck_assert_int_eq(cJSON_GetArraySize(
                         cJSON_GetObjectItemCaseSensitive(r.json, "messages")),
                     10);
    th_resp_free(&r);

    /* read markers: monotonic, clamped, visible to members */
    r = th_req(&S, "PUT", th_fmt("/api/chats/conversations/%s/read", dm),
               b.token, "{\"seq\":7}", NULL);
    EXPECT(r, 200);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 7);
    th_resp_free(&r);
    r = th_req(&S, "PUT", th_fmt("/api/chats/conversations/%s/read", dm),
               b.token, "{\"seq\":3}", NULL);
    EXPECT(r, 200);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 7);
    th_resp_free(&r);
    r = th_req(&S, "PUT", th_fmt("/api/chats/conversations/%s/read", dm),
               b.token, "{\"seq\":1000}", NULL);
    EXPECT(r, 200);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 10);
    th_resp_free(&r);
    r = th_req(&S, "GET", th_fmt("/api/chats/conversations/%s/read", dm),
               a.token, NULL, NULL);
    EXPECT(r, 200);
    arr = cJSON_GetObjectItemCaseSensitive(r.json, "read_states");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 2);
    th_resp_free(&r);
    r = th_req(&S, "GET", th_fmt("/api/chats/conversations/%s", dm), b.token,
               NULL, NULL);
    EXPECT(r, 200);
    ck_assert_int_eq((int)th_num(r.json, "unread_count"), 0);
    th_resp_free(&r);
    free(dm);
}
END_TEST

/* ---- gapless seq under concurrent senders ----------------------------- */

#define SENDERS    8
#define PER_SENDER 500

struct sender {
    th_user u;
    const char *conv;
    int ok;
};

static void *sender_main(void *p)
{
    struct sender *s = p;
    int i;

    for (i = 0; i < PER_SENDER; i++) {
        th_resp r =
            send_msg(&s->u, s->conv, th_fmt("%s #%d", s->u.id, i), NULL);
        if (r.status == 201)
            s->ok++;
        th_resp_free(&r);
    }
    return NULL;
}

START_TEST(gapless_seq_concurrent)
{
    struct sender s[SENDERS];
    pthread_t t[SENDERS];
    cJSON *ids = cJSON_CreateArray(), *body = cJSON_CreateObject();
    char *text, *grp, *seen;
    th_resp r;
    int i, total = 0, after = 0;

    for (i = 0; i < SENDERS; i++) {
        th_user_new(&S, th_fmt("sender%d", i), &s[i].u);
        if (i)
            cJSON_AddItemToArray(ids, cJSON_CreateString(s[i].u.id));
    }
    cJSON_AddStringToObject(body, "title", "load");
    cJSON_AddItemToObject(body, "member_ids", ids);
    text = cJSON_PrintUnformatted(body);
    r = th_req(&S, "POST", "/api/chats/conversations/group", s[0].u.token, text,
               NULL);
    EXPECT(r, 201);
    grp = strdup(th_str(r.json, "id"));
    th_resp_free(&r);
    free(text);
    cJSON_Delete(body);

    for (i = 0; i < SENDERS; i++) {
        s[i].conv = grp;
        s[i].ok = 0;
        pthread_create(&t[i], NULL, sender_main, &s[i]);
    }
    for (i = 0; i < SENDERS; i++) {
        pthread_join(t[i], NULL);
        total += s[i].ok;
    }
    ck_assert_int_eq(total, SENDERS * PER_SENDER);

    /* read everything back: exactly 1..4000, each once */
    seen = calloc(SENDERS * PER_SENDER + 1, 1);
    for (;;) {
        const cJSON *arr, *m;
        r = th_req(&S, "GET",
                   th_fmt("/api/messages/conversations/%s/messages?"
                          "after_seq=%d&limit=200",
                          grp, after),
                   s[0].u.token, NULL, NULL);
        EXPECT(r, 200);
        arr = cJSON_GetObjectItemCaseSensitive(r.json, "messages");
        if (cJSON_GetArraySize(arr) == 0) {
            th_resp_free(&r);
            break;
        }
        cJSON_ArrayForEach(m, arr)
        {
            int seq = (int)th_num(m, "seq");
            ck_assert_int_eq(seq, after + 1);
            ck_assert_int_le(seq, SENDERS * PER_SENDER);
            ck_assert(!seen[seq]);
            seen[seq] = 1;
            after = seq;
        }
        th_resp_free(&r);
    }
    ck_assert_int_eq(after, SENDERS * PER_SENDER);
    free(seen);
    free(grp);
}
END_TEST

START_TEST(restart_keeps_everything)
{
    th_user a, b;
    th_resp r;
    char *dm;
    int i;

    th_user_new(&S, "alice", &a);
    th_user_new(&S, "bob", &b);
    dm = make_dm(&a, &b);
    for (i = 1; i <= 20; i++) {
        r = send_msg(&a, dm, th_fmt("before restart %d", i), NULL);
        EXPECT(r, 201);
        th_resp_free(&r);
    }
    th_restart(&S);
    /* same secret: the old access token still verifies */
    r = th_req(&S, "GET",
               th_fmt("/api/messages/conversations/%s/messages?limit=200", dm),
               b.token, NULL, NULL);
    EXPECT(r, 200);
    ck_assert_int_eq(cJSON_GetArraySize(
                         cJSON_GetObjectItemCaseSensitive(r.json, "messages")),
                     20);
    th_resp_free(&r);
    r = send_msg(&b, dm, "after restart", NULL);
    EXPECT(r, 201);
    ck_assert_int_eq((int)th_num(r.json, "seq"), 21);
    th_resp_free(&r);
    r = th_req(&S, "POST", "/api/users/auth/refresh", NULL,
               th_fmt("{\"refresh_token\":\"%s\"}", a.refresh), NULL);
    EXPECT(r, 200);
    th_resp_free(&r);
    free(dm);
}
END_TEST

/* ---- kill -9 during traffic: every acknowledged send survives -------- */

struct acker {
    th_user u;
    const char *conv;
    volatile int stop;
    int acked[4096]; /* seqs the server acknowledged with 201 */
    int nacked;
};

static void *acker_main(void *p)
{
    struct acker *a = p;
    int i;

    for (i = 0; !a->stop && a->nacked < 4096; i++) {
        th_resp r = send_msg(&a->u, a->conv, th_fmt("durable %d", i), NULL);
        long status = r.status;
        if (status == 201)
            a->acked[a->nacked++] = (int)th_num(r.json, "seq");
        th_resp_free(&r);
        if (status == 0) /* the server is gone */
            break;
    }
    return NULL;
}

START_TEST(sigkill_loses_no_acknowledged_send)
{
    struct acker *a = calloc(4, sizeof *a);
    pthread_t t[4];
    char *dm, *present;
    th_user peer;
    th_resp r;
    int i, k, after = 0, last = 0;

    th_user_new(&S, "peer", &peer);
    for (i = 0; i < 4; i++) {
        th_user_new(&S, th_fmt("writer%d", i), &a[i].u);
        dm = make_dm(&a[i].u, &peer);
        a[i].conv = dm;
    }
    for (i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, acker_main, &a[i]);
    usleep(700 * 1000);
    th_stop(&S, SIGKILL); /* no chance to flush anything */
    for (i = 0; i < 4; i++) {
        a[i].stop = 1;
        pthread_join(t[i], NULL);
    }
    th_restart_after_crash(&S);
    for (i = 0; i < 4; i++) {
        ck_assert_int_gt(a[i].nacked, 0);
        present = calloc(8192, 1);
        after = 0;
        last = 0;
        for (;;) {
            const cJSON *m, *arr;
            r = th_req(&S, "GET",
                       th_fmt("/api/messages/conversations/%s/messages?"
                              "after_seq=%d&limit=200",
                              a[i].conv, after),
                       a[i].u.token, NULL, NULL);
            ck_assert_int_eq(r.status, 200);
            arr = cJSON_GetObjectItemCaseSensitive(r.json, "messages");
            if (cJSON_GetArraySize(arr) == 0) {
                th_resp_free(&r);
                break;
            }
            cJSON_ArrayForEach(m, arr)
            {
                int seq = (int)th_num(m, "seq");
                ck_assert_int_eq(seq, last + 1); /* still gapless */
                last = seq;
                if (seq < 8192)
                    present[seq] = 1;
                after = seq;
            }
            th_resp_free(&r);
        }
        for (k = 0; k < a[i].nacked; k++)
            ck_assert_msg(present[a[i].acked[k]],
                          "acknowledged seq %d lost after kill -9",
                          a[i].acked[k]);
        free(present);
        free((void *)a[i].conv);
    }
    free(a);
}
END_TEST

START_TEST(health_metrics_cors)
{
    const char *const origin[] = {"Origin: https://app.example", NULL};
    th_resp r;

    r = th_req(&S, "GET", "/healthz", NULL, NULL, NULL);
    EXPECT(r, 200);
    th_resp_free(&r);
    r = th_req(&S, "GET", "/metrics", NULL, NULL, NULL);
    EXPECT(r, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "chat_http_requests_total"));
    ck_assert_ptr_nonnull(strstr(r.body, "chat_http_request_duration_seconds"));
    th_resp_free(&r);
    /* CORS is off unless configured */
    r = th_req(&S, "GET", "/healthz", NULL, NULL, origin);
    EXPECT(r, 200);
    ck_assert_str_eq(r.cors_origin, "");
    th_resp_free(&r);
}
END_TEST

START_TEST(cors_when_configured)
{
    static const char *const env[] = {"CHAT_CORS_ORIGINS=https://app.example",
                                      NULL};
    const char *const good[] = {"Origin: https://app.example",
                                "Access-Control-Request-Method: POST", NULL};
    const char *const bad[] = {"Origin: https://evil.example", NULL};
    th_resp r;

    th_cleanup(&S);
    th_start(&S, env);
    r = th_req(&S, "OPTIONS", "/api/users/auth/login", NULL, NULL, good);
    EXPECT(r, 204);
    ck_assert_str_eq(r.cors_origin, "https://app.example");
    th_resp_free(&r);
    r = th_req(&S, "GET", "/healthz", NULL, NULL, bad);
    EXPECT(r, 200);
    ck_assert_str_eq(r.cors_origin, "");
    th_resp_free(&r);
}
END_TEST

START_TEST(sigterm_exits_cleanly)
{
    ck_assert_int_eq(th_stop(&S, SIGTERM), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("chatd");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, users_register_login_lookup);
    tcase_add_test(tc, refresh_rotation_and_reuse);
    tcase_add_test(tc, conversations_and_permissions);
    tcase_add_test(tc, conversation_list_paging);
    tcase_add_test(tc, group_member_limit);
    tcase_add_test(tc, messages_send_history_read);
    tcase_add_test(tc, gapless_seq_concurrent);
    tcase_add_test(tc, restart_keeps_everything);
    tcase_add_test(tc, sigkill_loses_no_acknowledged_send);
    tcase_add_test(tc, health_metrics_cors);
    tcase_add_test(tc, cors_when_configured);
    tcase_add_test(tc, sigterm_exits_cleanly);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
