/**
 * @file chat/client.h
 * @brief The client SDK: a session with a chat server, a local SQLite
 *        cache, a crash-safe outbox and live sync.
 *
 * Shape. Reads are local and synchronous: the conversation list, history
 * and search come from the cache at once, online or not. Everything that
 * needs the server is asynchronous: a call returns a request id (> 0) and
 * later completes with its callback. Messages are not requests: a send
 * goes to the outbox and is delivered when the server can be reached;
 * new messages, yours and others', arrive through the event callback in
 * `seq` order.
 *
 * Threads. The client runs two internal network threads (libcurl multi
 * for REST, libwebsockets for Socket.IO) that never touch the cache nor
 * call you. Everything else happens on *your* thread, inside
 * chat_client_process(): it applies what the network brought to the
 * cache and runs your callbacks. A chat_client is used from one thread at
 * a time, called "the client's thread" below: the one that calls
 * chat_client_process() (or run/wait, which call it). It may change if
 * you hand the client over with your own synchronisation. Each function
 * says on which thread it may be called ("Thread:"): chat_client_fd(),
 * chat_client_wakeup(), chat_client_stop() and the *_free() functions of
 * lists are the only ones any thread may call. Callbacks run on the
 * client's thread and may call every function of the client except
 * chat_client_process(), chat_client_run(), chat_client_wait() and
 * chat_client_free().
 *
 * Loop integration, like curl multi or hiredis async: wait until
 * chat_client_fd() is readable or chat_client_timeout_ms() has passed,
 * then call chat_client_process(). Or let chat_client_run() do that.
 * Simple programs can block on one request with chat_client_wait().
 *
 * Guarantees (see docs/client.md for the full story):
 *  - every message of a conversation reaches CHAT_CLIENT_EVENT_MESSAGE once, in
 *    `seq` order without gaps; gaps are filled from history first. The
 *    delivered position is stored as each callback returns, so a process
 *    killed *inside* a callback sees that one message again on the next
 *    start (never fewer, never out of order), and no other;
 *  - a chat_client_send() that returned CHAT_OK is stored by the server
 *    exactly once, even across crashes and restarts (its client_msg_id
 *    makes retries idempotent), in the order you sent it per conversation.
 */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include <chat/common.h>
#include <chat/core.h> /* chat_log_fn */
#include <chat/limits.h>
#include <chat/store.h> /* chat_role, chat_conv_kind */

CHAT_BEGIN_DECLS

/** A client session. Opaque; see chat_client_new(). */
typedef struct chat_client chat_client;

/** chat_client_message.state */
typedef enum chat_msg_state {
    CHAT_MSG_SENT = 0,    /**< stored by the server, has a seq */
    CHAT_MSG_PENDING = 1, /**< in the outbox, not yet confirmed */
    CHAT_MSG_FAILED = 2,  /**< the server refused it for good */
} chat_msg_state;

/** A message as the cache knows it. Strings are NUL-terminated UTF-8. */
typedef struct chat_client_message {
    char conversation_id[CHAT_ID_LEN + 1];          /**< the conversation */
    char message_id[CHAT_ID_LEN + 1];               /**< "" while pending */
    char sender_id[CHAT_ID_LEN + 1];                /**< the author's user id */
    char client_msg_id[CHAT_CLIENT_MSG_ID_MAX + 1]; /**< "" if none */
    int64_t seq;           /**< 1, 2, 3… per conversation; 0 while pending */
    int64_t created_at_ms; /**< Unix epoch ms (local time while pending) */
    const char *text;      /**< full content if known, else the preview */
    int32_t has_more; /**< 1: text is the 200-character preview; get the rest
                           with chat_client_fetch_content() */
    int32_t state;    /**< a chat_msg_state */
} chat_client_message;

/** A list of messages, oldest first. Free with chat_client_message_list_free().
 */
typedef struct chat_client_message_list {
    size_t count;               /**< entries in items */
    chat_client_message *items; /**< owned by the list */
} chat_client_message_list;

/** A member of a conversation, as the cache knows it. */
typedef struct chat_client_member {
    char user_id[CHAT_ID_LEN + 1];        /**< the member */
    char username[CHAT_USERNAME_MAX + 1]; /**< "" until known */
    int32_t role;                         /**< a chat_role */
    int64_t read_seq;                     /**< the member's read marker */
} chat_client_member;

/** A conversation as the cache knows it. */
typedef struct chat_client_conversation {
    char id[CHAT_ID_LEN + 1]; /**< the conversation id */
    int32_t kind;             /**< a chat_conv_kind */
    int32_t role;             /**< your chat_role */
    /** Group title; for a DM, the other member's username (or ""). */
    const char *title;
    int64_t last_seq;                 /**< newest seq known (server or cache) */
    int64_t read_seq;                 /**< your read marker */
    int64_t unread;                   /**< last_seq - read_seq, never < 0 */
    int64_t last_activity_ms;         /**< Unix epoch ms */
    int32_t member_count;             /**< members on the server */
    int32_t has_last_message;         /**< 1: last_message is filled */
    chat_client_message last_message; /**< valid if has_last_message */
    size_t member_count_cached;       /**< entries in members (0 until known) */
    chat_client_member *members;      /**< owned by the conversation */
} chat_client_conversation;

/** Conversations, newest activity first. */
typedef struct chat_client_conversation_list {
    size_t count;                    /**< entries in items */
    chat_client_conversation *items; /**< owned by the list */
} chat_client_conversation_list;

/** A user: a member, a search result, or you. */
typedef struct chat_client_user {
    char id[CHAT_ID_LEN + 1];             /**< the user id */
    char username[CHAT_USERNAME_MAX + 1]; /**< the username */
    char email[CHAT_EMAIL_MAX + 1];       /**< "" unless it is you */
} chat_client_user;

/** chat_client_event.type */
typedef enum chat_client_event_type {
    /** message: the next message of a conversation, in seq order. Yours
     *  too, once the server stored it (same client_msg_id as the send). */
    CHAT_CLIENT_EVENT_MESSAGE = 1,
    /** message (state FAILED), code, error_code: the server refused a send
     *  for good (not a member, invalid content). It stays in the outbox as
     *  failed until chat_client_discard(). */
    CHAT_CLIENT_EVENT_SEND_FAILED = 2,
    /** conversation_id, user_id, seq: a member's read marker moved. */
    CHAT_CLIENT_EVENT_READ = 3,
    /** conversation_id, action ("created", "member_added", "member_left",
     *  "member_removed", "updated"), actor_id, user_id. Fired after the
     *  cache holds the new state of the conversation. "removed" means you
     *  are no longer a member (user_id is you). */
    CHAT_CLIENT_EVENT_CONVERSATION = 4,
    /** conversation_id, user_id, flag (1 typing, 0 stopped). */
    CHAT_CLIENT_EVENT_TYPING = 5,
    /** user_id, flag (1 online), time_ms (last seen). */
    CHAT_CLIENT_EVENT_PRESENCE = 6,
    /** The live connection is up (it may still be catching up). */
    CHAT_CLIENT_EVENT_CONNECTED = 7,
    /** The live connection was lost (flag 1) or an attempt to connect
     *  failed (flag 0); action says why. The client retries by itself,
     *  with exponential backoff and jitter (up to 30 s apart). */
    CHAT_CLIENT_EVENT_DISCONNECTED = 8,
    /** Catch-up after a (re)connect finished: the cache holds every
     *  conversation and every message up to what the server had. */
    CHAT_CLIENT_EVENT_SYNCED = 9,
    /** The session ended (refresh token rejected, revoked or expired):
     *  log in again. code says why. */
    CHAT_CLIENT_EVENT_SESSION_ENDED = 10,
} chat_client_event_type;

/** An event. Pointers are valid during the callback only. */
typedef struct chat_client_event {
    int32_t type;    /**< a chat_client_event_type */
    int32_t flag;    /**< typing, online, or lost (see the event type) */
    int32_t code;    /**< a CHAT_E* code, where it applies */
    int64_t seq;     /**< READ: the new marker; MESSAGE: the message's seq */
    int64_t time_ms; /**< PRESENCE: last seen, Unix epoch ms */
    const char *conversation_id; /**< "" where it does not apply */
    const char *user_id;         /**< the user concerned, or "" */
    const char *actor_id;        /**< CONVERSATION: who did it, or "" */
    const char *action; /**< CONVERSATION: what happened; DISCONNECTED: why */
    const char *error_code;             /**< the server's error code, or "" */
    const chat_client_message *message; /**< MESSAGE, SEND_FAILED; or NULL */
} chat_client_event;

/** The outcome of a request. Pointers are valid during the callback only. */
typedef struct chat_client_result {
    int64_t request_id;     /**< what the call returned */
    int32_t code;           /**< CHAT_OK or a CHAT_E* code */
    int32_t http_status;    /**< 0 if no answer arrived */
    const char *error_code; /**< the server's code ("forbidden"…), or "" */
    const char *reason;     /**< a human-readable reason, or "" */
    /** The object concerned: the conversation created/changed, the user
     *  registered or logged in, the message fetched. "" otherwise. */
    const char *id;
    const char *json;                   /**< the raw answer body, or "" */
    size_t user_count;                  /**< entries in users */
    const chat_client_user *users;      /**< user lookups and login */
    const chat_client_message *message; /**< chat_client_fetch_content() */
    size_t fetched; /**< chat_client_fetch_history(): messages */
} chat_client_result;

/** Event callback: runs inside chat_client_process(), on its thread. */
typedef void (*chat_client_event_fn)(chat_client *c,
                                     const chat_client_event *ev,
                                     void *userdata);
/** Request callback: runs inside chat_client_process(), on its thread,
 *  exactly once per request id (also when the client is freed first:
 *  then with CHAT_ECLOSED). */
typedef void (*chat_client_done_fn)(chat_client *c, const chat_client_result *r,
                                    void *userdata);

/** chat_client_opts.version of this header. */
#define CHAT_CLIENT_OPTS_VERSION 2
/** chat_client_opts.history_depth: skip the past of new conversations. */
#define CHAT_CLIENT_HISTORY_NONE (-1)

/** Options of chat_client_new(); start from CHAT_CLIENT_OPTS_INIT. */
typedef struct chat_client_opts {
    unsigned version; /**< CHAT_CLIENT_OPTS_VERSION */
    /** Server base URL: "http://localhost:8080", or the edge's URL. */
    const char *base_url;
    /** SQLite cache file (created 0600), or NULL for an in-memory cache
     *  that forgets everything at chat_client_free(). */
    const char *cache_path;
    chat_client_event_fn on_event; /**< may be NULL */
    void *userdata;                /**< passed to on_event */
    int connect_timeout_ms;        /**< 0 = 10000 */
    int request_timeout_ms;        /**< 0 = 30000 */
    const char *ca_file;           /**< PEM bundle for https, NULL = system */
    int32_t tls_insecure;          /**< 1: skip certificate checks (tests) */
    /** How far back a conversation seen for the first time is synced:
     *  0 = all of it; N = its last N messages; CHAT_CLIENT_HISTORY_NONE =
     *  only what arrives from now on. Older messages come on demand with
     *  chat_client_fetch_history(), without CHAT_CLIENT_EVENT_MESSAGE. */
    int64_t history_depth;
    /** 1: do not open the live connection (REST only; tests, scripts). */
    int32_t no_realtime;
    /** Since version 2: this client's log hook; NULL = the process's
     *  (chat_log_set()). It gets the lines logged on the client's network
     *  threads (requests, the Socket.IO connection, libwebsockets'
     *  warnings) and inside chat_client_process() (so also _run() and
     *  _wait()), so two clients in one process log apart. It runs on
     *  those threads: it must be thread-safe and must not call libchat. */
    chat_log_fn log_fn;
    int32_t log_level;  /**< lowest level passed to log_fn (CHAT_LOG_*) */
    void *log_userdata; /**< passed to log_fn */
} chat_client_opts;

/** Initialiser of chat_client_opts: version set, everything else default. */
#define CHAT_CLIENT_OPTS_INIT                                                  \
    {                                                                          \
        CHAT_CLIENT_OPTS_VERSION, NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0, 0, \
            NULL, CHAT_LOG_INFO, NULL                                          \
    }

/** Fill @p opts with the defaults (for FFI callers).
 *  Thread: any. */
CHAT_API void chat_client_opts_init(chat_client_opts *opts);

/**
 * Create a client. Opens (or creates, mode 0600) the cache and applies
 * its migrations; starts the network threads; does not connect yet.
 * If the cache holds a session for the same base_url, it is restored:
 * the client goes online at once (see chat_client_user_id()).
 * Logging goes to opts->log_fn, or else through chat_log_set(). Options
 * of version 1 (without the log fields) are accepted.
 *
 * @param out  receives the client; free it with chat_client_free()
 * @param opts the options; copied, the strings too (not kept)
 * @return CHAT_OK, CHAT_EINVAL (bad options), CHAT_EIO (cache cannot be
 *         opened), CHAT_ENOMEM.
 *
 * Thread: any. The new client is then used by one thread at a time, the
 * client's thread (see the file comment).
 */
CHAT_API CHAT_WARN_UNUSED int chat_client_new(chat_client **out,
                                              const chat_client_opts *opts);

/**
 * Stop the network threads, fail requests still in flight with
 * CHAT_ECLOSED (their callbacks run now), close the cache. Pending sends
 * stay in the outbox for the next start. NULL is a no-op.
 *
 * Thread: the client's thread, not from a callback (the client would be freed
 * under it), and only once no other thread may still call chat_client_wakeup()
 * or chat_client_stop().
 */
CHAT_API void chat_client_free(chat_client *c);

/* ---- the loop ----------------------------------------------------------- */

/** A file descriptor that is readable when chat_client_process() has
 *  work. Owned by the client; do not read or close it.
 *  Thread: any (the fd does not change during the client's life). */
CHAT_API int chat_client_fd(const chat_client *c);

/** Milliseconds until chat_client_process() must run even if the fd
 *  stayed quiet (retries, token refresh), or -1 for none.
 *  Thread: the client's thread (it reads the timers that chat_client_process()
 *  moves); may be called from a callback. */
CHAT_API int chat_client_timeout_ms(const chat_client *c);

/**
 * Apply what arrived from the network, run due timers, and run the
 * callbacks. Never blocks on the network (it does write the cache).
 * @return the number of callbacks run (>= 0), or a CHAT_E* code.
 *
 * Thread: the client's thread, not from a callback: it is not re-entrant (a
 * nested call could hand the same messages to your callback twice).
 */
CHAT_API int chat_client_process(chat_client *c);

/** Make chat_client_fd() readable.
 *  Thread: any, also a signal handler (it only writes an eventfd), as long as
 *  the client is not being freed. */
CHAT_API void chat_client_wakeup(chat_client *c);

/** Run the loop until chat_client_stop(). @return CHAT_OK.
 *  Thread: the client's thread, not from a callback (it calls
 *  chat_client_process()). */
CHAT_API int chat_client_run(chat_client *c);

/** Make chat_client_run() return (after the current round). A stop
 *  before chat_client_run() makes that run return at once.
 *  Thread: any, also a signal handler (it only sets a flag and writes an
 *  eventfd) or a callback, as long as the client is not being freed. */
CHAT_API void chat_client_stop(chat_client *c);

/**
 * Run the loop until request @p request_id completed (its callback has
 * run) or @p timeout_ms passed (< 0: no limit). Other callbacks and events
 * run meanwhile as usual.
 * @return the request's code, CHAT_ETIMEDOUT, or CHAT_EINVAL for an
 *         unknown id. The codes of the last 64 finished requests are
 *         kept; waiting for one that finished before those is also
 *         CHAT_EINVAL (the last error says so): wait for a request soon
 *         after making it, or take its code in its callback.
 *
 * Thread: the client's thread, not from a callback (it calls
 * chat_client_process()).
 */
CHAT_API int chat_client_wait(chat_client *c, int64_t request_id,
                              int timeout_ms);

/* ---- session ------------------------------------------------------------ */

/** Register an account (does not log in). r->id is the new user id.
 *  @return a request id > 0, or a CHAT_E* code (< 0).
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_register(chat_client *c, const char *email,
                                      const char *username,
                                      const char *password,
                                      chat_client_done_fn done, void *ud);

/** Log in with an email or a username. On success the session (tokens)
 *  is stored in the cache and the client goes online; r->id is your user
 *  id and r->users[0] you. Logging in as another user than the cache's
 *  wipes the cache first.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_login(chat_client *c, const char *login,
                                   const char *password,
                                   chat_client_done_fn done, void *ud);

/** Revoke the session on the server, go offline and forget the tokens
 *  (the cached history stays; the outbox is kept).
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_logout(chat_client *c, chat_client_done_fn done,
                                    void *ud);

/** Your user id, or NULL when there is no session. Valid until the next
 *  login/logout.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API const char *chat_client_user_id(const chat_client *c);

/** 1 while the live connection is up.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int chat_client_online(const chat_client *c);

/* ---- users -------------------------------------------------------------- */

/** Users whose username or email starts with @p query (r->users).
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_users_search(chat_client *c, const char *query,
                                          int limit, chat_client_done_fn done,
                                          void *ud);

/** One user by id (r->users[0]).
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_user_get(chat_client *c, const char *user_id,
                                      chat_client_done_fn done, void *ud);

/** A user the cache has seen (a member, a search result, you), without
 *  the network. @return CHAT_OK or CHAT_ENOTFOUND.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int chat_client_user_cached(chat_client *c, const char *user_id,
                                     chat_client_user *out);

/* ---- conversations ------------------------------------------------------ */

/** Open (create, or find) the DM with @p user_id; r->id is its id and the
 *  cache holds it when the callback runs.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_dm(chat_client *c, const char *user_id,
                                chat_client_done_fn done, void *ud);

/** Create a group with you as owner; r->id is its id.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_group_create(chat_client *c, const char *title,
                                          const char *const *member_ids,
                                          size_t n, chat_client_done_fn done,
                                          void *ud);

/** Invite @p user_id into a group (owner or admin).
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_invite(chat_client *c, const char *conversation_id,
                                    const char *user_id,
                                    chat_client_done_fn done, void *ud);

/** Remove @p user_id from a group; your own id leaves it.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_remove(chat_client *c, const char *conversation_id,
                                    const char *user_id,
                                    chat_client_done_fn done, void *ud);

/**
 * The cached conversations, newest activity first (members not filled).
 * Synchronous, no network. @p out is filled; free with
 * chat_client_conversation_list_free(). @return CHAT_OK or
 * CHAT_EIO/CHAT_ENOMEM.
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_client_conversations(chat_client *c, chat_client_conversation_list *out);

/** One cached conversation with its members. Free with
 *  chat_client_conversation_free(). @return CHAT_OK or CHAT_ENOTFOUND.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API CHAT_WARN_UNUSED int
chat_client_conversation_get(chat_client *c, const char *conversation_id,
                             chat_client_conversation **out);

/** Free the entries of @p list and zero it (not @p list itself). NULL is
 *  a no-op.
 *  Thread: any (it touches no client). */
CHAT_API void
chat_client_conversation_list_free(chat_client_conversation_list *list);
/** Free a conversation from chat_client_conversation_get(). NULL is a
 *  no-op.
 *  Thread: any (it touches no client). */
CHAT_API void chat_client_conversation_free(chat_client_conversation *conv);

/* ---- messages ----------------------------------------------------------- */

/**
 * Send @p text (UTF-8, 1 byte to 64 KiB) to a conversation. The message
 * is written to the outbox (one SQLite transaction, with a fresh UUIDv7
 * client_msg_id copied to @p client_msg_id if not NULL) and shows at once
 * in chat_client_history() as CHAT_MSG_PENDING. It is sent when the server
 * can be reached, retried with the same id until the server answers, and
 * confirmed by CHAT_CLIENT_EVENT_MESSAGE (or CHAT_CLIENT_EVENT_SEND_FAILED).
 * @return CHAT_OK, CHAT_EINVAL (bad text), CHAT_ENOTFOUND (conversation not
 *         in the cache), CHAT_EAUTH (no session), CHAT_EIO.
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_client_send(chat_client *c, const char *conversation_id, const char *text,
                 char client_msg_id[CHAT_ID_LEN + 1]);

/** Drop a failed (or still pending) send from the outbox. A pending one
 *  may already have reached the server. @return CHAT_OK or CHAT_ENOTFOUND.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int chat_client_discard(chat_client *c, const char *client_msg_id);

/**
 * Cached history of a conversation, oldest first: up to @p limit
 * (1–200) messages with seq < @p before_seq (0 = the newest, in which case
 * pending and failed sends follow them). Synchronous, no network: use
 * chat_client_fetch_history() when it returns fewer than you need.
 * Free with chat_client_message_list_free().
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_client_history(chat_client *c, const char *conversation_id,
                    int64_t before_seq, int limit,
                    chat_client_message_list *out);

/**
 * Cached history of a conversation going forward, oldest first: up to
 * @p limit (1–200) messages with seq > @p after_seq (0 = from the first).
 * To page on, pass the last seq you got. Pending and failed sends (no seq
 * yet) are not included; chat_client_history() with before_seq 0 lists
 * them. Seqs may jump where the cache has no copy (older than
 * opts.history_depth, or past a gap a catch-up is still filling).
 * Synchronous, no network. Free with chat_client_message_list_free().
 * @return CHAT_OK (an empty list past the newest), CHAT_EINVAL (bad
 *         arguments), CHAT_EIO, CHAT_ENOMEM.
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_client_history_after(chat_client *c, const char *conversation_id,
                          int64_t after_seq, int limit,
                          chat_client_message_list *out);

/**
 * Fetch up to @p limit (1–200) messages with seq < @p before_seq (0 = the
 * newest) from the server and store them in the cache; r->fetched says how
 * many the page held.
 *
 * Events: messages of the page at or below the conversation's synced
 * position (scrolling back, the usual case, including messages older
 * than opts.history_depth reached) are only stored, without
 * CHAT_CLIENT_EVENT_MESSAGE: the event stream already went past them or
 * never covers them. When the cache was behind the server (e.g. @p
 * before_seq 0 while a catch-up is still running) the page may close
 * that gap; the messages that become contiguous are then raised as
 * CHAT_CLIENT_EVENT_MESSAGE, once each and in seq order, exactly as a
 * catch-up would raise them, before this request's callback runs.
 *
 * @return a request id > 0, or a CHAT_E* code (< 0).
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API int64_t chat_client_fetch_history(chat_client *c,
                                           const char *conversation_id,
                                           int64_t before_seq, int limit,
                                           chat_client_done_fn done, void *ud);

/** Fetch the full text of a message whose has_more is 1, store it in the
 *  cache, and give it in r->message.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int64_t chat_client_fetch_content(chat_client *c,
                                           const char *conversation_id,
                                           const char *message_id,
                                           chat_client_done_fn done, void *ud);

/**
 * Full-text search (SQLite FTS5) over cached messages: @p query in FTS5
 * syntax (words, "phrases", prefix*), in one conversation or all (NULL):
 * the @p limit (1–200) matches cached most recently, newest first. It
 * never sorts all matches, so a common word costs what a rare one does.
 * Synchronous, works offline.
 * @return CHAT_OK, CHAT_EINVAL (bad query syntax), CHAT_EIO.
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API CHAT_WARN_UNUSED int chat_client_search(chat_client *c,
                                                 const char *query,
                                                 const char *conversation_id,
                                                 int limit,
                                                 chat_client_message_list *out);

/** Free the entries of @p list and zero it (not @p list itself). NULL is
 *  a no-op.
 *  Thread: any (it touches no client). */
CHAT_API void chat_client_message_list_free(chat_client_message_list *list);

/* ---- read state and typing --------------------------------------------- */

/**
 * Move your read marker in a conversation to @p seq (it never goes back,
 * nor past the newest message known). The cache is updated at once
 * (unread drops) and keeps, in the same write, a note that the server
 * must be told. This request tells it; if it fails (offline, server
 * down), the client pushes the marker again by itself after every
 * (re)connect, and on a timer with backoff (250 ms doubling to 30 s),
 * also after a restart, until the server has a marker at least as far.
 * The server merges markers by maximum, so your other devices converge
 * (they get CHAT_CLIENT_EVENT_READ).
 *
 * @return a request id > 0 (its callback reports this attempt only),
 *         CHAT_EAUTH without a session (nothing changes), CHAT_EIO (cache),
 *         or a negative code from starting the request (the marker is
 *         still stored and pushed later).
 *
 * Thread: the client's thread; may be called from a callback.
 */
CHAT_API int64_t chat_client_mark_read(chat_client *c,
                                       const char *conversation_id, int64_t seq,
                                       chat_client_done_fn done, void *ud);

/** Tell the members you are (1) or stopped (0) typing. Best effort over
 *  the live connection: CHAT_ECLOSED while offline.
 *  Thread: the client's thread; may be called from a callback. */
CHAT_API int chat_client_typing(chat_client *c, const char *conversation_id,
                                int is_typing);

CHAT_END_DECLS

#endif /* CHAT_CLIENT_H */
