/* AWS Signature Version 4 ("Signing AWS API requests", the four steps:
 * canonical request, string to sign, derived key, signature). */
#include "aws/sigv4.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

static void hex(char *out, const unsigned char *in, size_t n)
{
    sodium_bin2hex(out, n * 2 + 1, in, n);
}

static void hmac(unsigned char out[32], const void *key, size_t klen,
                 const char *msg)
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, strlen(msg));
    crypto_auth_hmacsha256_final(&st, out);
}

void chat__sigv4_date(long long unix_s, char out[17])
{
    time_t t = (time_t)unix_s;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int chat__sigv4_authorization(const chat__sigv4 *k, const chat__sigv4_req *r,
                              char *out)
{
    unsigned char digest[32], key[32];
    char body_hex[65], creq_hex[65], sig_hex[65], date[9], scope[128];
    char signed_names[256] = "", secret[160];
    crypto_hash_sha256_state h;
    chat__buf creq = CHAT__BUF_INIT, sts = CHAT__BUF_INIT;
    size_t used = 0;
    int i, rc = CHAT_OK, n;

    if (!k->access_key || !k->secret_key || !k->region || !k->service ||
        !r->amz_date || strlen(r->amz_date) != 16 || r->nheaders < 1)
        return chat__error(CHAT_EINVAL, "sigv4: incomplete request");
    memcpy(date, r->amz_date, 8);
    date[8] = '\0';
    n = snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, k->region,
                 k->service);
    if (n < 0 || (size_t)n >= sizeof scope)
        return chat__error(CHAT_EINVAL, "sigv4: region or service too long");

    /* 1. the canonical request, hashed */
    crypto_hash_sha256(digest, r->body, r->body_len);
    hex(body_hex, digest, sizeof digest);
    chat__buf_printf(&creq, "%s\n%s\n%s\n", r->method, r->path,
                     r->query ? r->query : "");
    for (i = 0; i < r->nheaders; i++) {
        const char *colon = strchr(r->headers[i], ':');
        size_t nl = colon ? (size_t)(colon - r->headers[i]) : 0;
        if (nl == 0 || used + nl + 2 > sizeof signed_names) {
            rc = chat__error(CHAT_EINVAL, "sigv4: bad header");
            goto out;
        }
        chat__buf_printf(&creq, "%s\n", r->headers[i]);
        if (used)
            signed_names[used++] = ';';
        memcpy(signed_names + used, r->headers[i], nl);
        used += nl;
        signed_names[used] = '\0';
    }
    chat__buf_printf(&creq, "\n%s\n%s", signed_names, body_hex);
    if (creq.failed) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto out;
    }
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const unsigned char *)creq.data, creq.len);
    crypto_hash_sha256_final(&h, digest);
    hex(creq_hex, digest, sizeof digest);

    /* 2. the string to sign */
    chat__buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", r->amz_date, scope,
                     creq_hex);
    if (sts.failed) {
        rc = chat__error(CHAT_ENOMEM, "out of memory");
        goto out;
    }

    /* 3. the signing key: date, region, service, "aws4_request" */
    n = snprintf(secret, sizeof secret, "AWS4%s", k->secret_key);
    if (n < 0 || (size_t)n >= sizeof secret) {
        rc = chat__error(CHAT_EINVAL, "sigv4: secret key too long");
        goto out;
    }
    hmac(key, secret, (size_t)n, date);
    hmac(key, key, sizeof key, k->region);
    hmac(key, key, sizeof key, k->service);
    hmac(key, key, sizeof key, "aws4_request");

    /* 4. the signature */
    hmac(digest, key, sizeof key, sts.data);
    hex(sig_hex, digest, sizeof digest);
    n = snprintf(out, CHAT__SIGV4_AUTH_MAX,
                 "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                 "Signature=%s",
                 k->access_key, scope, signed_names, sig_hex);
    if (n < 0 || n >= CHAT__SIGV4_AUTH_MAX)
        rc = chat__error(CHAT_EINVAL, "sigv4: access key too long");
out:
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(key, sizeof key);
    chat__buf_free(&creq);
    chat__buf_free(&sts);
    return rc;
}
