#!/bin/sh
# Installs the build tree BUILD into PREFIX, then builds consumer.cpp against
# it twice, as an outside program would: with find_package(nsfd) and with pkg-config.
set -eu
build=$1 prefix=$2 here=$(cd "$(dirname "$0")" && pwd)
cmake --install "$build" --prefix "$prefix" >/dev/null
mkdir -p "$prefix/consumer"
cp "$here/consumer.cpp" "$prefix/consumer/"
cp "$here/CMakeLists.txt.in" "$prefix/consumer/CMakeLists.txt"
cmake -S "$prefix/consumer" -B "$prefix/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer/build" >/dev/null
PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig" \
    sh -c 'g++ -o "$1/consumer-pkgconfig" "$1/consumer/consumer.cpp" $(pkg-config --cflags --libs nsfd-client)' sh "$prefix"
# libnsfd alone: the library demo, built with pkg-config nsfd.
PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig" \
    sh -c 'g++ -o "$1/library-demo" "$2" $(pkg-config --cflags --libs nsfd)' sh "$prefix" \
    "$here/../../examples/library-demo.cpp"
