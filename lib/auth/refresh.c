/* Refresh tokens: 256 random bits, shown once, stored as SHA-256. */
#include <sodium.h>

#include <chat/auth.h>

#include "core/internal.h"

#define REFRESH_RAW_BYTES 32

_Static_assert(
    CHAT_REFRESH_TOKEN_LEN ==
        sodium_base64_ENCODED_LEN(REFRESH_RAW_BYTES,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING) -
            1,
    "CHAT_REFRESH_TOKEN_LEN is 32 bytes in unpadded base64url");
_Static_assert(crypto_hash_sha256_BYTES == 32, "the header promises 32");

int chat_refresh_token_new(char out[CHAT_REFRESH_TOKEN_LEN + 1])
{
    uint8_t raw[REFRESH_RAW_BYTES];

    CHAT_ASSERT_ARG(out != NULL);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    randombytes_buf(raw, sizeof raw);
    chat__b64url_encode(out, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    return CHAT_OK;
}

int chat_refresh_token_hash(const char *token, size_t len, uint8_t out[32])
{
    CHAT_ASSERT_ARG(token != NULL && out != NULL);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    crypto_hash_sha256(out, (const unsigned char *)token, len);
    return CHAT_OK;
}
