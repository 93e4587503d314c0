#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real mosquitto brokers that the
# tests start themselves (MosquittoTesting), then the reliability runs. A missing broker or tool
# is a failure, never a skip. With arguments, runs only `swift test ARGUMENTS` after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The interoperability tests' Python virtualenv (amqtt, paho-mqtt); the tests would make it
# themselves, this only does it up front.
bash scripts/python-env.sh >/dev/null

# Every public symbol of the libraries has a doc comment.
python3 scripts/check-docs.py
# Everything, examples and tools included. Our targets treat warnings as errors (Package.swift).
swift build --build-tests
# The DocC catalogs of Mosquitto and MosquittoTesting build without a warning or a note.
bash scripts/check-docc.sh
# `swift test` with the output shown as it comes, failing when no test ran: a `--filter` that
# matches nothing (a renamed suite) runs 0 tests and exits 0, which must not pass for a run.
run_tests() {
    local log
    log=$(mktemp)
    swift test --skip-build "$@" 2>&1 | tee "$log"
    if ! grep -qE "Test run with [1-9][0-9]* tests?" "$log"; then
        echo "test.sh: swift test $* ran no test" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
if [ $# -gt 0 ]; then
    run_tests "$@"
    exit
fi
# Steps 1 to 4, with ARGUMENTS (a build path) added to every `swift test`.
suite_passes() {
    # 1. Unit and integration tests, suites in parallel, except the two kinds below.
    run_tests "$@" --skip BrokerCrashTests --skip NetworkFaultTests --skip DescriptorLimitTests
    # 1b. More than 1,024 descriptors open (which would leak into other suites' sockets), alone.
    run_tests "$@" --filter DescriptorLimitTests
    # 2. Network faults: a dead-link detection bound (1.5 x keepalive) and an idle-link check,
    #    with the machine otherwise quiet.
    run_tests "$@" --filter NetworkFaultTests
    # 3. Broker crashes: 10,000 messages per run with kill -9 and restarts; heavy, so on their own.
    run_tests "$@" --filter BrokerCrashTests
    # 4. The integration suites again with a network thread per client
    #    (MQTTConfiguration.eventLoopGroup = nil, libmosquitto's select() loop) instead of the
    #    default shared event-loop group: the same behaviour is expected of both. (The CLI and
    #    interoperability suites do not depend on it.)
    MQTT_TEST_DRIVER=thread run_tests "$@" --skip BrokerCrashTests --skip NetworkFaultTests --skip CLITests --skip InteroperabilityTests --skip DescriptorLimitTests
    MQTT_TEST_DRIVER=thread run_tests "$@" --filter NetworkFaultTests
    MQTT_TEST_DRIVER=thread run_tests "$@" --filter BrokerCrashTests
}
suite_passes
# 4b. Steps 1 to 4 once more against libmosquitto 2.0.21 (Debian 13's source, built by
#     scripts/libmosquitto.sh into .build-libmosquitto/, cached), or against the one in
#     LIBMOSQUITTO_PREFIX, in a build path of its own; LibraryVersionTests fails the pass if the
#     system's 2.0.11 was loaded instead.
(
    source scripts/libmosquitto.sh --env
    build_path=".build-with-$MQTT_TEST_LIBMOSQUITTO_VERSION"
    swift build --build-tests --build-path "$build_path"
    suite_passes --build-path "$build_path"
)
# 5. The property-list memory test: resident size is process-wide, so in a process of its own.
MQTT_MEMORY_TEST=1 run_tests --filter listsAreFreed
# 6. Reliability: a 60-second soak (mixed QoS 0/1/2 across graceful broker restarts: no QoS 1/2
#    message lost, no QoS 2 message duplicated) and LeakSanitizer over 1,000 client cycles.
bash scripts/soak.sh 60
bash scripts/leak-check.sh 1000
# 7. The benchmark, CI-sized (issue 5): every workload through the Swift client and the C baseline
#    against a local broker. It fails only if a run fails outright (a role that cannot connect, a
#    C role that does not build); the targets it prints are measured on a quiet machine, not here.
bash scripts/bench.sh --quick
