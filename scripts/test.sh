#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real mosquitto brokers that
# the tests start themselves (MosquittoTesting). A missing broker is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Our code must build without warnings (there are no package dependencies, so the flag applies
# to this package's targets only).
swift test -Xswiftc -warnings-as-errors "$@"
