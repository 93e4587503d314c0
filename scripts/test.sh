#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real mosquitto brokers that
# the tests start themselves (MosquittoTesting). A missing broker is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Our code must build without warnings (there are no package dependencies, so the flag applies
# to this package's targets only).
swift test -Xswiftc -warnings-as-errors "$@"
# Reliability: a 60-second soak (mixed QoS 0/1/2 load across graceful broker restarts: no QoS 1/2
# message lost, no QoS 2 message duplicated) and LeakSanitizer over 1,000 client cycles.
bash scripts/soak.sh 60
bash scripts/leak-check.sh 1000
