#!/bin/sh
# Every public header compiles on its own, as C11 and as C++.
# usage: check_headers.sh CC CXX INCLUDE_DIR
set -eu
cc=$1 cxx=$2 inc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for h in "$inc"/chat/*.h; do
    name=chat/$(basename "$h")
    printf '#include <%s>\n#include <%s>\ntypedef int check_nonempty;\n' "$name" "$name" > "$tmp/t.c"
    "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$inc" -fsyntax-only "$tmp/t.c" \
        || { echo "FAIL (C): $name"; exit 1; }
    if command -v "$cxx" >/dev/null 2>&1; then
        cp "$tmp/t.c" "$tmp/t.cc"
        "$cxx" -std=c++11 -Wall -Wextra -Werror -I"$inc" -fsyntax-only "$tmp/t.cc" \
            || { echo "FAIL (C++): $name"; exit 1; }
    fi
    n=$((n + 1))
done
echo "$n headers are self-contained"
