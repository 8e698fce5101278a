/* UTF-8 validation and the preview cut (code points, never bytes). */
#include "core/internal.h"

/* Length of the sequence starting at s[i], or 0 if it is malformed:
 * overlong forms, UTF-16 surrogates, > U+10FFFF, truncation, and NUL. */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t i)
{
    unsigned char c = s[i];
    size_t n, k;

    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (len - i < n)
        return 0;
    for (k = 1; k < n; k++)
        if ((s[i + k] & 0xc0) != 0x80)
            return 0;
    if (c == 0xe0 && s[i + 1] < 0xa0) /* overlong 3-byte */
        return 0;
    if (c == 0xed && s[i + 1] > 0x9f) /* surrogates */
        return 0;
    if (c == 0xf0 && s[i + 1] < 0x90) /* overlong 4-byte */
        return 0;
    if (c == 0xf4 && s[i + 1] > 0x8f) /* > U+10FFFF */
        return 0;
    return n;
}

int chat_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n;

    if (s == NULL)
        return len == 0;
    while (i < len) {
        /* fast path for ASCII runs */
        if (u[i] < 0x80 && u[i] != 0) {
            i++;
            continue;
        }
        n = utf8_seq(u, len, i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

size_t chat_utf8_chars(const char *s, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

int chat_text_preview(const char *s, size_t len, size_t max_chars,
                      size_t *cut_len, int *has_more)
{
    size_t i = 0, chars = 0;

    CHAT_ASSERT_ARG((s != NULL || len == 0) && cut_len && has_more);
    while (i < len && chars < max_chars) {
        i++;
        /* skip continuation bytes: stop only at a code point start */
        while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        chars++;
    }
    *cut_len = i;
    *has_more = i < len;
    return CHAT_OK;
}
