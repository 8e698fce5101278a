/*
 * Shared by the daemons' thin mains: log sink, signal handling, config
 * from flags and environment. Not part of the library.
 */
#ifndef CHAT_DAEMON_H
#define CHAT_DAEMON_H

#include <stddef.h>
#include <stdint.h>

/* Log libchat's events to stderr, one line each: "text" (key=value) or
 * "json". level is a name: debug, info, warn, error. 0 or -1 (bad). */
int chatd_log_setup(const char *level, const char *format, const char *name);
/* Log one line from the daemon itself through the same sink. */
void chatd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Block SIGINT/SIGTERM in every thread and start a thread that calls
 * stop(arg) when one arrives. Call before starting other threads. */
int chatd_signals_start(void (*stop)(void *arg), void *arg);

/* The value of flag --name=V / --name V in argv, else env[envname],
 * else def. */
const char *chatd_opt(int argc, char **argv, const char *name,
                      const char *envname, const char *def);
/* 1 if --name appears in argv or env[envname] is "1"/"true"/"yes". */
int chatd_flag(int argc, char **argv, const char *name, const char *envname);
/* Reject arguments that are not among the known option names (NULL
 * terminated; each "--x" takes a value unless listed in bools). */
int chatd_check_args(int argc, char **argv, const char *const *with_value,
                     const char *const *bools, const char *prog);

/* "HOST:PORT" or "PORT" or "[v6]:PORT" into host (size) and port. */
int chatd_parse_listen(const char *s, char *host, size_t size, int *port);

/* The JWT secret: $JWT_SECRET if set (>= 32 bytes), else a 64-byte
 * random secret persisted (mode 0600) in dir/jwt.secret. Returns a
 * malloc'd buffer and its length, or NULL with a message on stderr. */
uint8_t *chatd_jwt_secret(const char *dir, size_t *len);

#endif
