/*
 * Internal helpers shared by every libchat module (never installed).
 * Names use the chat__ prefix.
 */
#ifndef CHAT_CORE_INTERNAL_H
#define CHAT_CORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <chat/core.h>
#include <chat/errors.h>

#if defined(__GNUC__)
#define CHAT__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CHAT__UNUSED       __attribute__((unused))
#else
#define CHAT__PRINTF(a, b)
#define CHAT__UNUSED
#endif

#define CHAT__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocation (through the hook set by chat_set_allocator) ---------- */
void *chat__malloc(size_t n);
void *chat__calloc(size_t count, size_t size);
void *chat__realloc(void *p, size_t n);
void chat__free(void *p);
char *chat__strdup(const char *s);
char *chat__strndup(const char *s, size_t n);

/* ---- errors ------------------------------------------------------------ */

/* Record code + formatted message as this thread's last error; returns
 * code so callers can write `return chat__error(CHAT_EINVAL, "...")`. */
int chat__error(int code, const char *fmt, ...) CHAT__PRINTF(2, 3);

/* Argument check for public entry points. */
#define CHAT_ASSERT_ARG(expr)                                                  \
    do {                                                                       \
        if (!(expr))                                                           \
            return chat__error(CHAT_EINVAL, "invalid argument: %s", #expr);    \
    } while (0)

/* ---- logging ----------------------------------------------------------- */
/* A log hook for one thread: a client routes its threads' lines (and
 * those of the calls it runs on the application's thread) to its own
 * hook. chat__log_scope_set(s) makes s this thread's (NULL: back to the
 * process hook) and returns the one it replaces. */
typedef struct chat__log_scope {
    chat_log_fn fn;
    int min;
    void *userdata;
} chat__log_scope;
const chat__log_scope *chat__log_scope_set(const chat__log_scope *s);
int chat__log_enabled(int level);
void chat__log(int level, const char *fmt, ...) CHAT__PRINTF(2, 3);
/* Log one line of another library's log (libwebsockets...) as
 * component=NAME msg="...": trailing newlines cut, at most 511 bytes. */
void chat__log_line(int level, const char *component, const char *line);
#define CHAT_LOG(level, ...)                                                   \
    do {                                                                       \
        if (chat__log_enabled(level))                                          \
            chat__log(level, __VA_ARGS__);                                     \
    } while (0)

/* ---- libsodium ---------------------------------------------------------- */

/* sodium_init() once per process; CHAT_OK or CHAT_ERROR. */
int chat__sodium_init(void);

/* ---- growable byte buffer ---------------------------------------------- */
typedef struct chat__buf {
    char *data;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed; later appends are no-ops */
} chat__buf;

#define CHAT__BUF_INIT                                                         \
    {                                                                          \
        NULL, 0, 0, 0                                                          \
    }
int chat__buf_reserve(chat__buf *b, size_t extra);
int chat__buf_append(chat__buf *b, const void *p, size_t n);
int chat__buf_puts(chat__buf *b, const char *s);
int chat__buf_printf(chat__buf *b, const char *fmt, ...) CHAT__PRINTF(2, 3);
/* Detach the NUL-terminated data (caller frees with chat__free). */
char *chat__buf_detach(chat__buf *b, size_t *len);
void chat__buf_free(chat__buf *b);

/* ---- base64url (libsodium, no padding) ---------------------------------- */
/* Encoded length for n input bytes, without NUL. */
size_t chat__b64url_len(size_t n);
/* Encode into out (needs chat__b64url_len(n) + 1 bytes). */
void chat__b64url_encode(char *out, const uint8_t *in, size_t n);
/* Decode canonical unpadded base64url; CHAT_OK or CHAT_EINVAL. */
int chat__b64url_decode(uint8_t *out, size_t outsize, size_t *outlen,
                        const char *in, size_t n);

/* ---- small string helpers ---------------------------------------------- */
/* strlcpy semantics: returns strlen(src); truncates to size - 1. */
size_t chat__strlcpy(char *dst, const char *src, size_t size);
/* ASCII lowercase copy into dst (size bytes). */
void chat__ascii_lower(char *dst, const char *src, size_t size);
/* FNV-1a of a string, for hash tables and shard choices (not for keys an
 * attacker may pick to collide on purpose at scale). */
unsigned chat__str_hash(const char *s);

/* ---- time ---------------------------------------------------------------- */
/* Monotonic clock in microseconds. */
int64_t chat__mono_us(void);

#endif /* CHAT_CORE_INTERNAL_H */
