#!/bin/sh
# The example programs against a real chatd: chat-cli registers two users,
# opens a DM, sends, lists, reads history and searches; echo-bot answers.
# usage: examples_test.sh BUILD_DIR
set -eu
build=$(cd "$1" && pwd)
chatd=$build/daemons/chatd/chatd
cli=$build/examples/chat-cli
bot=$build/examples/echo-bot
tmp=$(mktemp -d /tmp/chat-examples-XXXXXX)
chatd_pid= bot_pid= watch_pid=

cleanup() {
    [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null && wait "$watch_pid" || true
    [ -n "$bot_pid" ] && kill "$bot_pid" 2>/dev/null && wait "$bot_pid" || true
    [ -n "$chatd_pid" ] && kill "$chatd_pid" 2>/dev/null && wait "$chatd_pid" || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.log "$tmp"/out; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

# wait_for FILE PATTERN SECONDS: until a line of FILE matches
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}

# as USER ARGS...: run chat-cli as USER (own cache), output in $tmp/out
as() {
    who=$1
    shift
    CHAT_PASSWORD="password-$who" "$cli" --server "$url" \
        --cache "$tmp/$who.db" "$@" >"$tmp/out" 2>&1 ||
        fail "chat-cli as $who: $* (exit $?)"
}

expect() {
    grep -q -- "$1" "$tmp/out" || fail "expected '$1' in the output"
}

"$cli" --help | grep -q "Usage: chat-cli" || fail "--help"
"$cli" --version | grep -q "libchat" || fail "--version"
rc=0
"$cli" frobnicate 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "a bad command exits 2, not $rc"

# chatd on a free port (port 0); the listening line says which
JWT_SECRET=examples-test-secret-0123456789abcdef CHAT_SYNC=normal \
    "$chatd" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    2>"$tmp/chatd.log" &
chatd_pid=$!
wait_for "$tmp/chatd.log" "event=listening" 10 || fail "chatd did not start"
url=$(sed -n 's/.*event=listening url=\([^ ]*\).*/\1/p' "$tmp/chatd.log")

as alice register alice@example.com alice
expect "registered alice"
as bob register bob@example.com bob
as alice login alice
expect "logged in as alice"
as bob login bob

as alice dm bob
conv=$(cat "$tmp/out")
case $conv in
????????-????-????-????-????????????) ;;
*) fail "dm printed '$conv', not an id" ;;
esac
as alice send "$conv" hello bob
expect "sent #1"

# bob: one unread message, in the list, the history and the search
as bob list
grep -Eq '^ +1 +\[alice\] #1 alice [0-9:]{5}: hello bob$' \
    "$tmp/out" || fail "bob's list"
as bob history alice
grep -Eq '^\[alice\] #1 alice [0-9:]{5}: hello bob$' "$tmp/out" ||
    fail "bob's history"
as bob search hello
expect "#1 alice .*: hello bob"

# open: a line from stdin is sent before it exits, /read clears unread
printf 'hi from open\n/read\n' |
    CHAT_PASSWORD=password-bob "$cli" --server "$url" \
        --cache "$tmp/bob.db" open alice >"$tmp/out" 2>&1 ||
    fail "open"
expect "hi from open"
as bob list
grep -Eq '^ +0 .*hi from open$' "$tmp/out" || fail "bob's list after /read"

# the echo bot answers as bob; alice sees the answer within 10 s
start_bot() {
    CHAT_SERVER=$url CHAT_LOGIN=bob CHAT_PASSWORD=password-bob \
        CHAT_CACHE="$tmp/bot.db" "$bot" >>"$tmp/bot.log" 2>&1 &
    bot_pid=$!
    wait_for "$tmp/bot.log" "logged in as bob" 10 || fail "echo-bot did not start"
}
stop_bot() {
    kill "$bot_pid"
    wait "$bot_pid" || fail "echo-bot exit status $?"
    bot_pid=
}
# until_history USER CONV PATTERN: within 10 s
until_history() {
    end=$(($(date +%s) + 10))
    until as "$1" history "$2" && grep -q -- "$3" "$tmp/out"; do
        [ "$(date +%s)" -lt $end ] || fail "no '$3' within 10 s"
        sleep 0.5
    done
}
start_bot
as alice send "$conv" ping
until_history alice "$conv" "bob .*: echo: ping$"
grep -q "echo: hi from open" "$tmp/out" && fail "the bot echoed bob"

# a restarted bot answers what came while it was down, and nothing twice
stop_bot
: >"$tmp/bot.log"
as alice send "$conv" while the bot is down
start_bot
until_history alice "$conv" "echo: while the bot is down$"
as alice send "$conv" last
until_history alice "$conv" "echo: last$"
[ "$(grep -c "echo: ping$" "$tmp/out")" -eq 1 ] || fail "ping answered twice"
stop_bot

# scrolling back: what came before #2, nothing from #2 on
as alice history "$conv" --before 2 --limit 5
grep -Eq '#1 alice [0-9:]{5}: hello bob$' "$tmp/out" || fail "history --before"
grep -q "#2 " "$tmp/out" && fail "history --before 2 showed #2"

# watch: bob sees alice's next message live, and Ctrl-C ends it with 0
CHAT_PASSWORD=password-bob "$cli" --server "$url" --cache "$tmp/bob.db" \
    watch >"$tmp/watch.log" 2>&1 &
watch_pid=$!
wait_for "$tmp/watch.log" "watching" 10 || fail "watch did not start"
sleep 1 # its catch-up and the live connection
as alice send "$conv" seen live
wait_for "$tmp/watch.log" "seen live" 10 || fail "watch did not print it"
kill -INT "$watch_pid"
wait "$watch_pid" || fail "watch exit status $?"
watch_pid=
echo "examples: ok"
