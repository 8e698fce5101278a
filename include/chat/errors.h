/**
 * @file chat/errors.h
 * @brief Error codes and the thread-local last error.
 *
 * Every fallible libchat function returns CHAT_OK (0) or a negative
 * CHAT_E* code. The function that failed also records a message in a
 * thread-local slot, read with chat_error_last().
 */
#ifndef CHAT_ERRORS_H
#define CHAT_ERRORS_H

#include <chat/common.h>

CHAT_BEGIN_DECLS

/** Result codes. New codes are only ever appended. */
typedef enum chat_errcode {
    CHAT_OK = 0,
    CHAT_ERROR = -1,      /**< unspecified failure */
    CHAT_ENOMEM = -2,     /**< out of memory */
    CHAT_EINVAL = -3,     /**< invalid argument or input */
    CHAT_EAUTH = -4,      /**< authentication failed (bad credentials/token) */
    CHAT_EPERM = -5,      /**< authenticated but not allowed */
    CHAT_ENOTFOUND = -6,  /**< no such object */
    CHAT_ECONFLICT = -7,  /**< already exists / state conflict */
    CHAT_ELIMIT = -8,     /**< a size or count limit was exceeded */
    CHAT_EIO = -9,        /**< storage or network I/O failed */
    CHAT_EPROTO = -10,    /**< peer violated the protocol */
    CHAT_EAGAIN = -11,    /**< try again later (busy, would block) */
    CHAT_ECLOSED = -12,   /**< object closed or shutting down */
    CHAT_ETIMEDOUT = -13, /**< operation timed out */
    CHAT_ERATE = -14,     /**< rate limit exceeded */
    CHAT_EEXPIRED = -15,  /**< token or object expired */
    CHAT_EUNAVAIL = -16,  /**< backend unavailable */
} chat_errcode;

/** The last error recorded on the calling thread. */
typedef struct chat_error {
    int code;            /**< a chat_errcode */
    const char *message; /**< human-readable detail; never NULL */
} chat_error;

/**
 * Static description of an error code ("invalid argument", ...).
 *
 * @return never NULL; unknown codes give "unknown error". Thread-safe.
 */
CHAT_API const char *chat_strerror(int code);

/**
 * Details of the last failure on this thread.
 *
 * @return pointer to thread-local storage, valid until the next libchat
 *         call on the same thread; never NULL (code CHAT_OK and message ""
 *         when nothing failed yet).
 */
CHAT_API const chat_error *chat_error_last(void);

/** Reset this thread's last error to CHAT_OK. */
CHAT_API void chat_error_clear(void);

CHAT_END_DECLS

#endif /* CHAT_ERRORS_H */
