#!/bin/sh
# Install libchat into a temporary prefix, then build a tiny program
# against it twice: with pkg-config and with find_package(chat); and the
# example clients (examples/) as a user would, with pkg-config alone.
# usage: run.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
export LD_LIBRARY_PATH="$libdir"

# pkg-config
cc -o "$tmp/hello-pc" "$src/hello.c" \
    $(pkg-config --define-variable=prefix="$tmp/prefix" --cflags --libs chat)
"$tmp/hello-pc"

# find_package
mkdir -p "$tmp/proj"
cp "$src/hello.c" "$tmp/proj/"
cp "$src/CMakeLists.txt.in" "$tmp/proj/CMakeLists.txt"
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
"$tmp/proj/build/hello"

# the examples: one file each, nothing but the installed headers and -lchat
for p in chat-cli echo-bot; do
    cc -std=c11 -Wall -Wextra -Werror -o "$tmp/$p" \
        "$src/../../examples/$p/$p.c" \
        $(pkg-config --define-variable=prefix="$tmp/prefix" --cflags --libs chat)
done
# the tutorial of docs/client.md, as printed there
python3 - "$src/../../docs/client.md" > "$tmp/tutorial.c" <<'PY'
import sys
s = open(sys.argv[1]).read()
b = s.index("```c\n", s.index("### 2. The program")) + 5
print(s[b:s.index("```\n", b)], end="")
PY
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/tutorial" "$tmp/tutorial.c" \
    $(pkg-config --define-variable=prefix="$tmp/prefix" --cflags --libs chat)
"$tmp/tutorial" 2>/dev/null && exit 1 # no arguments: usage, status 2
"$tmp/chat-cli" --help | grep -q "^Usage: chat-cli"
"$tmp/chat-cli" --version | grep -q "$(pkg-config --modversion chat)"
echo "consumed through pkg-config and find_package; examples and docs/client.md tutorial built"
