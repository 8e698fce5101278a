/* lib/auth: argon2id passwords, HS256 access tokens, refresh tokens.
 *
 * Known answers come from implementations other than the one under test:
 * the JWTs and SHA-256 digests from Python's hmac/hashlib, the argon2id
 * hash from the reference libargon2 (through Python's ctypes). Tokens the
 * tests craft themselves (craft() below) are first checked against the
 * Python token, so a bug shared by craft() and chat_jwt_sign would show. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include <chat/auth.h>

#include "check_run.h"
#include "core/internal.h"

#define KEY  "0123456789abcdef0123456789abcdef"
#define KLEN (sizeof KEY - 1)
/* longer than SHA-256's 64-byte block, so HMAC hashes the key first */
#define LONG_KEY  KEY KEY KEY "0123"
#define LONG_KLEN (sizeof LONG_KEY - 1)
#define SUB       "01a210e3-dcdf-7580-9d1f-7efd749adf56"
#define JTI       "01a210e3-de72-77b0-b640-d7726737204d"
#define IAT       1767789296
#define EXP       1767790196
#define HEADER    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define PAYLOAD                                                                \
    "{\"sub\":\"" SUB                                                          \
    "\",\"iat\":1767789296,\"exp\":1767790196,\"jti\":\"" JTI "\"}"
/* python3: b64url(HEADER) "." b64url(PAYLOAD), then "." and
 * b64url(hmac.new(key, that, sha256).digest()), no padding */
#define SIGNED                                                                 \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                    \
    "eyJzdWIiOiIwMWEyMTBlMy1kY2RmLTc1ODAtOWQxZi03ZWZkNzQ5YWRmNTYiLCJpYXQiOjE3" \
    "Njc3ODkyOTYsImV4cCI6MTc2Nzc5MDE5NiwianRpIjoiMDFhMjEwZTMtZGU3Mi03N2IwLWI2" \
    "NDAtZDc3MjY3MzcyMDRkIn0"
#define KNOWN      SIGNED ".G64pyVyMOG23DnERPbfkiRvMGfVA-fMS-riCEEjX5-k"
#define KNOWN_LONG SIGNED ".38C6-pB7UY-D9kp28w_yDEvc2vgk3tlGz5QMGAy-YVA"

static const uint8_t *K = (const uint8_t *)KEY;

/* Compare a return code and say what libchat recorded when it differs. */
#define ck_rc(expr, want)                                                      \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        ck_assert_msg(rc_ == (want), "%s: got %d, want %d (%s)", #expr, rc_,   \
                      (want), chat_error_last()->message);                     \
    } while (0)

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

/* Sign arbitrary header and payload bytes with HS256 under KEY, the way
 * a forger holding the key would: lets the tests reach the checks that
 * come after the signature. */
static void craft_n(char *out, size_t size, const char *h, size_t hlen,
                    const char *p, size_t plen)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    size_t n;

    ck_assert_uint_lt(chat__b64url_len(hlen) + chat__b64url_len(plen) + 46,
                      size);
    chat__b64url_encode(out, (const uint8_t *)h, hlen);
    n = strlen(out);
    out[n++] = '.';
    chat__b64url_encode(out + n, (const uint8_t *)p, plen);
    n += strlen(out + n);
    crypto_auth_hmacsha256_init(&st, K, KLEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)out, n);
    crypto_auth_hmacsha256_final(&st, mac);
    out[n++] = '.';
    chat__b64url_encode(out + n, mac, sizeof mac);
}

static void craft(char *out, size_t size, const char *h, const char *p)
{
    craft_n(out, size, h, strlen(h), p, strlen(p));
}

/* ---- passwords ----------------------------------------------------------- */

START_TEST(password_round_trip)
{
    char h[CHAT_PWHASH_MAX], h2[CHAT_PWHASH_MAX];

    ck_rc(chat_password_hash("correct horse", 13, h), CHAT_OK);
    ck_assert_msg(!strncmp(h, "$argon2id$v=19$m=65536,t=2,p=1$", 31),
                  "not argon2id with interactive limits: %s", h);
    ck_assert_uint_lt(strlen(h), CHAT_PWHASH_MAX);
    ck_rc(chat_password_verify(h, "correct horse", 13), CHAT_OK);
    /* a fresh salt every time */
    ck_rc(chat_password_hash("correct horse", 13, h2), CHAT_OK);
    ck_assert_str_ne(h, h2);
    ck_rc(chat_password_verify(h2, "correct horse", 13), CHAT_OK);
    /* the length is what counts, not a NUL */
    ck_rc(chat_password_hash("a\0b", 3, h), CHAT_OK);
    ck_rc(chat_password_verify(h, "a\0b", 3), CHAT_OK);
    ck_rc(chat_password_verify(h, "a\0c", 3), CHAT_EAUTH);
    ck_rc(chat_password_verify(h, "a", 1), CHAT_EAUTH);
}
END_TEST

START_TEST(password_mismatch)
{
    char h[CHAT_PWHASH_MAX];

    ck_rc(chat_password_hash("correct horse", 13, h), CHAT_OK);
    ck_rc(chat_password_verify(h, "correct horsf", 13), CHAT_EAUTH);
    ck_assert_str_eq(chat_error_last()->message, "password does not match");
    ck_rc(chat_password_verify(h, "correct hors", 12), CHAT_EAUTH);
    ck_rc(chat_password_verify(h, "Correct horse", 13), CHAT_EAUTH);
    ck_rc(chat_password_verify(h, "", 0), CHAT_EAUTH);
}
END_TEST

START_TEST(password_known_answer)
{
    /* libargon2 argon2id_hash_encoded(t=2, m=65536 KiB, p=1, 32-byte
     * output, salt "libchat-kat-salt"): another implementation's hash
     * must verify, so stored hashes outlive a change of library */
    static const char known[] =
        "$argon2id$v=19$m=65536,t=2,p=1$bGliY2hhdC1rYXQtc2FsdA$"
        "/iDsTvsccmrS8W4n2vIOn5tw/upxIBaH1lT43I3DtyA";
    static const char pw[] = "correct horse battery staple";

    ck_rc(chat_password_verify(known, pw, sizeof pw - 1), CHAT_OK);
    ck_rc(chat_password_verify(known, pw, sizeof pw - 2), CHAT_EAUTH);
}
END_TEST

START_TEST(password_malformed_hash)
{
    char h[CHAT_PWHASH_MAX];

    ck_rc(chat_password_verify("$argon2id$garbage", "x", 1), CHAT_EAUTH);
    ck_assert_str_eq(chat_error_last()->message, "malformed password hash");
    ck_rc(chat_password_verify("", "x", 1), CHAT_EAUTH);
    ck_rc(chat_password_verify("password", "password", 8), CHAT_EAUTH);
    /* a real hash with its tag cut short */
    ck_rc(chat_password_hash("pw", 2, h), CHAT_OK);
    h[strlen(h) - 5] = '\0';
    ck_rc(chat_password_verify(h, "pw", 2), CHAT_EAUTH);
    /* no NUL anywhere in the buffer: refused without reading past it */
    memset(h, 'a', sizeof h);
    memcpy(h, "$argon2id$", 10);
    ck_rc(chat_password_verify(h, "pw", 2), CHAT_EAUTH);
}
END_TEST

START_TEST(password_limits)
{
    static char big[CHAT_PASSWORD_MAX_BYTES + 1];
    char h[CHAT_PWHASH_MAX];

    memset(big, 'p', sizeof big);
    ck_rc(chat_password_hash(big, CHAT_PASSWORD_MAX_BYTES, h), CHAT_OK);
    ck_rc(chat_password_verify(h, big, CHAT_PASSWORD_MAX_BYTES), CHAT_OK);
    ck_rc(chat_password_hash(big, sizeof big, h), CHAT_EINVAL);
    /* too long to have been hashed, so it cannot match */
    ck_rc(chat_password_verify(h, big, sizeof big), CHAT_EAUTH);
    ck_rc(chat_password_hash(NULL, 0, h), CHAT_EINVAL);
    ck_rc(chat_password_hash("x", 1, NULL), CHAT_EINVAL);
    ck_rc(chat_password_verify(NULL, "x", 1), CHAT_EINVAL);
    ck_rc(chat_password_verify(h, NULL, 0), CHAT_EINVAL);
}
END_TEST

/* ---- JWT: signing -------------------------------------------------------- */

START_TEST(jwt_known_answer)
{
    chat_jwt_claims c = claims(), out;
    char tok[CHAT_JWT_MAX];

    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_OK);
    ck_assert_str_eq(tok, KNOWN);
    ck_rc(verify(KNOWN, IAT + 1, &out), CHAT_OK);
    ck_assert_str_eq(out.sub, SUB);
    ck_assert_str_eq(out.jti, JTI);
    ck_assert_int_eq(out.iat, IAT);
    ck_assert_int_eq(out.exp, EXP);
    /* craft() agrees with Python, so the tokens it makes are real */
    craft(tok, sizeof tok, HEADER, PAYLOAD);
    ck_assert_str_eq(tok, KNOWN);
}
END_TEST

START_TEST(jwt_known_answer_long_key)
{
    const uint8_t *lk = (const uint8_t *)LONG_KEY;
    chat_jwt_claims c = claims();
    char tok[CHAT_JWT_MAX];

    ck_rc(chat_jwt_sign(lk, LONG_KLEN, &c, tok, sizeof tok), CHAT_OK);
    ck_assert_str_eq(tok, KNOWN_LONG);
    ck_rc(chat_jwt_verify(lk, LONG_KLEN, tok, strlen(tok), IAT, NULL), CHAT_OK);
    /* a key is all of its bytes */
    ck_rc(chat_jwt_verify(lk, LONG_KLEN - 1, tok, strlen(tok), IAT, NULL),
          CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_round_trip)
{
    chat_jwt_claims c, out;
    char tok[CHAT_JWT_MAX];
    int64_t now = chat_time_now_ms() / 1000;

    memset(&c, 0, sizeof c);
    ck_rc(chat_uuid_v7(c.sub), CHAT_OK);
    ck_rc(chat_uuid_v7(c.jti), CHAT_OK);
    c.iat = now;
    c.exp = now + CHAT_ACCESS_TTL_DEFAULT;
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_OK);
    ck_rc(verify(tok, now, &out), CHAT_OK);
    ck_assert(!memcmp(&c, &out, sizeof c));
    ck_rc(verify(tok, now, NULL), CHAT_OK);
    /* upper-case UUIDs are UUIDs too */
    memcpy(c.sub, "01A210E3-DCDF-7580-9D1F-7EFD749ADF56", CHAT_ID_LEN);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_OK);
    ck_rc(verify(tok, now, &out), CHAT_OK);
    ck_assert_str_eq(out.sub, c.sub);
}
END_TEST

START_TEST(jwt_sign_arguments)
{
    chat_jwt_claims c = claims();
    char tok[CHAT_JWT_MAX];
    size_t need = strlen(KNOWN) + 1;

    ck_rc(chat_jwt_sign(K, CHAT_JWT_SECRET_MIN - 1, &c, tok, sizeof tok),
          CHAT_EINVAL);
    ck_rc(chat_jwt_sign(K, CHAT_JWT_SECRET_MIN, &c, tok, sizeof tok), CHAT_OK);
    ck_rc(chat_jwt_sign(NULL, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    ck_rc(chat_jwt_sign(K, KLEN, NULL, tok, sizeof tok), CHAT_EINVAL);
    ck_rc(chat_jwt_sign(K, KLEN, &c, NULL, sizeof tok), CHAT_EINVAL);
    /* exactly enough room, then one byte less */
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, need), CHAT_OK);
    ck_assert_str_eq(tok, KNOWN);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, need - 1), CHAT_ELIMIT);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, 0), CHAT_ELIMIT);
    /* ids must be UUIDs: they go into the JSON unescaped */
    memcpy(c.sub, "not-a-uuid", 11);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c = claims();
    c.sub[0] = '\0';
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c = claims();
    memcpy(c.sub, "01a210e3-dcdf-7580-9d1f-7efd749adf5\"", CHAT_ID_LEN);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c = claims();
    c.sub[CHAT_ID_LEN] = 'a'; /* not NUL-terminated */
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c = claims();
    memcpy(c.jti, "12345", 6);
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    /* times a JSON number cannot carry exactly, or before 1970 */
    c = claims();
    c.iat = -1;
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c = claims();
    c.exp = ((int64_t)1 << 53) + 1;
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
    c.exp = INT64_MAX;
    ck_rc(chat_jwt_sign(K, KLEN, &c, tok, sizeof tok), CHAT_EINVAL);
}
END_TEST

/* ---- JWT: verification --------------------------------------------------- */

START_TEST(jwt_expiry)
{
    char tok[CHAT_JWT_MAX];

    ck_rc(verify(KNOWN, EXP - 1, NULL), CHAT_OK);
    ck_rc(verify(KNOWN, EXP, NULL), CHAT_EEXPIRED);
    ck_rc(verify(KNOWN, EXP + 1000, NULL), CHAT_EEXPIRED);
    /* expiry is only news about a token that is otherwise good */
    memcpy(tok, KNOWN, sizeof KNOWN);
    tok[sizeof KNOWN - 3] = tok[sizeof KNOWN - 3] == 'A' ? 'B' : 'A';
    ck_rc(verify(tok, EXP, NULL), CHAT_EAUTH);
    ck_rc(chat_jwt_verify((const uint8_t *)"fedcba9876543210fedcba9876543210",
                          KLEN, KNOWN, strlen(KNOWN), EXP, NULL),
          CHAT_EAUTH);
    craft(tok, sizeof tok, HEADER,
          "{\"sub\":\"x\",\"iat\":1,\"exp\":2,\"jti\":\"" JTI "\"}");
    ck_rc(verify(tok, 10, NULL), CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_tampered)
{
    char t[sizeof KNOWN];
    size_t n = strlen(KNOWN), i;

    /* every single-character change is caught, in all three parts */
    for (i = 0; i < n; i++) {
        if (KNOWN[i] == '.')
            continue;
        memcpy(t, KNOWN, n + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        ck_assert_msg(verify(t, IAT, NULL) == CHAT_EAUTH, "flip at %zu", i);
    }
    /* the signature's last character has two unused bits: setting them
     * gives the same bytes, but not a canonical encoding */
    memcpy(t, KNOWN, n + 1);
    ck_assert_int_eq(t[n - 1], 'k');
    t[n - 1] = 'l';
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* signatures cut short or grown */
    memcpy(t, KNOWN, n + 1);
    t[n - 4] = '\0';
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    memcpy(t, KNOWN, n + 1);
    t[strrchr(t, '.') - t + 1] = '\0';
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* the right 32 bytes followed by more: the last character's unused
     * bits are zero, so KNOWN "A" is canonical and decodes to mac || 0 */
    ck_rc(verify(KNOWN "A", IAT, NULL), CHAT_EAUTH);
    ck_rc(verify(KNOWN "AAAA", IAT, NULL), CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_wrong_key)
{
    const uint8_t *other = (const uint8_t *)"fedcba9876543210fedcba9876543210";

    ck_rc(chat_jwt_verify(other, 32, KNOWN, strlen(KNOWN), IAT, NULL),
          CHAT_EAUTH);
    ck_assert_str_eq(chat_error_last()->message, "bad JWT signature");
    ck_rc(chat_jwt_verify((const uint8_t *)LONG_KEY, KLEN + 1, KNOWN,
                          strlen(KNOWN), IAT, NULL),
          CHAT_EAUTH);
    ck_rc(chat_jwt_verify((const uint8_t *)LONG_KEY, LONG_KLEN, KNOWN,
                          strlen(KNOWN), IAT, NULL),
          CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_headers)
{
    /* each signed with the right key, so only the header can fail */
    static const char *const bad[] = {
        "{\"alg\":\"none\"}",
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS384\"}",
        "{\"alg\":\"RS256\"}",
        "{\"alg\":\"hs256\"}",
        "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"\"}",
        "{\"typ\":\"JWT\"}",
        "{\"ALG\":\"HS256\"}",
        "{\"alg\":256}",
        "{\"alg\":null}",
        "{\"alg\":true}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":{\"HS256\":1}}",
        "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
        "{\"alg\":\"HS256\",\"typ\":1}",
        "{\"alg\":\"HS256\",\"typ\":null}",
        "{\"alg\":\"HS256\"}x",
        "{\"alg\":\"HS256\"}{}",
        "{\"alg\":\"HS256\"",
        "[\"HS256\"]",
        "\"HS256\"",
        "HS256",
        "{}",
        "null",
        " ",
    };
    static const char *const good[] = {
        HEADER,
        "{\"alg\":\"HS256\"}",
        "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
        " { \"alg\" : \"HS256\" }\n",
    };
    char tok[CHAT_JWT_MAX];
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(bad); i++) {
        craft(tok, sizeof tok, bad[i], PAYLOAD);
        ck_assert_msg(verify(tok, IAT, NULL) == CHAT_EAUTH, "accepted %s",
                      bad[i]);
    }
    for (i = 0; i < CHAT__ARRAY_LEN(good); i++) {
        craft(tok, sizeof tok, good[i], PAYLOAD);
        ck_assert_msg(verify(tok, IAT, NULL) == CHAT_OK, "refused %s: %s",
                      good[i], chat_error_last()->message);
    }
    /* a NUL would hide what follows it from cJSON */
    craft_n(tok, sizeof tok, "{\"alg\":\"HS256\"}\0x", 17, PAYLOAD,
            strlen(PAYLOAD));
    ck_rc(verify(tok, IAT, NULL), CHAT_EAUTH);
    /* the classic "none" attack: unsigned, empty signature part */
    snprintf(tok, sizeof tok, "%s.%s.", "eyJhbGciOiJub25lIn0",
             strchr(SIGNED, '.') + 1);
    ck_rc(verify(tok, IAT, NULL), CHAT_EAUTH);
    ck_assert_str_eq(chat_error_last()->message, "JWT alg is not HS256");
    snprintf(tok, sizeof tok, "%s.%s.", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
             strchr(SIGNED, '.') + 1);
    ck_rc(verify(tok, IAT, NULL), CHAT_EAUTH);
    /* and with the real header but no signature */
    ck_rc(verify(SIGNED ".", IAT, NULL), CHAT_EAUTH);
}
END_TEST

START_TEST(jwt_claims)
{
#define CLAIMS(sub, iat, exp, jti)                                             \
    "{\"sub\":" sub ",\"iat\":" iat ",\"exp\":" exp ",\"jti\":" jti "}"
#define S "\"" SUB "\""
#define J "\"" JTI "\""
    static const char *const bad[] = {
        CLAIMS("\"not-a-uuid\"", "1", "2000000000", J),
        CLAIMS("\"\"", "1", "2000000000", J),
        CLAIMS("null", "1", "2000000000", J),
        CLAIMS("12", "1", "2000000000", J),
        CLAIMS("[" S "]", "1", "2000000000", J),
        CLAIMS("\"" SUB "0\"", "1", "2000000000", J),
        CLAIMS(S, "1", "2000000000", "\"12345\""),
        CLAIMS(S, "1", "2000000000", "7"),
        CLAIMS(S, "1.5", "2000000000", J),
        CLAIMS(S, "\"1\"", "2000000000", J),
        CLAIMS(S, "null", "2000000000", J),
        CLAIMS(S, "1", "2000000000.5", J),
        CLAIMS(S, "1", "\"2000000000\"", J),
        CLAIMS(S, "1", "-1", J),
        CLAIMS(S, "1", "1e300", J),
        CLAIMS(S, "1", "9007199254740994", J),
        CLAIMS(S, "1", "true", J),
        "{\"iat\":1,\"exp\":2000000000,\"jti\":" J "}",
        "{\"sub\":" S ",\"exp\":2000000000,\"jti\":" J "}",
        "{\"sub\":" S ",\"iat\":1,\"jti\":" J "}",
        "{\"sub\":" S ",\"iat\":1,\"exp\":2000000000}",
        "{\"Sub\":" S ",\"iat\":1,\"exp\":2000000000,\"jti\":" J "}",
        CLAIMS(S, "1", "2000000000", J) "x",
        CLAIMS(S, "1", "2000000000", J) "{}",
        "[" CLAIMS(S, "1", "2000000000", J) "]",
        "{\"sub\":" S ",\"iat\":1,\"exp\":2000000000,\"jti\":" J,
        "{}",
        "null",
        "2000000000",
    };
    static const char *const good[] = {
        CLAIMS(S, "1", "2000000000", J),
        CLAIMS(S, "0", "2000000000", J),
        CLAIMS(S, "1", "9007199254740992", J),
        /* extra claims are someone else's business */
        "{\"sub\":" S ",\"iat\":1,\"exp\":2000000000,\"jti\":" J
        ",\"scope\":\"x\"}",
        "\t" CLAIMS(S, "1", "2000000000", J) "\r\n",
    };
    char tok[CHAT_JWT_MAX];
    chat_jwt_claims out;
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(bad); i++) {
        craft(tok, sizeof tok, HEADER, bad[i]);
        ck_assert_msg(verify(tok, 100, NULL) == CHAT_EAUTH, "accepted %s",
                      bad[i]);
    }
    for (i = 0; i < CHAT__ARRAY_LEN(good); i++) {
        craft(tok, sizeof tok, HEADER, good[i]);
        ck_assert_msg(verify(tok, 100, &out) == CHAT_OK, "refused %s: %s",
                      good[i], chat_error_last()->message);
        ck_assert_str_eq(out.sub, SUB);
        ck_assert_str_eq(out.jti, JTI);
    }
    craft(tok, sizeof tok, HEADER, CLAIMS("\"x\"", "1", "2000000000", J));
    ck_rc(verify(tok, 100, NULL), CHAT_EAUTH);
    ck_assert_str_eq(chat_error_last()->message, "JWT sub is not a UUID");
    craft_n(tok, sizeof tok, HEADER, strlen(HEADER), PAYLOAD "\0",
            strlen(PAYLOAD) + 1);
    ck_rc(verify(tok, IAT, NULL), CHAT_EAUTH);
#undef CLAIMS
#undef S
#undef J
}
END_TEST

START_TEST(jwt_encoding)
{
    char t[CHAT_JWT_MAX + 8];
    const char *dot2 = strrchr(KNOWN_LONG, '.');
    size_t n = strlen(KNOWN_LONG), i;
    int d1 = (int)(strchr(KNOWN, '.') - KNOWN);

    ck_assert_ptr_nonnull(strchr(dot2, '_'));
    ck_assert_ptr_nonnull(strchr(dot2, '-'));
    /* the same bytes in standard base64: '+' for '-', '/' for '_' */
    memcpy(t, KNOWN_LONG, n + 1);
    for (i = (size_t)(dot2 - KNOWN_LONG); i < n; i++)
        if (t[i] == '_')
            t[i] = '/';
    ck_rc(
        chat_jwt_verify((const uint8_t *)LONG_KEY, LONG_KLEN, t, n, IAT, NULL),
        CHAT_EAUTH);
    memcpy(t, KNOWN_LONG, n + 1);
    for (i = (size_t)(dot2 - KNOWN_LONG); i < n; i++)
        if (t[i] == '-')
            t[i] = '+';
    ck_rc(
        chat_jwt_verify((const uint8_t *)LONG_KEY, LONG_KLEN, t, n, IAT, NULL),
        CHAT_EAUTH);
    /* and the unused bits of the last character (A = 000000) */
    memcpy(t, KNOWN_LONG, n + 1);
    ck_assert_int_eq(t[n - 1], 'A');
    t[n - 1] = 'B';
    ck_rc(
        chat_jwt_verify((const uint8_t *)LONG_KEY, LONG_KLEN, t, n, IAT, NULL),
        CHAT_EAUTH);
    /* padding after any part */
    snprintf(t, sizeof t, "%s=", KNOWN);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%.*s=%s", d1, KNOWN, &KNOWN[d1]);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%s=%s", SIGNED, strrchr(KNOWN, '.'));
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* whitespace, inside or around */
    snprintf(t, sizeof t, " %s", KNOWN);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%s\n", KNOWN);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%.*s %s", 10, KNOWN, &KNOWN[10]);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* a NUL inside the given length */
    memcpy(t, KNOWN, sizeof KNOWN);
    t[10] = '\0';
    ck_rc(chat_jwt_verify(K, KLEN, t, strlen(KNOWN), IAT, NULL), CHAT_EAUTH);
    /* length is the caller's: a good prefix of a longer buffer verifies */
    snprintf(t, sizeof t, "%s.trailing", KNOWN);
    ck_rc(chat_jwt_verify(K, KLEN, t, strlen(KNOWN), IAT, NULL), CHAT_OK);
}
END_TEST

START_TEST(jwt_structure)
{
    static const char *const bad[] = {
        "",          ".",       "..",      "...",           "abc",
        "a.b",       "a.b.c",   "a.b.c.d", SIGNED,          "." SIGNED ".x",
        SIGNED "..", KNOWN ".", "." KNOWN, KNOWN "." KNOWN,
    };
    char t[sizeof KNOWN + 8];
    const char *dot1 = strchr(KNOWN, '.'), *dot2 = strrchr(KNOWN, '.');
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(bad); i++)
        ck_assert_msg(verify(bad[i], IAT, NULL) == CHAT_EAUTH, "accepted %s",
                      bad[i]);
    /* one part left empty */
    snprintf(t, sizeof t, "%s", dot1);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    snprintf(t, sizeof t, "%.*s%s", (int)(dot1 - KNOWN + 1), KNOWN, dot2);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* one part missing */
    snprintf(t, sizeof t, "%.*s%s", (int)(dot1 - KNOWN), KNOWN, dot2);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    ck_rc(chat_jwt_verify(K, KLEN, KNOWN, 0, IAT, NULL), CHAT_EAUTH);
    ck_rc(chat_jwt_verify(K, KLEN, NULL, 0, IAT, NULL), CHAT_EINVAL);
    ck_rc(chat_jwt_verify(NULL, KLEN, KNOWN, strlen(KNOWN), IAT, NULL),
          CHAT_EINVAL);
    ck_rc(chat_jwt_verify(K, CHAT_JWT_SECRET_MIN - 1, KNOWN, strlen(KNOWN), IAT,
                          NULL),
          CHAT_EINVAL);
    ck_rc(chat_jwt_verify(K, 0, KNOWN, strlen(KNOWN), IAT, NULL), CHAT_EINVAL);
}
END_TEST

/* A signed token of exactly @p len characters: the payload is PAYLOAD with
 * JSON whitespace after its '{'. */
static void sized_token(char *out, size_t size, size_t len)
{
    char p[CHAT_JWT_MAX];
    size_t pad;

    for (pad = 0; pad + sizeof PAYLOAD < sizeof p; pad++) {
        p[0] = '{';
        memset(p + 1, ' ', pad);
        memcpy(p + 1 + pad, &PAYLOAD[1], sizeof PAYLOAD - 1);
        craft(out, size, HEADER, p);
        if (strlen(out) >= len)
            break;
    }
    ck_assert_uint_eq(strlen(out), len);
}

START_TEST(jwt_length_limit)
{
    char t[CHAT_JWT_MAX + 64];
    chat_jwt_claims out;

    sized_token(t, sizeof t, CHAT_JWT_MAX);
    ck_rc(verify(t, IAT, &out), CHAT_OK);
    ck_assert_str_eq(out.sub, SUB);
    sized_token(t, sizeof t, CHAT_JWT_MAX + 1);
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
    /* a long run of anything is refused before it is looked at */
    memset(t, 'a', sizeof t - 1);
    t[sizeof t - 1] = '\0';
    ck_rc(verify(t, IAT, NULL), CHAT_EAUTH);
}
END_TEST

/* ---- refresh tokens ------------------------------------------------------ */

START_TEST(refresh_new)
{
    char a[CHAT_REFRESH_TOKEN_LEN + 1], b[CHAT_REFRESH_TOKEN_LEN + 1];
    uint8_t raw[64];
    size_t n;

    ck_rc(chat_refresh_token_new(a), CHAT_OK);
    ck_rc(chat_refresh_token_new(b), CHAT_OK);
    ck_assert_uint_eq(strlen(a), CHAT_REFRESH_TOKEN_LEN);
    ck_assert_uint_eq(strlen(b), CHAT_REFRESH_TOKEN_LEN);
    ck_assert_str_ne(a, b);
    /* canonical unpadded base64url of 32 bytes */
    ck_assert_uint_eq(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                "tuvwxyz0123456789-_"),
                      CHAT_REFRESH_TOKEN_LEN);
    ck_rc(chat__b64url_decode(raw, sizeof raw, &n, a, strlen(a)), CHAT_OK);
    ck_assert_uint_eq(n, 32);
    ck_rc(chat_refresh_token_new(NULL), CHAT_EINVAL);
}
END_TEST

START_TEST(refresh_hash)
{
    /* python3 hashlib.sha256(b"refresh-token-example"), sha256(b"") */
    static const uint8_t known[32] = {
        0x25, 0x07, 0xc0, 0x61, 0xba, 0x0e, 0x4d, 0xee, 0xe6, 0xb5, 0x74,
        0x3d, 0x8d, 0x64, 0x87, 0xf7, 0xf5, 0xd3, 0xe6, 0x55, 0x0a, 0x07,
        0x11, 0xf6, 0xca, 0xdb, 0x49, 0xe2, 0xff, 0x1b, 0xa0, 0xc4};
    static const uint8_t empty[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
        0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
        0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    char tok[CHAT_REFRESH_TOKEN_LEN + 1];
    uint8_t h[32], h2[32];

    ck_rc(chat_refresh_token_hash("refresh-token-example", 21, h), CHAT_OK);
    ck_assert(!memcmp(h, known, 32));
    ck_rc(chat_refresh_token_hash("", 0, h), CHAT_OK);
    ck_assert(!memcmp(h, empty, 32));
    /* deterministic, and sensitive to every byte */
    ck_rc(chat_refresh_token_new(tok), CHAT_OK);
    ck_rc(chat_refresh_token_hash(tok, strlen(tok), h), CHAT_OK);
    ck_rc(chat_refresh_token_hash(tok, strlen(tok), h2), CHAT_OK);
    ck_assert(!memcmp(h, h2, 32));
    ck_rc(chat_refresh_token_hash(tok, strlen(tok) - 1, h2), CHAT_OK);
    ck_assert(memcmp(h, h2, 32) != 0);
    ck_rc(chat_refresh_token_hash(NULL, 0, h), CHAT_EINVAL);
    ck_rc(chat_refresh_token_hash(tok, strlen(tok), NULL), CHAT_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *pw = tcase_create("password");
    TCase *jwt = tcase_create("jwt");
    TCase *refresh = tcase_create("refresh");

    /* argon2id at 64 MiB is slow under the sanitizers */
    tcase_set_timeout(pw, 120);
    tcase_add_test(pw, password_round_trip);
    tcase_add_test(pw, password_mismatch);
    tcase_add_test(pw, password_known_answer);
    tcase_add_test(pw, password_malformed_hash);
    tcase_add_test(pw, password_limits);
    suite_add_tcase(s, pw);

    tcase_add_test(jwt, jwt_known_answer);
    tcase_add_test(jwt, jwt_known_answer_long_key);
    tcase_add_test(jwt, jwt_round_trip);
    tcase_add_test(jwt, jwt_sign_arguments);
    tcase_add_test(jwt, jwt_expiry);
    tcase_add_test(jwt, jwt_tampered);
    tcase_add_test(jwt, jwt_wrong_key);
    tcase_add_test(jwt, jwt_headers);
    tcase_add_test(jwt, jwt_claims);
    tcase_add_test(jwt, jwt_encoding);
    tcase_add_test(jwt, jwt_structure);
    tcase_add_test(jwt, jwt_length_limit);
    suite_add_tcase(s, jwt);

    tcase_add_test(refresh, refresh_new);
    tcase_add_test(refresh, refresh_hash);
    suite_add_tcase(s, refresh);
    return chat_test_run(s);
}
