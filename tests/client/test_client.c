/*
 * The client SDK against a real chatd: two users and two devices exchange
 * messages live; offline sends flush on reconnect; a client restart keeps
 * history, session and outbox; a chatd killed with SIGKILL mid-traffic
 * loses nothing the clients see.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_run.h"
#include "client/tc.h"
#include "integration/harness.h"

static th_server srv;
static char dir[256];

static const char *cache_file(const char *name)
{
    return th_fmt("%s/%s.db", dir, name);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/chat-client-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    th_start(&srv, NULL);
}

static void teardown(void)
{
    th_stop(&srv, SIGTERM);
    th_cleanup(&srv);
    ck_assert_int_eq(system(th_fmt("rm -rf %s", dir)), 0);
}

static void dm_between(tc *a, tc *b, const char *b_id, char conv[37])
{
    tc_done d = {0};
    int64_t id = chat_client_dm(a->c, b_id, tc_on_done, &d);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(chat_client_wait(a->c, id, 10000), CHAT_OK);
    ck_assert_int_eq(d.calls, 1);
    snprintf(conv, 37, "%s", d.id);
    (void)b;
}

static size_t server_count(const th_user *u, const char *conv)
{
    th_resp r = th_req(&srv, "GET",
                       th_fmt("/api/messages/conversations/%s/messages?"
                              "after_seq=0&limit=200",
                              conv),
                       u->token, NULL, NULL);
    size_t n;
    ck_assert_int_eq(r.status, 200);
    n = (size_t)cJSON_GetArraySize(
        cJSON_GetObjectItemCaseSensitive(r.json, "messages"));
    th_resp_free(&r);
    return n;
}

/* Lines logged, and how many said the live connection came up. */
typedef struct logged {
    pthread_mutex_t lock;
    int lines, ups;
} logged;

static void count_log(int level, const char *line, void *ud)
{
    logged *l = ud;
    (void)level;
    pthread_mutex_lock(&l->lock);
    l->lines++;
    l->ups += strstr(line, "component=sioc event=up") != NULL;
    pthread_mutex_unlock(&l->lock);
}

/* Two clients in one process, each with its own log hook: the lines of
 * each one's threads reach its hook, not the other's nor the process's. */
START_TEST(each_client_logs_to_its_own_hook)
{
    logged la = {PTHREAD_MUTEX_INITIALIZER, 0, 0},
           lb = {PTHREAD_MUTEX_INITIALIZER, 0, 0},
           lg = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    tc *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tc *all[2] = {a, b};
    th_user ua, ub;

    chat_log_set(count_log, CHAT_LOG_DEBUG, &lg);
    th_user_new(&srv, "logan", &ua);
    th_user_new(&srv, "logie", &ub);
    tc_open_log(a, srv.base, NULL, count_log, &la);
    tc_open_log(b, srv.base, NULL, count_log, &lb);
    tc_login(a, "logan");
    tc_login(b, "logie");
    TC_UNTIL(all, 2, 10000, a->connected && b->connected);
    tc_close(a);
    tc_close(b);
    chat_log_set(NULL, CHAT_LOG_OFF, NULL);
    ck_assert_int_eq(la.ups, 1);
    ck_assert_int_eq(lb.ups, 1);
    ck_assert_int_eq(lg.ups, 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(two_users_live)
{
    th_user ua, ub;
    tc *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tc *all[2] = {a, b};
    char conv[37], cmid[37];
    chat_client_conversation_list list;
    chat_client_message_list hist;
    struct stat st;

    th_user_new(&srv, "alice", &ua);
    th_user_new(&srv, "bobby", &ub);
    tc_open(a, srv.base, cache_file("alice"));
    tc_open(b, srv.base, cache_file("bobby"));
    ck_assert_ptr_null(chat_client_user_id(a->c));
    tc_login(a, "alice");
    tc_login(b, "bobby");
    ck_assert_str_eq(chat_client_user_id(a->c), ua.id);
    /* the cache holds tokens: owner-only */
    ck_assert_int_eq(stat(cache_file("alice"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    TC_UNTIL(all, 2, 10000, a->synced && b->synced);

    dm_between(a, b, ub.id, conv);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(chat_client_send(a->c, conv, th_fmt("hello %d", i),
                                          i == 1 ? cmid : NULL),
                         CHAT_OK);
    /* pending at once, in the cache */
    ck_assert_int_eq(chat_client_history(a->c, conv, 0, 50, &hist), CHAT_OK);
    ck_assert_uint_ge(hist.count, 1);
    chat_client_message_list_free(&hist);

    TC_UNTIL(all, 2, 10000, a->n == 3 && b->n == 3);
    ck_assert_int_eq(a->order_errors + b->order_errors, 0);
    ck_assert_str_eq(b->msgs[0].text, "hello 1");
    ck_assert_str_eq(b->msgs[2].text, "hello 3");
    ck_assert_str_eq(a->msgs[0].cmid, cmid);

    /* bob: one conversation, three unread; reading clears it */
    ck_assert_int_eq(chat_client_conversations(b->c, &list), CHAT_OK);
    ck_assert_uint_eq(list.count, 1);
    ck_assert_int_eq(list.items[0].unread, 3);
    ck_assert_str_eq(list.items[0].title, "alice");
    ck_assert_int_eq(list.items[0].has_last_message, 1);
    ck_assert_str_eq(list.items[0].last_message.text, "hello 3");
    chat_client_conversation_list_free(&list);
    int64_t rid = chat_client_mark_read(b->c, conv, 3, NULL, NULL);
    ck_assert_int_eq(chat_client_wait(b->c, rid, 10000), CHAT_OK);
    ck_assert_int_eq(chat_client_conversations(b->c, &list), CHAT_OK);
    ck_assert_int_eq(list.items[0].unread, 0);
    chat_client_conversation_list_free(&list);
    TC_UNTIL(all, 2, 10000, a->reads >= 1);

    /* history and search from the cache, no network needed */
    ck_assert_int_eq(chat_client_history(b->c, conv, 0, 2, &hist), CHAT_OK);
    ck_assert_uint_eq(hist.count, 2);
    ck_assert_int_eq(hist.items[0].seq, 2);
    ck_assert_int_eq(hist.items[1].seq, 3);
    chat_client_message_list_free(&hist);
    ck_assert_int_eq(chat_client_search(b->c, "hello", NULL, 10, &hist),
                     CHAT_OK);
    ck_assert_uint_eq(hist.count, 3);
    chat_client_message_list_free(&hist);
    ck_assert_int_eq(chat_client_search(b->c, "\"unbalanced", NULL, 10, &hist),
                     CHAT_EINVAL);

    /* typing reaches the other member */
    ck_assert_int_eq(chat_client_typing(a->c, conv, 1), CHAT_OK);
    TC_UNTIL(all, 2, 10000, b->typing >= 1);

    ck_assert_int_eq(server_count(&ua, conv), 3);
    tc_close(a);
    tc_close(b);
    free(a);
    free(b);
}
END_TEST

static int64_t unread_of(tc *t, const char *conv)
{
    chat_client_conversation *v;
    int64_t n;
    ck_assert_int_eq(chat_client_conversation_get(t->c, conv, &v), CHAT_OK);
    n = v->unread;
    chat_client_conversation_free(v);
    return n;
}

/* Two devices of user a (caches "<a>-phone", "<a>-laptop") and one of
 * user b, each logged in and synced. */
typedef struct devices {
    th_user ua, ub;
    tc *a1, *a2, *b;
    tc *all[3];
} devices;

static void devices_open(devices *d, const char *a, const char *b)
{
    th_user_new(&srv, a, &d->ua);
    th_user_new(&srv, b, &d->ub);
    d->all[0] = d->a1 = calloc(1, sizeof *d->a1);
    d->all[1] = d->a2 = calloc(1, sizeof *d->a2);
    d->all[2] = d->b = calloc(1, sizeof *d->b);
    tc_open(d->a1, srv.base, cache_file(th_fmt("%s-phone", a)));
    tc_open(d->a2, srv.base, cache_file(th_fmt("%s-laptop", a)));
    tc_open(d->b, srv.base, cache_file(b));
    tc_login(d->a1, a);
    tc_login(d->a2, a);
    tc_login(d->b, b);
    TC_UNTIL(d->all, 3, 10000, d->a1->synced && d->a2->synced && d->b->synced);
}

static void devices_close(devices *d)
{
    for (int i = 0; i < 3; i++) {
        tc_close(d->all[i]);
        free(d->all[i]);
    }
}

START_TEST(own_messages_are_not_unread)
{
    devices dv;
    char conv[37];

    devices_open(&dv, "olive", "peter");
    tc *a1 = dv.a1, *a2 = dv.a2, *b = dv.b, **all = dv.all;
    dm_between(a1, b, dv.ub.id, conv);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(
            chat_client_send(a1->c, conv, th_fmt("own %d", i), NULL), CHAT_OK);
    /* the sending device learns its messages from the send's answers, the
     * other device from live events: neither counts them as unread */
    TC_UNTIL(all, 3, 15000, a1->n == 3 && a2->n == 3 && b->n == 3);
    ck_assert_int_eq(unread_of(a1, conv), 0);
    ck_assert_int_eq(unread_of(a2, conv), 0);
    ck_assert_int_eq(unread_of(b, conv), 3);
    /* an answer counts on the sender's side only */
    ck_assert_int_eq(chat_client_send(b->c, conv, "reply", NULL), CHAT_OK);
    TC_UNTIL(all, 3, 10000, a1->n == 4 && a2->n == 4 && b->n == 4);
    ck_assert_int_eq(unread_of(a1, conv), 1);
    ck_assert_int_eq(unread_of(a2, conv), 1);
    devices_close(&dv);
}
END_TEST

START_TEST(read_marker_set_offline_reaches_other_devices)
{
    devices dv;
    char conv[37];
    int64_t id;

    devices_open(&dv, "quinn", "rosie");
    tc *a1 = dv.a1, *a2 = dv.a2, *b = dv.b, **all = dv.all;
    dm_between(b, a1, dv.ua.id, conv);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(
            chat_client_send(b->c, conv, th_fmt("unread %d", i), NULL),
            CHAT_OK);
    TC_UNTIL(all, 3, 15000, a1->n == 3 && a2->n == 3 && b->n == 3);
    ck_assert_int_eq(unread_of(a1, conv), 3);
    ck_assert_int_eq(unread_of(a2, conv), 3);

    /* the phone reads while the server is down: only its cache knows */
    th_stop(&srv, SIGKILL);
    TC_UNTIL(all, 3, 10000, a1->disconnected && a2->disconnected);
    id = chat_client_mark_read(a1->c, conv, 3, NULL, NULL);
    ck_assert_int_gt(id, 0);
    ck_assert_int_ne(chat_client_wait(a1->c, id, 10000), CHAT_OK);
    ck_assert_int_eq(unread_of(a1, conv), 0);
    ck_assert_int_eq(unread_of(a2, conv), 3);

    /* back up: the phone pushes the marker, the laptop converges */
    th_restart_after_crash(&srv);
    TC_UNTIL(all, 3, 40000, unread_of(a2, conv) == 0);
    ck_assert_int_eq(unread_of(a1, conv), 0);
    ck_assert_int_eq(unread_of(b, conv), 0);
    devices_close(&dv);
}
END_TEST

START_TEST(long_message_full_text)
{
    th_user ua, ub;
    tc *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tc *all[2] = {a, b};
    char conv[37], big[1001];
    chat_client_message_list hist;
    tc_done d = {0};

    th_user_new(&srv, "carol", &ua);
    th_user_new(&srv, "dave1", &ub);
    tc_open(a, srv.base, NULL);
    tc_open(b, srv.base, NULL);
    tc_login(a, "carol");
    tc_login(b, "dave1");
    dm_between(a, b, ub.id, conv);
    memset(big, 'x', 1000);
    big[1000] = '\0';
    ck_assert_int_eq(chat_client_send(a->c, conv, big, NULL), CHAT_OK);
    TC_UNTIL(all, 2, 10000, b->n == 1);
    /* bob got the preview */
    ck_assert_int_eq(chat_client_history(b->c, conv, 0, 10, &hist), CHAT_OK);
    ck_assert_uint_eq(hist.count, 1);
    ck_assert_int_eq(hist.items[0].has_more, 1);
    ck_assert_uint_eq(strlen(hist.items[0].text), 200);
    int64_t id = chat_client_fetch_content(b->c, conv, hist.items[0].message_id,
                                           tc_on_done, &d);
    chat_client_message_list_free(&hist);
    ck_assert_int_eq(chat_client_wait(b->c, id, 10000), CHAT_OK);
    ck_assert_int_eq(chat_client_wait(b->c, id, 0), CHAT_OK); /* kept */
    /* 64 requests later its code is gone, and the error says so */
    for (int i = 0; i < 64; i++) {
        int64_t k = chat_client_user_get(b->c, ua.id, NULL, NULL);
        ck_assert_int_gt(k, 0);
        ck_assert_int_eq(chat_client_wait(b->c, k, 10000), CHAT_OK);
    }
    ck_assert_int_eq(chat_client_wait(b->c, id, 0), CHAT_EINVAL);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "no longer kept"));
    ck_assert_int_eq(chat_client_wait(b->c, id + 100000, 0), CHAT_EINVAL);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "unknown"));
    ck_assert_int_eq(chat_client_history(b->c, conv, 0, 10, &hist), CHAT_OK);
    ck_assert_int_eq(hist.items[0].has_more, 0);
    ck_assert_uint_eq(strlen(hist.items[0].text), 1000);
    chat_client_message_list_free(&hist);
    /* bad input is refused before it reaches the outbox */
    ck_assert_int_eq(chat_client_send(a->c, conv, "", NULL), CHAT_EINVAL);
    ck_assert_int_eq(chat_client_send(a->c, conv, "\xff\xfe", NULL),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_client_send(a->c,
                                      "00000000-0000-4000-8000-000000000000",
                                      "x", NULL),
                     CHAT_ENOTFOUND);
    tc_close(a);
    tc_close(b);
    free(a);
    free(b);
}
END_TEST

static int in_cache(tc *t, const char *conv)
{
    chat_client_conversation *v;
    if (chat_client_conversation_get(t->c, conv, &v) != CHAT_OK)
        return 0;
    chat_client_conversation_free(v);
    return 1;
}

START_TEST(two_devices_and_groups)
{
    devices dv;
    th_user uc;
    const char *members[1];
    tc_done d = {0};
    chat_client_conversation *conv;

    devices_open(&dv, "erin1", "frank");
    tc *a1 = dv.a1, *a2 = dv.a2, *b = dv.b, **all = dv.all;
    th_user_new(&srv, "grace", &uc);
    members[0] = dv.ub.id;
    int64_t id =
        chat_client_group_create(a1->c, "Team", members, 1, tc_on_done, &d);
    ck_assert_int_eq(chat_client_wait(a1->c, id, 10000), CHAT_OK);
    /* the other device and the member learn it live */
    TC_UNTIL(all, 3, 10000, a2->conv_events >= 1 && b->conv_events >= 1);
    ck_assert_int_eq(chat_client_conversation_get(b->c, d.id, &conv), CHAT_OK);
    ck_assert_str_eq(conv->title, "Team");
    ck_assert_uint_eq(conv->member_count_cached, 2);
    chat_client_conversation_free(conv);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(chat_client_send(b->c, d.id, th_fmt("m%d", i), NULL),
                         CHAT_OK);
    ck_assert_int_eq(chat_client_send(a2->c, d.id, "from laptop", NULL),
                     CHAT_OK);
    TC_UNTIL(all, 3, 15000, a1->n == 6 && a2->n == 6 && b->n == 6);
    ck_assert_int_eq(a1->order_errors + a2->order_errors + b->order_errors, 0);
    /* invite grace, then remove frank: frank's cache drops the group */
    tc_done inv = {0};
    id = chat_client_invite(a1->c, d.id, uc.id, tc_on_done, &inv);
    ck_assert_int_eq(chat_client_wait(a1->c, id, 10000), CHAT_OK);
    id = chat_client_remove(a1->c, d.id, dv.ub.id, NULL, NULL);
    ck_assert_int_eq(chat_client_wait(a1->c, id, 10000), CHAT_OK);
    TC_UNTIL(all, 3, 10000, !in_cache(b, d.id));
    tc_done s = {0};
    id = chat_client_users_search(b->c, "gra", 10, tc_on_done, &s);
    ck_assert_int_eq(chat_client_wait(b->c, id, 10000), CHAT_OK);
    ck_assert_uint_eq(s.users, 1);
    devices_close(&dv);
}
END_TEST

START_TEST(offline_outbox_and_restart)
{
    th_user ua, ub;
    tc *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tc *all[2] = {a, b};
    char conv[37];
    chat_client_message_list hist;

    th_user_new(&srv, "heidi", &ua);
    th_user_new(&srv, "ivan1", &ub);
    tc_open(a, srv.base, cache_file("heidi"));
    tc_open(b, srv.base, cache_file("ivan"));
    tc_login(a, "heidi");
    tc_login(b, "ivan1");
    dm_between(a, b, ub.id, conv);
    ck_assert_int_eq(chat_client_send(a->c, conv, "before", NULL), CHAT_OK);
    TC_UNTIL(all, 2, 10000, a->n == 1 && b->n == 1);

    /* the server goes away; sends queue up, visible as pending */
    th_stop(&srv, SIGKILL);
    TC_UNTIL(all, 2, 10000, a->disconnected && b->disconnected);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(
            chat_client_send(a->c, conv, th_fmt("offline %d", i), NULL),
            CHAT_OK);
    tc_pump(all, 2, 300);
    ck_assert_int_eq(chat_client_history(a->c, conv, 0, 50, &hist), CHAT_OK);
    ck_assert_uint_eq(hist.count, 6);
    ck_assert_int_eq(hist.items[5].state, CHAT_MSG_PENDING);
    ck_assert_int_eq(hist.items[5].seq, 0);
    chat_client_message_list_free(&hist);

    /* the client process "restarts" while offline: outbox and session
     * come back from the cache */
    tc_close(a);
    tc_open(a, srv.base, cache_file("heidi"));
    ck_assert_str_eq(chat_client_user_id(a->c), ua.id);
    ck_assert_int_eq(chat_client_history(a->c, conv, 0, 50, &hist), CHAT_OK);
    ck_assert_uint_eq(hist.count, 6);
    chat_client_message_list_free(&hist);

    th_restart_after_crash(&srv);
    /* a fresh recorder sees the 5 new ones (the first was delivered before
     * the restart and is not repeated) */
    TC_UNTIL(all, 2, 30000, a->n == 5 && b->n == 6);
    ck_assert_int_eq(a->msgs[0].seq, 2);
    ck_assert_int_eq(b->order_errors, 0);
    ck_assert_str_eq(b->msgs[5].text, "offline 4");
    ck_assert_int_eq(server_count(&ua, conv), 6);
    ck_assert_int_eq(chat_client_history(a->c, conv, 0, 50, &hist), CHAT_OK);
    ck_assert_uint_eq(hist.count, 6);
    ck_assert_int_eq(hist.items[5].state, CHAT_MSG_SENT);
    chat_client_message_list_free(&hist);
    tc_close(a);
    tc_close(b);
    free(a);
    free(b);
}
END_TEST

START_TEST(server_killed_mid_traffic)
{
    th_user ua, ub;
    tc *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tc *all[2] = {a, b};
    char conv[37];
    const int total = 300;

    th_user_new(&srv, "judy1", &ua);
    th_user_new(&srv, "kevin", &ub);
    tc_open(a, srv.base, cache_file("judy"));
    tc_open(b, srv.base, cache_file("kevin"));
    tc_login(a, "judy1");
    tc_login(b, "kevin");
    dm_between(a, b, ub.id, conv);
    for (int i = 0; i < total; i++) {
        ck_assert_int_eq(chat_client_send(a->c, conv, th_fmt("n%d", i), NULL),
                         CHAT_OK);
        if (i == total / 3) {
            tc_pump(all, 2, 50);
            th_stop(&srv, SIGKILL);
        }
        if (i == total / 2)
            th_restart_after_crash(&srv);
        if (i % 20 == 0)
            tc_pump(all, 2, 5);
    }
    TC_UNTIL(all, 2, 60000, a->n == (size_t)total && b->n == (size_t)total);
    ck_assert_int_eq(a->order_errors + b->order_errors, 0);
    for (int i = 0; i < total; i++)
        ck_assert_str_eq(b->msgs[i].text, th_fmt("n%d", i));
    tc_close(a);
    tc_close(b);
    free(a);
    free(b);
}
END_TEST

START_TEST(session_revoked)
{
    th_user ua;
    tc *a = calloc(1, sizeof *a);
    tc *all[1] = {a};
    th_user_new(&srv, "louis", &ua);
    tc_open(a, srv.base, cache_file("louis"));
    tc_login(a, "louis");
    TC_UNTIL(all, 1, 10000, a->synced);
    /* logging out forgets the tokens; a new client has no session */
    int64_t id = chat_client_logout(a->c, NULL, NULL);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(chat_client_wait(a->c, id, 10000), CHAT_OK);
    ck_assert_ptr_null(chat_client_user_id(a->c));
    tc_close(a);
    tc_open(a, srv.base, cache_file("louis"));
    ck_assert_ptr_null(chat_client_user_id(a->c));
    /* wrong password */
    id = chat_client_login(a->c, "louis", "wrong-password", NULL, NULL);
    ck_assert_int_eq(chat_client_wait(a->c, id, 10000), CHAT_EAUTH);
    tc_close(a);
    free(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client");
    TCase *tcase = tcase_create("against chatd");
    tcase_add_checked_fixture(tcase, setup, teardown);
    tcase_set_timeout(tcase, 120);
    tcase_add_test(tcase, two_users_live);
    tcase_add_test(tcase, each_client_logs_to_its_own_hook);
    tcase_add_test(tcase, own_messages_are_not_unread);
    tcase_add_test(tcase, read_marker_set_offline_reaches_other_devices);
    tcase_add_test(tcase, long_message_full_text);
    tcase_add_test(tcase, two_devices_and_groups);
    tcase_add_test(tcase, offline_outbox_and_restart);
    tcase_add_test(tcase, server_killed_mid_traffic);
    tcase_add_test(tcase, session_revoked);
    suite_add_tcase(s, tcase);
    return chat_test_run(s);
}
