#!/usr/bin/env bash
# with-dynalite.sh NODE_MODULES CMD...: start dynalite (DynamoDB's API, in
# memory) on a free loopback port, run CMD with DYNAMODB_ENDPOINT and a
# dummy AWS key pair in its environment, stop dynalite, exit as CMD did.
set -euo pipefail
nm=$1
shift
[ -x "$nm/.bin/dynalite" ] || { echo "with-dynalite: no dynalite in $nm (npm ci)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
node "$nm/.bin/dynalite" --host 127.0.0.1 --port "$port" --createTableMs 20 \
    --deleteTableMs 20 --updateTableMs 20 >"$log" 2>&1 &
pid=$!
stop() { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
export DYNAMODB_ENDPOINT=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_REGION=${AWS_REGION:-us-east-1}
rc=0
"$@" || rc=$?
exit $rc
