/* Socket.IO v5 packet codec (the default parser's format). */
#include <stdio.h>
#include <string.h>

#include "realtime/codec.h"

/* Event names a client may not emit (socket.io-parser's list). */
static const char *const g_reserved[] = {
    "connect",       "connect_error", "disconnect",
    "disconnecting", "newListener",   "removeListener",
};

void chat__sio_packet_clear(chat__sio_packet *p)
{
    cJSON_Delete(p->data);
    memset(p, 0, sizeof *p);
    p->id = -1;
    p->nsp[0] = '/';
}

static int is_reserved(const char *name)
{
    size_t i;

    for (i = 0; i < CHAT__ARRAY_LEN(g_reserved); i++)
        if (!strcmp(name, g_reserved[i]))
            return 1;
    return 0;
}

static int payload_valid(int type, const cJSON *d)
{
    const cJSON *first;

    switch (type) {
    case CHAT__SIO_CONNECT:
        return d == NULL || cJSON_IsObject(d);
    case CHAT__SIO_DISCONNECT:
        return d == NULL;
    case CHAT__SIO_CONNECT_ERROR:
        return d == NULL || cJSON_IsObject(d) || cJSON_IsString(d);
    case CHAT__SIO_EVENT:
    case CHAT__SIO_BINARY_EVENT:
        if (!cJSON_IsArray(d) || (first = cJSON_GetArrayItem(d, 0)) == NULL)
            return 0;
        return cJSON_IsNumber(first) ||
               (cJSON_IsString(first) && !is_reserved(first->valuestring));
    case CHAT__SIO_ACK:
    case CHAT__SIO_BINARY_ACK:
        return cJSON_IsArray(d);
    default:
        return 0;
    }
}

#define FAIL(code, ...)                                                        \
    do {                                                                       \
        rc = chat__error(code, __VA_ARGS__);                                   \
        goto fail;                                                             \
    } while (0)

int chat__sio_decode(const char *in, size_t len, const chat__sio_limits *lim,
                     chat__sio_packet *p)
{
    size_t i = 1, start;
    const char *end = NULL;
    int rc;

    memset(p, 0, sizeof *p);
    p->id = -1;
    p->nsp[0] = '/';
    if (in == NULL || len == 0)
        FAIL(CHAT_EPROTO, "empty packet");
    if (lim && lim->max_len && len > lim->max_len)
        FAIL(CHAT_ELIMIT, "packet over %zu bytes", lim->max_len);
    if (in[0] < '0' || in[0] > '6')
        FAIL(CHAT_EPROTO, "unknown packet type");
    p->type = in[0] - '0';
    if (!chat_utf8_valid(in, len))
        FAIL(CHAT_EPROTO, "packet is not valid UTF-8");

    if (p->type == CHAT__SIO_BINARY_EVENT || p->type == CHAT__SIO_BINARY_ACK) {
        long n = 0;
        for (start = i; i < len && in[i] >= '0' && in[i] <= '9'; i++) {
            if (i - start >= 6)
                FAIL(CHAT_ELIMIT, "too many attachments");
            n = n * 10 + (in[i] - '0');
        }
        if (i == start || i >= len || in[i] != '-')
            FAIL(CHAT_EPROTO, "bad attachment count");
        if (n > (lim ? lim->max_attachments : 0))
            FAIL(CHAT_ELIMIT, "too many attachments");
        p->attachments = (int)n;
        i++;
    }
    if (i < len && in[i] == '/') {
        /* the namespace runs to the next ',' or the end */
        for (start = i; i < len && in[i] != ','; i++)
            ;
        if (i - start > CHAT__SIO_NSP_MAX)
            FAIL(CHAT_ELIMIT, "namespace too long");
        memcpy(p->nsp, in + start, i - start);
        p->nsp[i - start] = '\0';
        if (i < len)
            i++; /* the ',' */
    }
    if (i < len && in[i] >= '0' && in[i] <= '9') {
        int64_t id = 0;
        for (start = i; i < len && in[i] >= '0' && in[i] <= '9'; i++) {
            if (i - start >= CHAT__SIO_ID_MAX_DIGITS)
                FAIL(CHAT_EPROTO, "ack id too large");
            id = id * 10 + (in[i] - '0');
        }
        p->id = id;
    }
    if (i < len) {
        p->data = cJSON_ParseWithLengthOpts(in + i, len - i, &end, 0);
        if (p->data == NULL || end != in + len)
            FAIL(CHAT_EPROTO, "payload is not one JSON value");
    }
    if (!payload_valid(p->type, p->data))
        FAIL(CHAT_EPROTO, "invalid payload for packet type %d", p->type);
    if (p->attachments &&
        !chat__sio_placeholders_valid(p->data, p->attachments))
        FAIL(CHAT_EPROTO, "bad binary placeholder");
    return CHAT_OK;
fail:
    chat__sio_packet_clear(p);
    return rc;
}

int chat__sio_placeholders_valid(const cJSON *data, int n)
{
    const cJSON *c, *flag, *num;

    if (data == NULL)
        return 1;
    if (cJSON_IsObject(data) &&
        (flag = cJSON_GetObjectItemCaseSensitive(data, "_placeholder"))) {
        num = cJSON_GetObjectItemCaseSensitive(data, "num");
        return cJSON_IsTrue(flag) && cJSON_IsNumber(num) &&
               num->valuedouble >= 0 && num->valuedouble < n &&
               num->valuedouble == (double)(int)num->valuedouble;
    }
    cJSON_ArrayForEach(c, data)
    {
        if (!chat__sio_placeholders_valid(c, n))
            return 0;
    }
    return 1;
}

int chat__sio_encode(chat__buf *out, const chat__sio_packet *p)
{
    char *json;
    int rc;

    if (p->type < CHAT__SIO_CONNECT || p->type > CHAT__SIO_BINARY_ACK)
        return chat__error(CHAT_EINVAL, "unknown packet type");
    chat__buf_printf(out, "%d", p->type);
    if (p->type == CHAT__SIO_BINARY_EVENT || p->type == CHAT__SIO_BINARY_ACK)
        chat__buf_printf(out, "%d-", p->attachments);
    if (p->nsp[0] && strcmp(p->nsp, "/"))
        chat__buf_printf(out, "%s,", p->nsp);
    if (p->id >= 0)
        chat__buf_printf(out, "%lld", (long long)p->id);
    if (p->data) {
        json = cJSON_PrintUnformatted(p->data);
        if (json == NULL)
            return chat__error(CHAT_ENOMEM, "out of memory");
        chat__buf_puts(out, json);
        chat__free(json);
    }
    rc = out->failed ? chat__error(CHAT_ENOMEM, "out of memory") : CHAT_OK;
    return rc;
}
