/*
 * The victim of the crash test: sends "c0".."c<N-1>" to one conversation
 * through the SDK, resuming after the last one its cache knows it sent
 * (outbox included), then waits until the outbox is empty. The test kills
 * it with SIGKILL at random moments and starts it again.
 *
 * usage: crash_sender BASE_URL CACHE LOGIN PASSWORD CONV N
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/chat.h>

static int pump(chat_client *c, int ms)
{
    struct pollfd p = {chat_client_fd(c), POLLIN, 0};
    int t = chat_client_timeout_ms(c);
    poll(&p, 1, t >= 0 && t < ms ? t : ms);
    return chat_client_process(c);
}

/* 1 + the highest i of a "c<i>" the cache holds (sent or pending). */
static int next_index(chat_client *c, const char *conv, int *pending)
{
    chat_client_message_list h;
    int next = 0;
    *pending = 0;
    if (chat_client_history(c, conv, 0, 200, &h) != CHAT_OK)
        return -1;
    for (size_t i = 0; i < h.count; i++) {
        int k;
        if (sscanf(h.items[i].text, "c%d", &k) == 1 && k + 1 > next)
            next = k + 1;
        *pending += h.items[i].state == CHAT_MSG_PENDING;
    }
    chat_client_message_list_free(&h);
    return next;
}

int main(int argc, char **argv)
{
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    chat_client *c;
    int n, next, pending;
    if (argc != 7) {
        fprintf(stderr,
                "usage: crash_sender BASE CACHE LOGIN PASSWORD CONV N\n");
        return 2;
    }
    o.base_url = argv[1];
    o.cache_path = argv[2];
    n = atoi(argv[6]);
    if (chat_client_new(&c, &o) != CHAT_OK) {
        fprintf(stderr, "crash_sender: %s\n", chat_error_last()->message);
        return 1;
    }
    if (!chat_client_user_id(c)) {
        int64_t id = chat_client_login(c, argv[3], argv[4], NULL, NULL);
        int rc = id < 0 ? (int)id : chat_client_wait(c, id, 10000);
        if (rc != CHAT_OK) {
            fprintf(stderr, "crash_sender: login failed: %s (%s)\n",
                    chat_strerror(rc), chat_error_last()->message);
            return 1;
        }
    }
    /* The conversation must be in the cache before sending to it. */
    for (int i = 0; i < 500; i++) {
        chat_client_conversation *v;
        if (chat_client_conversation_get(c, argv[5], &v) == CHAT_OK) {
            chat_client_conversation_free(v);
            break;
        }
        pump(c, 20);
    }
    next = next_index(c, argv[5], &pending);
    for (int i = next; i < n; i++) {
        char text[32];
        snprintf(text, sizeof text, "c%d", i);
        if (chat_client_send(c, argv[5], text, NULL) != CHAT_OK) {
            fprintf(stderr, "crash_sender: send: %s\n",
                    chat_error_last()->message);
            return 1;
        }
        pump(c, i % 10 == 0 ? 2 : 0);
    }
    do {
        pump(c, 50);
        next_index(c, argv[5], &pending);
    } while (pending > 0);
    chat_client_free(c);
    printf("done\n");
    return 0;
}
