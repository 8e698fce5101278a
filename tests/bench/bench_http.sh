#!/usr/bin/env bash
# HTTP benchmarks against a real chatd (not part of pass/fail).
#   sends:   POST .../messages, keep-alive, 64 connections, durable
#            (synchronous=FULL and NORMAL), over 64 DM conversations
#   history: GET .../messages?limit=200 (200 previews per page)
# Prints requests/s, latency percentiles, and the CPU seconds used by
# chatd and by wrk, so the load generator's share is visible.
# usage: tests/bench/bench_http.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
secs=${2:-10}
chatd=$build/daemons/chatd/chatd
command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }   # utime+stime, ticks
tck=$(getconf CLK_TCK)

start() {
    JWT_SECRET=bench-secret-bench-secret-bench-secret-0000 \
    CHAT_RATE_SEND=off CHAT_RATE_TOKEN=off CHAT_RATE_LOGIN_IP=off \
    CHAT_RATE_LOGIN_ACCOUNT=off CHAT_LOG_LEVEL=warn \
        "$chatd" --listen 127.0.0.1:$port --data-dir "$tmp/data-$1" --sync "$1" \
        2>"$tmp/chatd-$1.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf $base/healthz >/dev/null && return; sleep 0.1; done
    echo "chatd did not start"; exit 1
}

setup_users() {
    python3 - "$base" > "$tmp/pairs.lua" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json",
                 **({"Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
users = []
for i in range(65):
    call("POST", "/api/users/auth/register",
         {"email": f"b{i}@bench.io", "password": "password1", "username": f"bench{i}"})
    t = call("POST", "/api/users/auth/login", {"email": f"b{i}@bench.io", "password": "password1"})
    users.append((t["access_token"], t["user"]["id"]))
hub = users[0]
print("return {")
for tok, uid in users[1:]:
    conv = call("POST", "/api/chats/conversations/dm", {"user_id": hub[1]}, tok)["id"]
    print(f'  {{"{tok}", "{conv}"}},')
print("}")
PY
}

run_wrk() { # name script conns
    local c0 c1
    c0=$(cpu "$pid")
    BENCH_PAIRS=$tmp/pairs.lua wrk -t1 -c"$3" -d"${secs}s" --latency -s "$here/$2" "$base" \
        > "$tmp/wrk.out" &
    local wpid=$!
    wait "$wpid"
    c1=$(cpu "$pid")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out")
    p50=$(awk '$1=="50%" {print $2}' "$tmp/wrk.out")
    p99=$(awk '$1=="99%" {print $2}' "$tmp/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.out")
    printf "%-22s %10s req/s  p50 %-8s p99 %-8s non-2xx %-6s chatd cpu %.1fs/%ss\n" \
        "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" \
        "$(echo "($c1-$c0)/$tck" | bc -l)" "$secs"
}

for sync in full normal; do
    start "$sync"
    setup_users
    run_wrk "sends c=64 (sync=$sync)" send.lua 64
    run_wrk "sends c=256 (sync=$sync)" send.lua 256
    if [ "$sync" = full ]; then
        run_wrk "history 200/page c=16" history.lua 16
        run_wrk "history 200/page c=1" history.lua 1
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "wrk: 1 thread on the same 2-core machine (its CPU competes with chatd's)"
