#!/usr/bin/env bash
# The benchmark of issue 5: the Swift client against a C baseline that calls libmosquitto directly,
# one process per client, against a mosquitto started on 127.0.0.1 (or --host H --port P).
# Prints throughput (msg/s end to end), CPU per message, peak RSS, round-trip latency and the
# memory check, with Swift/C ratios and the targets. Exit 0 unless something failed outright.
#
#   bash scripts/bench.sh --quick        # CI-sized: 1 repetition, ~0.5 s per row
#   bash scripts/bench.sh                # default: 3 repetitions (medians), 3 s per row, 1,000,000-message memory check
#   bash scripts/bench.sh --help         # every option
#   bash scripts/bench.sh connections --count 10000 [--driver shared|thread]   # many clients in one process:
#                                        # connect time, threads, peak RSS (connections --help)
#
# The Swift roles use the library's default driver (the shared event-loop group);
# MQTT_BENCH_SWIFT_DRIVER=thread gives each Swift client a network thread of its own instead.
# SCRATCH_PATH, when set, is the build directory (default: swift build's own).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

build=(swift build -c release ${SCRATCH_PATH:+--scratch-path "$SCRATCH_PATH"})
"${build[@]}" --product mqtt-bench >&2
bin="$("${build[@]}" --show-bin-path)"

# The C baseline as a C program: SwiftPM links every executable through swiftc, which adds
# libswiftCore and libstdc++ to the C role (~3 MiB of RSS it never uses), so the role is built
# again here with the toolchain's C compiler alone and mqtt-bench is told to run that one.
"${CC:-clang}" -O2 -Wall -I Benchmarks/CMosquittoBaseline/include Benchmarks/CMosquittoBaseline/*.c \
    Benchmarks/MosquittoBenchmarkCRole/main.c $(pkg-config --cflags --libs libmosquitto) -pthread \
    -o "$bin/mqtt-bench-c-role"
export MQTT_BENCH_C_ROLE="$bin/mqtt-bench-c-role"
exec "$bin/mqtt-bench" "$@"
