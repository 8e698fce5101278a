#!/bin/sh
# Client SDK benchmarks (not part of pass/fail): cold start and FTS over a
# 1,000,000-message cache, then outbox and catch-up throughput against a
# real chatd on loopback.
# usage: tests/bench/bench_client.sh [BUILD_DIR] [MESSAGES]
set -eu
build=${1:-build}
msgs=${2:-20000}
bench=$build/tests/bench/client_bench
chatd=$build/daemons/chatd/chatd
[ -x "$bench" ] || { echo "build first: $bench is missing"; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# The cache is built once and kept (it takes a minute): CLIENT_BENCH_CACHE.
cache=${CLIENT_BENCH_CACHE:-/tmp/libchat-bench-cache-1m.db}
"$bench" cache "$cache"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
JWT_SECRET=bench-secret-bench-secret-bench-secret-0000 \
CHAT_RATE_SEND=off CHAT_RATE_TOKEN=off CHAT_RATE_LOGIN_IP=off \
CHAT_RATE_LOGIN_ACCOUNT=off CHAT_LOG_LEVEL=warn \
    "$chatd" --listen 127.0.0.1:"$port" --data-dir "$tmp/data" \
    2>"$tmp/chatd.log" &
pid=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done
"$bench" sync "http://127.0.0.1:$port" "$msgs" 10
