/* Access tokens: compact JWTs signed with HMAC-SHA256 (RFC 7519, 7518).
 * Verification accepts exactly what chat_jwt_sign writes: alg HS256,
 * canonical base64url, integer times, UUID subject. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include <chat/auth.h>

#include "core/internal.h"

/* base64url of {"alg":"HS256","typ":"JWT"} */
static const char g_header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#define JWT_PART_MAX 1024 /* decoded header or payload */
/* Largest integer a JSON number (double) holds exactly. */
#define JSON_INT_MAX 9007199254740992.0

static void hmac(const uint8_t *key, size_t keylen, const char *msg, size_t len,
                 uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

int chat_jwt_sign(const uint8_t *key, size_t keylen,
                  const chat_jwt_claims *claims, char *out, size_t outsize)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    char payload[256], *p;
    size_t hlen = sizeof g_header - 1, plen, need;
    int n;

    CHAT_ASSERT_ARG(key && claims && out);
    if (keylen < CHAT_JWT_SECRET_MIN)
        return chat__error(CHAT_EINVAL, "JWT key shorter than %d bytes",
                           CHAT_JWT_SECRET_MIN);
    /* sub and jti are UUIDs: nothing in them needs JSON escaping */
    if (!chat_uuid_valid(claims->sub) || !chat_uuid_valid(claims->jti))
        return chat__error(CHAT_EINVAL, "sub and jti must be UUIDs");
    n = snprintf(payload, sizeof payload,
                 "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
                 claims->sub, (long long)claims->iat, (long long)claims->exp,
                 claims->jti);
    if (n < 0 || (size_t)n >= sizeof payload)
        return chat__error(CHAT_EINVAL, "claims do not fit");
    plen = chat__b64url_len((size_t)n);
    need = hlen + 1 + plen + 1 + chat__b64url_len(sizeof mac) + 1;
    if (outsize < need)
        return chat__error(CHAT_ELIMIT, "token buffer too small");
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

/* Decode one base64url part into a NUL-terminated buffer. */
static int part_decode(const char *s, size_t n, char *out, size_t size,
                       size_t *len)
{
    if (n == 0 || chat__b64url_decode((uint8_t *)out, size - 1, len, s, n))
        return -1;
    out[*len] = '\0';
    return 0;
}

static int json_int(const cJSON *o, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
        v->valuedouble > JSON_INT_MAX ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int check_header(const char *json, size_t len)
{
    cJSON *h = cJSON_ParseWithLength(json, len);
    const cJSON *alg, *typ;
    int ok;

    alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    ok = cJSON_IsObject(h) && cJSON_IsString(alg) &&
         !strcmp(alg->valuestring, "HS256") &&
         (typ == NULL ||
          (cJSON_IsString(typ) && !strcmp(typ->valuestring, "JWT")));
    cJSON_Delete(h);
    return ok ? 0 : -1;
}

int chat_jwt_verify(const uint8_t *key, size_t keylen, const char *token,
                    size_t len, int64_t now, chat_jwt_claims *out)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES], sig[64];
    char buf[JWT_PART_MAX + 1];
    const char *d1, *d2;
    chat_jwt_claims c;
    const cJSON *sub, *jti;
    cJSON *p = NULL;
    size_t n;
    int rc = CHAT_EAUTH;

    CHAT_ASSERT_ARG(key && token);
    if (keylen < CHAT_JWT_SECRET_MIN)
        return chat__error(CHAT_EINVAL, "JWT key shorter than %d bytes",
                           CHAT_JWT_SECRET_MIN);
    if (len == 0 || len > CHAT_JWT_MAX || memchr(token, '\0', len))
        return chat__error(CHAT_EAUTH, "malformed token");
    d1 = memchr(token, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return chat__error(CHAT_EAUTH, "a token has three parts");
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;

    /* signature first: nothing else of an unsigned token is trusted */
    if (part_decode(token, (size_t)(d1 - token), buf, sizeof buf, &n) ||
        check_header(buf, n))
        return chat__error(CHAT_EAUTH, "unsupported token header");
    if (chat__b64url_decode(sig, sizeof sig, &n, d2 + 1,
                            len - (size_t)(d2 + 1 - token)) ||
        n != sizeof mac)
        return chat__error(CHAT_EAUTH, "malformed signature");
    hmac(key, keylen, token, (size_t)(d2 - token), mac);
    if (sodium_memcmp(mac, sig, sizeof mac) != 0)
        return chat__error(CHAT_EAUTH, "bad signature");

    if (part_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof buf, &n))
        return chat__error(CHAT_EAUTH, "malformed payload");
    p = cJSON_ParseWithLength(buf, n);
    sub = cJSON_GetObjectItemCaseSensitive(p, "sub");
    jti = cJSON_GetObjectItemCaseSensitive(p, "jti");
    memset(&c, 0, sizeof c);
    if (!cJSON_IsObject(p) || !cJSON_IsString(sub) ||
        !chat_uuid_valid(sub->valuestring) || !cJSON_IsString(jti) ||
        !chat_uuid_valid(jti->valuestring) || json_int(p, "iat", &c.iat) ||
        json_int(p, "exp", &c.exp)) {
        chat__error(CHAT_EAUTH, "malformed claims");
        goto out;
    }
    memcpy(c.sub, sub->valuestring, CHAT_ID_LEN);
    memcpy(c.jti, jti->valuestring, CHAT_ID_LEN);
    if (c.exp <= now) {
        rc = chat__error(CHAT_EEXPIRED, "token expired");
        goto out;
    }
    if (out)
        *out = c;
    rc = CHAT_OK;
out:
    cJSON_Delete(p);
    return rc;
}
