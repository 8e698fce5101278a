/* Load generator for the realtime benchmarks (tests/bench/bench_realtime.sh).
 * One thread, epoll, plain sockets and a minimal WebSocket client: it
 * speaks Engine.IO v4 / Socket.IO v5 text frames only, enough to stay off
 * the critical path.
 *
 *   fanout PORT IDS_FILE CONV_ID RATE   group fanout: every id in
 *       IDS_FILE connects and authenticates; the first sends message:send
 *       at RATE per second (0: as fast as it can with at most 256 messages
 *       not yet acked or not yet delivered to every socket) for
 *       $SECONDS_PER_PHASE (5); prints deliveries/s, send->receive
 *       latency p50/p99 and send->ack p50/p99 (the ack leaves after the
 *       message is stored: it splits storage from fanout). A fixed rate
 *       is preceded by $WARMUP_SECONDS (2) at the same rate, printed as
 *       "warmup" and not counted.
 *   idle PORT N                                 N authenticated sockets
 *       held open until stdin closes (for RSS per connection).
 *
 * $SOURCE_NETS=N (default 1): client i connects from 127.0.(1 + i % N).1,
 * so an edge that keeps a client on one gateway by its address (nginx's
 * ip_hash keys IPv4 clients on their first three octets) spreads them as
 * it would real users; from one address, every client lands on one
 * gateway.
 *
 * Tokens are minted here with JWT_SECRET (chat_jwt_sign), as chatd would;
 * a Node.js server takes any token and uses it as the user id. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>

#define RBUF   (64 * 1024)
#define WINDOW 256

typedef struct client {
    int fd;
    int state; /* 0 handshake, 1 open, 2 connected, 3 authenticated */
    char *rbuf;
    size_t rlen;
    char token[CHAT_JWT_MAX];
} client;

static client *g_c;
static int g_n, g_ep, g_ready;
typedef struct lat {
    uint32_t *v; /* µs */
    size_t n, cap;
} lat;

static lat g_lat, g_ack_lat; /* send->message:new, send->ack */
static int64_t *g_sent_us;   /* send times by ack id: 0 .. g_sent - 1 */
static size_t g_sent_cap;
static long g_sent, g_delivered, g_acked; /* this phase's */

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                continue;
            }
            die("write");
        }
        b += w;
        n -= (size_t)w;
    }
}

/* One masked text frame (the mask is zero: allowed, and cheap). */
static void ws_text(client *c, const char *s, size_t n)
{
    unsigned char h[14];
    size_t hl = 2;
    char stack[1024], *buf = n + 14 <= sizeof stack ? stack : malloc(n + 14);

    h[0] = 0x81;
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    }
    memset(h + hl, 0, 4);
    hl += 4;
    memcpy(buf, h, hl);
    memcpy(buf + hl, s, n);
    send_all(c->fd, buf, hl + n);
    if (buf != stack)
        free(buf);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* p, an array of *cap elements of size bytes, with room for one more. */
static void *room_for_one(void *p, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 1 << 16;
    if ((p = realloc(p, *cap * size)) == NULL)
        die("realloc");
    return p;
}

static void lat_add(lat *l, int64_t us)
{
    l->v = room_for_one(l->v, l->n, &l->cap, sizeof *l->v);
    l->v[l->n++] = (uint32_t)us;
}

/* The q-quantile in ms of sorted l. */
static double lat_ms(const lat *l, int q)
{
    return l->n ? l->v[l->n * (size_t)q / 100] / 1000.0 : 0;
}

static void on_text(client *c, const char *p, size_t n)
{
    char buf[CHAT_JWT_MAX + 32];
    const char *t;

    if (n >= 1 && p[0] == '2' && n == 1) { /* ping */
        ws_text(c, "3", 1);
        return;
    }
    if (n >= 1 && p[0] == '0') { /* Engine.IO open */
        int k = snprintf(buf, sizeof buf, "40{\"token\":\"%s\"}", c->token);
        ws_text(c, buf, (size_t)k);
        c->state = 2;
        return;
    }
    if (n > 16 && !memcmp(p, "42[\"authenticated\"", 18)) {
        if (c->state != 3)
            g_ready++;
        c->state = 3;
        return;
    }
    if (n > 16 && !memcmp(p, "42[\"message:new\"", 16)) {
        g_delivered++;
        t = memmem(p, n, "\"preview\":\"t=", 13);
        if (t) {
            lat_add(&g_lat, now_us() - strtoll(t + 13, NULL, 10));
        }
        return;
    }
    if (n > 2 && p[0] == '4' && p[1] == '3') { /* an ack */
        long id = strtol(p + 2, NULL, 10);
        if (memmem(p, n, "\"error\"", 7))
            fprintf(stderr, "fanout: %.*s\n", (int)n, p);
        else if (id >= 0 && id < g_sent)
            lat_add(&g_ack_lat, now_us() - g_sent_us[id]);
        g_acked++;
        return;
    }
    if (n > 4 && !memcmp(p, "42[\"", 4) && !memmem(p, n, "presence", 8))
        fprintf(stderr, "fanout: unexpected %.*s\n", (int)(n > 200 ? 200 : n),
                p);
}

/* Parse what is buffered: the HTTP upgrade answer, then frames. */
static void on_readable(client *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0) {
            fprintf(stderr, "fanout: connection %d closed by the server\n",
                    (int)(c - g_c));
            exit(1);
        }
        c->rlen += (size_t)r;
        /* a short read drained the socket: epoll says when more comes,
         * so no second read just to be told EAGAIN */
        if (c->rlen == RBUF || (size_t)r < RBUF - (c->rlen - (size_t)r))
            break;
    }
    size_t off = 0;
    if (c->state == 0) {
        char *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!e)
            return;
        if (strncmp(c->rbuf, "HTTP/1.1 101", 12)) {
            fprintf(stderr, "fanout: upgrade refused: %.60s\n", c->rbuf);
            exit(1);
        }
        off = (size_t)(e + 4 - c->rbuf);
        c->state = 1;
    }
    for (;;) {
        unsigned char *f = (unsigned char *)c->rbuf + off;
        size_t avail = c->rlen - off, hl = 2, len;
        if (avail < 2)
            break;
        len = f[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (size_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f[2 + i];
            hl = 10;
        }
        if (avail < hl + len)
            break;
        if ((f[0] & 0x0f) == 1)
            on_text(c, (char *)f + hl, len);
        else if ((f[0] & 0x0f) == 8) {
            fprintf(stderr, "fanout: close frame from the server\n");
            exit(1);
        }
        off += hl + len;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
}

static void pump(int timeout_ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(g_ep, ev, 256, timeout_ms), i;

    for (i = 0; i < n; i++)
        on_readable(&g_c[ev[i].data.u32]);
}

static void connect_all(int port, char (*ids)[CHAT_ID_LEN + 1], int n)
{
    const char *secret = getenv("JWT_SECRET");
    const char *nets_env = getenv("SOURCE_NETS");
    int nets = nets_env ? atoi(nets_env) : 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    char req[512];
    int64_t t0 = (int64_t)time(NULL);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_c = calloc((size_t)n, sizeof *g_c);
    g_n = n;
    g_ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        client *c = &g_c[i];
        chat_jwt_claims cl;
        int one = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

        memset(&cl, 0, sizeof cl);
        memcpy(cl.sub, ids[i], sizeof cl.sub);
        if (chat_uuid_v7(cl.jti) != CHAT_OK)
            die("uuid");
        cl.iat = t0;
        cl.exp = t0 + 3600;
        if (secret == NULL ||
            chat_jwt_sign((const uint8_t *)secret, strlen(secret), &cl,
                          c->token, sizeof c->token) != CHAT_OK) {
            /* a server that takes any token (Node.js baseline) */
            snprintf(c->token, sizeof c->token, "%s", ids[i]);
        }
        c->rbuf = malloc(RBUF);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0)
            die("socket");
        if (nets > 1) {
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr =
                htonl(0x7f000001u | (uint32_t)(1 + i % nets % 254) << 8);
            if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0)
                die("bind to a source address");
        }
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("connect");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        int k =
            snprintf(req, sizeof req,
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     port);
        send_all(c->fd, req, (size_t)k);
        epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev);
        if (i % 64 == 63)
            pump(0);
    }
    int64_t deadline = now_us() + 60 * 1000000LL;
    while (g_ready < n && now_us() < deadline)
        pump(100);
    if (g_ready < n) {
        fprintf(stderr, "fanout: only %d of %d authenticated\n", g_ready, n);
        exit(1);
    }
}

static char (*read_ids(const char *path, int *n))[CHAT_ID_LEN + 1]
{
    FILE *f = fopen(path, "r");
    char(*ids)[CHAT_ID_LEN + 1] = NULL, line[128];
    int cap = 0;

    if (!f)
        die(path);
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 128;
            ids = realloc(ids, (size_t)cap * sizeof *ids);
        }
        line[CHAT_ID_LEN] = 0;
        memcpy(ids[(*n)++], line, CHAT_ID_LEN + 1);
    }
    fclose(f);
    return ids;
}

static void fanout(const char *label, const char *conv, double rate, int secs)
{
    client *sender = &g_c[0];
    char buf[512];
    int64_t start = now_us(), end = start + (int64_t)secs * 1000000, t;

    struct rusage ru0, ru;
    getrusage(RUSAGE_SELF, &ru0);
    g_lat.n = g_ack_lat.n = 0;
    g_sent = g_delivered = g_acked = 0;
    while ((t = now_us()) < end) {
        /* max: WINDOW messages not yet acked or not yet delivered to
         * every socket, so the generator's own reading paces the sender */
        long done = g_acked < g_delivered / g_n ? g_acked : g_delivered / g_n;
        long due = rate > 0 ? (long)((double)(t - start) / 1e6 * rate) + 1
                            : done + WINDOW;
        while (g_sent < due) {
            g_sent_us = room_for_one(g_sent_us, (size_t)g_sent, &g_sent_cap,
                                     sizeof *g_sent_us);
            g_sent_us[g_sent] = now_us();
            int k =
                snprintf(buf, sizeof buf,
                         "42%ld[\"message:send\",{\"conversation_id\":\"%s\","
                         "\"content\":\"t=%lld\"}]",
                         g_sent, conv, (long long)g_sent_us[g_sent]);
            ws_text(sender, buf, (size_t)k);
            g_sent++;
        }
        pump(rate > 0 ? 1 : 5);
    }
    /* let what is in flight land (not counted in the rate) */
    double elapsed = (double)(now_us() - start) / 1e6;
    long delivered = g_delivered;
    int64_t drain = now_us() + 2000000;
    while (g_delivered < g_sent * g_n && now_us() < drain)
        pump(10);
    qsort(g_lat.v, g_lat.n, sizeof *g_lat.v, cmp_u32);
    qsort(g_ack_lat.v, g_ack_lat.n, sizeof *g_ack_lat.v, cmp_u32);
    getrusage(RUSAGE_SELF, &ru);
    printf("%-10s sent %7ld (%6.0f/s)  deliveries %8ld (%7.0f/s)  "
           "latency p50 %6.2f ms  p99 %6.2f ms  ack p50 %6.2f ms  p99 %6.2f "
           "ms  (%ld of %ld delivered; load generator CPU %.2f s)\n",
           label, g_sent, (double)g_sent / elapsed, delivered,
           (double)delivered / elapsed, lat_ms(&g_lat, 50), lat_ms(&g_lat, 99),
           lat_ms(&g_ack_lat, 50), lat_ms(&g_ack_lat, 99), g_delivered,
           g_sent * g_n,
           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec -
                    ru0.ru_utime.tv_sec - ru0.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec -
                        ru0.ru_utime.tv_usec - ru0.ru_stime.tv_usec) /
                   1e6);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "fanout")) {
        int n;
        char(*ids)[CHAT_ID_LEN + 1] = read_ids(argv[3], &n);
        connect_all(atoi(argv[2]), ids, n);
        const char *secs = getenv("SECONDS_PER_PHASE");
        const char *warm = getenv("WARMUP_SECONDS");
        double rate = atof(argv[5]) > 0 ? atof(argv[5]) : 0;
        /* a fresh server first grows its WAL, loads the members and opens
         * its TCP windows: warm up at the same rate, reported apart */
        if (rate > 0 && (warm ? atoi(warm) : 2) > 0)
            fanout("warmup", argv[4], rate, warm ? atoi(warm) : 2);
        fanout(rate > 0 ? "fixed" : "max", argv[4], rate,
               atoi(secs ? secs : "5"));
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "idle")) {
        int n = atoi(argv[3]);
        char(*ids)[CHAT_ID_LEN + 1] = calloc((size_t)n, sizeof *ids);
        const char *uid = getenv("USER_ID");
        for (int i = 0; i < n; i++)
            snprintf(ids[i], sizeof ids[i], "%s", uid ? uid : "x");
        connect_all(atoi(argv[2]), ids, n);
        printf("ready %d\n", n);
        fflush(stdout);
        /* answer pings until told to stop */
        for (;;) {
            char c;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            static int added;
            if (!added) {
                epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &ev);
                added = 1;
            }
            struct epoll_event out[256];
            int k = epoll_wait(g_ep, out, 256, 1000);
            for (int i = 0; i < k; i++) {
                if (out[i].data.u32 == UINT32_MAX) {
                    if (read(0, &c, 1) <= 0)
                        return 0;
                } else {
                    on_readable(&g_c[out[i].data.u32]);
                }
            }
        }
    }
    fprintf(stderr, "usage: fanout fanout PORT IDS_FILE CONV_ID RATE\n"
                    "       fanout idle PORT N\n");
    return 2;
}
