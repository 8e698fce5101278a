/* Error codes, their names, and the thread-local last error. */
#include <stdio.h>

#include "core/internal.h"

#define CHAT__ERRMSG_MAX 256

static _Thread_local chat_error t_err = {CHAT_OK, ""};
static _Thread_local char t_msg[CHAT__ERRMSG_MAX];

const char *chat_strerror(int code)
{
    switch (code) {
    case CHAT_OK:
        return "success";
    case CHAT_ERROR:
        return "error";
    case CHAT_ENOMEM:
        return "out of memory";
    case CHAT_EINVAL:
        return "invalid argument";
    case CHAT_EAUTH:
        return "authentication failed";
    case CHAT_EPERM:
        return "permission denied";
    case CHAT_ENOTFOUND:
        return "not found";
    case CHAT_ECONFLICT:
        return "conflict";
    case CHAT_ELIMIT:
        return "limit exceeded";
    case CHAT_EIO:
        return "I/O error";
    case CHAT_EPROTO:
        return "protocol error";
    case CHAT_EAGAIN:
        return "try again";
    case CHAT_ECLOSED:
        return "closed";
    case CHAT_ETIMEDOUT:
        return "timed out";
    case CHAT_ERATE:
        return "rate limit exceeded";
    case CHAT_EEXPIRED:
        return "expired";
    case CHAT_EUNAVAIL:
        return "unavailable";
    default:
        return "unknown error";
    }
}

int chat__error(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
    t_err.code = code;
    t_err.message = t_msg;
    return code;
}

const chat_error *chat_error_last(void)
{
    if (t_err.message == NULL)
        t_err.message = "";
    return &t_err;
}

void chat_error_clear(void)
{
    t_err.code = CHAT_OK;
    t_msg[0] = '\0';
    t_err.message = t_msg;
}
