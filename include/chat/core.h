/**
 * @file chat/core.h
 * @brief Process-wide hooks (allocator, logging) and small utilities:
 *        UUIDv7 ids, RFC 3339 times, UTF-8 validation, message previews.
 */
#ifndef CHAT_CORE_H
#define CHAT_CORE_H

#include <chat/common.h>
#include <chat/limits.h>

CHAT_BEGIN_DECLS

/* ---- allocator --------------------------------------------------------- */

/** Allocation functions; all three must be set together. */
typedef struct chat_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} chat_allocator;

/**
 * Route libchat's (and cJSON's) allocations through @p a.
 *
 * Call once, before any other libchat function and before starting threads
 * that use libchat. NULL restores the C library's functions.
 *
 * @return CHAT_OK, or CHAT_EINVAL if a function pointer is missing.
 */
CHAT_API int chat_set_allocator(const chat_allocator *a);

/** Free memory that libchat returned and documented as "free with
 *  chat_free". NULL is accepted. Thread-safe. */
CHAT_API void chat_free(void *ptr);

/* ---- logging ----------------------------------------------------------- */

/** Log levels, in increasing severity. */
typedef enum chat_log_level {
    CHAT_LOG_DEBUG = 0,
    CHAT_LOG_INFO = 1,
    CHAT_LOG_WARN = 2,
    CHAT_LOG_ERROR = 3,
    CHAT_LOG_OFF = 4,
} chat_log_level;

/**
 * Log callback. @p line is one event as space-separated key=value pairs,
 * NUL-terminated, without a newline; valid only during the call.
 * Called from any libchat thread, possibly concurrently: it must be
 * thread-safe and must not call back into libchat.
 */
typedef void (*chat_log_fn)(int level, const char *line, void *userdata);

/**
 * Install the log hook. The library never prints on its own; without a
 * hook nothing is logged. Events below @p min_level are dropped before
 * formatting. Call at start-up, before other threads use libchat.
 */
CHAT_API void chat_log_set(chat_log_fn fn, int min_level, void *userdata);

/** Name of a level ("debug", "info", "warn", "error"). Never NULL. */
CHAT_API const char *chat_log_level_name(int level);

/* ---- ids and time ------------------------------------------------------ */

/**
 * Write a new UUIDv7 (RFC 9562: 48-bit Unix ms time, random bits from
 * libsodium) as 36 lowercase characters plus NUL into @p out.
 * Ids made later in the same process sort after earlier ones.
 * Thread-safe. @return CHAT_OK or CHAT_EINVAL (NULL out).
 */
CHAT_API int chat_uuid_v7(char out[CHAT_ID_LEN + 1]);

/** 1 if @p s is a textual UUID (any version, either case), else 0. */
CHAT_API int chat_uuid_valid(const char *s);

/** Wall-clock time in milliseconds since the Unix epoch. Thread-safe. */
CHAT_API int64_t chat_time_now_ms(void);

/**
 * Format @p ms (Unix epoch milliseconds) as RFC 3339 UTC
 * "YYYY-MM-DDTHH:MM:SS.mmmZ" into @p out (CHAT_TIME_LEN + NUL).
 * @return CHAT_OK, or CHAT_EINVAL if out is NULL or the year leaves
 *         0000-9999.
 */
CHAT_API int chat_time_format(int64_t ms, char out[CHAT_TIME_LEN + 1]);

/**
 * Parse an RFC 3339 time ("Z" or a numeric offset, optional fraction)
 * into Unix epoch milliseconds. @return CHAT_OK or CHAT_EINVAL.
 */
CHAT_API int chat_time_parse(const char *s, int64_t *ms);

/* ---- text -------------------------------------------------------------- */

/**
 * 1 if @p s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0. NUL bytes are rejected too, so valid
 * text is also a valid C string. Thread-safe.
 */
CHAT_API int chat_utf8_valid(const char *s, size_t len);

/** Number of code points in valid UTF-8 @p s[0..len). */
CHAT_API size_t chat_utf8_chars(const char *s, size_t len);

/**
 * Where to cut valid UTF-8 text for a preview of at most @p max_chars
 * code points, never splitting one.
 *
 * @param cut_len  receives the preview's length in bytes
 * @param has_more receives 1 if text was cut off, else 0
 * @return CHAT_OK, or CHAT_EINVAL on NULL arguments.
 */
CHAT_API int chat_text_preview(const char *s, size_t len, size_t max_chars,
                               size_t *cut_len, int *has_more);

CHAT_END_DECLS

#endif /* CHAT_CORE_H */
