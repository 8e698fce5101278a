#!/usr/bin/env bash
# with-kafka.sh KAFKA_MOCK CMD...: start librdkafka's mock cluster
# (tests/tools/kafka-mock, the real Kafka protocol on a loopback port),
# run CMD with KAFKA_BROKERS in its environment, stop the cluster, exit as
# CMD did.
set -euo pipefail
mock=$1
shift
dir=$(mktemp -d /tmp/chat-kafka-XXXXXX)
mkfifo "$dir/in"
"$mock" <"$dir/in" >"$dir/out" 2>"$dir/err" &
pid=$!
exec 9>"$dir/in" # the cluster lives while this is open
stop() { exec 9>&-; kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT
for _ in $(seq 100); do [ -s "$dir/out" ] && break; sleep 0.05; done
KAFKA_BROKERS=$(head -1 "$dir/out")
[ -n "$KAFKA_BROKERS" ] || { cat "$dir/err" >&2; exit 1; }
export KAFKA_BROKERS
rc=0
"$@" || rc=$?
exit $rc
