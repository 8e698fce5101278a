/*
 * echo-bot: answers every message from someone else with "echo: <text>".
 *
 *   CHAT_LOGIN=bot CHAT_PASSWORD=... echo-bot [--server URL]
 *
 * Server from --server or $CHAT_SERVER (default http://localhost:8080),
 * cache from $CHAT_CACHE (default /tmp/echo-bot-$CHAT_LOGIN.db).
 *
 * The client delivers each message to CHAT_CLIENT_EVENT_MESSAGE exactly
 * once, and stores how far it got in the cache: a restarted bot answers
 * what arrived while it was down, and no old message twice (unless it
 * was killed in the middle of answering one: then that one again).
 *
 * Build: cc -o echo-bot echo-bot.c $(pkg-config --cflags --libs chat)
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>

#define PREFIX "echo: "

static chat_client *g_client;
static char g_reply[CHAT_MESSAGE_MAX_BYTES + 1];
static int g_status;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    chat_client_stop(g_client); /* writes an eventfd: signal-safe */
}

static void on_event(chat_client *c, const chat_client_event *ev, void *ud)
{
    const char *me = chat_client_user_id(c);
    size_t max = CHAT_MESSAGE_MAX_BYTES - (sizeof PREFIX - 1), n;
    int rc;
    (void)ud;
    if (ev->type == CHAT_CLIENT_EVENT_SESSION_ENDED) {
        fprintf(stderr, "echo-bot: session ended: %s\n",
                chat_strerror(ev->code));
        g_status = 1;
        chat_client_stop(c);
        return;
    }
    if (ev->type != CHAT_CLIENT_EVENT_MESSAGE || !me ||
        strcmp(ev->message->sender_id, me) == 0)
        return; /* our own messages come back too: never answer those */
    /* Long messages arrive as a 200-character preview (has_more); we echo
     * that. Cut at a code point boundary to stay within 64 KiB. */
    n = strlen(ev->message->text);
    if (n > max)
        for (n = max; (ev->message->text[n] & 0xC0) == 0x80; n--)
            ;
    snprintf(g_reply, sizeof g_reply, "%s%.*s", PREFIX, (int)n,
             ev->message->text);
    rc = chat_client_send(c, ev->conversation_id, g_reply, NULL);
    if (rc != CHAT_OK)
        fprintf(stderr, "echo-bot: cannot answer #%lld: %s\n",
                (long long)ev->seq, chat_strerror(rc));
    else
        printf("echo-bot: answered #%lld in %s\n", (long long)ev->seq,
               ev->conversation_id);
}

int main(int argc, char **argv)
{
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    const char *server = getenv("CHAT_SERVER"), *cache = getenv("CHAT_CACHE");
    const char *login = getenv("CHAT_LOGIN"), *pw = getenv("CHAT_PASSWORD");
    char path[512];
    struct sigaction sa;
    int64_t id;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--server") == 0)
        server = argv[2];
    else if (argc != 1)
        login = NULL; /* anything else: show the usage */
    if (!login || !pw) {
        fprintf(stderr, "usage: CHAT_LOGIN=NAME CHAT_PASSWORD=PW echo-bot "
                        "[--server URL]\n");
        return 2;
    }
    if (!cache) {
        snprintf(path, sizeof path, "/tmp/echo-bot-%s.db", login);
        cache = path;
    }
    o.base_url = server ? server : "http://localhost:8080";
    o.cache_path = cache;
    o.on_event = on_event;
    /* A conversation seen for the first time: answer its last message
     * only, not its whole past. */
    o.history_depth = 1;
    if ((rc = chat_client_new(&g_client, &o)) != CHAT_OK) {
        fprintf(stderr, "echo-bot: %s\n", chat_error_last()->message);
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Logging in again as the cache's user keeps the cache and the
     * delivered position. */
    id = chat_client_login(g_client, login, pw, NULL, NULL);
    rc = id < 0 ? (int)id : chat_client_wait(g_client, id, 15000);
    if (rc != CHAT_OK) {
        fprintf(stderr, "echo-bot: login as %s: %s\n", login,
                chat_strerror(rc));
        chat_client_free(g_client);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("echo-bot: logged in as %s, answering\n", login);
    if (!g_stop) /* chat_client_run() forgets an earlier stop */
        chat_client_run(g_client);
    chat_client_free(g_client); /* unsent answers stay in the outbox */
    return g_status;
}
