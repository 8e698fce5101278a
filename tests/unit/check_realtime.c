/* lib/realtime codecs: Engine.IO v4 packets and payloads, Socket.IO v5
 * packets, with the examples of the protocol documents. */
#include <check.h>
#include <string.h>

#include "realtime/codec.h"

#include "check_run.h"

static const chat__sio_limits LIM = {1 << 20, 10};

START_TEST(eio_packets)
{
    static const char *const ok[] = {"0{\"sid\":\"x\"}", "1", "2", "3probe",
                                     "4hello",           "5", "6", "4",
                                     "4caf\xc3\xa9"};
    chat__eio_packet p;
    char scratch[64];
    size_t i;

    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_int_eq(
            chat__eio_decode(ok[i], strlen(ok[i]), &p, scratch, sizeof scratch),
            CHAT_OK);
        ck_assert_int_eq(p.type, ok[i][0] - '0');
        ck_assert_int_eq(p.binary, 0);
        ck_assert_uint_eq(p.len, strlen(ok[i]) - 1);
    }
    /* binary over polling: b + base64 */
    ck_assert_int_eq(
        chat__eio_decode("bAQIDBA==", 9, &p, scratch, sizeof scratch), CHAT_OK);
    ck_assert_int_eq(p.type, CHAT__EIO_MESSAGE);
    ck_assert_int_eq(p.binary, 1);
    ck_assert_uint_eq(p.len, 4);
    ck_assert(!memcmp(p.data, "\x01\x02\x03\x04", 4));
    /* malformed */
    ck_assert_int_eq(chat__eio_decode("", 0, &p, scratch, sizeof scratch),
                     CHAT_EPROTO);
    ck_assert_int_eq(chat__eio_decode("7", 1, &p, scratch, sizeof scratch),
                     CHAT_EPROTO);
    ck_assert_int_eq(chat__eio_decode("x", 1, &p, scratch, sizeof scratch),
                     CHAT_EPROTO);
    ck_assert_int_eq(chat__eio_decode("4\xff", 2, &p, scratch, sizeof scratch),
                     CHAT_EPROTO);
    ck_assert_int_eq(chat__eio_decode("b***", 4, &p, scratch, sizeof scratch),
                     CHAT_EPROTO);
    ck_assert_int_eq(
        chat__eio_decode("bAQIDBA", 7, &p, scratch, sizeof scratch),
        CHAT_EPROTO); /* padding is required */
    ck_assert_int_eq(chat__eio_decode("bAQIDBA==", 9, &p, scratch, 2),
                     CHAT_EPROTO); /* scratch too small */
}
END_TEST

START_TEST(eio_payloads)
{
    const char body[] = "4hello\x1e"
                        "2\x1e"
                        "4world\x1e"
                        "bAQIDBA==";
    chat__eio_packet p[8];
    char scratch[sizeof body];
    chat__buf b = CHAT__BUF_INIT;
    size_t n;

    ck_assert_int_eq(chat__eio_decode_payload(body, sizeof body - 1, p, 8, &n,
                                              scratch, sizeof scratch),
                     CHAT_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert(p[0].type == 4 && p[0].len == 5 &&
              !memcmp(p[0].data, "hello", 5));
    ck_assert(p[1].type == 2 && p[1].len == 0);
    ck_assert(p[2].type == 4 && !memcmp(p[2].data, "world", 5));
    ck_assert(p[3].binary && p[3].len == 4);
    /* encoding gives the same bytes back */
    ck_assert_int_eq(chat__eio_encode_payload(&b, p, n), CHAT_OK);
    ck_assert_uint_eq(b.len, sizeof body - 1);
    ck_assert(!memcmp(b.data, body, b.len));
    chat__buf_free(&b);
    /* limits and malformed batches */
    ck_assert_int_eq(chat__eio_decode_payload(body, sizeof body - 1, p, 3, &n,
                                              scratch, sizeof scratch),
                     CHAT_ELIMIT);
    ck_assert_int_eq(chat__eio_decode_payload("4a\x1e\x1e"
                                              "4b",
                                              6, p, 8, &n, scratch,
                                              sizeof scratch),
                     CHAT_EPROTO); /* empty packet */
    ck_assert_int_eq(chat__eio_decode_payload("4a\x1e", 3, p, 8, &n, scratch,
                                              sizeof scratch),
                     CHAT_EPROTO); /* trailing separator */
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(
        chat__eio_decode_payload("", 0, p, 8, &n, scratch, sizeof scratch),
        CHAT_EPROTO);
}
END_TEST

static void sio_ok(const char *s, int type, const char *nsp, int64_t id)
{
    chat__sio_packet p;
    chat__buf b = CHAT__BUF_INIT;

    ck_assert_msg(chat__sio_decode(s, strlen(s), &LIM, &p) == CHAT_OK, "%s: %s",
                  s, chat_error_last()->message);
    ck_assert_int_eq(p.type, type);
    ck_assert_str_eq(p.nsp, nsp);
    ck_assert_int_eq(p.id, id);
    /* re-encoding gives the canonical text back */
    ck_assert_int_eq(chat__sio_encode(&b, &p), CHAT_OK);
    ck_assert_str_eq(b.data, s);
    chat__buf_free(&b);
    chat__sio_packet_clear(&p);
}

START_TEST(sio_every_type)
{
    sio_ok("0", CHAT__SIO_CONNECT, "/", -1);
    sio_ok("0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", CHAT__SIO_CONNECT,
           "/admin", -1);
    sio_ok("0{\"token\":\"abc\"}", CHAT__SIO_CONNECT, "/", -1);
    sio_ok("1", CHAT__SIO_DISCONNECT, "/", -1);
    sio_ok("1/admin,", CHAT__SIO_DISCONNECT, "/admin", -1);
    sio_ok("2[\"foo\"]", CHAT__SIO_EVENT, "/", -1);
    sio_ok("2/admin,[\"bar\"]", CHAT__SIO_EVENT, "/admin", -1);
    sio_ok("212[\"foo\"]", CHAT__SIO_EVENT, "/", 12);
    sio_ok("2/admin,13[\"bar\"]", CHAT__SIO_EVENT, "/admin", 13);
    sio_ok("2[42,{\"a\":[1,2]}]", CHAT__SIO_EVENT, "/", -1);
    sio_ok("312[\"bar\"]", CHAT__SIO_ACK, "/", 12);
    sio_ok("3/admin,13[]", CHAT__SIO_ACK, "/admin", 13);
    sio_ok("4{\"message\":\"Not authorized\"}", CHAT__SIO_CONNECT_ERROR, "/",
           -1);
    sio_ok("4\"Invalid namespace\"", CHAT__SIO_CONNECT_ERROR, "/", -1);
    sio_ok("51-[\"baz\",{\"_placeholder\":true,\"num\":0}]",
           CHAT__SIO_BINARY_EVENT, "/", -1);
    sio_ok("52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},"
           "{\"_placeholder\":true,\"num\":1}]",
           CHAT__SIO_BINARY_EVENT, "/admin", -1);
    sio_ok("61-/admin,15[{\"_placeholder\":true,\"num\":0}]",
           CHAT__SIO_BINARY_ACK, "/admin", 15);
}
END_TEST

static void sio_bad(const char *s, size_t len, int rc)
{
    chat__sio_packet p;

    ck_assert_msg(chat__sio_decode(s, len, &LIM, &p) == rc, "accepted %.*s",
                  (int)len, s);
    ck_assert_ptr_null(p.data);
}
#define BAD(s, rc) sio_bad(s, sizeof(s) - 1, rc)

START_TEST(sio_malformed)
{
    char big[300];

    BAD("", CHAT_EPROTO);
    BAD("7", CHAT_EPROTO);
    BAD("a", CHAT_EPROTO);
    BAD("2", CHAT_EPROTO);              /* an event needs data */
    BAD("2{\"a\":1}", CHAT_EPROTO);     /* not an array */
    BAD("2[]", CHAT_EPROTO);            /* no event name */
    BAD("2[{}]", CHAT_EPROTO);          /* name of the wrong type */
    BAD("2[\"connect\"]", CHAT_EPROTO); /* reserved name */
    BAD("2[\"disconnect\"]", CHAT_EPROTO);
    BAD("2[\"foo\"", CHAT_EPROTO);   /* truncated */
    BAD("2[\"foo\"]x", CHAT_EPROTO); /* trailing bytes */
    BAD("2[\"foo\"][\"bar\"]", CHAT_EPROTO);
    BAD("0[]", CHAT_EPROTO); /* CONNECT data is an object */
    BAD("0\"x\"", CHAT_EPROTO);
    BAD("1{}", CHAT_EPROTO); /* DISCONNECT has none */
    BAD("3{}", CHAT_EPROTO); /* ACK data is an array */
    BAD("4[]", CHAT_EPROTO);
    BAD("2[\"\xff\"]", CHAT_EPROTO);              /* bad UTF-8 */
    BAD("21234567890123456[\"x\"]", CHAT_EPROTO); /* ack id too long */
    BAD("5-[\"a\"]", CHAT_EPROTO);                /* no attachment count */
    BAD("5x-[\"a\"]", CHAT_EPROTO);
    BAD("51[\"a\"]", CHAT_EPROTO);        /* no '-' */
    BAD("511-[\"a\"]", CHAT_ELIMIT);      /* over max_attachments */
    BAD("59999999-[\"a\"]", CHAT_ELIMIT); /* huge count */
    BAD("51-[\"a\",{\"_placeholder\":true,\"num\":1}]", CHAT_EPROTO);
    BAD("51-[\"a\",{\"_placeholder\":true,\"num\":-1}]", CHAT_EPROTO);
    BAD("51-[\"a\",{\"_placeholder\":true,\"num\":0.5}]", CHAT_EPROTO);
    BAD("51-[\"a\",{\"_placeholder\":false,\"num\":0}]", CHAT_EPROTO);
    memset(big, 'n', sizeof big);
    big[0] = '2';
    big[1] = '/';
    big[sizeof big - 1] = ',';
    sio_bad(big, sizeof big, CHAT_ELIMIT); /* namespace too long */
    {
        chat__sio_limits small = {8, 0};
        chat__sio_packet p;
        ck_assert_int_eq(chat__sio_decode("2[\"hello\"]", 10, &small, &p),
                         CHAT_ELIMIT);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("realtime");
    TCase *tc = tcase_create("codec");

    tcase_add_test(tc, eio_packets);
    tcase_add_test(tc, eio_payloads);
    tcase_add_test(tc, sio_every_type);
    tcase_add_test(tc, sio_malformed);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
