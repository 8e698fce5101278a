/* Password hashing: argon2id through libsodium's crypto_pwhash_str. */
#include <string.h>

#include <sodium.h>

#include <chat/auth.h>

#include "core/internal.h"

int chat_password_hash(const char *password, size_t len,
                       char out[CHAT_PWHASH_MAX])
{
    CHAT_ASSERT_ARG(password != NULL && out != NULL);
    if (len > CHAT_PASSWORD_MAX_BYTES)
        return chat__error(CHAT_EINVAL, "password longer than %d bytes",
                           CHAT_PASSWORD_MAX_BYTES);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
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
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    /* a hash that is not NUL-terminated in its buffer is malformed */
    if (memchr(hash, '\0', CHAT_PWHASH_MAX) == NULL ||
        len > CHAT_PASSWORD_MAX_BYTES ||
        crypto_pwhash_str_verify(hash, password, len) != 0)
        return chat__error(CHAT_EAUTH, "password does not match");
    return CHAT_OK;
}
