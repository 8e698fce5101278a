#!/bin/sh
# The public headers render with Doxygen without a warning: every public
# declaration is documented (docs/Doxyfile; `make docs` builds the HTML).
# usage: check_doxygen.sh SOURCE_DIR
set -eu
src=$1
command -v doxygen >/dev/null 2>&1 || {
    echo "doxygen is not installed (scripts/install-deps.sh installs it)"
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CHAT_SOURCE_DIR=$src CHAT_DOXYGEN_OUT=$tmp \
    doxygen "$src/docs/Doxyfile" 2>"$tmp/warnings"
if [ -s "$tmp/warnings" ]; then
    cat "$tmp/warnings"
    echo "FAIL: $(grep -c 'warning:' "$tmp/warnings") Doxygen warnings"
    exit 1
fi
[ -f "$tmp/html/index.html" ] || { echo "FAIL: no HTML produced"; exit 1; }
echo "API reference rendered without warnings"
