#!/usr/bin/env bash
# The distributed stack through the nginx edge (not part of pass/fail;
# prints figures): scripts/stack up in a temporary directory, one
# 100-member group whose members all connect through the edge, one member
# sending message:send at RATE/s, then as fast as it can; deliveries/s
# and send->deliver p50/p99 (tests/bench/fanout.c).
# usage: tests/bench/bench_stack.sh [BUILD_DIR] [SECONDS] [RATE]
#   STACK_LOG=postgres|dynamodb  where messages live (postgres: dynalite is
#   a single-threaded Node process, far below DynamoDB's own throughput)
#   STACK_KAFKA=1|0  events through Kafka (librdkafka's mock cluster) and
#   the fanout-workers, or straight over Redis
#   SOURCE_NETS=N  members connect from N loopback networks (127.0.k.1,
#   default 100): nginx's ip_hash then spreads them over both gateways
#   as it would users on the internet; SOURCE_NETS=1 puts all on one
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export SECONDS_PER_PHASE=${2:-5}
rate=${3:-1000}
export STACK_LOG=${STACK_LOG:-postgres}
export SOURCE_NETS=${SOURCE_NETS:-100}
# the limits a load test would hit, off; and one socket per member
export CHAT_RATE_LOGIN_IP=off CHAT_RATE_LOGIN_ACCOUNT=off CHAT_RATE_SEND=off \
    CHAT_RATE_TOKEN=off CHAT_RATE_EVENTS=off CHAT_MAX_CONN_USER=-1 CHAT_MAX_CONN_IP=-1
export STACK_DIR=$(mktemp -d /tmp/chat-bench-stack-XXXXXX) BUILD_DIR=$build
export EDGE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
[ -x "$build/tests/bench/fanout" ] || { echo "build first"; exit 1; }
ulimit -n 65536 2>/dev/null || true
trap '"$here/../../scripts/stack" down >/dev/null 2>&1; rm -rf "$STACK_DIR"' EXIT
edge=$("$here/../../scripts/stack" up | tail -1)
set -a; . "$STACK_DIR/env"; set +a
port=${edge##*:}
conv=$(sed -n '/^setup_group()/,/^}/p' "$here/bench_realtime.sh" | sed '1d;$d' |
    sed "s|\"\$1\" \"\$tmp/ids\"|$edge $STACK_DIR/ids|" | bash)
echo "== stack (messages on $STACK_LOG, Kafka ${STACK_KAFKA:-1}), 100 members through nginx, ${SECONDS_PER_PHASE} s per phase =="
for r in "$rate" 0; do
    "$build/tests/bench/fanout" fanout "$port" "$STACK_DIR/ids" "$conv" "$r"
done
