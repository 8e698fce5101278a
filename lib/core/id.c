/* UUIDv7 ids (RFC 9562 §5.7) with libsodium randomness. */
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "core/internal.h"

static pthread_once_t g_sodium_once = PTHREAD_ONCE_INIT;
static int g_sodium_rc = -1;

static void sodium_once(void)
{
    g_sodium_rc = sodium_init();
}

int chat__sodium_init(void)
{
    pthread_once(&g_sodium_once, sodium_once);
    return g_sodium_rc < 0
               ? chat__error(CHAT_ERROR, "libsodium initialisation failed")
               : CHAT_OK;
}

/* Monotonic state: within one millisecond, the 12-bit rand_a field is a
 * counter seeded randomly, so ids made later sort later. */
static pthread_mutex_t g_uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_uuid_last_ms;
static unsigned g_uuid_counter;

int chat_uuid_v7(char out[CHAT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    int64_t ms;
    unsigned ctr;
    size_t i, o;

    CHAT_ASSERT_ARG(out != NULL);
    if (chat__sodium_init() != CHAT_OK)
        return CHAT_ERROR;
    randombytes_buf(b, sizeof b);

    ms = chat_time_now_ms();
    pthread_mutex_lock(&g_uuid_lock);
    if (ms > g_uuid_last_ms) {
        g_uuid_last_ms = ms;
        g_uuid_counter = (unsigned)(b[6] & 0x07) << 8 | b[7]; /* < 2^11 */
    } else {
        ms = g_uuid_last_ms;
        if (++g_uuid_counter > 0xfff) { /* borrow the next millisecond */
            g_uuid_last_ms = ++ms;
            g_uuid_counter = 0;
        }
    }
    ctr = g_uuid_counter;
    pthread_mutex_unlock(&g_uuid_lock);

    for (i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (ctr >> 8));
    b[7] = (uint8_t)(ctr & 0xff);
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));

    for (i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xf];
    }
    out[o] = '\0';
    return CHAT_OK;
}

int chat_uuid_valid(const char *s)
{
    size_t i;

    if (s == NULL)
        return 0;
    for (i = 0; i < CHAT_ID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return s[CHAT_ID_LEN] == '\0';
}
