/* AWS Signature Version 4 for JSON APIs (POST to "/", no query string):
 * a pure function from the request's parts to its Authorization header,
 * on libsodium's SHA-256 and HMAC-SHA256. */
#ifndef CHAT_AWS_SIGV4_H
#define CHAT_AWS_SIGV4_H

#include <stddef.h>

typedef struct chat__sigv4 {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region;        /* "us-east-1" */
    const char *service;       /* "dynamodb" */
} chat__sigv4;

/* One signed request. headers[] are "name:value" pairs in lowercase names,
 * sorted by name, values trimmed: exactly what is sent and signed (host,
 * x-amz-date, and any others the caller adds). amz_date is
 * "YYYYMMDDTHHMMSSZ". */
typedef struct chat__sigv4_req {
    const char *method; /* "POST" */
    const char *path;   /* "/" (already URI-encoded) */
    const char *query;  /* canonical query string or "" */
    const char *const *headers;
    int nheaders;
    const char *amz_date;
    const void *body;
    size_t body_len;
} chat__sigv4_req;

#define CHAT__SIGV4_AUTH_MAX 512

/* Write the Authorization header's value into out (CHAT__SIGV4_AUTH_MAX
 * bytes). CHAT_OK, or CHAT_EINVAL when a part is missing or too long. */
int chat__sigv4_authorization(const chat__sigv4 *k, const chat__sigv4_req *r,
                              char *out);

/* "YYYYMMDDTHHMMSSZ" for a Unix time. */
void chat__sigv4_date(long long unix_s, char out[17]);

#endif /* CHAT_AWS_SIGV4_H */
