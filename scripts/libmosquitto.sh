#!/usr/bin/env bash
# A second libmosquitto for the test suite (and for anyone who wants the package on another
# version): Debian 13's source package of mosquitto 2.0.21, fetched with apt's own client through
# a sources list and state directory inside .build-libmosquitto/ (the machine's apt configuration
# is never touched), built into .build-libmosquitto/2.0.21/prefix, and kept there between runs.
#
#   bash scripts/libmosquitto.sh            builds it (if not built yet) and prints the prefix
#   source scripts/libmosquitto.sh --env    ... and exports PKG_CONFIG_PATH and LD_LIBRARY_PATH
#
# LIBMOSQUITTO_PREFIX=<prefix> selects a libmosquitto of your own instead (one installed with
# `make install prefix=<prefix>`, with <prefix>/lib/libmosquitto.so.1 and <prefix>/include): nothing
# is built, a pkg-config file is written for it if it has none, and `bash scripts/test.sh` then runs
# its second pass against that library.
#
# The package finds libmosquitto through pkg-config (`libmosquitto`), so pointing it at any other
# build is: PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for `swift build`, and
# LD_LIBRARY_PATH=<prefix>/lib when running (the soname is the same, libmosquitto.so.1, so
# without it the system's copy would be loaded). Use a build path of its own
# (`swift build --build-path .build-2.0.21`): SwiftPM does not notice a changed pkg-config result.
set -euo pipefail

version=2.0.21
suite=trixie
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$root/.build-libmosquitto"
prefix="${LIBMOSQUITTO_PREFIX:-$work/$version/prefix}"

# A pkg-config file for the library in $prefix, saying $1 is its version.
write_pkg_config() {
    mkdir -p "$prefix/lib/pkgconfig"
    cat > "$prefix/lib/pkgconfig/libmosquitto.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: mosquitto
Description: mosquitto MQTT library (C bindings), selected by scripts/libmosquitto.sh
Version: $1
Libs: -L\${libdir} -lmosquitto
Cflags: -I\${includedir}
PC
}

# The version a built library reports, from its header.
header_version() {
    awk '/#define LIBMOSQUITTO_(MAJOR|MINOR|REVISION)/{v[$2]=$3} END{print v["LIBMOSQUITTO_MAJOR"]"."v["LIBMOSQUITTO_MINOR"]"."v["LIBMOSQUITTO_REVISION"]}' "$prefix/include/mosquitto.h"
}

build_libmosquitto() {
    if [ -n "${LIBMOSQUITTO_PREFIX:-}" ]; then
        [ -f "$prefix/lib/libmosquitto.so.1" ] && [ -f "$prefix/include/mosquitto.h" ] ||
            { echo "libmosquitto: LIBMOSQUITTO_PREFIX=$prefix has no lib/libmosquitto.so.1 and include/mosquitto.h" >&2; return 1; }
        [ -f "$prefix/lib/pkgconfig/libmosquitto.pc" ] || write_pkg_config "$(header_version)"
        version=$(header_version)
        return 0
    fi
    if [ -f "$prefix/lib/libmosquitto.so.1" ] && [ -f "$prefix/lib/pkgconfig/libmosquitto.pc" ]; then
        return 0
    fi
    # What building it needs: a C compiler, make, OpenSSL's headers (TLS), and apt's source client.
    local packages=(make gcc libc6-dev libssl-dev xz-utils dpkg-dev) missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "libmosquitto: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    local apt_dir="$work/apt"
    mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
    : > "$apt_dir/sources.list"
    # The archive the machine's own apt uses, for the newer suite's source index.
    local uri
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" "$suite" > "$apt_dir/sources.list.d/$suite-src.sources"
    local apt=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/state/lists" -o "Dir::Cache=$apt_dir/cache")
    local tarball="$apt_dir/mosquitto_$version.orig.tar.gz"
    if [ ! -f "$tarball" ]; then
        echo "libmosquitto: fetching Debian's mosquitto $version source ($suite)" >&2
        apt-get "${apt[@]}" update -qq >/dev/null
        (cd "$apt_dir" && apt-get "${apt[@]}" source --download-only "mosquitto=$version*" >/dev/null 2>&1) ||
            (cd "$apt_dir" && apt-get "${apt[@]}" source --download-only mosquitto >/dev/null 2>&1)
        [ -f "$tarball" ] || { echo "libmosquitto: $suite no longer has mosquitto $version" >&2; return 1; }
    fi
    local source="$work/$version/mosquitto-$version"
    rm -rf "$source"
    mkdir -p "$work/$version"
    tar -xzf "$tarball" -C "$work/$version"
    echo "libmosquitto: building $version" >&2
    make -s -C "$source/lib" WITH_DOCS=no WITH_CJSON=no -j2 >/dev/null
    rm -rf "$prefix"
    mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
    cp "$source/lib/libmosquitto.so.1" "$prefix/lib/"
    ln -s libmosquitto.so.1 "$prefix/lib/libmosquitto.so"
    cp "$source/include/mosquitto.h" "$source/include/mqtt_protocol.h" "$prefix/include/"
    write_pkg_config "$version"
}

build_libmosquitto
if [ "${1:-}" = "--env" ]; then
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export MQTT_TEST_LIBMOSQUITTO_VERSION="$version"
else
    echo "$prefix"
fi
