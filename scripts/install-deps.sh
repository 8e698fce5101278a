#!/usr/bin/env bash
# Install the Debian packages libchat needs to build and test, skipping the
# ones already present. Runs `apt-get update` once, only when something is
# missing; uses sudo when not root.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clang-14 libclang-rt-14-dev clang-format-14
    libwebsockets-dev libcurl4-openssl-dev libcjson-dev libsodium-dev
    libsqlite3-dev libpq-dev check curl wrk python3-socketio python3-websocket
    python3-requests doxygen
    postgresql libhiredis-dev redis-server nginx librdkafka-dev python3-yaml
)
# Node.js runs the socket.io-client tests; any nodejs will do (the
# machine's own, or Debian's with npm).
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
