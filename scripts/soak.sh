#!/usr/bin/env bash
# The soak: a mixed QoS 0/1/2 load against a local persistent mosquitto that is restarted every
# 10 s, for SECONDS seconds (default 60; CI runs 60). Prints sent / received / duplicated / lost
# per QoS and exits non-zero if a QoS 1/2 message was lost or a QoS 2 message duplicated.
#
#   bash scripts/soak.sh                 # 60 s, graceful restarts (SIGTERM): must lose nothing
#   bash scripts/soak.sh 3600            # the long run: an hour
#   bash scripts/soak.sh 600 --kill      # SIGKILL instead: mosquitto may lose what it had not saved
#
# Further arguments go to `mqtt-soak soak` (see `mqtt-soak help`). SCRATCH_PATH, when set, is
# the build directory (default: swift build's own).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

seconds="${1:-60}"
if [ $# -gt 0 ]; then shift; fi
build=(swift build -c release ${SCRATCH_PATH:+--scratch-path "$SCRATCH_PATH"})
"${build[@]}" --product mqtt-soak
exec "$("${build[@]}" --show-bin-path)/mqtt-soak" soak --duration "$seconds" "$@"
