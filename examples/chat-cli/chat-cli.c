/*
 * chat-cli: a terminal client on the libchat client SDK (chat/client.h).
 *
 * Each command opens a chat_client on a local cache file, does one thing
 * and exits. The cache keeps the session, the conversations, their
 * messages and the outbox: reads work offline, and a message sent while
 * the server is away goes out with a later command.
 *
 * The SDK never blocks. Waiting for events is a poll() on
 * chat_client_fd() and then chat_client_process(), which runs our
 * callbacks (see pump_until); waiting for one request is
 * chat_client_wait().
 *
 * Build: cc -o chat-cli chat-cli.c $(pkg-config --cflags --libs chat)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>

#define DEFAULT_SERVER  "http://localhost:8080"
#define SYNC_WAIT_MS    5000  /* catch-up before printing from the cache */
#define REQUEST_WAIT_MS 15000 /* one REST request */
#define SEND_WAIT_MS    10000 /* a send's confirmation */
#define FLUSH_WAIT_MS   5000  /* sends still pending when `open` ends */
#define TYPING_IDLE_MS  5000  /* no key for this long: stopped typing */
#define PAGE            20    /* messages per page in history and open */
#define PREVIEW_CHARS   60    /* of the last message, in `list` */
#define PROMPT          "> "

static const char usage[] =
    "Usage: chat-cli [--server URL] [--cache FILE] COMMAND ...\n"
    "\n"
    "  register EMAIL USERNAME     create an account\n"
    "  login LOGIN                 log in with an email or a username\n"
    "  logout\n"
    "  list                        conversations: unread, title, last message\n"
    "  dm USERNAME                 open a direct conversation, print its id\n"
    "  group TITLE USERNAME...     create a group, print its id\n"
    "  send CONV TEXT...           send a message\n"
    "  history CONV [--before SEQ] [--limit N]\n"
    "  open CONV                   chat: lines you type are sent; /more,\n"
    "                              /full SEQ, /read, /quit\n"
    "  watch                       print live events until Ctrl-C\n"
    "  search QUERY [--conv CONV]  search the cached messages\n"
    "\n"
    "CONV is a conversation id or a unique prefix of a title (a direct\n"
    "conversation's title is the other member's username).\n"
    "Environment: CHAT_SERVER (" DEFAULT_SERVER "), CHAT_CACHE\n"
    "(~/.cache/chat-cli/HOST_PORT.db), CHAT_PASSWORD (else it is asked\n"
    "for), CHAT_DEBUG=1 (library log). Exit status: 0 ok, 1 error, 2 usage.\n";

enum { MODE_QUIET, MODE_OPEN, MODE_WATCH };

typedef struct app {
    chat_client *c;
    int argc; /* the command's arguments */
    char **argv;
    int mode, synced, session_ended;
    struct { /* the answer to the request waited for (see finish) */
        int64_t id;
        char reason[256], obj[CHAT_ID_LEN + 1];
        size_t fetched, user_count;
        chat_client_user users[CHAT_SEARCH_MAX];
        char *text;
    } rq;
    char cmid[CHAT_ID_LEN + 1]; /* send: the message waited for */
    int64_t sent_seq;
    int send_done;
    char send_error[64];
    char conv[CHAT_ID_LEN + 1]; /* open: the conversation */
    int64_t oldest;             /* its oldest seq on screen, 0 = none */
    int raw, busy;              /* raw: we echo and edit the input line */
    int typing, quit, esc;
    int64_t last_key_ms;
    size_t in_len;
    char in[CHAT_MESSAGE_MAX_BYTES + 1];
} app;

static app g_app;
static chat_client *g_client; /* for the signal handler */
static volatile sig_atomic_t g_stop;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_client)
        chat_client_stop(g_client); /* writes an eventfd: signal-safe */
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void log_stderr(int level, const char *line, void *ud)
{
    (void)ud;
    fprintf(stderr, "libchat %s %s\n", chat_log_level_name(level), line);
}

/* ---- printing ----------------------------------------------------------- */

/* Text from the network goes to a terminal: control characters (C0, DEL,
 * C1) could move the cursor or retitle the window, so they become '?'.
 * With max_chars > 0 the text is one line of at most that many
 * characters; else newlines stay and the next lines are indented. */
static void put_clean(FILE *f, const char *s, size_t max_chars)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t chars = 0; *p; p++) {
        if ((*p & 0xC0) != 0x80 && max_chars && chars++ == max_chars) {
            fputs("...", f);
            return;
        }
        if (*p == '\n' && !max_chars)
            fputs("\n    ", f);
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F && *++p)
            fputc('?', f);
        else
            fputc((*p < 0x20 && *p != '\t') || *p == 0x7F ? '?' : *p, f);
    }
}

/* A user's name from a conversation's member list, else the first 8
 * characters of the id. @return 1 if the name was found. */
static int user_name(const chat_client_conversation *cv, const char *id,
                     char out[CHAT_USERNAME_MAX + 1])
{
    for (size_t i = 0; cv && i < cv->member_count_cached; i++)
        if (strcmp(cv->members[i].user_id, id) == 0) {
            snprintf(out, CHAT_USERNAME_MAX + 1, "%s", cv->members[i].username);
            return out[0] != '\0';
        }
    snprintf(out, CHAT_USERNAME_MAX + 1, "%.8s", id);
    return 0;
}

/* The same for a user outside any one conversation: ask each of them. */
static void any_name(app *a, const char *id, char out[CHAT_USERNAME_MAX + 1])
{
    chat_client_conversation_list l = {0, NULL};
    int found = 0;
    chat_client_conversation *cv;
    if (chat_client_conversations(a->c, &l) != CHAT_OK)
        l.count = 0;
    for (size_t i = 0; i < l.count && !found; i++)
        if (chat_client_conversation_get(a->c, l.items[i].id, &cv) == 0) {
            found = user_name(cv, id, out);
            chat_client_conversation_free(cv);
        }
    if (!found)
        user_name(NULL, id, out);
    chat_client_conversation_list_free(&l);
}

static void put_title(FILE *f, const chat_client_conversation *cv,
                      const char *conv_id)
{
    fputc('[', f);
    if (cv && cv->title[0])
        put_clean(f, cv->title, 40);
    else
        fprintf(f, "%.8s", conv_id);
    fputs("] ", f);
}

/* `[general] #42 alice 12:34: hello` */
static void print_message(FILE *f, const chat_client_conversation *cv,
                          const chat_client_message *m, size_t max_chars)
{
    char who[CHAT_USERNAME_MAX + 1], when[16] = "--:--";
    time_t t = (time_t)(m->created_at_ms / 1000);
    struct tm tm;
    if (localtime_r(&t, &tm))
        strftime(when, sizeof when, "%H:%M", &tm);
    user_name(cv, m->sender_id, who);
    put_title(f, cv, m->conversation_id);
    if (m->state == CHAT_MSG_SENT)
        fprintf(f, "#%lld ", (long long)m->seq);
    else
        fputs(m->state == CHAT_MSG_PENDING ? "(pending) " : "(failed) ", f);
    put_clean(f, who, 0);
    fprintf(f, " %s: ", when);
    put_clean(f, m->text, max_chars);
    if (m->has_more && !max_chars)
        fprintf(f, " [... /full %lld]", (long long)m->seq);
    fputc('\n', f);
}

/* Messages, each with the names its conversation's members have. */
static void print_messages(app *a, FILE *f, const chat_client_message *m,
                           size_t n)
{
    chat_client_conversation *cv = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!cv || strcmp(cv->id, m[i].conversation_id) != 0) {
            chat_client_conversation_free(cv);
            if (chat_client_conversation_get(a->c, m[i].conversation_id, &cv) !=
                CHAT_OK)
                cv = NULL;
        }
        print_message(f, cv, &m[i], 0);
    }
    chat_client_conversation_free(cv);
}

/* ---- waiting ------------------------------------------------------------ */

/* Run the client's loop until *flag is set (NULL: never) or ms pass. */
static int pump_until(app *a, const int *flag, int ms)
{
    int64_t end = now_ms() + ms;
    while (!(flag && *flag) && !a->session_ended && !g_stop) {
        struct pollfd p = {chat_client_fd(a->c), POLLIN, 0};
        int left = (int)(end - now_ms()), t = chat_client_timeout_ms(a->c);
        if (left <= 0)
            break;
        if (poll(&p, 1, t < 0 || t > left ? left : t) < 0 && errno != EINTR)
            break;
        if (chat_client_process(a->c) < 0)
            break;
    }
    return flag && *flag;
}

/* With a session, let the client catch up with the server (a few seconds
 * at most) so that what we print from the cache is fresh. */
static void refresh(app *a)
{
    if (!chat_client_user_id(a->c) || a->synced)
        return;
    if (!pump_until(a, &a->synced, SYNC_WAIT_MS) && !a->session_ended)
        fprintf(stderr, "chat-cli: server not reachable; showing the cache\n");
}

static void on_done(chat_client *c, const chat_client_result *r, void *ud)
{
    app *a = ud;
    (void)c;
    if (r->request_id != a->rq.id)
        return; /* one we stopped waiting for */
    snprintf(a->rq.reason, sizeof a->rq.reason, "%s", r->reason);
    snprintf(a->rq.obj, sizeof a->rq.obj, "%s", r->id);
    a->rq.fetched = r->fetched;
    a->rq.user_count = 0;
    for (size_t i = 0; i < r->user_count && i < CHAT_SEARCH_MAX; i++)
        a->rq.users[a->rq.user_count++] = r->users[i];
    free(a->rq.text);
    a->rq.text = r->message ? strdup(r->message->text) : NULL;
}

/* Wait for request @p id (what a chat_client_* call returned) to
 * complete; on_done put its answer in a->rq. @return its CHAT_* code. */
static int finish(app *a, int64_t id)
{
    a->rq.reason[0] = '\0';
    if (id < 0)
        return (int)id;
    a->rq.id = id;
    return chat_client_wait(a->c, id, REQUEST_WAIT_MS);
}

/* "chat-cli: WHAT: why" on stderr. @return 1, the exit status. */
static int report(app *a, const char *what, int code)
{
    const chat_error *e = chat_error_last();
    const char *why = a->rq.reason[0] ? a->rq.reason : chat_strerror(code);
    if (!a->rq.reason[0] && e->code == code && e->message[0])
        why = e->message;
    fprintf(stderr, "chat-cli: %s: %s\n", what,
            code == CHAT_ETIMEDOUT ? "no answer from the server" : why);
    if (code == CHAT_EAUTH && !chat_client_user_id(a->c))
        fprintf(stderr, "chat-cli: log in first: chat-cli login LOGIN\n");
    a->rq.reason[0] = '\0';
    return 1;
}

/* ---- lookups ------------------------------------------------------------ */

/* CONV: a conversation id, an exact title, or a unique prefix of either. */
static int find_conv(app *a, const char *arg, char out[CHAT_ID_LEN + 1],
                     int say)
{
    chat_client_conversation_list l;
    size_t n = strlen(arg), exact = 0, prefix = 0, pick = 0;
    if (chat_client_conversations(a->c, &l) != CHAT_OK)
        return 1;
    for (size_t i = 0; i < l.count; i++) {
        const chat_client_conversation *v = &l.items[i];
        if (!strcmp(v->id, arg) || !strcasecmp(v->title, arg)) {
            if (exact++ == 0)
                pick = i;
        } else if (!strncmp(v->id, arg, n) || !strncasecmp(v->title, arg, n)) {
            if (prefix++ == 0 && exact == 0)
                pick = i;
        }
    }
    if (exact == 1 || (exact == 0 && prefix == 1))
        snprintf(out, CHAT_ID_LEN + 1, "%s", l.items[pick].id);
    else if (say && exact + prefix == 0)
        fprintf(stderr, "chat-cli: no conversation matches '%s'\n", arg);
    else if (say) {
        fprintf(stderr, "chat-cli: '%s' matches more than one:\n", arg);
        for (size_t i = 0; i < l.count; i++)
            if (!strncmp(l.items[i].id, arg, n) ||
                !strncasecmp(l.items[i].title, arg, n)) {
                fprintf(stderr, "  %s ", l.items[i].id);
                put_title(stderr, &l.items[i], l.items[i].id);
                fputc('\n', stderr);
            }
    }
    chat_client_conversation_list_free(&l);
    return exact == 1 || (exact == 0 && prefix == 1) ? 0 : 1;
}

/* find_conv; one not cached yet may arrive with a catch-up. */
static int resolve_conv(app *a, const char *arg, char out[CHAT_ID_LEN + 1])
{
    if (find_conv(a, arg, out, 0) == 0)
        return 0;
    refresh(a);
    return find_conv(a, arg, out, 1);
}

/* A user id by exact username, asking the server. */
static int find_user(app *a, const char *name, char out[CHAT_ID_LEN + 1])
{
    int rc = finish(
        a, chat_client_users_search(a->c, name, CHAT_SEARCH_MAX, on_done, a));
    if (rc != CHAT_OK)
        return report(a, "user search", rc);
    for (size_t i = 0; i < a->rq.user_count; i++)
        if (strcmp(a->rq.users[i].username, name) == 0) {
            snprintf(out, CHAT_ID_LEN + 1, "%s", a->rq.users[i].id);
            return 0;
        }
    fprintf(stderr, "chat-cli: no user named '%s'\n", name);
    return 1;
}

/* $CHAT_PASSWORD, else a line of stdin, not echoed on a terminal. */
static char *read_password(void)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    char *line = NULL;
    size_t cap = 0;
    if (getenv("CHAT_PASSWORD"))
        return strdup(getenv("CHAT_PASSWORD"));
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fputs("Password: ", stderr);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    if (getline(&line, &cap, stdin) > 0)
        line[strcspn(line, "\r\n")] = '\0';
    else {
        free(line);
        line = NULL;
        fprintf(stderr, "chat-cli: no password (set CHAT_PASSWORD)\n");
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return line;
}

static void drop_password(char *pw)
{
    for (volatile char *p = pw; p && *p; p++)
        *p = '\0';
    free(pw);
}

/* ---- pages of history --------------------------------------------------- */

/* Sent messages in @p l (pending sends have no seq); *oldest: the first. */
static size_t count_sent(const chat_client_message_list *l, int64_t *oldest)
{
    size_t n = 0;
    *oldest = 0;
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].state == CHAT_MSG_SENT && n++ == 0)
            *oldest = l->items[i].seq;
    return n;
}

/* Up to @p limit messages before @p before (0 = the newest) from the
 * cache, after fetching from the server what the cache lacks, if we can. */
static int load_page(app *a, int64_t before, int limit,
                     chat_client_message_list *out)
{
    int64_t oldest, id;
    int rc = chat_client_history(a->c, a->conv, before, limit, out);
    size_t n;
    if (rc != CHAT_OK)
        return rc;
    n = count_sent(out, &oldest);
    if ((int)n >= limit || oldest == 1 || before == 1 ||
        !chat_client_user_id(a->c))
        return CHAT_OK;
    id = chat_client_fetch_history(a->c, a->conv, oldest ? oldest : before,
                                   limit - (int)n, on_done, a);
    if ((rc = finish(a, id)) != CHAT_OK)
        report(a, "fetching older messages", rc); /* show the cache */
    if (rc != CHAT_OK || a->rq.fetched == 0)
        return CHAT_OK;
    chat_client_message_list_free(out);
    return chat_client_history(a->c, a->conv, before, limit, out);
}

/* Sends of a->conv still in the outbox (only @p cmid's, if not NULL). */
static size_t pending(app *a, const char *cmid)
{
    chat_client_message_list l;
    size_t n = 0;
    if (chat_client_history(a->c, a->conv, 0, 1, &l) != CHAT_OK)
        return 0;
    for (size_t i = 0; i < l.count; i++)
        n += l.items[i].state == CHAT_MSG_PENDING &&
             (!cmid || strcmp(l.items[i].client_msg_id, cmid) == 0);
    chat_client_message_list_free(&l);
    return n;
}

/* ---- live events -------------------------------------------------------- */

static void print_event(app *a, FILE *f, const chat_client_event *ev)
{
    const char *me = chat_client_user_id(a->c);
    int mine = me && strcmp(ev->user_id, me) == 0;
    chat_client_conversation *cv = NULL;
    char who[CHAT_USERNAME_MAX + 1], actor[CHAT_USERNAME_MAX + 1];
    if (a->mode == MODE_OPEN && ev->conversation_id[0] &&
        strcmp(ev->conversation_id, a->conv) != 0) {
        if (ev->type == CHAT_CLIENT_EVENT_MESSAGE) { /* elsewhere */
            fputs("-- new: ", f);
            print_messages(a, f, ev->message, 1);
        }
        return;
    }
    if (ev->conversation_id[0] &&
        chat_client_conversation_get(a->c, ev->conversation_id, &cv) != 0)
        cv = NULL;
    user_name(cv, ev->user_id, who);
    user_name(cv, ev->actor_id, actor);
    switch (ev->type) {
    case CHAT_CLIENT_EVENT_MESSAGE:
        print_message(f, cv, ev->message, 0);
        if (a->mode == MODE_OPEN && (!a->oldest || ev->seq < a->oldest))
            a->oldest = ev->seq;
        break;
    case CHAT_CLIENT_EVENT_SEND_FAILED:
        put_title(f, cv, ev->conversation_id);
        fprintf(f, "not sent (%s): ",
                ev->error_code[0] ? ev->error_code : chat_strerror(ev->code));
        put_clean(f, ev->message->text, PREVIEW_CHARS);
        fputc('\n', f);
        chat_client_discard(a->c, ev->message->client_msg_id);
        break;
    case CHAT_CLIENT_EVENT_READ:
    case CHAT_CLIENT_EVENT_TYPING:
        if (mine || (ev->type == CHAT_CLIENT_EVENT_TYPING && !ev->flag))
            break;
        put_title(f, cv, ev->conversation_id);
        if (ev->type == CHAT_CLIENT_EVENT_READ)
            fprintf(f, "%s read up to #%lld\n", who, (long long)ev->seq);
        else
            fprintf(f, "%s is typing...\n", who);
        break;
    case CHAT_CLIENT_EVENT_CONVERSATION:
        put_title(f, cv, ev->conversation_id);
        if (strcmp(ev->action, "removed") == 0) {
            fputs("you are no longer a member\n", f);
            a->quit = a->mode == MODE_OPEN;
        } else
            fprintf(f, "%s by %s%s%s\n", ev->action, actor,
                    ev->user_id[0] ? ": " : "", ev->user_id[0] ? who : "");
        break;
    case CHAT_CLIENT_EVENT_PRESENCE:
        if (a->mode == MODE_WATCH && !mine) {
            any_name(a, ev->user_id, who);
            fprintf(f, "-- %s is %s\n", who, ev->flag ? "online" : "offline");
        }
        break;
    case CHAT_CLIENT_EVENT_CONNECTED:
    case CHAT_CLIENT_EVENT_DISCONNECTED:
        fputs(ev->type == CHAT_CLIENT_EVENT_CONNECTED
                  ? "-- connected\n"
                  : "-- disconnected; reconnecting\n",
              f);
        break;
    }
    chat_client_conversation_free(cv);
}

/* In `open`, the line being typed is cleared before printing and drawn
 * again after (not while a typed command runs: it prints plainly). */
static void out_begin(const app *a)
{
    if (a->raw && !a->busy)
        fputs("\r\033[K", stdout);
}

static void out_end(const app *a)
{
    if (a->raw && !a->busy) {
        fputs(PROMPT, stdout);
        fwrite(a->in, 1, a->in_len, stdout);
    }
    fflush(stdout);
}

static void on_event(chat_client *c, const chat_client_event *ev, void *ud)
{
    app *a = ud;
    int cmid = ev->message && a->cmid[0] &&
               strcmp(ev->message->client_msg_id, a->cmid) == 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    if (ev->type == CHAT_CLIENT_EVENT_SYNCED)
        a->synced = 1;
    if (ev->type == CHAT_CLIENT_EVENT_SESSION_ENDED) {
        a->session_ended = 1;
        fprintf(stderr, "chat-cli: the session ended (%s): log in again\n",
                chat_strerror(ev->code));
        chat_client_stop(c);
    }
    if (cmid && ev->type == CHAT_CLIENT_EVENT_MESSAGE) {
        a->sent_seq = ev->seq;
        a->send_done = 1;
    } else if (cmid && ev->type == CHAT_CLIENT_EVENT_SEND_FAILED) {
        a->send_done = 1;
        snprintf(a->send_error, sizeof a->send_error, "%s",
                 ev->error_code[0] ? ev->error_code : chat_strerror(ev->code));
    }
    if (a->mode == MODE_WATCH)
        print_event(a, stdout, ev);
    else if (a->mode == MODE_OPEN && (f = open_memstream(&buf, &len))) {
        print_event(a, f, ev); /* first in memory: was anything printed? */
        fclose(f);
        if (len) {
            out_begin(a);
            fputs(buf, stdout);
            out_end(a);
        }
        free(buf);
    }
}

/* ---- commands ----------------------------------------------------------- */

static int cmd_register(app *a)
{
    char *pw = read_password();
    int rc;
    if (!pw)
        return 1;
    rc = finish(
        a, chat_client_register(a->c, a->argv[0], a->argv[1], pw, on_done, a));
    drop_password(pw);
    if (rc != CHAT_OK)
        return report(a, "register", rc);
    printf("registered %s (%s)\n", a->argv[1], a->rq.obj);
    return 0;
}

static int cmd_login(app *a)
{
    char *pw = read_password();
    int rc;
    if (!pw)
        return 1;
    rc = finish(a, chat_client_login(a->c, a->argv[0], pw, on_done, a));
    drop_password(pw);
    if (rc != CHAT_OK)
        return report(a, "login", rc);
    printf("logged in as %s (%s)\n",
           a->rq.user_count ? a->rq.users[0].username : a->argv[0], a->rq.obj);
    pump_until(a, &a->synced, SYNC_WAIT_MS); /* the next command starts warm */
    return 0;
}

static int cmd_logout(app *a)
{
    int rc;
    if (!chat_client_user_id(a->c)) {
        fprintf(stderr, "chat-cli: not logged in\n");
        return 1;
    }
    /* The tokens are forgotten at once; the server is told meanwhile. */
    if ((rc = finish(a, chat_client_logout(a->c, on_done, a))) != CHAT_OK)
        report(a, "logged out here, but the server was not told", rc);
    printf("logged out\n");
    return 0;
}

static int cmd_list(app *a)
{
    chat_client_conversation_list l;
    chat_client_conversation *cv;
    int rc = chat_client_conversations(a->c, &l);
    if (rc != CHAT_OK)
        return report(a, "list", rc);
    if (l.count == 0)
        printf("no conversations yet; start one with: chat-cli dm USERNAME\n");
    for (size_t i = 0; i < l.count; i++) {
        const chat_client_conversation *v = &l.items[i];
        printf("%3lld  ", (long long)v->unread);
        if (!v->has_last_message) {
            put_title(stdout, v, v->id);
            printf("(no messages)\n");
        } else if (chat_client_conversation_get(a->c, v->id, &cv) == 0) {
            print_message(stdout, cv, &v->last_message, PREVIEW_CHARS);
            chat_client_conversation_free(cv); /* had the member names */
        } else
            print_message(stdout, v, &v->last_message, PREVIEW_CHARS);
    }
    chat_client_conversation_list_free(&l);
    return 0;
}

static int cmd_dm(app *a)
{
    char user[CHAT_ID_LEN + 1];
    int rc;
    if (find_user(a, a->argv[0], user))
        return 1;
    if ((rc = finish(a, chat_client_dm(a->c, user, on_done, a))) != CHAT_OK)
        return report(a, "dm", rc);
    printf("%s\n", a->rq.obj);
    return 0;
}

static int cmd_group(app *a)
{
    static char ids[CHAT_GROUP_MAX_MEMBERS][CHAT_ID_LEN + 1];
    const char *members[CHAT_GROUP_MAX_MEMBERS];
    size_t n = (size_t)a->argc - 1;
    int rc;
    if (n >= CHAT_GROUP_MAX_MEMBERS) {
        fprintf(stderr, "chat-cli: at most %d members\n",
                CHAT_GROUP_MAX_MEMBERS);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (find_user(a, a->argv[i + 1], ids[i]))
            return 1;
        members[i] = ids[i];
    }
    rc = finish(
        a, chat_client_group_create(a->c, a->argv[0], members, n, on_done, a));
    if (rc != CHAT_OK)
        return report(a, "group", rc);
    printf("%s\n", a->rq.obj);
    return 0;
}

static int cmd_send(app *a)
{
    size_t len = 0;
    int64_t end;
    int rc;
    if (resolve_conv(a, a->argv[0], a->conv))
        return 1;
    for (int i = 1; i < a->argc; i++) { /* the words, joined by spaces */
        size_t n = strlen(a->argv[i]);
        if (len + n + 1 > sizeof a->in) {
            fprintf(stderr, "chat-cli: the text is over %d bytes\n",
                    CHAT_MESSAGE_MAX_BYTES);
            return 1;
        }
        memcpy(a->in + len, a->argv[i], n);
        len += n;
        a->in[len++] = i + 1 < a->argc ? ' ' : '\0';
    }
    if ((rc = chat_client_send(a->c, a->conv, a->in, a->cmid)) != CHAT_OK)
        return report(a, "send", rc);
    /* In the outbox now: from here on it reaches the server, once. We
     * wait for it unless we are offline (no catch-up in SYNC_WAIT_MS),
     * and until it has left the outbox, so that a history right after
     * this shows it once. */
    if (!pump_until(a, &a->send_done, SYNC_WAIT_MS) && a->synced)
        pump_until(a, &a->send_done, SEND_WAIT_MS);
    for (end = now_ms() + SYNC_WAIT_MS;
         a->send_done && pending(a, a->cmid) && now_ms() < end;)
        pump_until(a, NULL, 50);
    if (a->send_error[0]) {
        fprintf(stderr, "chat-cli: the server refused the message: %s\n",
                a->send_error);
        chat_client_discard(a->c, a->cmid);
        return 1;
    }
    if (a->send_done)
        printf("sent #%lld\n", (long long)a->sent_seq);
    else
        printf("not confirmed yet: it stays in the outbox and goes out with "
               "the next chat-cli command that reaches the server\n");
    return 0;
}

/* A whole number in [min, max], or -1. */
static int parse_num(const char *s, long long min, long long max,
                     long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno || end == s || *end || *out < min || *out > max ? -1 : 0;
}

static int cmd_history(app *a)
{
    chat_client_message_list l;
    long long before = 0, limit = PAGE, *v;
    int rc;
    for (int i = 1; i < a->argc; i += 2) {
        v = !strcmp(a->argv[i], "--before")  ? &before
            : !strcmp(a->argv[i], "--limit") ? &limit
                                             : NULL;
        if (!v || i + 1 == a->argc ||
            parse_num(a->argv[i + 1], 1,
                      v == &limit ? CHAT_PAGE_MAX : INT64_MAX, v)) {
            fprintf(stderr,
                    "chat-cli: history CONV [--before SEQ] "
                    "[--limit 1-%d]\n",
                    CHAT_PAGE_MAX);
            return 2;
        }
    }
    if (resolve_conv(a, a->argv[0], a->conv))
        return 1;
    if ((rc = load_page(a, before, (int)limit, &l)) != CHAT_OK)
        return report(a, "history", rc);
    print_messages(a, stdout, l.items, l.count);
    chat_client_message_list_free(&l);
    return 0;
}

static int cmd_search(app *a)
{
    chat_client_message_list l;
    int rc;
    if (a->argc == 2 || (a->argc == 3 && strcmp(a->argv[1], "--conv"))) {
        fprintf(stderr, "chat-cli: search QUERY [--conv CONV]\n");
        return 2;
    }
    if (a->argc == 3 && resolve_conv(a, a->argv[2], a->conv))
        return 1;
    rc = chat_client_search(a->c, a->argv[0], a->argc == 3 ? a->conv : NULL,
                            CHAT_SEARCH_MAX, &l);
    if (rc == CHAT_EINVAL)
        fprintf(stderr, "chat-cli: bad query; use words, \"a phrase\" or a "
                        "prefix*\n");
    if (rc != CHAT_OK)
        return rc == CHAT_EINVAL ? 1 : report(a, "search", rc);
    if (l.count == 0)
        fprintf(stderr, "chat-cli: no cached message matches\n");
    print_messages(a, stdout, l.items, l.count);
    chat_client_message_list_free(&l);
    return 0;
}

static int cmd_watch(app *a)
{
    if (!chat_client_user_id(a->c)) {
        fprintf(stderr, "chat-cli: not logged in\n");
        return 1;
    }
    fprintf(stderr, "chat-cli: watching; Ctrl-C to stop\n");
    /* one event, one line, at once: also into a pipe or a file */
    setvbuf(stdout, NULL, _IOLBF, 0);
    a->mode = MODE_WATCH;
    catch_signals();
    if (!g_stop)
        chat_client_run(a->c); /* until on_signal or the session ends */
    return a->session_ended;
}

/* ---- open: one conversation, interactively ------------------------------ */

static void set_typing(app *a, int on)
{
    /* Best effort: offline it fails, and nobody needs to know. */
    if (on != a->typing &&
        (chat_client_typing(a->c, a->conv, on) == CHAT_OK || !on))
        a->typing = on;
}

static void open_more(app *a)
{
    chat_client_message_list l;
    int64_t oldest;
    if (a->oldest == 1 || load_page(a, a->oldest, PAGE, &l) != CHAT_OK) {
        printf("-- no older messages\n");
        return;
    }
    if (count_sent(&l, &oldest) == 0)
        printf("-- no older messages\n");
    else {
        printf("-- older messages --\n");
        print_messages(a, stdout, l.items, l.count);
        a->oldest = oldest;
    }
    chat_client_message_list_free(&l);
}

static void open_full(app *a, const char *arg)
{
    chat_client_message_list l = {0, NULL};
    chat_client_message m;
    long long seq;
    int rc;
    if (parse_num(arg, 1, INT64_MAX - 1, &seq) ||
        chat_client_history(a->c, a->conv, seq + 1, 1, &l) != CHAT_OK ||
        l.count == 0 || l.items[0].seq != seq) {
        printf("-- no message #%s in the cache (try /more)\n", arg);
        chat_client_message_list_free(&l);
        return;
    }
    m = l.items[0];
    if (m.has_more) { /* the cache has the preview; get the rest */
        rc = finish(a, chat_client_fetch_content(a->c, a->conv, m.message_id,
                                                 on_done, a));
        if (rc == CHAT_OK && a->rq.text) {
            m.text = a->rq.text;
            m.has_more = 0;
        } else
            report(a, "full text", rc ? rc : CHAT_EPROTO);
    }
    print_messages(a, stdout, &m, 1);
    chat_client_message_list_free(&l);
}

static void open_read(app *a)
{
    chat_client_conversation *cv;
    int rc;
    if (chat_client_conversation_get(a->c, a->conv, &cv) != CHAT_OK)
        return;
    rc = finish(a,
                chat_client_mark_read(a->c, a->conv, cv->last_seq, on_done, a));
    if (rc != CHAT_OK)
        report(a, "mark read", rc);
    else
        printf("-- read up to #%lld\n", (long long)cv->last_seq);
    chat_client_conversation_free(cv);
}

/* One line typed in `open`: a command or a message. */
static void on_line(app *a, char *line)
{
    int rc;
    line[strcspn(line, "\r")] = '\0';
    set_typing(a, 0);
    if (!line[0])
        return;
    if (strcmp(line, "/quit") == 0)
        a->quit = 1;
    else if (strcmp(line, "/more") == 0)
        open_more(a);
    else if (strncmp(line, "/full ", 6) == 0)
        open_full(a, line + 6);
    else if (strcmp(line, "/read") == 0)
        open_read(a);
    else if (line[0] == '/')
        printf("-- commands: /more, /full SEQ, /read, /quit\n");
    else if ((rc = chat_client_send(a->c, a->conv, line, NULL)) != CHAT_OK)
        report(a, "send", rc);
    else if (!chat_client_online(a->c))
        printf("-- offline: queued, it goes out once the server is back\n");
    /* else it shows when the server has it */
}

/* Bytes from stdin. On a terminal we echo and edit (backspace, Ctrl-U,
 * Ctrl-D) ourselves, so that incoming messages print above the line
 * being typed; a line wider than the terminal is redrawn imperfectly. */
static void feed(app *a, const char *buf, size_t n)
{
    for (size_t i = 0; i < n && !a->quit; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (a->raw && a->esc) /* skip ESC [ ... final byte (arrow keys) */
            a->esc = (a->esc == 1 && (ch == '[' || ch == 'O')) ||
                             (a->esc == 2 && (ch < 0x40 || ch > 0x7E))
                         ? 2
                         : 0;
        else if (ch == '\n') {
            a->in[a->in_len] = '\0';
            a->in_len = 0;
            out_begin(a);
            a->busy = 1;
            on_line(a, a->in);
            a->busy = 0;
            out_end(a);
        } else if (!a->raw) {
            if (a->in_len < CHAT_MESSAGE_MAX_BYTES)
                a->in[a->in_len++] = (char)ch;
        } else if (ch == 0x7F || ch == 0x08) { /* back one code point */
            if (a->in_len)
                fputs("\b \b", stdout);
            while (a->in_len && (a->in[--a->in_len] & 0xC0) == 0x80)
                ;
        } else if (ch == 0x04 && a->in_len == 0) /* Ctrl-D */
            a->quit = 1;
        else if (ch == 0x15) { /* Ctrl-U */
            a->in_len = 0;
            out_begin(a);
            out_end(a);
        } else if (ch == 0x1B)
            a->esc = 1;
        else if ((ch >= 0x20 || ch == '\t') &&
                 a->in_len < CHAT_MESSAGE_MAX_BYTES) {
            a->in[a->in_len++] = (char)ch;
            fputc(ch, stdout);
        }
    }
    fflush(stdout);
    if (a->in_len) /* a line is being typed */
        a->last_key_ms = now_ms();
    set_typing(a, a->in_len > 0);
}

static void open_loop(app *a)
{
    char buf[4096];
    while (!a->quit && !g_stop && !a->session_ended) {
        struct pollfd p[2] = {{chat_client_fd(a->c), POLLIN, 0},
                              {STDIN_FILENO, POLLIN, 0}};
        int t = chat_client_timeout_ms(a->c);
        int64_t idle = a->last_key_ms + TYPING_IDLE_MS - now_ms();
        ssize_t n;
        if (a->typing && (t < 0 || idle < t))
            t = idle < 0 ? 0 : (int)idle;
        if (poll(p, 2, t) < 0 && errno != EINTR)
            break;
        if (p[1].revents) {
            if ((n = read(STDIN_FILENO, buf, sizeof buf)) > 0)
                feed(a, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) { /* end of input */
                feed(a, "\n", a->in_len ? 1 : 0);
                a->quit = 1;
            }
        }
        if (chat_client_process(a->c) < 0)
            break;
        if (a->typing && now_ms() - a->last_key_ms >= TYPING_IDLE_MS)
            set_typing(a, 0);
    }
}

static int cmd_open(app *a)
{
    chat_client_message_list l;
    struct termios old, raw;
    int64_t end;
    int rc;
    if (resolve_conv(a, a->argv[0], a->conv))
        return 1;
    if ((rc = load_page(a, 0, PAGE, &l)) != CHAT_OK)
        return report(a, "history", rc);
    print_messages(a, stdout, l.items, l.count);
    count_sent(&l, &a->oldest);
    chat_client_message_list_free(&l);
    printf("-- /more, /full SEQ, /read, /quit\n");
    a->raw = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) &&
             tcgetattr(STDIN_FILENO, &old) == 0;
    if (a->raw) {
        raw = old;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* ISIG stays: Ctrl-C */
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    a->mode = MODE_OPEN;
    catch_signals();
    out_end(a);
    open_loop(a);
    set_typing(a, 0);
    out_begin(a);
    if (a->raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    /* Give what was just typed a moment to reach the server (and show
     * it, plainly now: no input line any more). */
    a->raw = 0;
    end = now_ms() + FLUSH_WAIT_MS;
    while (pending(a, NULL) && chat_client_user_id(a->c) && now_ms() < end &&
           !g_stop && !a->session_ended)
        pump_until(a, NULL, 100);
    if (pending(a, NULL))
        printf("-- %zu message(s) not sent yet: they stay in the outbox\n",
               pending(a, NULL));
    return a->session_ended;
}

/* ---- main --------------------------------------------------------------- */

static const struct command {
    const char *name;
    int min, max; /* arguments */
    int refresh;  /* catch up before reading the cache */
    int (*run)(app *a);
} commands[] = {
    {"register", 2, 2, 0, cmd_register},
    {"login", 1, 1, 0, cmd_login},
    {"logout", 0, 0, 0, cmd_logout},
    {"list", 0, 0, 1, cmd_list},
    {"dm", 1, 1, 0, cmd_dm},
    {"group", 2, INT_MAX, 0, cmd_group},
    {"send", 2, INT_MAX, 0, cmd_send},
    {"history", 1, 5, 1, cmd_history},
    {"open", 1, 1, 1, cmd_open},
    {"watch", 0, 0, 0, cmd_watch},
    {"search", 1, 3, 1, cmd_search},
};

/* ~/.cache/chat-cli/HOST_PORT.db, the directories made 0700. */
static int default_cache(const char *server, char *out, size_t size)
{
    const char *home = getenv("HOME"), *host = strstr(server, "://");
    char name[128];
    size_t n = 0;
    for (host = host ? host + 3 : server;
         host[n] && host[n] != '/' && n + 1 < sizeof name; n++)
        name[n] = strchr(":@?#", host[n]) ? '_' : host[n];
    name[n] = '\0';
    if (!home || !home[0]) {
        fprintf(stderr, "chat-cli: HOME is not set; use --cache FILE\n");
        return 1;
    }
    snprintf(out, size, "%s/.cache", home);
    mkdir(out, 0700);
    snprintf(out, size, "%s/.cache/chat-cli", home);
    if (mkdir(out, 0700) && errno != EEXIST) {
        fprintf(stderr, "chat-cli: %s: %s\n", out, strerror(errno));
        return 1;
    }
    snprintf(out, size, "%s/.cache/chat-cli/%s.db", home, name);
    return 0;
}

int main(int argc, char **argv)
{
    const char *server = getenv("CHAT_SERVER"), *cache = getenv("CHAT_CACHE");
    const struct command *cmd = NULL;
    chat_client_opts o = CHAT_CLIENT_OPTS_INIT;
    char path[4096];
    app *a = &g_app;
    int i, rc;

    for (i = 1; i + 1 < argc && argv[i][0] == '-'; i += 2)
        if (!strcmp(argv[i], "--server"))
            server = argv[i + 1];
        else if (!strcmp(argv[i], "--cache"))
            cache = argv[i + 1];
        else
            break;
    if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (i < argc && !strcmp(argv[i], "--version")) {
        printf("chat-cli (libchat) %s\n", chat_version());
        return 0;
    }
    for (size_t k = 0; i < argc && k < sizeof commands / sizeof *commands; k++)
        if (!strcmp(argv[i], commands[k].name))
            cmd = &commands[k];
    a->argc = argc - i - 1;
    a->argv = argv + i + 1;
    if (!cmd || a->argc < cmd->min || a->argc > cmd->max) {
        fprintf(stderr, "%.*s(chat-cli --help for more)\n",
                (int)strcspn(usage, "\n") + 1, usage);
        return 2;
    }
    if (!server || !server[0])
        server = DEFAULT_SERVER;
    if ((!cache || !cache[0]) && !default_cache(server, path, sizeof path))
        cache = path;
    if (!cache || !cache[0])
        return 1;
    if (getenv("CHAT_DEBUG"))
        chat_log_set(log_stderr, CHAT_LOG_DEBUG, NULL);

    o.base_url = server;
    o.cache_path = cache;
    o.on_event = on_event;
    o.userdata = a;
    o.connect_timeout_ms = 5000;
    if ((rc = chat_client_new(&a->c, &o)) == CHAT_EINVAL) {
        fprintf(stderr, "chat-cli: bad server URL '%s'\n", server);
        return 2;
    } else if (rc != CHAT_OK) {
        fprintf(stderr, "chat-cli: cache %s: %s\n", cache,
                chat_error_last()->message);
        return 1;
    }
    g_client = a->c;
    if (cmd->refresh)
        refresh(a);
    rc = cmd->run(a);
    g_client = NULL;
    chat_client_free(a->c); /* pending sends stay in the outbox */
    free(a->rq.text);
    return rc;
}
