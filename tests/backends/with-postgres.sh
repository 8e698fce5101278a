#!/usr/bin/env bash
# with-postgres.sh CMD...: start a private PostgreSQL (initdb in a temporary
# directory, a free loopback port, fsync off), run CMD with DATABASE_URL in
# its environment, stop the server, exit as CMD did. CMD may stop and
# start the server itself with "$PG_CTL_CMD stop|start" (fault tests).
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "with-postgres: PostgreSQL is not installed" >&2; exit 1; }
as=()
[ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --) # initdb and postgres refuse root
if [ "${1:-}" = --ctl ]; then # --ctl DIR PORT stop|start: for fault tests
    dir=$2 port=$3
    if [ "$4" = stop ]; then
        exec "${as[@]}" "$bin/pg_ctl" -D "$dir/db" -w -m fast stop >/dev/null
    fi
    exec "${as[@]}" "$bin/pg_ctl" -D "$dir/db" -l "$dir/log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
dir=$(mktemp -d /tmp/chat-pg-XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
"${as[@]}" "$bin/initdb" -D "$dir/db" -A trust -U chat --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
# the port last, right before the server takes it: initdb takes seconds,
# and a port found free before it could be another test's by then
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ctl() {
    "${as[@]}" "$bin/pg_ctl" -D "$dir/db" -l "$dir/log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" "$@" >/dev/null
}
stop() { ctl stop -m immediate 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT
ctl start || { cat "$dir/log" >&2; exit 1; }
export DATABASE_URL=postgresql://chat@127.0.0.1:$port/postgres
export PG_CTL_CMD="$0 --ctl $dir $port"
rc=0
"$@" || rc=$?
exit $rc
