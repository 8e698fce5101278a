#!/bin/sh
# The tree follows .clang-format (STYLE.md §22).
# usage: check_format.sh SOURCE_DIR
set -eu
cd "$1"
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
    echo "clang-format-14 is not installed (scripts/install-deps.sh installs it)"
    exit 1
fi
files=$(find include lib daemons tests examples bindings -name '*.[ch]' 2>/dev/null | sort)
"$cf" --dry-run -Werror $files
echo "$(echo "$files" | wc -l) files formatted"
