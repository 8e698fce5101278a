/*
 * Crash safety: a client process sending 1,000 messages is killed with
 * SIGKILL at random moments and restarted each time. At the end the
 * server holds each message exactly once, in send order, and the client's
 * cache holds exactly what the server holds.
 */
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_run.h"
#include "client/tc.h"
#include "integration/harness.h"

#ifndef CRASH_SENDER_PATH
#error "CRASH_SENDER_PATH must name the crash_sender binary"
#endif

#define TOTAL 1000

static th_server srv;

/* Every message of conv on the server, in seq order, as "c<i>" indexes. */
static int server_log(const th_user *u, const char *conv, int *idx, int max)
{
    int n = 0;
    for (int64_t after = 0;;) {
        th_resp r = th_req(&srv, "GET",
                           th_fmt("/api/messages/conversations/%s/messages?"
                                  "after_seq=%lld&limit=200",
                                  conv, (long long)after),
                           u->token, NULL, NULL);
        const cJSON *m, *msgs;
        int got = 0;
        ck_assert_int_eq(r.status, 200);
        msgs = cJSON_GetObjectItemCaseSensitive(r.json, "messages");
        cJSON_ArrayForEach(m, msgs)
        {
            int k = -1;
            ck_assert_int_eq((int64_t)th_num(m, "seq"), after + 1);
            after++;
            ck_assert_int_eq(sscanf(th_str(m, "preview"), "c%d", &k), 1);
            ck_assert_int_lt(n, max);
            idx[n++] = k;
            got++;
        }
        th_resp_free(&r);
        if (got < 200)
            return n;
    }
}

START_TEST(kill9_while_sending)
{
    th_user ua, ub;
    char dir[] = "/tmp/chat-crash-XXXXXX", cache[300], conv[37];
    static int idx[TOTAL * 2];
    int kills = 0, finished = 0;
    th_resp r;

    /* Until a run has stored the session, every run logs in again, and
     * many are killed mid-login (argon2id takes ~200 ms, more on a busy
     * machine): the per-account login limit (10/m) would refuse the 11th
     * and fail the test for a reason that is not its subject. */
    static const char *const env[] = {"CHAT_RATE_LOGIN_ACCOUNT=off",
                                      "CHAT_RATE_LOGIN_IP=off", NULL};

    th_start(&srv, env);
    th_user_new(&srv, "crasher", &ua);
    th_user_new(&srv, "witness", &ub);
    r = th_req(&srv, "POST", "/api/chats/conversations/dm", ua.token,
               th_fmt("{\"user_id\":\"%s\"}", ub.id), NULL);
    ck_assert_int_eq(r.status, 201);
    snprintf(conv, sizeof conv, "%s", th_str(r.json, "id"));
    th_resp_free(&r);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cache, sizeof cache, "%s/crasher.db", dir);

    for (int round = 0; round < 400 && !finished; round++) {
        int status;
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            int devnull = open("/dev/null", 1);
            dup2(devnull, 1);
            execl(CRASH_SENDER_PATH, "crash_sender", srv.base, cache, "crasher",
                  "password-crasher", conv, th_fmt("%d", TOTAL), (char *)NULL);
            _exit(127);
        }
        /* Kill it somewhere in its first 20–400 ms: at start-up, mid-send,
         * between a send and its answer, mid-commit. Later rounds run
         * longer so the test always finishes. */
        usleep(20000 + randombytes_uniform(380000) + (unsigned)round * 5000);
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "crash_sender failed (status %d)", status);
            finished = 1;
            break;
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (WIFEXITED(status)) {
            ck_assert_int_eq(WEXITSTATUS(status), 0);
            finished = 1;
        } else {
            kills++;
        }
    }
    if (!finished) { /* let the last one run to the end */
        int status;
        pid_t pid = fork();
        if (pid == 0) {
            execl(CRASH_SENDER_PATH, "crash_sender", srv.base, cache, "crasher",
                  "password-crasher", conv, th_fmt("%d", TOTAL), (char *)NULL);
            _exit(127);
        }
        waitpid(pid, &status, 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    fprintf(stderr, "crash test: %d kills\n", kills);
    ck_assert_int_gt(kills, 5);

    /* the server: c0..c999, each once, in order */
    int n = server_log(&ua, conv, idx, TOTAL * 2);
    ck_assert_int_eq(n, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        ck_assert_int_eq(idx[i], i);

    /* the cache: the same messages at the same seqs, nothing pending */
    {
        tc *t = calloc(1, sizeof *t);
        tc *all[1] = {t};
        chat_client_message_list h;
        int64_t before = 0;
        int seen = 0;
        tc_open(t, srv.base, cache);
        TC_UNTIL(all, 1, 20000, t->synced >= 1);
        for (;;) {
            ck_assert_int_eq(chat_client_history(t->c, conv, before, 200, &h),
                             CHAT_OK);
            if (h.count == 0)
                break;
            for (size_t i = h.count; i-- > 0;) {
                int k = -1;
                ck_assert_int_eq(h.items[i].state, CHAT_MSG_SENT);
                ck_assert_int_eq(sscanf(h.items[i].text, "c%d", &k), 1);
                ck_assert_int_eq(h.items[i].seq, k + 1);
                seen++;
            }
            before = h.items[0].seq;
            chat_client_message_list_free(&h);
            if (before == 1)
                break;
        }
        ck_assert_int_eq(seen, TOTAL);
        tc_close(t);
        free(t);
    }
    th_stop(&srv, SIGTERM);
    th_cleanup(&srv);
    ck_assert_int_eq(system(th_fmt("rm -rf %s", dir)), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client crash");
    TCase *t = tcase_create("kill -9");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, kill9_while_sending);
    suite_add_tcase(s, t);
    return chat_test_run(s);
}
