#!/usr/bin/env bash
# with-redis.sh CMD...: start a private redis-server (no persistence) on a
# free loopback port, run CMD with REDIS_URL in its environment, stop it,
# exit as CMD did. CMD may restart the server with "$REDIS_CTL_CMD
# stop|start" (fault tests).
set -euo pipefail
if [ "${1:-}" = --ctl ]; then # --ctl DIR PORT stop|start
    dir=$2 port=$3
    if [ "$4" = stop ]; then
        pid=$(cat "$dir/pid" 2>/dev/null) || exit 0
        kill "$pid" 2>/dev/null || exit 0
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.05; done
        exit 1
    fi
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --pidfile "$dir/pid" --daemonize yes --logfile "$dir/log" >/dev/null
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && exit 0; sleep 0.05; done
    exit 1
fi
command -v redis-server >/dev/null || { echo "with-redis: redis-server is not installed" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d /tmp/chat-redis-XXXXXX)
stop() { "$0" --ctl "$dir" "$port" stop || true; rm -rf "$dir"; }
trap stop EXIT
"$0" --ctl "$dir" "$port" start || { cat "$dir/log" >&2; exit 1; }
export REDIS_URL=redis://127.0.0.1:$port
export REDIS_CTL_CMD="$0 --ctl $dir $port"
rc=0
"$@" || rc=$?
exit $rc
