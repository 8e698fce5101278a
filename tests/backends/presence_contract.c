/* The presence registry and per-gateway routing on a private Redis
 * (with-redis.sh): entries appear and go, expire, survive a Redis
 * restart through heartbeats; chat_bus_publish_to reaches one gateway;
 * chat_fanout_route picks exactly the gateways of the members.
 *
 *   with-redis.sh presence_contract
 */
#include <check.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>
#include "check_run.h"

#define TTL_MS 900 /* renewals every 300 ms */

static char g_prefix[64];

static chat_presence *open_presence_ttl(const char *gateway, int ttl_ms)
{
    chat_presence_redis_opts o;
    chat_presence *p = NULL;

    chat_presence_redis_opts_init(&o);
    o.url = getenv("REDIS_URL");
    o.gateway_id = gateway;
    o.ttl_ms = ttl_ms;
    o.prefix = g_prefix;
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_OK);
    return p;
}

static chat_presence *open_presence(const char *gateway)
{
    return open_presence_ttl(gateway, TTL_MS);
}

static void new_id(char out[CHAT_ID_LEN + 1])
{
    ck_assert_int_eq(chat_uuid_v7(out), CHAT_OK);
}

/* The gateways of users[0..n), sorted into one "a,b" string. */
static void where(chat_presence *p, const char *const *users, int n, char *out,
                  size_t len)
{
    chat_id gw[8];
    int k = 0, i, j;

    ck_assert_int_eq(chat_presence_locate(p, users, n, gw, 8, &k), CHAT_OK);
    for (i = 0; i < k; i++)
        for (j = i + 1; j < k; j++)
            if (strcmp(gw[j].id, gw[i].id) < 0) {
                chat_id t = gw[i];
                gw[i] = gw[j];
                gw[j] = t;
            }
    out[0] = '\0';
    for (i = 0; i < k; i++)
        snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? "," : "",
                 gw[i].id);
}

/* Poll (writes are asynchronous) until users are at want, or 5 s. */
static void until_at(chat_presence *p, const char *const *users, int n,
                     const char *want)
{
    char got[512];
    int i;

    for (i = 0; i < 100; i++) {
        where(p, users, n, got, sizeof got);
        if (!strcmp(got, want))
            return;
        usleep(50000);
    }
    ck_assert_str_eq(got, want);
}

static redisContext *raw(void)
{
    const char *url = getenv("REDIS_URL");
    int port = atoi(strrchr(url, ':') + 1);
    redisContext *c = redisConnect("127.0.0.1", port);

    ck_assert(c && !c->err);
    return c;
}

static void setup(void)
{
    snprintf(g_prefix, sizeof g_prefix, "test:%d:%ld:", (int)getpid(),
             random());
}

START_TEST(online_offline_two_gateways)
{
    char g1[CHAT_ID_LEN + 1], g2[CHAT_ID_LEN + 1], u1[CHAT_ID_LEN + 1],
        u2[CHAT_ID_LEN + 1], both[128];
    chat_presence *a, *b, *loc;
    const char *users[2] = {u1, u2};

    new_id(g1);
    new_id(g2);
    new_id(u1);
    new_id(u2);
    a = open_presence(g1);
    b = open_presence(g2);
    loc = open_presence(NULL);
    ck_assert_str_eq(chat_presence_gateway_id(a), g1);
    ck_assert_str_eq(chat_presence_gateway_id(loc), "");
    snprintf(both, sizeof both, "%s,%s", strcmp(g1, g2) < 0 ? g1 : g2,
             strcmp(g1, g2) < 0 ? g2 : g1);

    until_at(loc, users, 2, "");
    ck_assert_int_eq(chat_presence_set(a, u1, 1), CHAT_OK);
    until_at(loc, users, 1, g1);
    ck_assert_int_eq(chat_presence_set(b, u1, 1), CHAT_OK); /* 2nd device */
    ck_assert_int_eq(chat_presence_set(b, u2, 1), CHAT_OK);
    until_at(loc, users, 2, both);
    until_at(loc, users + 1, 1, g2);
    ck_assert_int_eq(chat_presence_set(b, u1, 0), CHAT_OK);
    until_at(loc, users, 1, g1);
    /* a locator records nothing; bad ids are refused */
    ck_assert_int_eq(chat_presence_set(loc, u1, 1), CHAT_EINVAL);
    ck_assert_int_eq(chat_presence_set(a, "not-a-uuid", 1), CHAT_EINVAL);
    /* a clean stop takes the gateway's users out */
    chat_presence_free(b);
    until_at(loc, users + 1, 1, "");
    until_at(loc, users, 2, g1);
    chat_presence_free(a);
    until_at(loc, users, 2, "");
    chat_presence_free(loc);
}
END_TEST

/* A gateway that died without a word: its entries stop counting when
 * their expiry passes, whatever is still in Redis. */
START_TEST(dead_gateway_expires)
{
    char u[CHAT_ID_LEN + 1], dead[CHAT_ID_LEN + 1], key[128], past[24],
        future[24];
    const char *users[1] = {u};
    chat_presence *loc = open_presence(NULL);
    redisContext *c = raw();
    redisReply *r;

    new_id(u);
    new_id(dead);
    snprintf(key, sizeof key, "%s%s", g_prefix, u);
    snprintf(past, sizeof past, "%lld", (long long)chat_time_now_ms() - 1);
    snprintf(future, sizeof future, "%lld",
             (long long)chat_time_now_ms() + 400);
    r = redisCommand(c, "ZADD %s %s %s", key, past, dead);
    freeReplyObject(r);
    until_at(loc, users, 1, "");
    r = redisCommand(c, "ZADD %s %s %s", key, future, dead);
    freeReplyObject(r);
    until_at(loc, users, 1, dead);
    usleep(500000);
    until_at(loc, users, 1, "");
    /* and garbage in the set is not a gateway */
    r = redisCommand(c, "ZADD %s %s %s", key, future, "x");
    freeReplyObject(r);
    until_at(loc, users, 1, "");
    redisFree(c);
    chat_presence_free(loc);
}
END_TEST

/* Live entries are renewed: they outlive many TTLs; and when Redis loses
 * everything (a restart without persistence, FLUSHALL), the heartbeats
 * put every online user back. */
START_TEST(heartbeats_and_redis_restart)
{
    char g[CHAT_ID_LEN + 1], u[CHAT_ID_LEN + 1], cmd[512];
    const char *users[1] = {u}, *ctl = getenv("REDIS_CTL_CMD");
    chat_presence *p, *loc;
    redisContext *c;
    redisReply *r;

    ck_assert_ptr_nonnull(ctl);
    new_id(g);
    new_id(u);
    p = open_presence(g);
    loc = open_presence(NULL);
    ck_assert_int_eq(chat_presence_set(p, u, 1), CHAT_OK);
    until_at(loc, users, 1, g);
    usleep(3 * TTL_MS * 1000);
    until_at(loc, users, 1, g);

    c = raw();
    r = redisCommand(c, "FLUSHALL");
    freeReplyObject(r);
    redisFree(c);
    until_at(loc, users, 1, g); /* within one renewal */

    snprintf(cmd, sizeof cmd, "%s stop", ctl);
    ck_assert_int_eq(system(cmd), 0);
    {
        chat_id gw[4];
        int n;
        ck_assert_int_eq(chat_presence_locate(loc, users, 1, gw, 4, &n),
                         CHAT_EUNAVAIL);
    }
    ck_assert_int_eq(chat_presence_set(p, u, 1), CHAT_OK); /* queues */
    snprintf(cmd, sizeof cmd, "%s start", ctl);
    ck_assert_int_eq(system(cmd), 0);
    until_at(loc, users, 1, g); /* reconnected and renewed */
    chat_presence_free(p);
    chat_presence_free(loc);
}
END_TEST

typedef struct inbox {
    pthread_mutex_t lock;
    int n;
    char last[128];
} inbox;

static int on_event(const chat_event *ev, void *ud)
{
    inbox *in = ud;

    pthread_mutex_lock(&in->lock);
    in->n++;
    snprintf(in->last, sizeof in->last, "%.*s", (int)ev->payload_len,
             ev->payload);
    pthread_mutex_unlock(&in->lock);
    return CHAT_OK;
}

static int count(inbox *in)
{
    int n;

    pthread_mutex_lock(&in->lock);
    n = in->n;
    pthread_mutex_unlock(&in->lock);
    return n;
}

static chat_bus *open_bus(const char *gateway, const char *channel)
{
    chat_redis_opts o;
    chat_bus *b = NULL;

    chat_redis_opts_init(&o);
    o.url = getenv("REDIS_URL");
    o.gateway_id = gateway;
    o.channel = channel;
    ck_assert_int_eq(chat_bus_redis_new(&b, &o), CHAT_OK);
    return b;
}

static void make_user(chat_store *s, const char *name, char *id)
{
    chat_user u;

    memset(&u, 0, sizeof u);
    new_id(u.id);
    snprintf(u.email, sizeof u.email, "%s@example.com", name);
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.password_hash, sizeof u.password_hash, "x");
    u.created_at = chat_time_now_ms();
    ck_assert_int_eq(chat_store_user_create(s, &u), CHAT_OK);
    memcpy(id, u.id, CHAT_ID_LEN + 1);
}

/* Three gateways; a DM between a user on gateway 1 and one on gateway 2:
 * its messages reach gateways 1 and 2, never 3; explicit recipients are
 * located too; membership changes reach all three. */
START_TEST(route_to_the_members_gateways)
{
    char gid[3][CHAT_ID_LEN + 1], a[CHAT_ID_LEN + 1], b[CHAT_ID_LEN + 1],
        c[CHAT_ID_LEN + 1], channel[96], dir[] = "/tmp/chat-presence-XXXXXX",
                                         path[128];
    chat_presence *reg[3], *loc;
    chat_bus *gw[3], *pub;
    inbox in[3];
    chat_store *store;
    chat_conv conv;
    chat_event ev;
    const char *rcpt[1] = {c};
    const char *ab[2] = {a, b};
    int i;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/chat.db", dir);
    ck_assert_int_eq(chat_store_sqlite_open(&store, path, NULL), CHAT_OK);
    make_user(store, "alice", a);
    make_user(store, "bob", b);
    make_user(store, "carol", c);
    ck_assert_int_eq(chat_store_conv_dm(store, a, b, &conv, NULL), CHAT_OK);

    snprintf(channel, sizeof channel, "%sevents", g_prefix);
    for (i = 0; i < 3; i++) {
        new_id(gid[i]);
        memset(&in[i], 0, sizeof in[i]);
        pthread_mutex_init(&in[i].lock, NULL);
        reg[i] = open_presence(gid[i]);
        gw[i] = open_bus(gid[i], channel);
        ck_assert_int_eq(chat_bus_subscribe(gw[i], on_event, &in[i]), CHAT_OK);
    }
    pub = open_bus(NULL, channel);
    loc = open_presence(NULL);
    ck_assert_int_eq(chat_presence_set(reg[0], a, 1), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[1], b, 1), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[2], c, 1), CHAT_OK);
    until_at(loc, ab, 1, gid[0]);
    until_at(loc, ab + 1, 1, gid[1]);
    until_at(loc, rcpt, 1, gid[2]);

    /* publish_to: one gateway only; the local bus has no such thing */
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = conv.id;
    ev.user_id = a;
    ev.to_members = 1;
    ev.payload = "{\"n\":1}";
    ev.payload_len = 7;
    ck_assert_int_eq(chat_bus_publish_to(pub, gid[2], &ev), CHAT_OK);
    ck_assert_int_eq(chat_bus_publish_to(pub, "gw-1", &ev), CHAT_EINVAL);
    {
        chat_bus *local;
        ck_assert_int_eq(chat_bus_local_new(&local), CHAT_OK);
        ck_assert_int_eq(chat_bus_publish_to(local, gid[0], &ev), CHAT_EINVAL);
        chat_bus_free(local);
    }
    for (i = 0; i < 50 && count(&in[2]) < 1; i++)
        usleep(20000);
    ck_assert_int_eq(count(&in[2]), 1);

    /* the DM's message: gateways 1 and 2 */
    ev.payload = "{\"n\":2}";
    ck_assert_int_eq(chat_fanout_route(store, loc, pub, &ev), CHAT_OK);
    for (i = 0; i < 50 && (count(&in[0]) < 1 || count(&in[1]) < 1); i++)
        usleep(20000);
    ck_assert_int_eq(count(&in[0]), 1);
    ck_assert_int_eq(count(&in[1]), 1);
    ck_assert_str_eq(in[0].last, "{\"n\":2}");

    /* presence-style: explicit recipients only (carol) */
    ev.type = CHAT_EVENT_PRESENCE;
    ev.conversation_id = NULL;
    ev.to_members = 0;
    ev.recipients = rcpt;
    ev.nrecipients = 1;
    ev.payload = "{\"n\":3}";
    ck_assert_int_eq(chat_fanout_route(store, loc, pub, &ev), CHAT_OK);
    for (i = 0; i < 50 && count(&in[2]) < 2; i++)
        usleep(20000);
    ck_assert_int_eq(count(&in[2]), 2);

    /* a membership change: everyone (any gateway may cache members) */
    ev.type = CHAT_EVENT_CONVERSATION_UPDATED;
    ev.conversation_id = conv.id;
    ev.to_members = 1;
    ev.members_changed = 1;
    ev.recipients = NULL;
    ev.nrecipients = 0;
    ev.payload = "{\"n\":4}";
    ck_assert_int_eq(chat_fanout_route(store, loc, pub, &ev), CHAT_OK);
    for (i = 0; i < 50 &&
                (count(&in[0]) < 2 || count(&in[1]) < 2 || count(&in[2]) < 3);
         i++)
        usleep(20000);
    ck_assert_int_eq(count(&in[0]), 2);
    ck_assert_int_eq(count(&in[1]), 2);
    ck_assert_int_eq(count(&in[2]), 3);

    /* nobody online: nothing sent, no error */
    ck_assert_int_eq(chat_presence_set(reg[0], a, 0), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[1], b, 0), CHAT_OK);
    until_at(loc, ab, 2, "");
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.members_changed = 0;
    ev.payload = "{\"n\":5}";
    ck_assert_int_eq(chat_fanout_route(store, loc, pub, &ev), CHAT_OK);
    usleep(200000);
    ck_assert_int_eq(count(&in[0]), 2);
    ck_assert_int_eq(count(&in[1]), 2);
    ck_assert_int_eq(count(&in[2]), 3);

    chat_bus_free(pub);
    for (i = 0; i < 3; i++) {
        chat_bus_free(gw[i]);
        chat_presence_free(reg[i]);
        pthread_mutex_destroy(&in[i].lock);
    }
    chat_presence_free(loc);
    chat_store_free(store);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wait until in holds n events (1 s at most); the count. */
static int count_until(inbox *in, int n)
{
    int i;

    for (i = 0; i < 50 && count(in) < n; i++)
        usleep(20000);
    return count(in);
}

/* chat_fanout: a socket on a new gateway moves the registry's epoch and
 * is routed to at once; a member added behind the router's back is seen
 * once the entry is older than cache_ms, or at once after a membership
 * change it routed; cache_ms -1 looks up every event; one epoch read
 * serves the events that had arrived before it. */
START_TEST(cached_router)
{
    char gid[3][CHAT_ID_LEN + 1], a[CHAT_ID_LEN + 1], b[CHAT_ID_LEN + 1],
        c[CHAT_ID_LEN + 1], channel[96], dir[] = "/tmp/chat-presence-XXXXXX",
                                         path[128];
    chat_presence *reg[3], *loc;
    chat_bus *gw[3], *pub;
    chat_fanout *f, *nocache, *batched;
    chat_fanout_opts fo;
    inbox in[3];
    chat_store *store;
    chat_conv conv;
    chat_event ev, changed;
    const char *bob[1] = {b}, *carol[1] = {c}, *members[1] = {b};
    int64_t e0, e1;
    int i;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/chat.db", dir);
    ck_assert_int_eq(chat_store_sqlite_open(&store, path, NULL), CHAT_OK);
    make_user(store, "alice", a);
    make_user(store, "bob", b);
    make_user(store, "carol", c);
    ck_assert_int_eq(chat_store_conv_group(store, a, "g", members, 1, &conv),
                     CHAT_OK);
    snprintf(channel, sizeof channel, "%scached", g_prefix);
    for (i = 0; i < 3; i++) {
        new_id(gid[i]);
        memset(&in[i], 0, sizeof in[i]);
        pthread_mutex_init(&in[i].lock, NULL);
        reg[i] = open_presence_ttl(gid[i], 60000); /* no renewal meanwhile */
        gw[i] = open_bus(gid[i], channel);
        ck_assert_int_eq(chat_bus_subscribe(gw[i], on_event, &in[i]), CHAT_OK);
    }
    pub = open_bus(NULL, channel);
    loc = open_presence(NULL);
    chat_fanout_opts_init(&fo);
    fo.store = store;
    fo.presence = loc;
    fo.bus = pub;
    fo.cache_ms = 400;
    ck_assert_int_eq(chat_fanout_new(&f, &fo), CHAT_OK);
    fo.cache_ms = -1;
    ck_assert_int_eq(chat_fanout_new(&nocache, &fo), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[0], a, 1), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[1], b, 1), CHAT_OK);
    until_at(loc, bob, 1, gid[1]);

    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_MESSAGE_NEW;
    ev.conversation_id = conv.id;
    ev.user_id = a;
    ev.to_members = 1;
    ev.payload = "{}";
    ev.payload_len = 2;
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[1], 1), 1);
    /* bob moves to gateway 3: the epoch moves, the router follows */
    ck_assert_int_eq(chat_presence_epoch(loc, &e0), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[2], b, 1), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[1], b, 0), CHAT_OK);
    until_at(loc, bob, 1, gid[2]);
    ck_assert_int_eq(chat_presence_epoch(loc, &e1), CHAT_OK);
    ck_assert_int_gt(e1, e0);
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[2], 1), 1);
    ck_assert_int_eq(count(&in[1]), 1);
    /* carol comes online on gateway 2, then is added in the store only */
    ck_assert_int_eq(chat_presence_set(reg[1], c, 1), CHAT_OK);
    until_at(loc, carol, 1, gid[1]);
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK); /* caches a, b */
    ck_assert_int_eq(count_until(&in[2], 2), 2);
    ck_assert_int_eq(chat_store_member_add(store, conv.id, c, 0), CHAT_OK);
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK); /* young: stale */
    ck_assert_int_eq(count_until(&in[2], 3), 3);
    ck_assert_int_eq(count(&in[1]), 1);
    ck_assert_int_eq(chat_fanout_event(nocache, &ev), CHAT_OK); /* fresh */
    ck_assert_int_eq(count_until(&in[1], 2), 2);
    ck_assert_int_eq(count_until(&in[2], 4), 4);
    usleep(450000); /* older than cache_ms: looked up again */
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[1], 3), 3);
    ck_assert_int_eq(count_until(&in[2], 5), 5);
    /* carol leaves; the membership change routed drops the entry */
    ck_assert_int_eq(chat_store_member_remove(store, conv.id, c), CHAT_OK);
    changed = ev;
    changed.type = CHAT_EVENT_CONVERSATION_UPDATED;
    changed.members_changed = 1;
    ck_assert_int_eq(chat_fanout_event(f, &changed), CHAT_OK); /* to all */
    ck_assert_int_eq(count_until(&in[1], 4), 4);
    ck_assert_int_eq(count_until(&in[2], 6), 6);
    ck_assert_int_eq(chat_fanout_event(f, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[2], 7), 7);
    usleep(100000);
    ck_assert_int_eq(count(&in[1]), 4);
    ck_assert_int_eq(count(&in[0]), 8); /* alice, on gateway 1: all eight */

    /* events that arrived together share one epoch read: one that arrived
     * before bob moved may go where he was; one that arrived after the
     * move is routed to where he is */
    fo.cache_ms = 60000;
    ck_assert_int_eq(chat_fanout_new(&batched, &fo), CHAT_OK);
    ev.received_us = mono_us();
    ck_assert_int_eq(chat_fanout_event(batched, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[2], 8), 8);
    ck_assert_int_eq(chat_presence_set(reg[1], b, 1), CHAT_OK);
    ck_assert_int_eq(chat_presence_set(reg[2], b, 0), CHAT_OK);
    until_at(loc, bob, 1, gid[1]);
    ck_assert_int_eq(chat_fanout_event(batched, &ev), CHAT_OK); /* same */
    ck_assert_int_eq(count_until(&in[2], 9), 9);
    ev.received_us = mono_us(); /* a later batch */
    ck_assert_int_eq(chat_fanout_event(batched, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[1], 5), 5);
    usleep(100000);
    ck_assert_int_eq(count(&in[2]), 9);
    ck_assert_int_eq(count(&in[1]), 5);
    chat_fanout_free(batched);

    chat_fanout_free(f);
    chat_fanout_free(nocache);
    chat_bus_free(pub);
    for (i = 0; i < 3; i++) {
        chat_bus_free(gw[i]);
        chat_presence_free(reg[i]);
        pthread_mutex_destroy(&in[i].lock);
    }
    chat_presence_free(loc);
    chat_store_free(store);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

/* chat_bus_publish_each: each named gateway once, in one call; a bad id
 * publishes nothing; a bus without per-gateway delivery refuses. */
START_TEST(publish_each_gateway_once)
{
    char gid[3][CHAT_ID_LEN + 1], channel[96];
    const char *ids[3], *bad[2];
    chat_bus *gw[3], *pub, *local;
    inbox in[3];
    chat_event ev;
    int i;

    snprintf(channel, sizeof channel, "%seach", g_prefix);
    for (i = 0; i < 3; i++) {
        new_id(gid[i]);
        memset(&in[i], 0, sizeof in[i]);
        pthread_mutex_init(&in[i].lock, NULL);
        gw[i] = open_bus(gid[i], channel);
        ck_assert_int_eq(chat_bus_subscribe(gw[i], on_event, &in[i]), CHAT_OK);
    }
    pub = open_bus(NULL, channel);
    /* the buses' threads subscribe: wait until Redis counts all three */
    {
        redisContext *r = raw();
        int subscribed = 0, tries;
        for (tries = 0; tries < 250 && subscribed < 3; tries++) {
            subscribed = 0;
            for (i = 0; i < 3; i++) {
                redisReply *rep =
                    redisCommand(r, "PUBSUB NUMSUB %s:gw:%s", channel, gid[i]);
                if (rep && rep->type == REDIS_REPLY_ARRAY &&
                    rep->elements == 2 && rep->element[1]->integer == 1)
                    subscribed++;
                freeReplyObject(rep);
            }
            if (subscribed < 3)
                usleep(20000);
        }
        redisFree(r);
        ck_assert_int_eq(subscribed, 3);
    }
    memset(&ev, 0, sizeof ev);
    ev.type = CHAT_EVENT_TYPING;
    ev.user_id = gid[0];
    ev.payload = "{\"n\":1}";
    ev.payload_len = 7;
    bad[0] = gid[1];
    bad[1] = "gw-2";
    ck_assert_int_eq(chat_bus_publish_each(pub, bad, 2, &ev), CHAT_EINVAL);
    ck_assert_int_eq(chat_bus_publish_each(pub, ids, 0, &ev), CHAT_OK);
    ids[0] = gid[0];
    ids[1] = gid[2];
    ck_assert_int_eq(chat_bus_publish_each(pub, ids, 2, &ev), CHAT_OK);
    ck_assert_int_eq(count_until(&in[0], 1), 1);
    ck_assert_int_eq(count_until(&in[2], 1), 1);
    ck_assert_int_eq(chat_bus_local_new(&local), CHAT_OK);
    ck_assert_int_eq(chat_bus_publish_each(local, ids, 2, &ev), CHAT_EINVAL);
    chat_bus_free(local);
    usleep(200000);
    ck_assert_int_eq(count(&in[0]), 1);
    ck_assert_int_eq(count(&in[1]), 0); /* named only in the refused call */
    ck_assert_int_eq(count(&in[2]), 1);
    ck_assert_str_eq(in[2].last, "{\"n\":1}");
    chat_bus_free(pub);
    for (i = 0; i < 3; i++) {
        chat_bus_free(gw[i]);
        pthread_mutex_destroy(&in[i].lock);
    }
}
END_TEST

START_TEST(bad_options)
{
    chat_presence_redis_opts o;
    chat_presence *p = NULL;

    chat_presence_redis_opts_init(&o);
    o.url = getenv("REDIS_URL");
    o.gateway_id = "gateway-1";
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_EINVAL);
    o.gateway_id = NULL;
    o.ttl_ms = 10;
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_EINVAL);
    o.ttl_ms = 0;
    o.url = "redis://127.0.0.1:1";
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_EUNAVAIL);
    o.url = "http://127.0.0.1";
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_EINVAL);
    o.version = 99;
    ck_assert_int_eq(chat_presence_redis_new(&p, &o), CHAT_EINVAL);
    ck_assert_ptr_null(p);
    chat_presence_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("presence");
    TCase *tc = tcase_create("redis");

    if (!getenv("REDIS_URL")) {
        fprintf(stderr, "presence_contract: REDIS_URL is not set\n");
        return 1;
    }
    srandom((unsigned)getpid());
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, online_offline_two_gateways);
    tcase_add_test(tc, dead_gateway_expires);
    tcase_add_test(tc, route_to_the_members_gateways);
    tcase_add_test(tc, heartbeats_and_redis_restart);
    tcase_add_test(tc, cached_router);
    tcase_add_test(tc, publish_each_gateway_once);
    tcase_add_test(tc, bad_options);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
