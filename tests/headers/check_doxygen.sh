#!/bin/sh
# The public headers render with Doxygen without a warning: every public
# declaration is documented (docs/Doxyfile; `make docs` builds the HTML).
# usage: check_doxygen.sh SOURCE_DIR
#
# Headers written before this check still have undocumented struct fields
# and macros; they are listed here until done, and their warnings are
# shown but do not fail. Every other header (client.h, errors.h, ...) must
# be clean. Shrink the list; never grow it.
set -eu
src=$1
pending="auth.h bus.h core.h limits.h presence.h server.h store.h version.h"
command -v doxygen >/dev/null 2>&1 || {
    echo "doxygen is not installed (scripts/install-deps.sh installs it)"
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CHAT_SOURCE_DIR=$src CHAT_DOXYGEN_OUT=$tmp \
    doxygen "$src/docs/Doxyfile" 2>"$tmp/warnings"
cp "$tmp/warnings" "$tmp/strict"
for h in $pending; do
    grep -v "include/chat/$h:" "$tmp/strict" >"$tmp/next" || true
    mv "$tmp/next" "$tmp/strict"
done
grep 'warning:' "$tmp/strict" >"$tmp/fail" || true
if [ -s "$tmp/fail" ]; then
    cat "$tmp/fail"
    echo "FAIL: $(wc -l <"$tmp/fail") Doxygen warnings"
    exit 1
fi
echo "$(grep -c 'warning:' "$tmp/warnings" || true) warnings in headers still to document: $pending"
[ -f "$tmp/html/index.html" ] || { echo "FAIL: no HTML produced"; exit 1; }
echo "API reference rendered; client.h and the other finished headers are clean"
