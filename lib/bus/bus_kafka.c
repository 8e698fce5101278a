/* The event bus over Kafka (librdkafka).
 *
 * message:new goes to the messages topic, every other event to the events
 * topic, keyed by conversation (or user) so one conversation's events stay
 * in one partition, in order. A thread serves the producer's delivery
 * reports; with a consumer group, a second thread consumes, hands each
 * record to the subscribers and only then stores its offset for the
 * periodic commit (at least once); a record they refuse is read again.
 * librdkafka's own logs go through the library's log hook. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bus/wire.h"
#include "core/internal.h"

typedef struct kafka_bus {
    chat_bus base;
    rd_kafka_t *producer;
    rd_kafka_t *consumer; /* NULL without a group */
    char mtopic[250], etopic[250];
    int timeout_ms;
    atomic_int closing;
    pthread_t poll_thread, cons_thread;
    int poll_started, cons_started;
    pthread_mutex_t lock; /* starting the consumer */
    chat__subs subs;
} kafka_bus;

void chat_kafka_opts_init(chat_kafka_opts *o)
{
    if (o) {
        memset(o, 0, sizeof *o);
        o->version = CHAT_KAFKA_OPTS_VERSION;
    }
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    /* syslog levels: 0..3 errors, 4 warning, 5..6 info, 7 debug */
    CHAT_LOG(level <= 3   ? CHAT_LOG_ERROR
             : level == 4 ? CHAT_LOG_WARN
             : level <= 6 ? CHAT_LOG_INFO
                          : CHAT_LOG_DEBUG,
             "component=bus backend=kafka facility=%s msg=\"%s\"", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *ud)
{
    (void)rk;
    (void)ud;
    CHAT_LOG(CHAT_LOG_WARN,
             "component=bus backend=kafka event=error err=%s"
             " msg=\"%s\"",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *ud)
{
    (void)rk;
    (void)ud;
    if (m->err)
        CHAT_LOG(CHAT_LOG_ERROR,
                 "component=bus backend=kafka event=not_delivered"
                 " topic=%s err=%s",
                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

/* A configuration with the common settings; NULL and the last error. */
static rd_kafka_conf_t *new_conf(const char *brokers, const char *const *kv)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[256];

    if (c == NULL) {
        chat__error(CHAT_ENOMEM, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(c, on_log);
    rd_kafka_conf_set_error_cb(c, on_error);
    if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err) !=
        RD_KAFKA_CONF_OK)
        goto bad;
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(c, kv[0], kv[1], err, sizeof err) !=
            RD_KAFKA_CONF_OK)
            goto bad;
    return c;
bad:
    rd_kafka_conf_destroy(c);
    chat__error(CHAT_EINVAL, "Kafka configuration: %s", err);
    return NULL;
}

static void *poll_main(void *arg)
{
    kafka_bus *b = arg;

    while (!atomic_load(&b->closing))
        rd_kafka_poll(b->producer, 100); /* delivery reports */
    return NULL;
}

static int kafka_publish(chat_bus *base, const chat_event *ev)
{
    kafka_bus *b = (kafka_bus *)base;
    const char *key = ev->conversation_id ? ev->conversation_id
                      : ev->user_id       ? ev->user_id
                                          : "";
    const char *topic =
        ev->type == CHAT_EVENT_MESSAGE_NEW ? b->mtopic : b->etopic;
    chat__buf msg = CHAT__BUF_INIT;
    rd_kafka_resp_err_t err;
    int rc, attempt;

    if ((rc = chat__event_encode(ev, &msg)) != CHAT_OK) {
        chat__buf_free(&msg);
        return rc;
    }
    for (attempt = 0; attempt < 2; attempt++) {
        err = rd_kafka_producev(b->producer, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY((void *)key, strlen(key)),
                                RD_KAFKA_V_VALUE(msg.data, msg.len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(b->producer, 100); /* make room */
    }
    chat__buf_free(&msg);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return chat__error(CHAT_EAGAIN, "Kafka producer queue is full");
    if (err)
        return chat__error(CHAT_EIO, "Kafka produce: %s",
                           rd_kafka_err2str(err));
    return CHAT_OK;
}

/* Point m's partition at offset (m's own to read it again, the next one
 * to go on); with store, also record that offset for the next commit. */
static void position(kafka_bus *b, const rd_kafka_message_t *m, int64_t offset,
                     int store)
{
    rd_kafka_topic_partition_list_t *p = rd_kafka_topic_partition_list_new(1);
    rd_kafka_error_t *err;

    rd_kafka_topic_partition_list_add(p, rd_kafka_topic_name(m->rkt),
                                      m->partition)
        ->offset = offset;
    if (store) {
        rd_kafka_offsets_store(b->consumer, p);
    } else if ((err = rd_kafka_seek_partitions(b->consumer, p,
                                               b->timeout_ms)) != NULL) {
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=bus backend=kafka event=seek_failed msg=\"%s\"",
                 rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    rd_kafka_topic_partition_list_destroy(p);
}

/* Sleep ms, or less if the bus closes meanwhile. */
static void nap(kafka_bus *b, unsigned ms)
{
    struct timespec ts = {0, 50 * 1000000L};
    unsigned t;

    for (t = 0; t < ms && !atomic_load(&b->closing); t += 50)
        nanosleep(&ts, NULL);
}

/* Records taken from the consumer's queue at a time: what is already
 * fetched, without waiting for more. */
#define TAKE_MAX 64

/* Whether m's partition is among v[0..n) (refused in this batch). */
static int refused_before(rd_kafka_message_t *const *v, int n,
                          const rd_kafka_message_t *m)
{
    int i;

    for (i = 0; i < n; i++)
        if (v[i]->rkt == m->rkt && v[i]->partition == m->partition)
            return 1;
    return 0;
}

/* Hand m to the subscribers; 1 if it was refused (its partition then
 * points back at it). */
static int handle(kafka_bus *b, rd_kafka_message_t *m, int64_t received_us)
{
    int rc;

    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            CHAT_LOG(CHAT_LOG_WARN,
                     "component=bus backend=kafka event=consume_error"
                     " msg=\"%s\"",
                     rd_kafka_message_errstr(m));
        return 0;
    }
    rc = chat__event_dispatch(&b->subs, m->payload, m->len, received_us);
    if (rc == CHAT_EAGAIN) {
        if (!atomic_load(&b->closing))
            position(b, m, m->offset, 0);
        return 1;
    }
    if (rc != CHAT_OK) /* not an event: nobody can handle it, skip */
        CHAT_LOG(CHAT_LOG_WARN,
                 "component=bus backend=kafka event=bad_record topic=%s"
                 " partition=%d offset=%lld",
                 rd_kafka_topic_name(m->rkt), (int)m->partition,
                 (long long)m->offset);
    position(b, m, m->offset + 1, 1);
    return 0;
}

/* A record's offset is stored (and so committed) only once every
 * subscriber handled it. A refused record is read again from its own
 * offset after a pause, which also drops what was fetched after it: later
 * records of the partition never get ahead of it, and on close nothing
 * past it is committed.
 *
 * Records are taken in batches of what is already fetched; each carries
 * the time its batch was taken (chat_event.received_us), which lets a
 * subscriber do once per batch what must follow an event's arrival (the
 * fanout router's epoch read). */
static void *consume_main(void *arg)
{
    kafka_bus *b = arg;
    rd_kafka_message_t *v[TAKE_MAX], *refused[TAKE_MAX];
    unsigned pause_ms = 0;

    while (!atomic_load(&b->closing)) {
        int n = 0, nref = 0, i;
        int64_t taken;

        if ((v[n] = rd_kafka_consumer_poll(b->consumer, 100)) == NULL)
            continue;
        for (n = 1; n < TAKE_MAX; n++)
            if ((v[n] = rd_kafka_consumer_poll(b->consumer, 0)) == NULL)
                break;
        taken = chat__mono_us();
        for (i = 0; i < n; i++) {
            /* after a refusal, its partition's later records wait too */
            if (atomic_load(&b->closing) || refused_before(refused, nref, v[i]))
                continue;
            if (handle(b, v[i], taken))
                refused[nref++] = v[i];
        }
        if (nref > 0 && !atomic_load(&b->closing)) {
            pause_ms = pause_ms ? pause_ms * 2 : 50;
            pause_ms = pause_ms > 2000 ? 2000 : pause_ms;
            for (i = 0; i < nref; i++)
                CHAT_LOG(CHAT_LOG_WARN,
                         "component=bus backend=kafka event=redeliver"
                         " topic=%s partition=%d offset=%lld pause_ms=%u",
                         rd_kafka_topic_name(refused[i]->rkt),
                         (int)refused[i]->partition,
                         (long long)refused[i]->offset, pause_ms);
            nap(b, pause_ms);
        } else if (nref == 0) {
            pause_ms = 0;
        }
        for (i = 0; i < n; i++)
            rd_kafka_message_destroy(v[i]);
    }
    return NULL;
}

static int start_consumer(kafka_bus *b)
{
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t err;

    topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, b->mtopic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, b->etopic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(b->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err)
        return chat__error(CHAT_EIO, "Kafka subscribe: %s",
                           rd_kafka_err2str(err));
    if (pthread_create(&b->cons_thread, NULL, consume_main, b) != 0)
        return chat__error(CHAT_ERROR, "cannot start the Kafka consumer");
    pthread_setname_np(b->cons_thread, "chat-kafka-in");
    b->cons_started = 1;
    return CHAT_OK;
}

static int kafka_subscribe(chat_bus *base, chat_event_fn fn, void *userdata)
{
    kafka_bus *b = (kafka_bus *)base;
    int rc;

    if (b->consumer == NULL)
        return chat__error(CHAT_EINVAL, "this Kafka bus has no consumer group");
    if ((rc = chat__subs_add(&b->subs, fn, userdata)) != CHAT_OK)
        return rc;
    pthread_mutex_lock(&b->lock);
    if (!b->cons_started)
        rc = start_consumer(b);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static void kafka_free(chat_bus *base)
{
    kafka_bus *b = (kafka_bus *)base;

    atomic_store(&b->closing, 1);
    if (b->cons_started)
        pthread_join(b->cons_thread, NULL);
    if (b->consumer) {
        rd_kafka_consumer_close(b->consumer); /* commits stored offsets */
        rd_kafka_destroy(b->consumer);
    }
    if (b->poll_started)
        pthread_join(b->poll_thread, NULL);
    if (b->producer) {
        if (rd_kafka_flush(b->producer, b->timeout_ms) != 0)
            CHAT_LOG(CHAT_LOG_WARN,
                     "component=bus backend=kafka event=flush_incomplete"
                     " undelivered=%d",
                     rd_kafka_outq_len(b->producer));
        rd_kafka_destroy(b->producer);
    }
    chat__subs_destroy(&b->subs);
    pthread_mutex_destroy(&b->lock);
    chat__free(b);
}

/* One metadata request (about topic t, or the brokers only when NULL):
 * CHAT_OK, or CHAT_EUNAVAIL when no broker answered within timeout_ms. */
static int ask_brokers(kafka_bus *b, rd_kafka_topic_t *t, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;

    err = rd_kafka_metadata(b->producer, 0, t, &md, timeout_ms);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (err)
        return chat__error(CHAT_EUNAVAIL, "Kafka brokers: %s",
                           rd_kafka_err2str(err));
    return CHAT_OK;
}

static int kafka_ping(chat_bus *base)
{
    kafka_bus *b = (kafka_bus *)base;

    return ask_brokers(b, NULL, b->timeout_ms < 2000 ? b->timeout_ms : 2000);
}

static const chat_bus_ops g_kafka_ops = {
    "kafka",    kafka_publish, kafka_subscribe, kafka_free, NULL,
    kafka_ping, NULL};

/* Ask the cluster about our topics (creating them where the brokers
 * auto-create): fails when no broker answers in time. */
static int check_cluster(kafka_bus *b)
{
    const char *names[2] = {b->mtopic, b->etopic};
    int i, rc;

    for (i = 0; i < 2; i++) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(b->producer, names[i], NULL);

        if (t == NULL)
            return chat__error(CHAT_EINVAL, "Kafka topic %s: %s", names[i],
                               rd_kafka_err2str(rd_kafka_last_error()));
        rc = ask_brokers(b, t, b->timeout_ms);
        rd_kafka_topic_destroy(t);
        if (rc != CHAT_OK)
            return rc;
    }
    return CHAT_OK;
}

static int valid_topic(const char *t)
{
    size_t n = strlen(t);

    if (n == 0 || n > 249)
        return 0;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
              (*t >= '0' && *t <= '9') || *t == '.' || *t == '_' || *t == '-'))
            return 0;
    return 1;
}

int chat_bus_kafka_new(chat_bus **out, const chat_kafka_opts *o)
{
    static const char *const producer_kv[] = {
        "enable.idempotence", "true", "acks", "all", "linger.ms", "1", NULL};
    static const char *const consumer_kv[] = {
        "enable.auto.commit", "true", "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest", "topic.metadata.refresh.interval.ms",
        "2000",
        /* a consumer that dies hands its partitions over after 6 s */
        "session.timeout.ms", "6000", "heartbeat.interval.ms", "1000", NULL};
    char err[256], wait[16];
    rd_kafka_conf_t *c;
    kafka_bus *b;
    int rc, fetch_wait;

    CHAT_ASSERT_ARG(out && o);
    if (o->version != 1 && o->version != CHAT_KAFKA_OPTS_VERSION)
        return chat__error(CHAT_EINVAL, "chat_kafka_opts: unknown version");
    fetch_wait = o->version >= 2 ? o->fetch_wait_ms : 0;
    if (fetch_wait < 0 || fetch_wait > 1000)
        return chat__error(CHAT_EINVAL, "Kafka fetch wait: 1..1000 ms");
    if (!o->brokers || !*o->brokers)
        return chat__error(CHAT_EINVAL, "Kafka needs brokers (KAFKA_BROKERS)");
    if ((o->messages_topic && !valid_topic(o->messages_topic)) ||
        (o->events_topic && !valid_topic(o->events_topic)))
        return chat__error(CHAT_EINVAL,
                           "Kafka topics are 1-249 of [A-Za-z0-9._-]");
    if (o->group_id && (!*o->group_id || strlen(o->group_id) > 200))
        return chat__error(CHAT_EINVAL, "group_id must be 1-200 bytes");
    if ((b = chat__calloc(1, sizeof *b)) == NULL)
        return chat__error(CHAT_ENOMEM, "out of memory");
    b->base.ops = &g_kafka_ops;
    chat__subs_init(&b->subs);
    pthread_mutex_init(&b->lock, NULL);
    b->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    snprintf(b->mtopic, sizeof b->mtopic, "%s",
             o->messages_topic ? o->messages_topic : "chat.messages");
    snprintf(b->etopic, sizeof b->etopic, "%s",
             o->events_topic ? o->events_topic : "chat.events");

    if ((c = new_conf(o->brokers, producer_kv)) == NULL) {
        rc = chat_error_last()->code;
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    if ((b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err)) ==
        NULL) {
        rd_kafka_conf_destroy(c);
        rc = chat__error(CHAT_EINVAL, "Kafka producer: %s", err);
        goto fail;
    }
    if ((rc = check_cluster(b)) != CHAT_OK)
        goto fail;
    if (pthread_create(&b->poll_thread, NULL, poll_main, b) != 0) {
        rc = chat__error(CHAT_ERROR, "cannot start the Kafka poller");
        goto fail;
    }
    pthread_setname_np(b->poll_thread, "chat-kafka-out");
    b->poll_started = 1;
    if (o->group_id) {
        if ((c = new_conf(o->brokers, consumer_kv)) == NULL) {
            rc = chat_error_last()->code;
            goto fail;
        }
        /* a fetch returns what is there after at most this long */
        snprintf(wait, sizeof wait, "%d", fetch_wait ? fetch_wait : 20);
        if (rd_kafka_conf_set(c, "group.id", o->group_id, err, sizeof err) !=
                RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(c, "fetch.wait.max.ms", wait, err, sizeof err) !=
                RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(c);
            rc = chat__error(CHAT_EINVAL, "Kafka consumer: %s", err);
            goto fail;
        }
        if ((b->consumer =
                 rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err)) == NULL) {
            rd_kafka_conf_destroy(c);
            rc = chat__error(CHAT_EINVAL, "Kafka consumer: %s", err);
            goto fail;
        }
        rd_kafka_poll_set_consumer(b->consumer);
    }
    *out = &b->base;
    return CHAT_OK;
fail:
    kafka_free(&b->base);
    return rc;
}
