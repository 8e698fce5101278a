#!/bin/sh
# Run the official Engine.IO v4 and Socket.IO v5 protocol test suites of
# socketio/socket.io against sio-conformance-server.
#
#   tests/conformance/run-official-suites.sh SOCKET_IO_CHECKOUT [BUILD_DIR]
#
# SOCKET_IO_CHECKOUT is a clone of https://github.com/socketio/socket.io
# (the suites live in docs/engine.io-protocol/v4-test-suite and
# docs/socket.io-protocol/v5-test-suite); BUILD_DIR defaults to build.
# Needs node and npm; port 3000 must be free. The suites are not copied
# into this project, so `make test` cannot run them offline; the project's
# own tests (tests/realtime) cover the same behaviour.
set -eu
repo=${1:?usage: $0 SOCKET_IO_CHECKOUT [BUILD_DIR]}
build=${2:-build}
server=$build/tests/conformance/sio-conformance-server
[ -x "$server" ] || { echo "$server not built" >&2; exit 2; }
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT INT TERM

run() { # mode suite-dir
    "$server" $1 & pid=$!
    sleep 0.5
    (cd "$repo/$2" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } &&
        npx mocha test-suite.js) || status=1
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
status=0
run --engine docs/engine.io-protocol/v4-test-suite
run "" docs/socket.io-protocol/v5-test-suite
exit $status
