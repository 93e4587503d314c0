#!/usr/bin/env bash
# Installs what swift-mosquitto needs on Debian/Ubuntu, skipping what is already there:
# libmosquitto (headers + library), the mosquitto broker and clients, OpenSSL (the tool, and the
# headers: CMosquitto builds TLS contexts from in-memory PEM data itself), pkg-config.
# Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail

packages=(libmosquitto-dev libssl-dev mosquitto mosquitto-clients openssl pkg-config)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Swift toolchain: use the one on PATH, else the usual /opt/swift install.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
command -v swift >/dev/null 2>&1 || { echo "setup: Swift 6 is required (https://swift.org/install)" >&2; exit 1; }
