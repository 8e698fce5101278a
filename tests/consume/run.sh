#!/bin/sh
# Install libchat into a temporary prefix, then build a tiny program
# against it twice: with pkg-config and with find_package(chat).
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
echo "consumed through pkg-config and find_package"
