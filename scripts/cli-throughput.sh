#!/usr/bin/env bash
# Throughput of the `mqtt` CLI against the mosquitto tools, on one local broker (issue 5).
#
#   bash scripts/cli-throughput.sh            # 100,000 messages, 5 runs of each
#   bash scripts/cli-throughput.sh 20000 3    # COUNT RUNS
#
# Builds `mqtt` in release mode, starts `mosquitto` on 127.0.0.1 (a free port, a generated
# config, loopback only; stopped at the end), then for QoS 0 and 1, alternating the two tools
# run by run so that background load hits both alike:
# - pub: `mqtt pub -l` and `mosquitto_pub -l` publish COUNT lines from files (no subscriber);
#   the time is the processes', connect to exit (after the last acknowledgement for QoS 1).
# - sub: `mqtt sub -C` / `mosquitto_sub -C` subscribes (a retained message tells the script it
#   has), then `mosquitto_pub -l` publishes COUNT lines at the same QoS; the time runs from the
#   start of the first publisher to the exit of the subscriber, whose output (a file) must hold
#   every line, each publisher's in order. With the same publishers for both, a ratio near 1
#   means the subscriber is not the bottleneck.
# Every publisher gets the lines in runs of 25,000 (one process per run): mosquitto_pub -l
# queues all of stdin in libmosquitto and numbers the messages as it queues them, so past
# 65,535 lines two queued messages share a packet identifier; mosquitto 2.0.11 then drops the
# connection ("disconnected due to out of memory") and mosquitto_pub exits 0 having sent only
# COUNT - 65,535 lines or so. The script fails if the broker logs such a disconnection.
# Prints the median of each and the ratio mosquitto time / mqtt time (>= 0.90 is the goal:
# `mqtt` at least 0.9x as fast). SCRATCH_PATH, when set, is the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

count="${1:-100000}"
runs="${2:-5}"
build=(swift build -c release ${SCRATCH_PATH:+--scratch-path "$SCRATCH_PATH"})
"${build[@]}" --product mqtt >&2
mqtt="$("${build[@]}" --show-bin-path)/mqtt"

work="$(mktemp -d)"
broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ]; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# MARK: Broker

# Queues without limit, so that a subscriber slower than the publisher loses no QoS 0 message.
start_broker() {
    port="$1"
    cat >"$work/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
EOF
    mosquitto -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 50); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then broker_pid=""; return 1; fi
        mosquitto_pub -h 127.0.0.1 -p "$port" -t probe -n 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
for _ in $(seq 10); do
    start_broker $((20000 + RANDOM % 40000)) && break
done
[ -n "$broker_pid" ] || { echo "cli-throughput: could not start mosquitto" >&2; cat "$work/broker.log" >&2; exit 1; }
echo "broker: mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') on 127.0.0.1:$port; $count messages, $runs runs each; $(nproc) cores" >&2

seq -f "message %08g of the throughput run" 1 "$count" >"$work/lines"
split -l 25000 -d -a 4 "$work/lines" "$work/chunk."

# MARK: Measuring

# Runs "$@" and prints its wall time and CPU time (user + system) in seconds.
timed() {
    local TIMEFORMAT='%R %U %S'
    { time "$@" 2>"$work/stderr"; } 2>"$work/time"
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$work/time"
}

# The median of column $1 of the input.
median() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# pub_TOOL QOS [empty]: one `-l` process per chunk; with `empty`, each reads an empty stdin instead.
pub_mqtt() { for chunk in "$work"/chunk.*; do "$mqtt" pub -h 127.0.0.1 -p "$port" -t "bench/pub" -q "$1" -l <"${2:-$chunk}"; done; }
pub_mosquitto() { for chunk in "$work"/chunk.*; do mosquitto_pub -h 127.0.0.1 -p "$port" -t "bench/pub" -q "$1" -l <"${2:-$chunk}"; done; }

# Runs pub_$1 at QoS $2 and prints its wall and CPU time less those of the same processes with
# an empty stdin: start, connect and exit, which are not moving messages. (mosquitto_pub -l
# sleeps 100 ms while it connects; mqtt takes about 10 ms.) The raw times go to $work/raw-pub-$1.
pub_run() {
    local raw empty
    raw=$(timed "pub_$1" "$2")
    empty=$(timed "pub_$1" "$2" /dev/null)
    echo "$raw (start and connect: $empty)" >>"$work/raw-pub-$1"
    echo "$raw $empty" | awk '{ printf "%.3f %.3f\n", $1 - $3, $2 - $4 }'
}

# Fails if the broker dropped a client (see above: a publisher that then sent only part of its lines).
check_broker_log() {
    if grep -q "disconnected due to" "$work/broker.log"; then
        echo "cli-throughput: the broker dropped a client after $1:" >&2
        grep "disconnected due to" "$work/broker.log" >&2
        exit 1
    fi
}

# Runs subscriber $1 (mqtt or mosquitto) at QoS $2 on topic prefix $3, feeds it COUNT lines with
# mosquitto_pub once it has subscribed, and prints the time from then until the subscriber exits
# and the subscriber's CPU time.
sub_run() {
    local tool="$1" qos="$2" prefix="$3" start end subscriber
    mosquitto_pub -h 127.0.0.1 -p "$port" -t "$prefix/ready" -r -m ready
    if [ "$tool" = mqtt ]; then subscriber=("$mqtt" sub); else subscriber=(mosquitto_sub); fi
    rm -f "$work/out"
    (
        TIMEFORMAT='%U %S'
        time "${subscriber[@]}" -h 127.0.0.1 -p "$port" -t "$prefix/#" -q "$qos" -C $((count + 1)) >"$work/out" 2>"$work/stderr"
    ) 2>"$work/time" &
    local pid=$!
    until [ -s "$work/out" ]; do
        kill -0 "$pid" 2>/dev/null || { echo "cli-throughput: $tool sub exited early: $(cat "$work/stderr")" >&2; exit 1; }
        sleep 0.01
    done
    start=$EPOCHREALTIME
    for chunk in "$work"/chunk.*; do
        mosquitto_pub -h 127.0.0.1 -p "$port" -t "$prefix/data" -q "$qos" -l <"$chunk"
    done
    wait "$pid"
    end=$EPOCHREALTIME
    mosquitto_pub -h 127.0.0.1 -p "$port" -t "$prefix/ready" -r -n
    awk -v s="$start" -v e="$end" '{ printf "%.3f %.3f\n", e - s, $1 + $2 }' "$work/time"
}

# Checks that the last sub printed the ready line, then every line, each publisher's in order
# (MQTT orders messages per publisher; the broker may interleave two successive publishers').
check_output() {
    if [ "$(head -1 "$work/out")" != ready ] || ! tail -n +2 "$work/out" | sort | cmp -s - "$work/lines" \
        || ! tail -n +2 "$work/out" | awk '{ n = $2 + 0; c = int((n - 1) / 25000); if (n <= last[c]) exit 1; last[c] = n }'; then
        echo "cli-throughput: $1 printed $(wc -l <"$work/out") lines, not ready + the $count expected, in order" >&2
        exit 1
    fi
}

printf '%-5s %-4s %10s %10s %6s   %10s %10s %6s\n' test qos "mqtt" "mosquitto" ratio "mqtt cpu" "mosq. cpu" ratio
for qos in 0 1; do
    : >"$work/pub-mqtt"; : >"$work/pub-mosquitto"; : >"$work/sub-mqtt"; : >"$work/sub-mosquitto"
    : >"$work/raw-pub-mqtt"; : >"$work/raw-pub-mosquitto"
    for run in $(seq "$runs"); do
        # Alternate which tool goes first.
        if [ $((run % 2)) -eq 1 ]; then order="mqtt mosquitto"; else order="mosquitto mqtt"; fi
        for tool in $order; do
            pub_run "$tool" "$qos" >>"$work/pub-$tool"
            check_broker_log "$tool pub -q $qos"
        done
        for tool in $order; do
            sub_run "$tool" "$qos" "bench/sub/$tool-$qos-$run" >>"$work/sub-$tool"
            check_output "$tool sub -q $qos"
            check_broker_log "$tool sub -q $qos"
        done
    done
    for test in pub sub; do
        ours=$(median 1 <"$work/$test-mqtt")
        theirs=$(median 1 <"$work/$test-mosquitto")
        ours_cpu=$(median 2 <"$work/$test-mqtt")
        theirs_cpu=$(median 2 <"$work/$test-mosquitto")
        printf '%-5s %-4s %9ss %9ss %6s   %9ss %9ss %6s\n' "$test" "$qos" "$ours" "$theirs" \
            "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')" "$ours_cpu" "$theirs_cpu" \
            "$(awk -v a="$ours_cpu" -v b="$theirs_cpu" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')"
        echo "  $test -q $qos (wall cpu): mqtt $(tr '\n' ' ' <"$work/$test-mqtt")| mosquitto $(tr '\n' ' ' <"$work/$test-mosquitto")" >&2
    done
    echo "  pub -q $qos raw (wall cpu): mqtt $(paste -sd ';' "$work/raw-pub-mqtt") | mosquitto $(paste -sd ';' "$work/raw-pub-mosquitto")" >&2
done
echo "medians; wall: pub = the publishers' runs less the same processes with an empty stdin, sub = from the start of the publisher to the subscriber's exit;" >&2
echo "cpu = user + system time of the measured client; ratio = mosquitto / mqtt (1.00: as fast; goal >= 0.90)" >&2
