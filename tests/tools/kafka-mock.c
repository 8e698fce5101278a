/* kafka-mock: a Kafka cluster for tests, librdkafka's mock cluster (it
 * speaks the real protocol over TCP; topics are created on first use).
 * Prints its bootstrap address on the first line of stdout, then serves
 * until stdin reaches end of file or SIGTERM/SIGINT arrives.
 *
 *   kafka-mock [BROKERS] [--no-stdin]   BROKERS: how many (default 1);
 *       --no-stdin: serve until a signal only (scripts/stack) */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int brokers = argc > 1 ? atoi(argv[1]) : 1;
    int use_stdin = !(argc > 2 && !strcmp(argv[2], "--no-stdin"));
    struct pollfd in = {0, POLLIN, 0};

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL) {
        fprintf(stderr, "kafka-mock: %s\n", err);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers > 0 ? brokers : 1);
    if (mc == NULL) {
        fprintf(stderr, "kafka-mock: cannot create the mock cluster\n");
        return 1;
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    while (!g_stop) {
        char buf[64];
        if (!use_stdin) {
            usleep(200000);
            continue;
        }
        if (poll(&in, 1, 200) > 0 && read(0, buf, sizeof buf) <= 0)
            break;
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
