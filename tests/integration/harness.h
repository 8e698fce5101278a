/*
 * Integration test harness: starts a real chatd on a free loopback port
 * in a temporary directory and talks to it over HTTP with libcurl.
 */
#ifndef CHAT_TEST_HARNESS_H
#define CHAT_TEST_HARNESS_H

#include <cjson/cJSON.h>
#include <sys/types.h>

typedef struct th_server {
    pid_t pid;
    int port;
    char dir[256];
    char base[64];
    const char *const *env; /* extra KEY=VALUE for chatd, NULL-terminated */
} th_server;

typedef struct th_resp {
    long status;
    cJSON *json; /* parsed body or NULL */
    char *body;  /* raw body, NUL-terminated */
    size_t body_len;
    char retry_after[16];
    char allow[64];
    char content_type[128];
    char cors_origin[256];
} th_resp;

typedef struct th_user {
    char id[64];
    char username[64];
    char email[128];
    char token[2048];
    char refresh[128];
} th_user;

/* Start chatd (extra env may be NULL); aborts the test on failure. */
void th_start(th_server *s, const char *const *env);
/* SIGTERM (or sig) and wait; returns the exit status, or -1. */
int th_stop(th_server *s, int sig);
/* Stop with SIGTERM and start again on the same dir and port. */
void th_restart(th_server *s);
/* Start again on the same dir and port after the process died. */
void th_restart_after_crash(th_server *s);
/* Remove the temporary directory. */
void th_cleanup(th_server *s);

/* One request. body may be NULL; token adds "Authorization: Bearer".
 * extra_headers is a NULL-terminated list or NULL. */
th_resp th_req(th_server *s, const char *method, const char *path,
               const char *token, const char *body,
               const char *const *extra_headers);
/* Same with a raw body of len bytes (may contain NULs). */
th_resp th_req_raw(th_server *s, const char *method, const char *path,
                   const char *token, const char *body, size_t len,
                   const char *const *extra_headers);
void th_resp_free(th_resp *r);

/* JSON field helpers (NULL/0 when absent). */
const char *th_str(const cJSON *o, const char *key);
double th_num(const cJSON *o, const char *key);
/* error.code of an error body, or "". */
const char *th_err(const th_resp *r);

/* Register name (email name@test.io, password "password-<name>") and log
 * in; fills u. */
void th_user_new(th_server *s, const char *name, th_user *u);
/* printf into one of 32 rotating thread-local buffers (for paths): the
 * result lives until 32 more calls on the thread. */
const char *th_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
