/**
 * @file chat/store.h
 * @brief Storage interfaces: the account/conversation store (users,
 *        refresh tokens, conversations, memberships, read states) and the
 *        ordered message log.
 *
 * Services hold a chat_store* and a chat_log* and never ask which backend
 * is behind them. Each backend is one file implementing the ops tables
 * below (SQLite now; PostgreSQL and DynamoDB later).
 *
 * Thread rules: every chat_store_* and chat_log_* call is thread-safe and
 * may block (disk, network); call them from worker threads, never from a
 * network event loop. Records are plain structs with fixed-size buffers
 * filled by the callee; the caller owns them.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <chat/common.h>
#include <chat/limits.h>

CHAT_BEGIN_DECLS

/* ---- records ----------------------------------------------------------- */

typedef struct chat_user {
    char id[CHAT_ID_LEN + 1];
    char email[CHAT_EMAIL_MAX + 1];
    char username[CHAT_USERNAME_MAX + 1]; /* ASCII: [A-Za-z0-9_.-] */
    char password_hash[CHAT_PWHASH_MAX];  /* "" when not requested */
    int64_t created_at;                   /* Unix ms */
} chat_user;

typedef enum chat_conv_kind {
    CHAT_CONV_DM = 1,
    CHAT_CONV_GROUP = 2,
} chat_conv_kind;

typedef enum chat_role {
    CHAT_ROLE_MEMBER = 0,
    CHAT_ROLE_ADMIN = 1,
    CHAT_ROLE_OWNER = 2,
} chat_role;

/** "member", "admin", "owner"; NULL for an unknown value. */
CHAT_API const char *chat_role_name(int role);

/** A conversation, as seen by one viewer (role/read_seq are the viewer's). */
typedef struct chat_conv {
    char id[CHAT_ID_LEN + 1];
    int kind; /* chat_conv_kind */
    char title[CHAT_TITLE_MAX_BYTES + 1];
    char created_by[CHAT_ID_LEN + 1];
    int64_t created_at;       /* Unix ms */
    int64_t last_seq;         /* 0 when empty */
    int64_t last_activity_at; /* last message time, or created_at */
    char last_message_id[CHAT_ID_LEN + 1]; /* "" when empty */
    char last_sender_id[CHAT_ID_LEN + 1];
    char last_preview[CHAT_PREVIEW_MAX_BYTES + 1];
    int last_has_more;
    int member_count;
    int role;         /* viewer's chat_role, -1 without a viewer */
    int64_t read_seq; /* viewer's read marker, 0 without a viewer */
} chat_conv;

typedef struct chat_member {
    char user_id[CHAT_ID_LEN + 1];
    char username[CHAT_USERNAME_MAX + 1];
    int role; /* chat_role */
    int64_t joined_at;
    int64_t read_seq;
} chat_member;

/** Position in a conversation list, ordered by (activity desc, id desc). */
typedef struct chat_conv_cursor {
    int64_t activity_at;
    char id[CHAT_ID_LEN + 1];
} chat_conv_cursor;

/** A stored message. Full content travels separately (chat_log_get). */
typedef struct chat_message {
    char id[CHAT_ID_LEN + 1];
    char conversation_id[CHAT_ID_LEN + 1];
    char sender_id[CHAT_ID_LEN + 1];
    char client_msg_id[CHAT_CLIENT_MSG_ID_MAX + 1]; /* "" when none */
    int64_t seq;
    int64_t created_at; /* Unix ms */
    char preview[CHAT_PREVIEW_MAX_BYTES + 1];
    int has_more;
    size_t content_len; /* bytes of the full content */
} chat_message;

/** Refresh token row; only the SHA-256 of the token is ever stored. */
typedef struct chat_refresh_rec {
    uint8_t hash[32];
    char family_id[CHAT_ID_LEN + 1];
    char user_id[CHAT_ID_LEN + 1];
    int64_t expires_at; /* Unix ms */
} chat_refresh_rec;

/** A user or conversation id as a value. */
typedef struct chat_id {
    char id[CHAT_ID_LEN + 1];
} chat_id;

/* ---- the account / conversation store ---------------------------------- */

typedef struct chat_store chat_store;

/** Operations of a store backend. Return CHAT_OK or a CHAT_E* code and
 *  record details with the thread's last error. */
typedef struct chat_store_ops {
    const char *name; /* "sqlite", "postgres", ... */
    void (*free)(chat_store *s);

    /* users */
    int (*user_create)(chat_store *s, const chat_user *u);
    int (*user_get)(chat_store *s, const char *id, chat_user *out);
    int (*user_find_login)(chat_store *s, const char *login, chat_user *out);
    int (*user_search)(chat_store *s, const char *prefix, int limit,
                       chat_user *out, int *n);

    /* refresh tokens */
    int (*token_insert)(chat_store *s, const chat_refresh_rec *r);
    int (*token_rotate)(chat_store *s, const uint8_t old_hash[32],
                        const uint8_t new_hash[32], int64_t new_expires_at,
                        int64_t now, chat_refresh_rec *out);
    int (*token_revoke_family)(chat_store *s, const uint8_t hash[32]);

    /* conversations and memberships */
    int (*conv_dm)(chat_store *s, const char *a, const char *b, chat_conv *out,
                   int *created);
    int (*conv_group)(chat_store *s, const char *creator, const char *title,
                      const char *const *member_ids, int n, chat_conv *out);
    int (*conv_get)(chat_store *s, const char *conv_id, const char *viewer,
                    chat_conv *out);
    int (*conv_members)(chat_store *s, const char *conv_id, chat_member *out,
                        int max, int *n);
    int (*conv_list)(chat_store *s, const char *user_id,
                     const chat_conv_cursor *after, int limit, chat_conv *out,
                     int *n);
    int (*member_add)(chat_store *s, const char *conv_id, const char *user_id,
                      int role);
    int (*member_remove)(chat_store *s, const char *conv_id,
                         const char *user_id);
    int (*read_set)(chat_store *s, const char *conv_id, const char *user_id,
                    int64_t seq, int64_t *result);
    int (*conv_touch)(chat_store *s, const chat_message *m);
    int (*peers)(chat_store *s, const char *user_id, chat_id *out, int max,
                 int *n);
} chat_store_ops;

/** Base of every store object; backends embed it first. */
struct chat_store {
    const chat_store_ops *ops;
};

/** Options for the SQLite backends. */
typedef struct chat_sqlite_opts {
    unsigned version; /**< CHAT_SQLITE_OPTS_VERSION */
    int readers;      /**< pooled connections (store) / readers (log); 0 = 4 */
    int sync_full;    /**< 1: synchronous=FULL (survives power loss);
                           0: NORMAL (survives process crash). Default 1 */
    int busy_timeout_ms; /**< 0 = 5000 */
    int batch_max;       /**< log: most appends per group commit; 0 = 512 */
    int touch_store;     /**< log: the same file holds the store's tables;
                              update conversations.last_* and the sender's
                              read marker inside the append transaction */
} chat_sqlite_opts;

#define CHAT_SQLITE_OPTS_VERSION 1
#define CHAT_SQLITE_OPTS_INIT                                                  \
    {                                                                          \
        CHAT_SQLITE_OPTS_VERSION, 0, 1, 0, 0, 0                                \
    }

/** Fill @p o with defaults (for FFI callers). */
CHAT_API void chat_sqlite_opts_init(chat_sqlite_opts *o);

/**
 * Open (creating if needed) the SQLite store at @p path in WAL mode and
 * apply pending migrations. @p opts may be NULL for defaults.
 * @return CHAT_OK and *out, or CHAT_EIO/CHAT_ENOMEM/CHAT_EINVAL.
 * Free with chat_store_free().
 */
CHAT_API CHAT_WARN_UNUSED int
chat_store_sqlite_open(chat_store **out, const char *path,
                       const chat_sqlite_opts *opts);

/** Close a store; NULL is accepted. No call may be in flight. */
CHAT_API void chat_store_free(chat_store *s);

/** Create a user. @return CHAT_ECONFLICT if email or username (compared
 *  case-insensitively) is taken; the last error says which. */
CHAT_API int chat_store_user_create(chat_store *s, const chat_user *u);
/** Look up by id. @return CHAT_ENOTFOUND if absent. */
CHAT_API int chat_store_user_get(chat_store *s, const char *id, chat_user *out);
/** Look up by email or username, case-insensitive; fills password_hash. */
CHAT_API int chat_store_user_find_login(chat_store *s, const char *login,
                                        chat_user *out);
/** Users whose username or email starts with @p prefix (case-insensitive),
 *  by username; at most @p limit (1..CHAT_SEARCH_MAX) into @p out. */
CHAT_API int chat_store_user_search(chat_store *s, const char *prefix,
                                    int limit, chat_user *out, int *n);

/** Store a new refresh token (first of its family, or a rotation). */
CHAT_API int chat_store_token_insert(chat_store *s, const chat_refresh_rec *r);
/**
 * Atomically retire the token @p old_hash and store @p new_hash in the
 * same family. If @p old_hash was already rotated (a replay), the whole
 * family is revoked and CHAT_EAUTH returned. Unknown or revoked tokens
 * give CHAT_EAUTH, expired ones CHAT_EEXPIRED. On success @p out holds
 * the new row (family and user of the old one).
 */
CHAT_API int chat_store_token_rotate(chat_store *s, const uint8_t old_hash[32],
                                     const uint8_t new_hash[32],
                                     int64_t new_expires_at, int64_t now,
                                     chat_refresh_rec *out);
/** Revoke the family of the token with this hash (logout).
 *  @return CHAT_ENOTFOUND for an unknown token. */
CHAT_API int chat_store_token_revoke_family(chat_store *s,
                                            const uint8_t hash[32]);

/** Create or get the DM between @p a and @p b (order does not matter);
 *  *created (may be NULL) says which. @p out is seen by @p a. */
CHAT_API int chat_store_conv_dm(chat_store *s, const char *a, const char *b,
                                chat_conv *out, int *created);
/** Create a group owned by @p creator with the other members given
 *  (duplicates and the creator are ignored). CHAT_ELIMIT past
 *  CHAT_GROUP_MAX_MEMBERS, CHAT_ENOTFOUND if a member does not exist. */
CHAT_API int chat_store_conv_group(chat_store *s, const char *creator,
                                   const char *title,
                                   const char *const *member_ids, int n,
                                   chat_conv *out);
/** Get a conversation. With a @p viewer, CHAT_EPERM if the viewer is not
 *  a member; role/read_seq are the viewer's. */
CHAT_API int chat_store_conv_get(chat_store *s, const char *conv_id,
                                 const char *viewer, chat_conv *out);
/** Members by join time, at most @p max. */
CHAT_API int chat_store_conv_members(chat_store *s, const char *conv_id,
                                     chat_member *out, int max, int *n);
/** A user's conversations, newest activity first, after @p after
 *  (NULL = from the start), at most @p limit. */
CHAT_API int chat_store_conv_list(chat_store *s, const char *user_id,
                                  const chat_conv_cursor *after, int limit,
                                  chat_conv *out, int *n);
/** Users who share at least one conversation with @p user_id (not the
 *  user), at most @p max of them, in no particular order. */
CHAT_API int chat_store_peers(chat_store *s, const char *user_id, chat_id *out,
                              int max, int *n);

/** Add a member. CHAT_ECONFLICT if already one, CHAT_ELIMIT when the
 *  group is full, CHAT_ENOTFOUND for an unknown user or conversation. */
CHAT_API int chat_store_member_add(chat_store *s, const char *conv_id,
                                   const char *user_id, int role);
/** Remove a member; an owner who leaves hands ownership to the oldest
 *  admin, else the oldest member. CHAT_ENOTFOUND if not a member. */
CHAT_API int chat_store_member_remove(chat_store *s, const char *conv_id,
                                      const char *user_id);
/** Move a read marker forward to min(@p seq, last_seq); never backward.
 *  *result (may be NULL) receives the marker now stored. */
CHAT_API int chat_store_read_set(chat_store *s, const char *conv_id,
                                 const char *user_id, int64_t seq,
                                 int64_t *result);
/** Record @p m as the conversation's latest message if its seq is newer
 *  (used when the message log lives elsewhere); also moves the sender's
 *  read marker to it. */
CHAT_API int chat_store_conv_touch(chat_store *s, const chat_message *m);

/* ---- the message log ---------------------------------------------------- */

typedef struct chat_log chat_log;

/** An append request. Strings are borrowed for the duration of the call
 *  to chat_log_append() only. */
typedef struct chat_append {
    const char *conversation_id;
    const char *sender_id;
    const char *client_msg_id; /**< NULL: not idempotent */
    const char *content;       /**< valid UTF-8, 1..CHAT_MESSAGE_MAX_BYTES */
    size_t content_len;
    /** 1: refuse unless the sender is a member (CHAT_EPERM; CHAT_ENOTFOUND
     *  for an unknown conversation), checked in the insert's transaction.
     *  Only logs that touch the store (chat_log_touches_store()) can;
     *  others return CHAT_EINVAL from chat_log_append(). */
    int require_member;
} chat_append;

/**
 * Completion of an append, called once on a log-owned thread.
 * @param rc      CHAT_OK or a CHAT_E* code
 * @param msg     the stored message (a retry gets the original); valid
 *                only during the call; NULL on error
 * @param created 1 if newly stored, 0 if an idempotent retry
 */
typedef void (*chat_append_cb)(int rc, const chat_message *msg, int created,
                               void *userdata);

typedef struct chat_log_ops {
    const char *name;
    void (*free)(chat_log *l);
    int (*append)(chat_log *l, const chat_append *req, chat_append_cb cb,
                  void *userdata);
    int (*range)(chat_log *l, const char *conv_id, int64_t after_seq,
                 int64_t before_seq, int limit, chat_message *out, int *n);
    int (*get)(chat_log *l, const char *conv_id, const char *msg_id,
               chat_message *out, char **content);
    int touches_store; /**< 1 if appends already update the store */
} chat_log_ops;

struct chat_log {
    const chat_log_ops *ops;
};

/**
 * Open the SQLite message log at @p path. Appends go to one writer thread
 * that commits them in batches (group commit); each append's callback runs
 * only after its batch is durable.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_log_sqlite_open(chat_log **out, const char *path,
                     const chat_sqlite_opts *opts);

/** Options of the PostgreSQL backends (chat_store_pg_open(),
 *  chat_log_pg_open()). Strings are borrowed for the open call only. */
typedef struct chat_pg_opts {
    unsigned version;      /**< CHAT_PG_OPTS_VERSION */
    const char *conninfo;  /**< libpq URI or key=value string, e.g.
                                "postgresql://chat@127.0.0.1:5432/chat" */
    int pool_size;         /**< connections (store) / writer threads (log);
                                0 = 4 */
    int connect_timeout_s; /**< 0 = 5 */
    int touch_store;       /**< log: the store's tables are in the same
                                database; check membership and update the
                                conversation summary inside the append's
                                transaction (open the store first) */
} chat_pg_opts;

#define CHAT_PG_OPTS_VERSION 1

/** Defaults: everything 0/NULL but the version. */
CHAT_API void chat_pg_opts_init(chat_pg_opts *o);

/** Build a libpq connection string from the environment into @p out
 *  (@p size bytes): DATABASE_URL if set, else POSTGRES_HOST (localhost),
 *  POSTGRES_PORT (5432), POSTGRES_USER, POSTGRES_PASSWORD and
 *  POSTGRES_DB, as the seed's services read them. CHAT_ENOTFOUND when
 *  none of them is set, CHAT_ELIMIT when @p out is too small. */
CHAT_API int chat_pg_conninfo_from_env(char *out, size_t size);

/**
 * Open the store on PostgreSQL: users, refresh tokens, conversations,
 * memberships and read states. Migrations are applied at open under an
 * advisory lock (instances starting together are safe). Calls borrow a
 * pooled connection; a connection that broke is reopened on next use,
 * and calls made while the server is down fail with CHAT_EUNAVAIL.
 * Thread-safe. Free with chat_store_free().
 */
CHAT_API CHAT_WARN_UNUSED int chat_store_pg_open(chat_store **out,
                                                 const chat_pg_opts *opts);

/**
 * Open the message log on PostgreSQL (table messages, primary key
 * (conversation_id, seq)). Appends run on @c pool_size writer threads, a
 * conversation always on the same one (in order); each thread commits
 * what is queued in one transaction (group commit), taking a
 * per-conversation advisory lock before reading the last seq, so any
 * number of instances produce 1..N without gaps. Callbacks run on the
 * writer threads after the commit.
 */
CHAT_API CHAT_WARN_UNUSED int chat_log_pg_open(chat_log **out,
                                               const chat_pg_opts *opts);

/** Options of the DynamoDB message log (see chat_log_dynamodb_open()).
 *  Strings are borrowed for the duration of the open call only. */
typedef struct chat_dynamodb_opts {
    unsigned version;          /**< CHAT_DYNAMODB_OPTS_VERSION */
    const char *endpoint;      /**< "http://127.0.0.1:8000"; NULL or "":
                                    https://dynamodb.REGION.amazonaws.com/ */
    const char *region;        /**< NULL: "us-east-1" */
    const char *access_key;    /**< required */
    const char *secret_key;    /**< required */
    const char *session_token; /**< NULL: none */
    const char *table;         /**< NULL: "messages"; idempotency records
                                    go to "<table>_requests" */
    int workers;       /**< appends in flight at once (a conversation always
                            uses the same one, so its appends stay in
                            order); 0 = 4 */
    int timeout_ms;    /**< per HTTP attempt; 0 = 5000 */
    int max_attempts;  /**< per call, with backoff on throttling, 5xx and
                            transport errors; 0 = 6 */
    int create_tables; /**< 1: create missing tables at open */
} chat_dynamodb_opts;

#define CHAT_DYNAMODB_OPTS_VERSION 1

/** Defaults: everything 0/NULL but the version and create_tables = 1. */
CHAT_API void chat_dynamodb_opts_init(chat_dynamodb_opts *o);

/** Fill @p o from the environment the way AWS tools do:
 *  DYNAMODB_ENDPOINT, AWS_REGION (else AWS_DEFAULT_REGION),
 *  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
 *  DYNAMODB_TABLE. Pointers borrow getenv()'s strings; unset variables
 *  leave fields untouched. Not thread-safe against setenv(). */
CHAT_API void chat_dynamodb_opts_from_env(chat_dynamodb_opts *o);

/**
 * Open the message log on DynamoDB (its JSON API over HTTPS, SigV4).
 * Items live in the table (partition key conversation_id, sort key seq,
 * a global secondary index by_id on id); seq is assigned by reading the
 * last one and writing last + 1 with a conditional PutItem, retried on
 * conflict, so any number of instances appending to one conversation
 * produce 1..N without gaps or duplicates. Appends with a client_msg_id
 * first claim "<table>_requests" (conditional PutItem), so a retry from
 * anywhere gets the original; a claim whose writer died is taken over
 * after 60 s. Appends run on @c workers threads; callbacks run there.
 * The log never touches a store (chat_log_touches_store() is 0).
 * @return CHAT_OK, CHAT_EINVAL (bad options), CHAT_EAUTH (credentials
 *         refused), CHAT_EUNAVAIL (endpoint unreachable) or CHAT_EIO.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_log_dynamodb_open(chat_log **out, const chat_dynamodb_opts *opts);

/** Stop the writer (pending appends are committed first) and close.
 *  NULL is accepted. */
CHAT_API void chat_log_free(chat_log *l);

/**
 * Append a message; seq = previous last + 1, assigned in the same
 * transaction as the insert. If (conversation, sender, client_msg_id)
 * exists, the original is returned with created = 0.
 *
 * @return CHAT_OK when queued (@p cb will be called exactly once), or an
 *         error (CHAT_EINVAL, CHAT_ECLOSED) and @p cb is never called.
 */
CHAT_API int chat_log_append(chat_log *l, const chat_append *req,
                             chat_append_cb cb, void *userdata);

/** Blocking append for simple callers: waits for the completion. */
CHAT_API int chat_log_append_wait(chat_log *l, const chat_append *req,
                                  chat_message *out, int *created);

/**
 * Page of previews in ascending seq. With @p before_seq > 0: the @p limit
 * messages just before it; otherwise those after @p after_seq (>= 0).
 * @p limit is 1..CHAT_PAGE_MAX.
 */
CHAT_API int chat_log_range(chat_log *l, const char *conv_id, int64_t after_seq,
                            int64_t before_seq, int limit, chat_message *out,
                            int *n);

/** One message with its full content in *@p content (NUL-terminated,
 *  free with chat_free). CHAT_ENOTFOUND if not in that conversation. */
CHAT_API int chat_log_get(chat_log *l, const char *conv_id, const char *msg_id,
                          chat_message *out, char **content);

/** 1 if appends to @p l keep the store's conversation summary current. */
CHAT_API int chat_log_touches_store(const chat_log *l);

CHAT_END_DECLS

#endif /* CHAT_STORE_H */
