#!/usr/bin/env bash
# The leak check: builds mqtt-soak with AddressSanitizer and runs COUNT (default 1000) cycles of
# connect / subscribe / publish QoS 1 / receive / unsubscribe / disconnect / release against a
# local mosquitto under LeakSanitizer.
#
# Fails when LeakSanitizer reports a leak whose allocation stack runs through the library
# (a frame in Sources/Mosquitto, or a Swift symbol of the Mosquitto module). That covers direct
# leaks ("definitely lost") and indirect ones: a Swift retain cycle shows up as indirect leaks
# only (every object in the cycle is pointed to by another), so checking direct leaks alone would
# miss it. Also fails on any AddressSanitizer error. Leaks that do not involve our code are
# printed but do not fail the check. scripts/lsan.supp lists the suppressions (one-time
# allocations of libmosquitto, OpenSSL or the Swift runtime only).
#
#   bash scripts/leak-check.sh                        # 1000 cycles
#   bash scripts/leak-check.sh 100 --leak-on-purpose  # self-test: must fail
#
# Further arguments go to `mqtt-soak cycles`. LEAK_CHECK_SCRATCH_PATH is the build directory
# (default .build-asan).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

count="${1:-1000}"
if [ $# -gt 0 ]; then shift; fi
build=(swift build --sanitize=address --scratch-path "${LEAK_CHECK_SCRATCH_PATH:-.build-asan}")
# (ld.gold prints ~160 harmless "Cannot export local symbol '__asan_..." warnings per ASan link.)
{ "${build[@]}" --product mqtt-soak 2>&1; } | { grep -v "Cannot export local symbol '__asan" || true; }
binary="$("${build[@]}" --show-bin-path)/mqtt-soak"

# Stacks must be symbolized to tell our frames from others: prefer the toolchain's symbolizer.
symbolizer="$(dirname "$(command -v swift)")/llvm-symbolizer"
[ -x "$symbolizer" ] || symbolizer="$(command -v llvm-symbolizer || true)"
[ -n "$symbolizer" ] || { echo "leak-check: llvm-symbolizer not found (it ships with the Swift toolchain)" >&2; exit 1; }

# fast_unwind_on_malloc=0: the default frame-pointer unwinder stops at the first frame of
# libmosquitto (Debian builds it without frame pointers), which would hide our frames above a
# libmosquitto allocation such as mosquitto_new or mosquitto_property_add_*; the DWARF unwinder
# sees through it (about twice as slow).
report="$(mktemp "${TMPDIR:-/tmp}/leak-check.XXXXXX")"
status=0
ASAN_SYMBOLIZER_PATH="$symbolizer" \
ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=50" \
LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=1:exitcode=23" \
    "$binary" cycles --count "$count" "$@" 2>"$report" || status=$?

if grep -q "ERROR: AddressSanitizer" "$report" || grep -q "LeakSanitizer has encountered a fatal error" "$report"; then
    cat "$report" >&2
    echo "leak-check: FAILED: the sanitizer reported an error (full report: $report)" >&2
    exit 1
fi
# The tool's own failure: a non-zero status other than LeakSanitizer's 23, or its error line
# (LeakSanitizer's 23 replaces the tool's status when it finds leaks).
tool_error="$(grep -m1 '^mqtt-soak: ' "$report" || true)"
if [ "$status" -ne 0 ] && [ "$status" -ne 23 ] && [ -z "$tool_error" ]; then
    tool_error="mqtt-soak cycles exited with status $status"
fi

# Sum the leak blocks: "Direct|Indirect leak of N byte(s) in M object(s) allocated from:", then
# frames "#k 0x... in SYMBOL FILE:LINE", then a blank line. A block is ours when a frame is in
# Sources/Mosquitto or is a Mosquitto-module Swift symbol ($s9Mosquitto..., mangled or not).
read -r our_direct our_direct_objects our_indirect other_bytes suppressed < <(awk '
    function flush() {
        if (kind == "Direct" && ours) { od += bytes; odo += objects }
        else if (kind == "Indirect" && ours) { oi += bytes }
        else if (kind != "") { other += bytes }
        kind = ""; ours = 0
    }
    /^(Direct|Indirect) leak of [0-9]+ byte/ { flush(); kind = $1; bytes = $4; objects = $7; next }
    kind != "" && /^ *#[0-9]+ / {
        if ($0 ~ /\/Sources\/Mosquitto\// || $0 ~ / in \$s9Mosquitto/ || $0 ~ / in Mosquitto\./) ours = 1
        next
    }
    kind != "" && /^[ \t]*$/ { flush() }
    /^Suppressions used:/ { insupp = 1; next }
    insupp && /^ *[0-9]+ +[0-9]+ / { suppressed += $2 }
    END { flush(); printf "%d %d %d %d %d\n", od, odo, oi, other, suppressed }
' "$report")

if [ $((our_direct + our_indirect)) -gt 0 ]; then
    # Show the blocks that involve our code first; the full report stays in the file.
    # (The first six such blocks; awk stops itself, since `| head` would fail under pipefail.)
    awk 'BEGIN { RS = ""; ORS = "\n\n" } /(Direct|Indirect) leak of/ && (/\/Sources\/Mosquitto\// || / in \$s9Mosquitto/ || / in Mosquitto\./) && shown++ < 6' "$report" >&2
    echo "LeakSanitizer: FAILED: $our_direct bytes definitely lost in $our_direct_objects objects and $our_indirect bytes indirectly lost from our code over $count cycles (other leaks: $other_bytes bytes, suppressed: $suppressed bytes; full report: $report)" >&2
    [ -z "$tool_error" ] || echo "leak-check: also, the workload failed: $tool_error" >&2
    exit 1
fi
if [ -n "$tool_error" ]; then
    cat "$report" >&2
    echo "leak-check: FAILED: the workload failed: $tool_error (full report: $report)" >&2
    exit 1
fi
if [ "$other_bytes" -gt 0 ]; then
    cat "$report" >&2
    echo "leak-check: warning: $other_bytes bytes leaked outside our code (not a failure; full report: $report)" >&2
else
    rm -f "$report"
fi
echo "LeakSanitizer: 0 bytes definitely lost (0 indirectly) from our code over $count cycles (other leaks: $other_bytes bytes, suppressed: $suppressed bytes)"
