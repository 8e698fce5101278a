/* The event bus interface and its in-process backend. */
#include <string.h>

#include <chat/chat.h>

#include "check_run.h"

typedef struct seen {
    int n;
    chat_event_type type;
    char payload[64];
    int nrecipients;
} seen;

static int record(const chat_event *ev, void *ud)
{
    seen *s = ud;

    s->n++;
    s->type = ev->type;
    s->nrecipients = ev->nrecipients;
    memcpy(s->payload, ev->payload, ev->payload_len);
    s->payload[ev->payload_len] = '\0';
    return CHAT_OK;
}

START_TEST(names)
{
    ck_assert_str_eq(chat_event_name(CHAT_EVENT_MESSAGE_NEW), "message:new");
    ck_assert_str_eq(chat_event_name(CHAT_EVENT_READ_UPDATED), "read:updated");
    ck_assert_str_eq(chat_event_name(CHAT_EVENT_CONVERSATION_UPDATED),
                     "conversation:updated");
    ck_assert_str_eq(chat_event_name(CHAT_EVENT_TYPING), "typing");
    ck_assert_str_eq(chat_event_name(CHAT_EVENT_PRESENCE), "presence");
    ck_assert_ptr_null(chat_event_name((chat_event_type)99));
}
END_TEST

START_TEST(local_delivers_to_every_subscriber)
{
    chat_bus *b = NULL;
    seen s1, s2;
    const char *rcpt[2] = {"u1", "u2"};
    chat_event ev;

    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    ck_assert_int_eq(chat_bus_local_new(&b), CHAT_OK);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_TYPING;
    ev.payload = "{\"x\":1}";
    ev.payload_len = 7;
    ev.recipients = rcpt;
    ev.nrecipients = 2;
    /* nobody listens yet: fine */
    ck_assert_int_eq(chat_bus_publish(b, &ev), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(b, record, &s1), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(b, record, &s2), CHAT_OK);
    ck_assert_int_eq(chat_bus_publish(b, &ev), CHAT_OK);
    ck_assert_int_eq(s1.n, 1);
    ck_assert_int_eq(s2.n, 1);
    ck_assert_int_eq(s1.type, CHAT_EVENT_TYPING);
    ck_assert_str_eq(s2.payload, "{\"x\":1}");
    ck_assert_int_eq(s2.nrecipients, 2);
    chat_bus_free(b);
    chat_bus_free(NULL);
}
END_TEST

START_TEST(local_refuses_bad_input_and_too_many)
{
    chat_bus *b = NULL;
    seen s;
    chat_event ev;
    int i;

    ck_assert_int_eq(chat_bus_local_new(&b), CHAT_OK);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW; /* no payload */
    ck_assert_int_eq(chat_bus_publish(b, &ev), CHAT_EINVAL);
    ev.payload = "{}";
    ev.payload_len = 2;
    ev.type = (chat_event_type)42; /* no such type */
    ck_assert_int_eq(chat_bus_publish(b, &ev), CHAT_EINVAL);
    ck_assert_int_eq(chat_bus_subscribe(b, NULL, NULL), CHAT_EINVAL);
    for (i = 0; i < 16; i++)
        ck_assert_int_eq(chat_bus_subscribe(b, record, &s), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(b, record, &s), CHAT_ELIMIT);
    chat_bus_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("local");

    tcase_add_test(tc, names);
    tcase_add_test(tc, local_delivers_to_every_subscriber);
    tcase_add_test(tc, local_refuses_bad_input_and_too_many);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
