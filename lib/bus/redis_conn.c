/* Redis connection targets (see redis_conn.h). */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "bus/redis_conn.h"
#include "core/internal.h"

int chat__redis_target_parse(chat__redis_target *t, const char *url,
                             int timeout_ms)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *pw = NULL;
    int rc = CHAT_EINVAL;

    memset(t, 0, sizeof *t);
    if (timeout_ms <= 0)
        timeout_ms = 2000;
    t->timeout.tv_sec = timeout_ms / 1000;
    t->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    if (url == NULL || *url == '\0')
        url = "redis://127.0.0.1:6379";
    if (u == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ==
            CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        !strcmp(scheme, "redis") &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        strlen(host) < sizeof t->host) {
        /* [::1] -> ::1 */
        size_t n = strlen(host);
        if (n > 2 && host[0] == '[' && host[n - 1] == ']')
            snprintf(t->host, sizeof t->host, "%.*s", (int)n - 2, host + 1);
        else
            snprintf(t->host, sizeof t->host, "%s", host);
        t->port = 6379;
        rc = CHAT_OK;
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
            t->port = atoi(port);
        if (curl_url_get(u, CURLUPART_PASSWORD, &pw, CURLU_URLDECODE) ==
                CURLUE_OK &&
            *pw && (t->password = chat__strdup(pw)) == NULL)
            rc = chat__error(CHAT_ENOMEM, "out of memory");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(pw);
    curl_url_cleanup(u);
    if (rc == CHAT_EINVAL)
        chat__error(rc,
                    "Redis URL \"%s\" is not redis://[:password@]host"
                    "[:port]",
                    url);
    return rc;
}

void chat__redis_target_free(chat__redis_target *t)
{
    chat__free(t->password);
    t->password = NULL;
}

redisContext *chat__redis_connect(const chat__redis_target *t)
{
    redisContext *c = redisConnectWithTimeout(t->host, t->port, t->timeout);
    redisReply *r;

    if (c == NULL) {
        chat__error(CHAT_ENOMEM, "out of memory");
        return NULL;
    }
    if (c->err) {
        chat__error(CHAT_EUNAVAIL, "Redis %s:%d: %s", t->host, t->port,
                    c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, t->timeout);
    if (t->password) {
        const char *argv[2] = {"AUTH", t->password};
        r = redisCommandArgv(c, 2, argv, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            chat__error(r ? CHAT_EAUTH : CHAT_EUNAVAIL, "Redis AUTH: %s",
                        r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}
