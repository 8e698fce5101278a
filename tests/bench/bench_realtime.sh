#!/usr/bin/env bash
# Realtime benchmarks (not part of pass/fail); prints figures.
#  fanout: one 100-member group, every member on a websocket; one member
#          sends message:send at a fixed rate (after a 2 s warm-up at that
#          rate, printed apart), then as fast as it can (256 in
#          flight); deliveries/s, send->receive latency and
#          send->ack latency (the ack leaves once the message is stored), for
#          chatd (durable: every message committed before it is fanned
#          out) and for a minimal Node.js socket.io 4.x room broadcast
#          (nothing stored), and the ratio.
#  memory: chatd's RSS per idle authenticated websocket, N connections.
# usage: tests/bench/bench_realtime.sh [BUILD_DIR] [SECONDS] [RATE] [N_IDLE]
# PIN=1 runs the servers on CPU 0 and the load generator on CPU 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
secs=${2:-5}
rate=${3:-2000}
nidle=${4:-10000}
chatd=$build/daemons/chatd/chatd
gen=$build/tests/bench/fanout
nm=$build/tests/realtime/node_modules
[ -x "$gen" ] || { echo "build first: $gen is missing"; exit 1; }
if [ ! -d "$nm/socket.io" ]; then
    (cd "$build/tests/realtime" && npm ci --no-audit --no-fund --loglevel=error)
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null
    grep -E 'level=(warn|error)' "$tmp/chatd.log" 2>/dev/null | tail -5 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
export SECONDS_PER_PHASE=$secs
srv_cpu=() gen_cpu=()
if [ "${PIN:-0}" = 1 ]; then srv_cpu=(taskset -c 0); gen_cpu=(taskset -c 1); fi
export JWT_SECRET=bench-secret-bench-secret-bench-secret-0000

start_chatd() { # port sync [name]
    CHAT_LOG_LEVEL=warn "${srv_cpu[@]}" "$chatd" --listen 127.0.0.1:$1 --data-dir "$tmp/data-$2${3:-}" \
        --sync "$2" --rate-send off --rate-token off --rate-login-ip off \
        --rate-login-account off --rate-events off --max-conn-user 1000000 \
        --max-conn-ip 1000000 2>>"$tmp/chatd.log" &
    pids+=($!)
    cpid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$1/healthz >/dev/null && return; sleep 0.1; done
    echo "chatd did not start"; cat "$tmp/chatd.log"; exit 1
}

setup_group() { # base -> ids file, prints conversation id
    python3 - "$1" "$tmp/ids" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, out = sys.argv[1], sys.argv[2]
def api(m, p, b=None, t=None):
    r = urllib.request.Request(base + p, method=m, data=json.dumps(b).encode())
    r.add_header("Content-Type", "application/json")
    if t: r.add_header("Authorization", "Bearer " + t)
    return json.loads(urllib.request.urlopen(r).read())
def reg(i):
    n = "fan%03d" % i
    return api("POST", "/api/users/auth/register",
               {"email": n + "@bench.test", "username": n, "password": "password123"})["id"]
with ThreadPoolExecutor(8) as ex:
    ids = list(ex.map(reg, range(100)))
tok = api("POST", "/api/users/auth/login", {"login": "fan000", "password": "password123"})["access_token"]
conv = api("POST", "/api/chats/conversations/group", {"title": "fanout", "member_ids": ids[1:]}, tok)["id"]
open(out, "w").write("\n".join(ids) + "\n")
print(conv)
PY
}

run_phases() { # label port conv pid
    local label=$1 port=$2 conv=$3 pid=$4 c0 c1
    for r in "$rate" 0; do
        c0=$(cpu "$pid")
        "${gen_cpu[@]}" "$gen" fanout "$port" "$tmp/ids" "$conv" "$r" |
            sed "s/^/$(printf '%-16s ' "$label")/" | tee -a "$tmp/$label.out"
        c1=$(cpu "$pid")
        printf '%-16s server CPU %s s\n' "" "$(div "$((c1 - c0))" "$tck")"
    done
}

echo "== fanout: 100 members, ${secs} s per phase, fixed rate ${rate}/s then max =="
port=$(freeport)
start_chatd "$port" full
conv=$(setup_group "http://127.0.0.1:$port")
run_phases "chatd sync=full" "$port" "$conv" "$cpid"
kill "$cpid"; wait "$cpid" 2>/dev/null || true

port=$(freeport)
start_chatd "$port" normal
conv=$(setup_group "http://127.0.0.1:$port")
run_phases "chatd sync=normal" "$port" "$conv" "$cpid"
kill "$cpid"; wait "$cpid" 2>/dev/null || true

port=$(freeport)
NODE_MODULES_DIR=$nm "${srv_cpu[@]}" node "$here/node-fanout-server.mjs" "$port" > "$tmp/node.log" 2>&1 &
npid=$!; pids+=($npid)
for _ in $(seq 100); do grep -q listening "$tmp/node.log" 2>/dev/null && break; sleep 0.1; done
( unset JWT_SECRET; run_phases "node socket.io" "$port" "$conv" "$npid" )
kill "$npid"; wait "$npid" 2>/dev/null || true

max_of() { grep -E ' max +sent' "$tmp/$1.out" | sed -E 's/.*deliveries +[0-9]+ +\( *([0-9]+)\/s\).*/\1/' | tail -1; }
c=$(max_of "chatd sync=full"); n=$(max_of "chatd sync=normal"); j=$(max_of "node socket.io")
printf '\nmax deliveries/s: chatd full %s, chatd normal %s, node %s; ratio full/node %s, normal/node %s\n' \
    "$c" "$n" "$j" "$(div "$c" "$j")" "$(div "$n" "$j")"

echo
echo "== memory: $nidle idle authenticated websockets =="
port=$(freeport)
start_chatd "$port" normal -idle
setup_group "http://127.0.0.1:$port" >/dev/null
uid=$(head -1 "$tmp/ids")
before=$(rss_kib "$cpid")
mkfifo "$tmp/hold"
USER_ID=$uid "$gen" idle "$port" "$nidle" < "$tmp/hold" > "$tmp/idle.out" &
gpid=$!; pids+=($gpid)
exec 9>"$tmp/hold"
for _ in $(seq 600); do grep -q ready "$tmp/idle.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$tmp/idle.out" || { echo "idle connections failed"; exit 1; }
sleep 1
after=$(rss_kib "$cpid")
printf 'chatd RSS %d KiB before, %d KiB with %d sockets: %s KiB per connection\n' \
    "$before" "$after" "$nidle" "$(div "$((after - before))" "$nidle")"
exec 9>&-
wait "$gpid" 2>/dev/null || true
