/*
 * Engine.IO v4 and Socket.IO v5 codecs: pure functions over byte buffers
 * with explicit lengths and limits. No I/O, no global state; any thread.
 * Specs: socket.io docs/engine.io-protocol/v4-current.md and
 * docs/socket.io-protocol/v5-current.md.
 */
#ifndef CHAT_REALTIME_CODEC_H
#define CHAT_REALTIME_CODEC_H

#include <cjson/cJSON.h>

#include "core/internal.h"

/* ---- Engine.IO ------------------------------------------------------------
 */

enum {
    CHAT__EIO_OPEN = 0,
    CHAT__EIO_CLOSE = 1,
    CHAT__EIO_PING = 2,
    CHAT__EIO_PONG = 3,
    CHAT__EIO_MESSAGE = 4,
    CHAT__EIO_UPGRADE = 5,
    CHAT__EIO_NOOP = 6,
};

/* HTTP long-polling separates packets with the record separator. */
#define CHAT__EIO_SEPARATOR '\x1e'

typedef struct chat__eio_packet {
    int type;         /* CHAT__EIO_* */
    int binary;       /* data is bytes (a 'b' packet or a binary frame) */
    const char *data; /* into the input, or into the caller's scratch */
    size_t len;
} chat__eio_packet;

/* One packet from a WebSocket text frame or one polling segment: a type
 * digit then the data; "b<base64>" is a binary message whose bytes are
 * decoded into scratch (scratch_size >= len is always enough). Text data
 * must be valid UTF-8. CHAT_OK or CHAT_EPROTO. */
int chat__eio_decode(const char *in, size_t len, chat__eio_packet *p,
                     char *scratch, size_t scratch_size);

/* A polling request body: up to max packets separated by \x1e, each
 * decoded as above; binary ones share scratch (scratch_size >= len).
 * CHAT_OK with *n packets, CHAT_EPROTO for a malformed payload, CHAT_ELIMIT
 * for more than max packets. */
int chat__eio_decode_payload(const char *in, size_t len, chat__eio_packet *out,
                             size_t max, size_t *n, char *scratch,
                             size_t scratch_size);

/* Append one packet as polling text: type digit + data, or 'b' + base64
 * for binary data. */
int chat__eio_encode(chat__buf *out, const chat__eio_packet *p);

/* Append packets separated by \x1e (a polling response body). */
int chat__eio_encode_payload(chat__buf *out, const chat__eio_packet *p,
                             size_t n);

/* ---- Socket.IO --------------------------------------------------------------
 */

enum {
    CHAT__SIO_CONNECT = 0,
    CHAT__SIO_DISCONNECT = 1,
    CHAT__SIO_EVENT = 2,
    CHAT__SIO_ACK = 3,
    CHAT__SIO_CONNECT_ERROR = 4,
    CHAT__SIO_BINARY_EVENT = 5,
    CHAT__SIO_BINARY_ACK = 6,
};

#define CHAT__SIO_NSP_MAX 128
/* Ack ids stay below 2^53 so a JavaScript peer reads them exactly. */
#define CHAT__SIO_ID_MAX_DIGITS 15

typedef struct chat__sio_limits {
    size_t max_len;      /* whole encoded packet; 0 = unlimited */
    int max_attachments; /* binary attachments per packet */
} chat__sio_limits;

typedef struct chat__sio_packet {
    int type; /* CHAT__SIO_* */
    char nsp[CHAT__SIO_NSP_MAX + 1];
    int64_t id;      /* ack id, -1 when absent */
    int attachments; /* binary types: placeholders to fill */
    cJSON *data;     /* owned; NULL when the packet has none */
} chat__sio_packet;

/* Decode one Socket.IO packet (the data of an Engine.IO message). Checks
 * the type, attachment count, namespace, ack id, that the JSON is one
 * complete value, and the payload shape the protocol requires for the
 * type (CONNECT: object; EVENT: array starting with a non-reserved name;
 * ACK: array; CONNECT_ERROR: object or string; DISCONNECT: none).
 * On success p owns p->data (chat__sio_packet_clear frees it).
 * CHAT_EPROTO or CHAT_ELIMIT on bad input, p left empty. */
int chat__sio_decode(const char *in, size_t len, const chat__sio_limits *lim,
                     chat__sio_packet *p);

/* 1 if every {"_placeholder":true,"num":k} in data has 0 <= k < n and no
 * other object carries "_placeholder". */
int chat__sio_placeholders_valid(const cJSON *data, int n);

/* Append the encoded packet: type, "<n>-" for binary types, the
 * namespace unless "/", the ack id, then compact JSON data. */
int chat__sio_encode(chat__buf *out, const chat__sio_packet *p);

void chat__sio_packet_clear(chat__sio_packet *p);

#endif /* CHAT_REALTIME_CODEC_H */
