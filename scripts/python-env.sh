#!/usr/bin/env bash
# Creates the Python virtualenv the interoperability tests use (.build-python/venv in the package
# root) with the packages pinned in scripts/interop/requirements.txt: amqtt (a second MQTT broker)
# and paho-mqtt (the Eclipse Python client). Idempotent and fast when the venv is up to date.
# Prints the venv's python path on stdout (and nothing else there); progress goes to stderr.
# Installs Debian's python3 / python3-venv with apt-get when they are missing, as setup.sh does.
# The tests run this script themselves when `swift test` is run directly.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
requirements="$root/scripts/interop/requirements.txt"
base="$root/.build-python"
venv="$base/venv"
python="$venv/bin/python"
# Written last: the requirements the venv was built from and its interpreter's version. A venv
# without it (an interrupted build), or whose pins or interpreter changed since, is rebuilt.
marker="$venv/.interop-requirements"

expected_marker() {
    cat "$requirements"
    echo "# $("$python" --version 2>&1)"
}

up_to_date() {
    [ -x "$python" ] && [ -f "$marker" ] && cmp -s "$marker" <(expected_marker)
}

if up_to_date; then
    echo "$python"
    exit 0
fi

mkdir -p "$base"
# One builder at a time (scripts/test.sh and a `swift test` started meanwhile, say).
exec 9>"$base/.lock"
flock -w 600 9 || { echo "python-env: timed out waiting for $base/.lock" >&2; exit 1; }
if up_to_date; then
    echo "$python"
    exit 0
fi

install_debian_packages() {
    echo "python-env: installing $*" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Debian's interpreter first (the one python3-venv belongs to), then whatever python3 is on PATH.
interpreter=""
for candidate in /usr/bin/python3 "$(command -v python3 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then interpreter="$candidate"; break; fi
done
if [ -z "$interpreter" ]; then
    install_debian_packages python3 python3-venv
    interpreter=/usr/bin/python3
fi

rm -rf "$venv"
if ! "$interpreter" -m venv "$venv" >&2; then
    rm -rf "$venv"
    install_debian_packages python3-venv
    "$interpreter" -m venv "$venv" >&2
fi
echo "python-env: installing $(grep -cv '^#' "$requirements") pinned packages into $venv" >&2
"$python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
"$python" -c 'import amqtt, paho.mqtt' >&2
expected_marker > "$marker"
echo "$python"
