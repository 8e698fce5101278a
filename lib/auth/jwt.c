/* Access tokens: compact JWTs signed with HMAC-SHA256 (RFC 7519, 7518).
 * Verification accepts exactly what chat_jwt_sign writes: alg HS256,
 * canonical base64url, integer times, UUID subject and token id. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include <chat/auth.h>

#include "core/internal.h"

/* base64url of {"alg":"HS256","typ":"JWT"} */
static const char g_header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/* A decoded header or payload: no part of a CHAT_JWT_MAX token decodes to
 * more, so this adds no second, smaller limit. */
#define JWT_PART_MAX (CHAT_JWT_MAX / 4 * 3 + 3)
/* Times must survive a JSON number (a double) exactly. */
#define JSON_INT_MAX ((int64_t)1 << 53)

static void hmac(const uint8_t *key, size_t keylen, const char *msg, size_t len,
                 uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;

    /* the streaming API takes a key of any length, as RFC 2104 does */
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

static int time_valid(int64_t t)
{
    return t >= 0 && t <= JSON_INT_MAX;
}

int chat_jwt_sign(const uint8_t *key, size_t keylen,
                  const chat_jwt_claims *claims, char *out, size_t outsize)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    char payload[256], *p;
    size_t hlen = sizeof g_header - 1, plen, need;
    int n;

    CHAT_ASSERT_ARG(key != NULL && claims != NULL && out != NULL);
    if (keylen < CHAT_JWT_SECRET_MIN)
        return chat__error(CHAT_EINVAL, "JWT key shorter than %d bytes",
                           CHAT_JWT_SECRET_MIN);
    /* sub and jti are UUIDs: nothing in them needs JSON escaping */
    if (!chat_uuid_valid(claims->sub))
        return chat__error(CHAT_EINVAL, "JWT sub must be a UUID");
    if (!chat_uuid_valid(claims->jti))
        return chat__error(CHAT_EINVAL, "JWT jti must be a UUID");
    /* never sign what chat_jwt_verify would refuse */
    if (!time_valid(claims->iat) || !time_valid(claims->exp))
        return chat__error(CHAT_EINVAL, "JWT iat/exp out of range");
    n = snprintf(payload, sizeof payload,
                 "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
                 claims->sub, (long long)claims->iat, (long long)claims->exp,
                 claims->jti);
    if (n < 0 || (size_t)n >= sizeof payload)
        return chat__error(CHAT_EINVAL, "JWT claims do not fit");
    plen = chat__b64url_len((size_t)n);
    need = hlen + 1 + plen + 1 + chat__b64url_len(sizeof mac) + 1;
    if (outsize < need)
        return chat__error(CHAT_ELIMIT, "JWT needs a %zu-byte buffer", need);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    p = out;
    memcpy(p, g_header, hlen);
    p += hlen;
    *p++ = '.';
    chat__b64url_encode(p, (const uint8_t *)payload, (size_t)n);
    p += plen;
    hmac(key, keylen, out, (size_t)(p - out), mac);
    *p++ = '.';
    chat__b64url_encode(p, mac, sizeof mac);
    return CHAT_OK;
}

/* Decode one base64url part and parse it as a single JSON value: no
 * trailing bytes, no NUL inside (cJSON would stop there and ignore the
 * rest). NULL if any of that fails. */
static cJSON *part_parse(const char *s, size_t n)
{
    char buf[JWT_PART_MAX + 1];
    size_t len;

    if (n == 0 ||
        chat__b64url_decode((uint8_t *)buf, sizeof buf - 1, &len, s, n) ||
        memchr(buf, '\0', len) != NULL)
        return NULL;
    buf[len] = '\0';
    /* the length covers the NUL so require_null_terminated can see it */
    return cJSON_ParseWithLengthOpts(buf, len + 1, NULL, 1);
}

static int check_header(const char *s, size_t n)
{
    cJSON *h = part_parse(s, n);
    const cJSON *alg, *typ;
    int rc = CHAT_OK;

    alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    if (!cJSON_IsObject(h))
        rc = chat__error(CHAT_EAUTH, "malformed JWT header");
    /* exactly HS256: "none", other algorithms and other spellings would
     * let a token choose how it is checked */
    else if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
        rc = chat__error(CHAT_EAUTH, "JWT alg is not HS256");
    else if (typ != NULL &&
             (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0))
        rc = chat__error(CHAT_EAUTH, "JWT typ is not JWT");
    cJSON_Delete(h);
    return rc;
}

static int json_int(const cJSON *o, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    /* range first: the cast below is undefined outside int64_t */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) ||
        v->valuedouble > (double)JSON_INT_MAX ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return chat__error(CHAT_EAUTH, "JWT %s is not an integer time", key);
    *out = (int64_t)v->valuedouble;
    return CHAT_OK;
}

static int json_uuid(const cJSON *o, const char *key, char out[CHAT_ID_LEN + 1])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsString(v) || !chat_uuid_valid(v->valuestring))
        return chat__error(CHAT_EAUTH, "JWT %s is not a UUID", key);
    memcpy(out, v->valuestring, CHAT_ID_LEN + 1);
    return CHAT_OK;
}

int chat_jwt_verify(const uint8_t *key, size_t keylen, const char *token,
                    size_t len, int64_t now, chat_jwt_claims *out)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES], sig[64];
    const char *d1, *d2, *end;
    chat_jwt_claims c;
    cJSON *p = NULL;
    size_t n;
    int rc;

    CHAT_ASSERT_ARG(key != NULL && token != NULL);
    if (keylen < CHAT_JWT_SECRET_MIN)
        return chat__error(CHAT_EINVAL, "JWT key shorter than %d bytes",
                           CHAT_JWT_SECRET_MIN);
    if (len == 0 || len > CHAT_JWT_MAX)
        return chat__error(CHAT_EAUTH, "JWT length %zu not in 1..%d", len,
                           CHAT_JWT_MAX);
    if (memchr(token, '\0', len) != NULL)
        return chat__error(CHAT_EAUTH, "NUL byte in JWT");
    end = token + len;
    d1 = memchr(token, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return chat__error(CHAT_EAUTH, "JWT does not have three parts");
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;

    /* The header decides how the rest is checked, so it is checked first;
     * then the signature, before anything of the payload is trusted. */
    if ((rc = check_header(token, (size_t)(d1 - token))) != CHAT_OK)
        return rc;
    if (chat__b64url_decode(sig, sizeof sig, &n, d2 + 1,
                            (size_t)(end - d2 - 1)) != CHAT_OK ||
        n != sizeof mac)
        return chat__error(CHAT_EAUTH, "malformed JWT signature");
    hmac(key, keylen, token, (size_t)(d2 - token), mac);
    if (sodium_memcmp(mac, sig, sizeof mac) != 0)
        return chat__error(CHAT_EAUTH, "bad JWT signature");

    p = part_parse(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!cJSON_IsObject(p)) {
        rc = chat__error(CHAT_EAUTH, "malformed JWT payload");
        goto out;
    }
    memset(&c, 0, sizeof c);
    if ((rc = json_uuid(p, "sub", c.sub)) != CHAT_OK ||
        (rc = json_uuid(p, "jti", c.jti)) != CHAT_OK ||
        (rc = json_int(p, "iat", &c.iat)) != CHAT_OK ||
        (rc = json_int(p, "exp", &c.exp)) != CHAT_OK)
        goto out;
    if (c.exp <= now) {
        rc = chat__error(CHAT_EEXPIRED, "JWT expired at %lld (now %lld)",
                         (long long)c.exp, (long long)now);
        goto out;
    }
    if (out != NULL)
        *out = c;
    rc = CHAT_OK;
out:
    cJSON_Delete(p);
    return rc;
}
