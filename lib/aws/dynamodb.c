/* DynamoDB's JSON API over libcurl: POST / with X-Amz-Target, SigV4. */
#include "aws/dynamodb.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "aws/sigv4.h"
#include "core/internal.h"

#define RESP_MAX (16u << 20) /* a Query answers at most 1 MB */

struct chat__ddb {
    CURL *curl;
    char *url;
    char host[300]; /* "host[:port]", as curl sends it */
    char *access_key, *secret_key, *session_token, *region;
    long timeout_ms;
    int max_attempts;
    char last_type[64];
    chat__buf resp;
};

static char *dup_or_null(const char *s)
{
    return s && *s ? chat__strdup(s) : NULL;
}

void chat__ddb_free(chat__ddb *d)
{
    if (d == NULL)
        return;
    if (d->curl)
        curl_easy_cleanup(d->curl);
    chat__free(d->url);
    if (d->secret_key)
        sodium_memzero(d->secret_key, strlen(d->secret_key));
    chat__free(d->access_key);
    chat__free(d->secret_key);
    chat__free(d->session_token);
    chat__free(d->region);
    chat__buf_free(&d->resp);
    chat__free(d);
}

/* The Host header curl will send for url: host, plus ":port" when the URL
 * names one. DynamoDB endpoints have no path. */
static int endpoint_host(const char *url, char *host, size_t size)
{
    CURLU *u = curl_url();
    char *h = NULL, *port = NULL, *path = NULL, *scheme = NULL;
    int rc = CHAT_EINVAL;

    if (u == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (!strcmp(scheme, "http") || !strcmp(scheme, "https")) &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
        !strcmp(path, "/")) {
        int n;
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
            n = snprintf(host, size, "%s:%s", h, port);
        else
            n = snprintf(host, size, "%s", h);
        rc = n > 0 && (size_t)n < size ? CHAT_OK : CHAT_EINVAL;
    }
    curl_free(h);
    curl_free(port);
    curl_free(path);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc == CHAT_OK ? rc
                         : chat__error(rc,
                                       "DynamoDB endpoint \"%s\" is not"
                                       " an http(s) URL without a path",
                                       url);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    chat__ddb *d = ud;

    if (d->resp.len + n > RESP_MAX || chat__buf_append(&d->resp, p, n))
        return 0; /* curl fails the transfer */
    return n * size;
}

int chat__ddb_new(chat__ddb **out, const chat_dynamodb_opts *o)
{
    const char *region = o->region && *o->region ? o->region : "us-east-1";
    chat__ddb *d;
    char url[256];
    int rc;

    if (!o->access_key || !*o->access_key || !o->secret_key || !*o->secret_key)
        return chat__error(CHAT_EINVAL, "DynamoDB needs AWS credentials "
                                        "(AWS_ACCESS_KEY_ID and "
                                        "AWS_SECRET_ACCESS_KEY)");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return chat__error(CHAT_ERROR, "curl_global_init failed");
    if ((d = chat__calloc(1, sizeof *d)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (o->endpoint && *o->endpoint)
        snprintf(url, sizeof url, "%s", o->endpoint);
    else
        snprintf(url, sizeof url, "https://dynamodb.%s.amazonaws.com/", region);
    d->url = chat__strdup(url);
    d->access_key = dup_or_null(o->access_key);
    d->secret_key = dup_or_null(o->secret_key);
    d->session_token = dup_or_null(o->session_token);
    d->region = chat__strdup(region);
    d->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    d->max_attempts = o->max_attempts > 0 ? o->max_attempts : 6;
    if (!d->url || !d->access_key || !d->secret_key || !d->region ||
        (o->session_token && *o->session_token && !d->session_token)) {
        chat__ddb_free(d);
        return chat__error(CHAT_ENOMEM, "out of memory");
    }
    if ((rc = endpoint_host(d->url, d->host, sizeof d->host)) != CHAT_OK) {
        chat__ddb_free(d);
        return rc;
    }
    if ((d->curl = curl_easy_init()) == NULL) {
        chat__ddb_free(d);
        return chat__error(CHAT_ENOMEM, "curl_easy_init failed");
    }
    curl_easy_setopt(d->curl, CURLOPT_URL, d->url);
    curl_easy_setopt(d->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(d->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->curl, CURLOPT_TIMEOUT_MS, d->timeout_ms);
    curl_easy_setopt(d->curl, CURLOPT_CONNECTTIMEOUT_MS, d->timeout_ms);
    curl_easy_setopt(d->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(d->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(d->curl, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(d->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    *out = d;
    return CHAT_OK;
}

const char *chat__ddb_last_type(const chat__ddb *d)
{
    return d->last_type;
}

static int retryable_type(const char *t)
{
    static const char *const types[] = {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
        "TransactionInProgressException"};
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(types); i++)
        if (!strcmp(t, types[i]))
            return 1;
    return 0;
}

/* One signed POST; *status is the HTTP status (0: transport failure). */
static int post_once(chat__ddb *d, const char *op, const char *body, size_t len,
                     long *status)
{
    char date[17], target[96], h_host[320], h_date[32], h_target[128];
    char h_token[1200], auth[CHAT__SIGV4_AUTH_MAX],
        line[CHAT__SIGV4_AUTH_MAX + 32];
    const char *signed_h[5];
    struct curl_slist *hl = NULL, *t;
    chat__sigv4 k = {d->access_key, d->secret_key, d->session_token, d->region,
                     "dynamodb"};
    chat__sigv4_req r;
    CURLcode cc;
    int n = 0, rc;

    chat__sigv4_date((long long)time(NULL), date);
    snprintf(target, sizeof target, "DynamoDB_20120810.%s", op);
    snprintf(h_host, sizeof h_host, "host:%s", d->host);
    snprintf(h_date, sizeof h_date, "x-amz-date:%s", date);
    snprintf(h_target, sizeof h_target, "x-amz-target:%s", target);
    signed_h[n++] = "content-type:application/x-amz-json-1.0";
    signed_h[n++] = h_host;
    signed_h[n++] = h_date;
    if (d->session_token) {
        if (snprintf(h_token, sizeof h_token, "x-amz-security-token:%s",
                     d->session_token) >= (int)sizeof h_token)
            return chat__error(CHAT_EINVAL, "AWS session token too long");
        signed_h[n++] = h_token;
    }
    signed_h[n++] = h_target;
    memset(&r, 0, sizeof r);
    r.method = "POST";
    r.path = "/";
    r.query = "";
    r.headers = signed_h;
    r.nheaders = n;
    r.amz_date = date;
    r.body = body;
    r.body_len = len;
    if ((rc = chat__sigv4_authorization(&k, &r, auth)) != CHAT_OK)
        return rc;

    /* what is sent is what was signed (curl would send the same Host) */
    for (int i = 0; i < n; i++) {
        const char *colon = strchr(signed_h[i], ':');
        snprintf(line, sizeof line, "%.*s: %s", (int)(colon - signed_h[i]),
                 signed_h[i], colon + 1);
        if ((t = curl_slist_append(hl, line)) == NULL)
            goto nomem;
        hl = t;
    }
    snprintf(line, sizeof line, "Authorization: %s", auth);
    if ((t = curl_slist_append(hl, line)) == NULL ||
        (hl = t, t = curl_slist_append(hl, "Expect:")) == NULL)
        goto nomem;
    hl = t;
    d->resp.len = 0;
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(d->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(d->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    cc = curl_easy_perform(d->curl);
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    *status = 0;
    if (cc != CURLE_OK) {
        chat__error(CHAT_EUNAVAIL, "DynamoDB %s: %s", op,
                    curl_easy_strerror(cc));
        return CHAT_OK; /* a transport failure: status 0, retryable */
    }
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, status);
    return CHAT_OK;
nomem:
    curl_slist_free_all(hl);
    return chat__error(CHAT_ENOMEM, "out of memory");
}

/* The AWS error of a non-200 answer: its short type and message. */
static void parse_error(chat__ddb *d, long status, char *msg, size_t size)
{
    cJSON *j =
        cJSON_ParseWithLength(d->resp.data ? d->resp.data : "", d->resp.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "__type");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    const char *hash;

    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(j, "Message");
    d->last_type[0] = '\0';
    if (cJSON_IsString(t)) {
        hash = strrchr(t->valuestring, '#');
        snprintf(d->last_type, sizeof d->last_type, "%s",
                 hash ? hash + 1 : t->valuestring);
    } else if (status >= 500) {
        snprintf(d->last_type, sizeof d->last_type, "InternalServerError");
    }
    snprintf(msg, size, "%s", cJSON_IsString(m) ? m->valuestring : "");
    cJSON_Delete(j);
}

int chat__ddb_call(chat__ddb *d, const char *op, const cJSON *req, cJSON **resp)
{
    char *body = cJSON_PrintUnformatted(req);
    char msg[256];
    long status = 0;
    int attempt, rc = CHAT_EUNAVAIL;

    if (resp)
        *resp = NULL;
    if (body == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    d->last_type[0] = '\0';
    for (attempt = 0; attempt < d->max_attempts; attempt++) {
        if (attempt > 0) {
            /* full jitter over an exponential window: 25 ms .. 1.6 s */
            uint32_t cap = 25u << (attempt < 7 ? attempt : 6);
            struct timespec ts;
            uint32_t ms = randombytes_uniform(cap) + 1;
            ts.tv_sec = ms / 1000;
            ts.tv_nsec = (long)(ms % 1000) * 1000000L;
            nanosleep(&ts, NULL);
        }
        if ((rc = post_once(d, op, body, strlen(body), &status)) != CHAT_OK)
            break;
        if (status == 200) {
            cJSON *j = cJSON_ParseWithLength(d->resp.data ? d->resp.data : "",
                                             d->resp.len);
            if (j == NULL) {
                rc = chat__error(CHAT_EPROTO, "DynamoDB %s: answer is not JSON",
                                 op);
                break;
            }
            if (resp)
                *resp = j;
            else
                cJSON_Delete(j);
            rc = CHAT_OK;
            break;
        }
        if (status == 0) { /* transport: chat__error already says why */
            rc = CHAT_EUNAVAIL;
            continue;
        }
        parse_error(d, status, msg, sizeof msg);
        if (status >= 500 || retryable_type(d->last_type)) {
            rc = chat__error(CHAT_EUNAVAIL, "DynamoDB %s: %ld %s %s", op,
                             status, d->last_type, msg);
            continue;
        }
        if (!strcmp(d->last_type, "ConditionalCheckFailedException") ||
            !strcmp(d->last_type, "ResourceInUseException"))
            rc = chat__error(CHAT_ECONFLICT, "DynamoDB %s: %s", op,
                             d->last_type);
        else if (!strcmp(d->last_type, "ResourceNotFoundException"))
            rc = chat__error(CHAT_ENOTFOUND, "DynamoDB %s: %s", op, msg);
        else if (!strcmp(d->last_type, "UnrecognizedClientException") ||
                 !strcmp(d->last_type, "InvalidSignatureException") ||
                 !strcmp(d->last_type, "AccessDeniedException"))
            rc = chat__error(CHAT_EAUTH, "DynamoDB %s: %s %s", op, d->last_type,
                             msg);
        else
            rc = chat__error(CHAT_EINVAL, "DynamoDB %s: %ld %s %s", op, status,
                             d->last_type, msg);
        break;
    }
    cJSON_free(body);
    return rc;
}
