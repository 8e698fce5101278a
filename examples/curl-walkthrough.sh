#!/usr/bin/env bash
# The README's walk-through as a script: two users, a DM, a few messages,
# history, an idempotent retry and the conversation list, against a
# running chatd (default http://localhost:8080, e.g. from `make run`).
# Needs curl and python3 (for JSON). Usage: examples/curl-walkthrough.sh [URL]
set -euo pipefail
API=${1:-http://localhost:8080}
suffix=$RANDOM$RANDOM
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
post() { curl -sf -XPOST "$API$1" -H 'Content-Type: application/json' "${@:3}" -d "$2"; }

for who in alice bob; do
    post /api/users/auth/register \
        "{\"email\":\"$who$suffix@example.com\",\"password\":\"password-$who\",\"username\":\"$who$suffix\"}" >/dev/null
done
login() {
    post /api/users/auth/login "{\"email\":\"$1$suffix@example.com\",\"password\":\"password-$1\"}"
}
A=$(login alice | json 'd["access_token"]')
B=$(login bob | json 'd["access_token"]')
BOB=$(curl -sf -H "Authorization: Bearer $A" "$API/api/users/users?query=bob$suffix" | json 'd["users"][0]["id"]')
echo "alice found bob: $BOB"

C=$(post /api/chats/conversations/dm "{\"user_id\":\"$BOB\"}" -H "Authorization: Bearer $A" | json 'd["id"]')
echo "DM: $C"
for i in 1 2 3; do
    post /api/messages/conversations/$C/messages "{\"content\":\"hello bob #$i\"}" \
        -H "Authorization: Bearer $A" | json '"sent seq %d: %s" % (d["seq"], d["preview"])'
done
# a retry with the same client_msg_id returns the original (HTTP 200, same seq)
for i in 1 2; do
    post /api/messages/conversations/$C/messages \
        '{"content":"exactly once","client_msg_id":"0193a3e0-0000-7000-8000-0000000000aa"}' \
        -H "Authorization: Bearer $B" | json '"bob sent seq %d (%s)" % (d["seq"], d["message_id"])'
done
echo "history as bob:"
curl -sf -H "Authorization: Bearer $B" "$API/api/messages/conversations/$C/messages?after_seq=0&limit=200" |
    json '"\n".join("  %d %s" % (m["seq"], m["preview"]) for m in d["messages"])'
curl -sf -XPUT -H "Authorization: Bearer $B" -H 'Content-Type: application/json' \
    "$API/api/chats/conversations/$C/read" -d '{"seq":2}' >/dev/null
curl -sf -H "Authorization: Bearer $B" "$API/api/chats/conversations" |
    json '"bob has %d conversation(s); unread in the DM: %d" % (len(d["conversations"]), d["conversations"][0]["unread_count"])'
