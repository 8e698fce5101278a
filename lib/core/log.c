/* The log hook. The library never writes to stdout/stderr itself. */
#include <stdio.h>

#include "core/internal.h"

#define CHAT__LOG_LINE_MAX 1024

static chat_log_fn g_log_fn;
static void *g_log_ud;
static int g_log_min = CHAT_LOG_OFF;
static _Thread_local const chat__log_scope *t_scope;

const chat__log_scope *chat__log_scope_set(const chat__log_scope *s)
{
    const chat__log_scope *old = t_scope;

    t_scope = s;
    return old;
}

void chat_log_set(chat_log_fn fn, int min_level, void *userdata)
{
    g_log_fn = fn;
    g_log_ud = userdata;
    g_log_min = fn ? min_level : CHAT_LOG_OFF;
}

const char *chat_log_level_name(int level)
{
    switch (level) {
    case CHAT_LOG_DEBUG:
        return "debug";
    case CHAT_LOG_INFO:
        return "info";
    case CHAT_LOG_WARN:
        return "warn";
    case CHAT_LOG_ERROR:
        return "error";
    default:
        return "off";
    }
}

int chat__log_enabled(int level)
{
    if (t_scope)
        return t_scope->fn != NULL && level >= t_scope->min;
    return g_log_fn != NULL && level >= g_log_min;
}

void chat__log(int level, const char *fmt, ...)
{
    char line[CHAT__LOG_LINE_MAX];
    va_list ap;

    if (!chat__log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (t_scope)
        t_scope->fn(level, line, t_scope->userdata);
    else
        g_log_fn(level, line, g_log_ud);
}

void chat__log_line(int level, const char *component, const char *line)
{
    char buf[512];
    size_t n;

    if (!chat__log_enabled(level) || !line)
        return;
    n = chat__strlcpy(buf, line, sizeof buf);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    chat__log(level, "component=%s msg=\"%s\"", component, buf);
}
