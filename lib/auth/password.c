/* Password hashing: argon2id through libsodium's crypto_pwhash_str. */
#include <string.h>

#include <sodium.h>

#include <chat/auth.h>

#include "core/internal.h"

/* The public buffer size is libsodium's, spelled without its header. */
_Static_assert(CHAT_PWHASH_MAX == crypto_pwhash_STRBYTES,
               "CHAT_PWHASH_MAX must equal crypto_pwhash_STRBYTES");

int chat_password_hash(const char *password, size_t len,
                       char out[CHAT_PWHASH_MAX])
{
    CHAT_ASSERT_ARG(password != NULL && out != NULL);
    if (len > CHAT_PASSWORD_MAX_BYTES)
        return chat__error(CHAT_EINVAL, "password longer than %d bytes",
                           CHAT_PASSWORD_MAX_BYTES);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    /* name the algorithm rather than trust the library's default */
    if (crypto_pwhash_str_alg(out, password, len,
                              crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return chat__error(CHAT_ENOMEM, "argon2id could not get its memory");
    return CHAT_OK;
}

int chat_password_verify(const char *hash, const char *password, size_t len)
{
    CHAT_ASSERT_ARG(hash != NULL && password != NULL);
    /* A stored hash comes from a database column: one without a NUL in
     * its buffer is corrupt, and libsodium would read past the end. */
    if (memchr(hash, '\0', CHAT_PWHASH_MAX) == NULL)
        return chat__error(CHAT_EAUTH, "password hash is not terminated");
    /* chat_password_hash refuses these, so no stored hash can match one;
     * saying EAUTH (not EINVAL) keeps a login from telling them apart */
    if (len > CHAT_PASSWORD_MAX_BYTES)
        return chat__error(CHAT_EAUTH, "password longer than %d bytes",
                           CHAT_PASSWORD_MAX_BYTES);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    if (crypto_pwhash_str_verify(hash, password, len) == 0)
        return CHAT_OK;
    /* libsodium answers -1 for both a mismatch and an unreadable hash;
     * decoding the hash again (cheap, no argon2 run) tells an operator
     * which one it was */
    if (crypto_pwhash_str_needs_rehash(hash, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0)
        return chat__error(CHAT_EAUTH, "malformed password hash");
    return chat__error(CHAT_EAUTH, "password does not match");
}
