/* lib/auth: argon2id passwords, HS256 access tokens, refresh tokens.
 * Known answers were computed independently with Python's hmac/hashlib. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <chat/chat.h>
#include "check_run.h"

#define KEY  "0123456789abcdef0123456789abcdef"
#define KLEN (sizeof KEY - 1)
#define SUB  "01a210e3-dcdf-7580-9d1f-7efd749adf56"
#define JTI  "01a210e3-de72-77b0-b640-d7726737204d"
#define IAT  1767789296
#define EXP  1767790196
/* header.payload.signature for the claims above under KEY */
#define KNOWN                                                                  \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                    \
    "eyJzdWIiOiIwMWEyMTBlMy1kY2RmLTc1ODAtOWQxZi03ZWZkNzQ5YWRmNTYiLCJpYXQiOjE3" \
    "Njc3ODkyOTYsImV4cCI6MTc2Nzc5MDE5NiwianRpIjoiMDFhMjEwZTMtZGU3Mi03N2IwLWI2" \
    "NDAtZDc3MjY3MzcyMDRkIn0.G64pyVyMOG23DnERPbfkiRvMGfVA-fMS-riCEEjX5-k"
/* the same payload under {"alg":"HS512"} (signed with HS256 anyway) */
#define HS512                                                                  \
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9."                                    \
    "eyJzdWIiOiIwMWEyMTBlMy1kY2RmLTc1ODAtOWQxZi03ZWZkNzQ5YWRmNTYiLCJpYXQiOjE3" \
    "Njc3ODkyOTYsImV4cCI6MTc2Nzc5MDE5NiwianRpIjoiMDFhMjEwZTMtZGU3Mi03N2IwLWI2" \
    "NDAtZDc3MjY3MzcyMDRkIn0.Bvw13F-aiq5-cnUhW24foojfKa1NZV9RidzNbhALKF0"
/* a correctly signed token whose iat is 1.5 */
#define FLOAT_IAT                                                              \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                    \
    "eyJzdWIiOiIwMWEyMTBlMy1kY2RmLTc1ODAtOWQxZi03ZWZkNzQ5YWRmNTYiLCJpYXQiOjEu" \
    "NSwiZXhwIjoxNzY3NzkwMTk2LCJqdGkiOiIwMWEyMTBlMy1kZTcyLTc3YjAtYjY0MC1kNzcy" \
    "NjczNzIwNGQifQ.Ax2D68BqHq6BE1sgMc4kgf--Ofwg8MJ-SyQTfk_SkSI"

static const uint8_t *K = (const uint8_t *)KEY;

static int verify(const char *tok, int64_t now, chat_jwt_claims *c)
{
    return chat_jwt_verify(K, KLEN, tok, strlen(tok), now, c);
}

static chat_jwt_claims claims(void)
{
    chat_jwt_claims c;

    memset(&c, 0, sizeof c);
    memcpy(c.sub, SUB, CHAT_ID_LEN);
    memcpy(c.jti, JTI, CHAT_ID_LEN);
    c.iat = IAT;
    c.exp = EXP;
    return c;
}

START_TEST(passwords)
{
    char h[CHAT_PWHASH_MAX], big[CHAT_PASSWORD_MAX_BYTES + 2];

    ck_assert_int_eq(chat_password_hash("correct horse", 13, h), CHAT_OK);
    ck_assert(!strncmp(h, "$argon2id$", 10));
    ck_assert_int_eq(chat_password_verify(h, "correct horse", 13), CHAT_OK);
    ck_assert_int_eq(chat_password_verify(h, "correct horsf", 13), CHAT_EAUTH);
    ck_assert_int_eq(chat_password_verify(h, "correct hors", 12), CHAT_EAUTH);
    ck_assert_int_eq(chat_password_verify("$argon2id$garbage", "x", 1),
                     CHAT_EAUTH);
    ck_assert_int_eq(chat_password_verify("", "x", 1), CHAT_EAUTH);
    memset(big, 'p', sizeof big);
    ck_assert_int_eq(chat_password_hash(big, sizeof big, h), CHAT_EINVAL);
    ck_assert_int_eq(chat_password_hash(NULL, 0, h), CHAT_EINVAL);
}
END_TEST

START_TEST(jwt_known_answer)
{
    chat_jwt_claims c = claims(), out;
    char tok[CHAT_JWT_MAX];

    ck_assert_int_eq(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_OK);
    ck_assert_str_eq(tok, KNOWN);
    ck_assert_int_eq(verify(KNOWN, IAT + 1, &out), CHAT_OK);
    ck_assert_str_eq(out.sub, SUB);
    ck_assert_str_eq(out.jti, JTI);
    ck_assert_int_eq(out.iat, IAT);
    ck_assert_int_eq(out.exp, EXP);
}
END_TEST

START_TEST(jwt_expiry)
{
    ck_assert_int_eq(verify(KNOWN, EXP - 1, NULL), CHAT_OK);
    ck_assert_int_eq(verify(KNOWN, EXP, NULL), CHAT_EEXPIRED);
    ck_assert_int_eq(verify(KNOWN, EXP + 1000, NULL), CHAT_EEXPIRED);
}
END_TEST

START_TEST(jwt_rejects)
{
    char t[2 * CHAT_JWT_MAX];
    size_t n = strlen(KNOWN), i;
    const char *payload = strchr(KNOWN, '.') + 1;
    const char *sig = strrchr(KNOWN, '.') + 1;

    /* every single-character change is caught */
    for (i = 0; i < n; i++) {
        if (KNOWN[i] == '.')
            continue;
        memcpy(t, KNOWN, n + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        ck_assert_msg(verify(t, IAT, NULL) == CHAT_EAUTH, "flip at %zu", i);
    }
    /* wrong key */
    ck_assert_int_eq(
        chat_jwt_verify((const uint8_t *)"another key that is long "
                                         "enough!!",
                        32, KNOWN, n, IAT, NULL),
        CHAT_EAUTH);
    /* alg none, with and without a signature */
    snprintf(t, sizeof t, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%.*s.",
             (int)(sig - payload - 1), payload);
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "eyJhbGciOiJub25lIn0.%s", payload);
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    /* another alg in the header */
    ck_assert_int_eq(verify(HS512, IAT, NULL), CHAT_EAUTH);
    /* structure */
    ck_assert_int_eq(verify("", IAT, NULL), CHAT_EAUTH);
    ck_assert_int_eq(verify("abc", IAT, NULL), CHAT_EAUTH);
    ck_assert_int_eq(verify("a.b", IAT, NULL), CHAT_EAUTH);
    ck_assert_int_eq(verify("a.b.c.d", IAT, NULL), CHAT_EAUTH);
    ck_assert_int_eq(verify("..", IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%s.", KNOWN);
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    /* padding and the other alphabet are not canonical base64url */
    snprintf(t, sizeof t, "%s=", KNOWN);
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    memcpy(t, KNOWN, n + 1);
    for (i = 0; i < n; i++)
        if (t[i] == '-')
            t[i] = '+';
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    /* truncated signature */
    memcpy(t, KNOWN, n + 1);
    t[n - 4] = '\0';
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
    /* a NUL inside */
    memcpy(t, KNOWN, n + 1);
    t[10] = '\0';
    ck_assert_int_eq(chat_jwt_verify(K, KLEN, t, n, IAT, NULL), CHAT_EAUTH);
    /* non-integer claims, even when signed */
    ck_assert_int_eq(verify(FLOAT_IAT, IAT, NULL), CHAT_EAUTH);
    /* oversize */
    memset(t, 'a', sizeof t - 1);
    t[sizeof t - 1] = '\0';
    ck_assert_int_eq(verify(t, IAT, NULL), CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_arguments)
{
    chat_jwt_claims c = claims();
    char tok[CHAT_JWT_MAX];

    ck_assert_int_eq(chat_jwt_sign(K, 31, &c, tok, sizeof tok), CHAT_EINVAL);
    ck_assert_int_eq(chat_jwt_verify(K, 31, KNOWN, strlen(KNOWN), IAT, NULL),
                     CHAT_EINVAL);
    ck_assert_int_eq(chat_jwt_sign(K, KLEN, &c, tok, 20), CHAT_ELIMIT);
    memcpy(c.sub, "not-a-uuid", 11);
    ck_assert_int_eq(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
}
END_TEST

START_TEST(refresh_tokens)
{
    static const uint8_t known[32] = {
        0x25, 0x07, 0xc0, 0x61, 0xba, 0x0e, 0x4d, 0xee, 0xe6, 0xb5, 0x74,
        0x3d, 0x8d, 0x64, 0x87, 0xf7, 0xf5, 0xd3, 0xe6, 0x55, 0x0a, 0x07,
        0x11, 0xf6, 0xca, 0xdb, 0x49, 0xe2, 0xff, 0x1b, 0xa0, 0xc4};
    char a[CHAT_REFRESH_TOKEN_LEN + 1], b[CHAT_REFRESH_TOKEN_LEN + 1];
    uint8_t h[32];

    ck_assert_int_eq(chat_refresh_token_new(a), CHAT_OK);
    ck_assert_int_eq(chat_refresh_token_new(b), CHAT_OK);
    ck_assert_uint_eq(strlen(a), CHAT_REFRESH_TOKEN_LEN);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(chat_refresh_token_hash("refresh-token-example", 21, h),
                     CHAT_OK);
    ck_assert(!memcmp(h, known, 32));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, passwords);
    tcase_add_test(tc, jwt_known_answer);
    tcase_add_test(tc, jwt_expiry);
    tcase_add_test(tc, jwt_rejects);
    tcase_add_test(tc, jwt_arguments);
    tcase_add_test(tc, refresh_tokens);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
