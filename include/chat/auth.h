/**
 * @file chat/auth.h
 * @brief Password hashing (argon2id), access tokens (JWT HS256) and opaque
 *        refresh tokens.
 *
 * All functions are thread-safe and keep no state. Password functions are
 * deliberately slow (tens of milliseconds, ~64 MiB): never call them on a
 * network thread.
 */
#ifndef CHAT_AUTH_H
#define CHAT_AUTH_H

#include <chat/common.h>
#include <chat/limits.h>

CHAT_BEGIN_DECLS

/**
 * Hash a password with argon2id (libsodium crypto_pwhash_str, interactive
 * limits) into @p out, a NUL-terminated string of at most
 * CHAT_PWHASH_MAX - 1 characters that embeds salt and parameters.
 *
 * @return CHAT_OK, CHAT_EINVAL (NULL or longer than
 *         CHAT_PASSWORD_MAX_BYTES), CHAT_ENOMEM (hashing memory),
 *         CHAT_ERROR (libsodium failed to initialise).
 */
CHAT_API CHAT_WARN_UNUSED int
chat_password_hash(const char *password, size_t len, char out[CHAT_PWHASH_MAX]);

/**
 * Check @p password against a hash made by chat_password_hash().
 * @return CHAT_OK on a match, CHAT_EAUTH otherwise (also for a malformed
 *         or unterminated hash and for a password longer than
 *         CHAT_PASSWORD_MAX_BYTES), CHAT_EINVAL on NULL arguments.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_password_verify(const char *hash, const char *password, size_t len);

/** Claims libchat puts in, and requires of, an access token. */
typedef struct chat_jwt_claims {
    char sub[CHAT_ID_LEN + 1]; /**< user id, a UUID string */
    char jti[CHAT_ID_LEN + 1]; /**< token id, a UUID string (UUIDv7) */
    int64_t iat;               /**< issued at, Unix seconds */
    int64_t exp;               /**< expires at, Unix seconds */
} chat_jwt_claims;

/**
 * Sign @p claims as a compact JWT with HS256.
 *
 * @param key     HMAC key, at least CHAT_JWT_SECRET_MIN bytes
 * @param out     receives the NUL-terminated token
 * @param outsize size of @p out; CHAT_JWT_MAX is always enough
 * @return CHAT_OK, CHAT_EINVAL (short key, sub or jti not a UUID, iat or
 *         exp negative or above 2^53), CHAT_ELIMIT (out too small),
 *         CHAT_ERROR (libsodium failed to initialise).
 */
CHAT_API CHAT_WARN_UNUSED int chat_jwt_sign(const uint8_t *key, size_t keylen,
                                            const chat_jwt_claims *claims,
                                            char *out, size_t outsize);

/**
 * Verify a compact JWT: header must be exactly alg HS256 (anything else,
 * "none" included, is refused), the signature is compared in constant
 * time, all three parts must be canonical base64url, and the claims must
 * hold UUID strings sub and jti and integer iat/exp, as chat_jwt_sign()
 * writes them.
 *
 * @param now   current Unix time in seconds (tests pass fixed times)
 * @param out   receives the claims on success; may be NULL
 * @return CHAT_OK, CHAT_EAUTH (malformed, wrong alg, bad signature),
 *         CHAT_EEXPIRED (valid but exp <= now), CHAT_EINVAL (short key).
 */
CHAT_API CHAT_WARN_UNUSED int chat_jwt_verify(const uint8_t *key, size_t keylen,
                                              const char *token, size_t len,
                                              int64_t now,
                                              chat_jwt_claims *out);

/**
 * Make a refresh token: 32 bytes from libsodium's CSPRNG as unpadded
 * base64url (CHAT_REFRESH_TOKEN_LEN characters + NUL).
 */
CHAT_API CHAT_WARN_UNUSED int
chat_refresh_token_new(char out[CHAT_REFRESH_TOKEN_LEN + 1]);

/**
 * SHA-256 of a refresh token's text: the only form ever stored.
 * @return CHAT_OK or CHAT_EINVAL.
 */
CHAT_API CHAT_WARN_UNUSED int
chat_refresh_token_hash(const char *token, size_t len, uint8_t out[32]);

CHAT_END_DECLS

#endif /* CHAT_AUTH_H */
