/* Engine.IO v4 packet and payload codec. */
#include <string.h>

#include <sodium.h>

#include "realtime/codec.h"

int chat__eio_decode(const char *in, size_t len, chat__eio_packet *p,
                     char *scratch, size_t scratch_size)
{
    size_t n = 0;
    const char *end = NULL;

    memset(p, 0, sizeof *p);
    if (in == NULL || len == 0)
        return chat__error(CHAT_EPROTO, "empty packet");
    if (in[0] == 'b') {
        /* binary message, base64 with padding (polling only) */
        if (scratch == NULL || scratch_size < len ||
            chat__sodium_init() != CHAT_OK ||
            sodium_base642bin((unsigned char *)scratch, scratch_size, in + 1,
                              len - 1, NULL, &n, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            end != in + len)
            return chat__error(CHAT_EPROTO, "bad base64 packet");
        p->type = CHAT__EIO_MESSAGE;
        p->binary = 1;
        p->data = scratch;
        p->len = n;
        return CHAT_OK;
    }
    if (in[0] < '0' || in[0] > '6')
        return chat__error(CHAT_EPROTO, "unknown packet type");
    if (!chat_utf8_valid(in + 1, len - 1))
        return chat__error(CHAT_EPROTO, "packet is not valid UTF-8");
    p->type = in[0] - '0';
    p->data = in + 1;
    p->len = len - 1;
    return CHAT_OK;
}

int chat__eio_decode_payload(const char *in, size_t len, chat__eio_packet *out,
                             size_t max, size_t *n, char *scratch,
                             size_t scratch_size)
{
    size_t start = 0, used = 0, i;
    int rc;

    *n = 0;
    if (in == NULL || len == 0)
        return chat__error(CHAT_EPROTO, "empty payload");
    for (i = 0; i <= len; i++) {
        if (i < len && in[i] != CHAT__EIO_SEPARATOR)
            continue;
        if (*n == max)
            return chat__error(CHAT_ELIMIT, "more than %zu packets", max);
        rc = chat__eio_decode(in + start, i - start, &out[*n],
                              scratch ? scratch + used : NULL,
                              scratch_size > used ? scratch_size - used : 0);
        if (rc != CHAT_OK) {
            *n = 0;
            return rc;
        }
        if (out[*n].binary)
            used += out[*n].len;
        (*n)++;
        start = i + 1;
    }
    return CHAT_OK;
}

int chat__eio_encode(chat__buf *out, const chat__eio_packet *p)
{
    char type;
    size_t n;
    int rc;

    if (p->binary) {
        n = sodium_base64_ENCODED_LEN(p->len, sodium_base64_VARIANT_ORIGINAL);
        if ((rc = chat__buf_reserve(out, n + 1)) != CHAT_OK)
            return rc;
        out->data[out->len++] = 'b';
        sodium_bin2base64(out->data + out->len, n,
                          (const unsigned char *)p->data, p->len,
                          sodium_base64_VARIANT_ORIGINAL);
        out->len += n - 1; /* without the NUL */
        out->data[out->len] = '\0';
        return CHAT_OK;
    }
    if (p->type < CHAT__EIO_OPEN || p->type > CHAT__EIO_NOOP)
        return chat__error(CHAT_EINVAL, "unknown packet type");
    type = (char)('0' + p->type);
    if ((rc = chat__buf_append(out, &type, 1)) != CHAT_OK)
        return rc;
    return chat__buf_append(out, p->data, p->len);
}

int chat__eio_encode_payload(chat__buf *out, const chat__eio_packet *p,
                             size_t n)
{
    const char sep = CHAT__EIO_SEPARATOR;
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        if (i && (rc = chat__buf_append(out, &sep, 1)) != CHAT_OK)
            return rc;
        if ((rc = chat__eio_encode(out, &p[i])) != CHAT_OK)
            return rc;
    }
    return CHAT_OK;
}
