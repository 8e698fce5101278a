/* Growable byte buffer and base64url helpers. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/internal.h"

int chat__buf_reserve(chat__buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (b->failed)
        return CHAT_ENOMEM;
    if (extra > SIZE_MAX - b->len - 1)
        goto oom;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return CHAT_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = chat__realloc(b->data, cap);
    if (p == NULL)
        goto oom;
    b->data = p;
    b->cap = cap;
    return CHAT_OK;
oom:
    b->failed = 1;
    return chat__error(CHAT_ENOMEM, "out of memory");
}

int chat__buf_append(chat__buf *b, const void *p, size_t n)
{
    int rc = chat__buf_reserve(b, n);

    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CHAT_OK;
}

int chat__buf_puts(chat__buf *b, const char *s)
{
    return chat__buf_append(b, s, strlen(s));
}

int chat__buf_printf(chat__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return chat__error(CHAT_EINVAL, "bad format");
    rc = chat__buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CHAT_OK;
}

char *chat__buf_detach(chat__buf *b, size_t *len)
{
    char *p;

    if (b->failed) {
        chat__buf_free(b);
        return NULL;
    }
    if (b->data == NULL && chat__buf_reserve(b, 0))
        return NULL;
    p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void chat__buf_free(chat__buf *b)
{
    chat__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

size_t chat__b64url_len(size_t n)
{
    return sodium_base64_ENCODED_LEN(n,
                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING) -
           1;
}

void chat__b64url_encode(char *out, const uint8_t *in, size_t n)
{
    sodium_bin2base64(out, chat__b64url_len(n) + 1, in, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int chat__b64url_decode(uint8_t *out, size_t outsize, size_t *outlen,
                        const char *in, size_t n)
{
    const char *end = NULL;
    size_t len = 0;

    /* libsodium rejects padding for this variant and non-zero trailing
     * bits, which makes the accepted encoding canonical. */
    if (sodium_base642bin(out, outsize, in, n, NULL, &len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != in + n)
        return chat__error(CHAT_EINVAL, "invalid base64url");
    if (outlen)
        *outlen = len;
    return CHAT_OK;
}
