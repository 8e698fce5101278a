/* The event bus's contract, one suite run against every backend:
 *
 *   bus_contract local    the in-process bus
 *   bus_contract redis    Redis pub/sub at $REDIS_URL (a private
 *                         redis-server started by with-redis.sh)
 *   bus_contract kafka    Kafka at $KAFKA_BROKERS (librdkafka's mock
 *                         cluster, started by with-kafka.sh)
 *
 * With Redis and Kafka, publisher and subscriber are separate bus handles,
 * as the message-service and a gateway (or the fanout-worker) in two
 * processes would be. Kafka keeps order per conversation (its key), not
 * across conversations. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>
#include "check_run.h"

static const char *g_backend;

static int is_redis(void)
{
    return !strcmp(g_backend, "redis");
}

static int is_kafka(void)
{
    return !strcmp(g_backend, "kafka");
}

/* Kafka: a consumer group per subscribing handle, so each gets it all. */
static int open_kafka(chat_bus **out, const char *group)
{
    chat_kafka_opts o;
    char topic[2][64];

    chat_kafka_opts_init(&o);
    o.brokers = getenv("KAFKA_BROKERS");
    snprintf(topic[0], sizeof topic[0], "contract.messages.%d", (int)getpid());
    snprintf(topic[1], sizeof topic[1], "contract.events.%d", (int)getpid());
    o.messages_topic = topic[0];
    o.events_topic = topic[1];
    o.group_id = group;
    return chat_bus_kafka_new(out, &o);
}

/* What a subscriber saw: copies, in arrival order. */
typedef struct got {
    chat_event_type type;
    char conv[CHAT_ID_LEN + 1], user[CHAT_ID_LEN + 1];
    int to_members, members_changed, nrecipients;
    char recipients[4][CHAT_ID_LEN + 1];
    char payload[256];
    int64_t received_us;
} got;

typedef struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    got *items;
    int n, cap;
    /* Kafka's redelivery: with only_conv set, events of other
     * conversations are handled and not kept; the first `refuse` events of
     * only_conv are refused, and so is every one once `refuse_from` (> 0)
     * have been kept. `refused` counts the refusals. */
    const char *only_conv;
    int refuse, refuse_from, refused;
} inbox;

static int on_event(const chat_event *ev, void *ud)
{
    inbox *in = ud;
    got *g;
    int i;

    pthread_mutex_lock(&in->lock);
    if (in->only_conv &&
        (!ev->conversation_id || strcmp(ev->conversation_id, in->only_conv))) {
        pthread_mutex_unlock(&in->lock);
        return CHAT_OK;
    }
    if (in->refuse > 0 || (in->refuse_from > 0 && in->n >= in->refuse_from)) {
        if (in->refuse > 0)
            in->refuse--;
        in->refused++;
        pthread_cond_broadcast(&in->cond);
        pthread_mutex_unlock(&in->lock);
        return CHAT_EAGAIN;
    }
    if (in->n == in->cap) {
        in->cap = in->cap ? in->cap * 2 : 64;
        in->items = realloc(in->items, (size_t)in->cap * sizeof *in->items);
    }
    g = &in->items[in->n];
    memset(g, 0, sizeof *g);
    g->type = ev->type;
    g->received_us = ev->received_us;
    snprintf(g->conv, sizeof g->conv, "%s",
             ev->conversation_id ? ev->conversation_id : "");
    snprintf(g->user, sizeof g->user, "%s", ev->user_id ? ev->user_id : "");
    g->to_members = ev->to_members;
    g->members_changed = ev->members_changed;
    g->nrecipients = ev->nrecipients;
    for (i = 0; i < ev->nrecipients && i < 4; i++)
        snprintf(g->recipients[i], sizeof g->recipients[i], "%s",
                 ev->recipients[i]);
    snprintf(g->payload, sizeof g->payload, "%.*s", (int)ev->payload_len,
             ev->payload);
    in->n++;
    pthread_cond_broadcast(&in->cond);
    pthread_mutex_unlock(&in->lock);
    return CHAT_OK;
}

static void inbox_init(inbox *in)
{
    memset(in, 0, sizeof *in);
    pthread_mutex_init(&in->lock, NULL);
    pthread_cond_init(&in->cond, NULL);
}

/* Wait until the inbox holds n events (10 s at most); returns the count. */
static int inbox_wait(inbox *in, int n)
{
    struct timespec until;
    int have;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30; /* a Kafka group may be rebalancing */
    pthread_mutex_lock(&in->lock);
    while (in->n < n &&
           pthread_cond_timedwait(&in->cond, &in->lock, &until) == 0)
        ;
    have = in->n;
    pthread_mutex_unlock(&in->lock);
    return have;
}

static void inbox_free(inbox *in)
{
    free(in->items);
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->cond);
}

static int open_bus(chat_bus **out)
{
    if (is_kafka()) {
        static int n;
        char group[64];
        snprintf(group, sizeof group, "contract-%d-%d", (int)getpid(), ++n);
        return open_kafka(out, group);
    }
    if (is_redis()) {
        chat_redis_opts o;
        chat_redis_opts_init(&o);
        o.url = getenv("REDIS_URL");
        o.channel = "contract";
        return chat_bus_redis_new(out, &o);
    }
    return chat_bus_local_new(out);
}

/* Publisher and subscriber: two handles on Redis, one locally. */
static chat_bus *P, *S;
static inbox IN;

static void setup(void)
{
    inbox_init(&IN);
    ck_assert_int_eq(open_bus(&S), CHAT_OK);
    if (is_kafka())
        ck_assert_int_eq(open_kafka(&P, NULL), CHAT_OK); /* publish only */
    else if (is_redis())
        ck_assert_int_eq(open_bus(&P), CHAT_OK);
    else
        P = S;
    ck_assert_int_eq(chat_bus_subscribe(S, on_event, &IN), CHAT_OK);
}

static void teardown(void)
{
    if (P != S)
        chat_bus_free(P);
    chat_bus_free(S);
    inbox_free(&IN);
}

static int by_type(const void *a, const void *b)
{
    return (int)((const got *)a)->type - (int)((const got *)b)->type;
}

START_TEST(every_field_arrives)
{
    const char *rcpt[] = {"0190b3c4-0000-7000-8000-000000000001",
                          "0190b3c4-0000-7000-8000-000000000002"};
    const char payload[] = "{\"conversation_id\":\"c\",\"text\":\"h\\u00e9 "
                           "\xc3\xa9\\n\",\"seq\":7}";
    chat_event ev;
    struct timespec ts;
    int64_t before, after;
    int t;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    for (t = CHAT_EVENT_MESSAGE_NEW; t <= CHAT_EVENT_PRESENCE; t++) {
        memset(&ev, 0, sizeof ev);
        ev.received_us = 42; /* the bus's to set, not the publisher's */
        ev.type = (chat_event_type)t;
        ev.conversation_id = t == CHAT_EVENT_PRESENCE
                                 ? NULL
                                 : "0190b3c4-0000-7000-8000-0000000000cc";
        ev.user_id = "0190b3c4-0000-7000-8000-0000000000aa";
        ev.to_members = t != CHAT_EVENT_PRESENCE;
        ev.members_changed = t == CHAT_EVENT_CONVERSATION_UPDATED;
        ev.recipients = t >= CHAT_EVENT_CONVERSATION_UPDATED ? rcpt : NULL;
        ev.nrecipients = t >= CHAT_EVENT_CONVERSATION_UPDATED ? 2 : 0;
        ev.payload = payload;
        ev.payload_len = strlen(payload);
        ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_OK);
    }
    ck_assert_int_eq(inbox_wait(&IN, 5), 5);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    after = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (is_kafka()) /* presence has another key: maybe another partition */
        qsort(IN.items, 5, sizeof *IN.items, by_type);
    for (t = 0; t < 5; t++) {
        got *g = &IN.items[t];
        ck_assert_int_eq(g->type, t + 1);
        ck_assert_str_eq(g->conv, t + 1 == CHAT_EVENT_PRESENCE
                                      ? ""
                                      : "0190b3c4-0000-7000-8000-0000000000cc");
        ck_assert_str_eq(g->user, "0190b3c4-0000-7000-8000-0000000000aa");
        ck_assert_int_eq(g->to_members, t + 1 != CHAT_EVENT_PRESENCE);
        ck_assert_int_eq(g->members_changed,
                         t + 1 == CHAT_EVENT_CONVERSATION_UPDATED);
        ck_assert_int_eq(g->nrecipients,
                         t + 1 >= CHAT_EVENT_CONVERSATION_UPDATED ? 2 : 0);
        if (g->nrecipients) {
            ck_assert_str_eq(g->recipients[0], rcpt[0]);
            ck_assert_str_eq(g->recipients[1], rcpt[1]);
        }
        ck_assert_str_eq(g->payload, payload); /* byte for byte */
        /* when it reached the subscriber's process */
        ck_assert_int_ge(g->received_us, before);
        ck_assert_int_le(g->received_us, after);
    }
}
END_TEST

START_TEST(order_is_kept)
{
    char payload[32];
    chat_event ev;
    int i;

    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = "0190b3c4-0000-7000-8000-0000000000cc";
    ev.to_members = 1;
    for (i = 0; i < 2000; i++) {
        ev.payload_len =
            (size_t)snprintf(payload, sizeof payload, "{\"seq\":%d}", i + 1);
        ev.payload = payload;
        ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_OK);
    }
    ck_assert_int_eq(inbox_wait(&IN, 2000), 2000);
    for (i = 0; i < 2000; i++) {
        snprintf(payload, sizeof payload, "{\"seq\":%d}", i + 1);
        ck_assert_str_eq(IN.items[i].payload, payload);
    }
}
END_TEST

START_TEST(every_subscriber_of_every_handle)
{
    chat_bus *other = NULL;
    inbox second, third;
    chat_event ev;

    inbox_init(&second);
    inbox_init(&third);
    ck_assert_int_eq(chat_bus_subscribe(S, on_event, &second), CHAT_OK);
    if (is_redis() || is_kafka()) { /* a third process */
        ck_assert_int_eq(open_bus(&other), CHAT_OK);
        ck_assert_int_eq(chat_bus_subscribe(other, on_event, &third), CHAT_OK);
    }
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_TYPING;
    ev.conversation_id = "0190b3c4-0000-7000-8000-0000000000cc";
    ev.payload = "{}";
    ev.payload_len = 2;
    ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_OK);
    ck_assert_int_eq(inbox_wait(&IN, 1), 1);
    ck_assert_int_eq(inbox_wait(&second, 1), 1);
    if (other) {
        ck_assert_int_eq(inbox_wait(&third, 1), 1);
        chat_bus_free(other);
    }
    inbox_free(&second);
    inbox_free(&third);
}
END_TEST

START_TEST(refuses_bad_events)
{
    chat_event ev;

    memset(&ev, 0, sizeof ev);
    ev.type = (chat_event_type)99;
    ev.payload = "{}";
    ev.payload_len = 2;
    ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_EINVAL);
    ev.type = CHAT_EVENT_TYPING;
    ev.payload = NULL;
    ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_EINVAL);
    ck_assert_int_eq(chat_bus_subscribe(S, NULL, NULL), CHAT_EINVAL);
}
END_TEST

/* Redis only: an outage, then the subscription comes back by itself. */
START_TEST(redis_restart)
{
    char cmd[512];
    const char *ctl = getenv("REDIS_CTL_CMD");
    chat_event ev;
    int i, have = 0;

    if (!is_redis())
        return;
    ck_assert_ptr_nonnull(ctl);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_PRESENCE;
    ev.payload = "{\"n\":1}";
    ev.payload_len = 7;
    snprintf(cmd, sizeof cmd, "%s stop", ctl);
    ck_assert_int_eq(system(cmd), 0);
    /* while it is down: a clear error, no crash, no hang */
    ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_EUNAVAIL);
    snprintf(cmd, sizeof cmd, "%s start", ctl);
    ck_assert_int_eq(system(cmd), 0);
    /* the subscriber reconnects with backoff (at most 2 s apart): keep
     * publishing until one arrives */
    for (i = 0; i < 100 && have == 0; i++) {
        chat_bus_publish(P, &ev);
        usleep(100000);
        pthread_mutex_lock(&IN.lock);
        have = IN.n;
        pthread_mutex_unlock(&IN.lock);
    }
    ck_assert_int_gt(have, 0);
    ck_assert_str_eq(IN.items[0].payload, "{\"n\":1}");
}
END_TEST

START_TEST(redis_bad_options)
{
    chat_redis_opts o;
    chat_bus *b = NULL;

    if (!is_redis())
        return;
    chat_redis_opts_init(&o);
    o.url = "http://127.0.0.1:6379";
    ck_assert_int_eq(chat_bus_redis_new(&b, &o), CHAT_EINVAL);
    o.url = "redis://";
    ck_assert_int_eq(chat_bus_redis_new(&b, &o), CHAT_EINVAL);
    o.url = "redis://127.0.0.1:1";
    ck_assert_int_eq(chat_bus_redis_new(&b, &o), CHAT_EUNAVAIL);
    o.url = getenv("REDIS_URL");
    o.channel = "";
    ck_assert_int_eq(chat_bus_redis_new(&b, &o), CHAT_EINVAL);
    ck_assert_ptr_null(b);
}
END_TEST

/* Kafka only: a group resumes where it committed. */
START_TEST(kafka_group_resumes_after_its_commits)
{
    chat_bus *c1, *c2;
    inbox first, second;
    chat_event ev;
    char group[64], payload[32];
    int i;

    if (!is_kafka())
        return;
    snprintf(group, sizeof group, "resume-%d", (int)getpid());
    inbox_init(&first);
    inbox_init(&second);
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = "0190b3c4-0000-7000-8000-0000000000dd";
    ev.to_members = 1;
    ev.payload = payload;
    ck_assert_int_eq(open_kafka(&c1, group), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(c1, on_event, &first), CHAT_OK);
    for (i = 0; i < 3; i++) {
        ev.payload_len =
            (size_t)snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_OK);
    }
    ck_assert_int_eq(inbox_wait(&first, 3), 3);
    chat_bus_free(c1); /* commits what it handled */
    for (i = 3; i < 5; i++) {
        ev.payload_len =
            (size_t)snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        ck_assert_int_eq(chat_bus_publish(P, &ev), CHAT_OK);
    }
    ck_assert_int_eq(open_kafka(&c2, group), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(c2, on_event, &second), CHAT_OK);
    ck_assert_int_eq(inbox_wait(&second, 2), 2);
    ck_assert_str_eq(second.items[0].payload, "{\"n\":3}");
    ck_assert_str_eq(second.items[1].payload, "{\"n\":4}");
    usleep(500000); /* and nothing older comes again */
    ck_assert_int_eq(inbox_wait(&second, 3), 2);
    chat_bus_free(c2);
    inbox_free(&first);
    inbox_free(&second);
}
END_TEST

static void publish_n(chat_bus *p, const char *conv, int from, int to)
{
    chat_event ev;
    char payload[32];
    int i;

    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = conv;
    ev.to_members = 1;
    ev.payload = payload;
    for (i = from; i < to; i++) {
        ev.payload_len =
            (size_t)snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        ck_assert_int_eq(chat_bus_publish(p, &ev), CHAT_OK);
    }
}

/* Wait until in has refused at least n times (30 s at most: a Kafka
 * group may be rebalancing). */
static int refused_wait(inbox *in, int n)
{
    int i, have = 0;

    for (i = 0; i < 600 && have < n; i++) {
        pthread_mutex_lock(&in->lock);
        have = in->refused;
        pthread_mutex_unlock(&in->lock);
        if (have < n)
            usleep(50000);
    }
    return have;
}

/* Kafka only: a record a subscriber refuses comes again, and nothing of
 * its partition overtakes it. */
START_TEST(kafka_refused_record_comes_again_first)
{
    const char *conv = "0190b3c4-0000-7000-8000-0000000000e1";
    chat_bus *c;
    inbox in;
    char group[64];

    if (!is_kafka())
        return;
    snprintf(group, sizeof group, "refuse-%d", (int)getpid());
    inbox_init(&in);
    in.only_conv = conv;
    in.refuse = 3;
    ck_assert_int_eq(open_kafka(&c, group), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(c, on_event, &in), CHAT_OK);
    publish_n(P, conv, 0, 3);
    ck_assert_int_eq(inbox_wait(&in, 3), 3);
    ck_assert_int_eq(in.refused, 3);
    ck_assert_str_eq(in.items[0].payload, "{\"n\":0}");
    ck_assert_str_eq(in.items[1].payload, "{\"n\":1}");
    ck_assert_str_eq(in.items[2].payload, "{\"n\":2}");
    chat_bus_free(c);
    inbox_free(&in);
}
END_TEST

/* Kafka only: a handle closed while its subscriber refuses a record (a
 * fanout-worker stopping while Redis is down) commits nothing from that
 * record on; the next member of the group gets it. */
START_TEST(kafka_refused_record_is_not_committed)
{
    const char *conv = "0190b3c4-0000-7000-8000-0000000000e2";
    chat_bus *c1, *c2;
    inbox first, second;
    char group[64];

    if (!is_kafka())
        return;
    snprintf(group, sizeof group, "refuse-close-%d", (int)getpid());
    inbox_init(&first);
    inbox_init(&second);
    first.only_conv = second.only_conv = conv;
    first.refuse_from = 1;
    ck_assert_int_eq(open_kafka(&c1, group), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(c1, on_event, &first), CHAT_OK);
    publish_n(P, conv, 0, 3);
    ck_assert_int_ge(refused_wait(&first, 2), 2);
    ck_assert_int_eq(first.n, 1);
    chat_bus_free(c1); /* commits {"n":0} only */
    ck_assert_int_eq(open_kafka(&c2, group), CHAT_OK);
    ck_assert_int_eq(chat_bus_subscribe(c2, on_event, &second), CHAT_OK);
    ck_assert_int_eq(inbox_wait(&second, 2), 2);
    ck_assert_str_eq(second.items[0].payload, "{\"n\":1}");
    ck_assert_str_eq(second.items[1].payload, "{\"n\":2}");
    usleep(500000); /* and the handled one does not come again */
    ck_assert_int_eq(inbox_wait(&second, 3), 2);
    chat_bus_free(c2);
    inbox_free(&first);
    inbox_free(&second);
}
END_TEST

START_TEST(kafka_bad_options)
{
    chat_kafka_opts o;
    chat_bus *b = NULL;

    if (!is_kafka())
        return;
    chat_kafka_opts_init(&o);
    ck_assert_int_eq(chat_bus_kafka_new(&b, &o), CHAT_EINVAL); /* brokers */
    o.brokers = getenv("KAFKA_BROKERS");
    o.messages_topic = "bad topic";
    ck_assert_int_eq(chat_bus_kafka_new(&b, &o), CHAT_EINVAL);
    o.messages_topic = NULL;
    o.group_id = "";
    ck_assert_int_eq(chat_bus_kafka_new(&b, &o), CHAT_EINVAL);
    o.group_id = NULL;
    o.fetch_wait_ms = 5000;
    ck_assert_int_eq(chat_bus_kafka_new(&b, &o), CHAT_EINVAL);
    o.fetch_wait_ms = 0;
    o.brokers = "127.0.0.1:1";
    o.timeout_ms = 1000;
    ck_assert_int_eq(chat_bus_kafka_new(&b, &o), CHAT_EUNAVAIL);
    ck_assert_ptr_null(b);
    /* a publish-only bus has nothing to subscribe to */
    ck_assert_int_eq(chat_bus_subscribe(P, on_event, &IN), CHAT_EINVAL);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;

    g_backend = argc > 1 ? argv[1] : "local";
    if (strcmp(g_backend, "local") && strcmp(g_backend, "redis") &&
        strcmp(g_backend, "kafka")) {
        fprintf(stderr, "usage: bus_contract local|redis|kafka\n");
        return 2;
    }
    if (is_kafka() && !getenv("KAFKA_BROKERS")) {
        fprintf(stderr, "bus_contract: KAFKA_BROKERS is not set\n");
        return 2;
    }
    if (is_redis() && !getenv("REDIS_URL")) {
        fprintf(stderr, "bus_contract: REDIS_URL is not set\n");
        return 2;
    }
    s = suite_create(g_backend);
    tc = tcase_create("bus contract");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, every_field_arrives);
    tcase_add_test(tc, order_is_kept);
    tcase_add_test(tc, every_subscriber_of_every_handle);
    tcase_add_test(tc, refuses_bad_events);
    tcase_add_test(tc, redis_restart);
    tcase_add_test(tc, redis_bad_options);
    tcase_add_test(tc, kafka_group_resumes_after_its_commits);
    tcase_add_test(tc, kafka_refused_record_comes_again_first);
    tcase_add_test(tc, kafka_refused_record_is_not_committed);
    tcase_add_test(tc, kafka_bad_options);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
