/* libFuzzer target: the Socket.IO packet decoder. Whatever it accepts must
 * encode to a canonical form that decodes again to the same encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "realtime/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const chat__sio_limits lim = {64 * 1024, 10};
    chat__sio_packet p, q;
    chat__buf a = CHAT__BUF_INIT, b = CHAT__BUF_INIT;

    if (chat__sio_decode((const char *)data, size, &lim, &p) != CHAT_OK)
        return 0;
    if (chat__sio_encode(&a, &p) != CHAT_OK)
        abort();
    if (chat__sio_decode(a.data, a.len, &lim, &q) != CHAT_OK)
        abort();
    if (chat__sio_encode(&b, &q) != CHAT_OK || a.len != b.len ||
        memcmp(a.data, b.data, a.len) != 0 || p.type != q.type ||
        p.id != q.id || strcmp(p.nsp, q.nsp) != 0)
        abort();
    chat__sio_packet_clear(&p);
    chat__sio_packet_clear(&q);
    chat__buf_free(&a);
    chat__buf_free(&b);
    return 0;
}
