#ifndef C_MOSQUITTO_BASELINE_H
#define C_MOSQUITTO_BASELINE_H

/// The C side of `mqtt-bench`: the same workloads as the Swift roles, written directly against
/// libmosquitto, plus the measuring and flow-control helpers both implementations share (so that
/// the per-message bookkeeping costs the same on both sides).

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Shared control block

/// The page a publisher and a subscriber process share (a `MAP_SHARED` file mapping).
///
/// The subscriber counts what it received here; the publisher keeps at most `window` messages
/// between "published" and "received" (end-to-end flow control that caps the outstanding bytes
/// the same way for both implementations) and says when it is done and how many it sent.
/// Every field is accessed with atomic builtins only.
typedef struct bench_control {
    /// Messages the subscriber received so far.
    uint64_t received;
    /// `CLOCK_MONOTONIC` time of the first and of the latest receipt (ns).
    uint64_t first_receive_ns;
    uint64_t last_receive_ns;
    /// `CLOCK_MONOTONIC` time of the publisher's first publish (ns).
    uint64_t publish_start_ns;
    /// How many messages the publisher handed to its library; valid once `publisher_done` is set.
    uint64_t sent;
    /// The `received` count at which a waiting publisher wants to be woken.
    uint64_t wake_at;
    /// Non-zero once the publisher has published its last message.
    uint32_t publisher_done;
    /// The futex word: 1 while the publisher sleeps waiting for the window to open.
    uint32_t waiting;
} bench_control;

/// Maps the control block stored in the file at `path` (created and zeroed when `create` is non-zero).
/// Returns NULL (and sets errno) on failure.
bench_control *bench_control_map(const char *path, int create);

/// Unmaps a control block mapped by `bench_control_map`.
void bench_control_unmap(bench_control *control);

/// Subscriber side, once per received message: counts it, stamps the time, wakes a waiting publisher.
void bench_control_note_received(bench_control *control);

/// Publisher side, before each publish: returns 0 at once while fewer than `window` messages are
/// between published (`sent`) and received; otherwise sleeps on a futex until half the window has
/// drained. Returns -1 when nothing was received for `stall_ms` milliseconds (messages were lost).
int bench_control_wait_window(bench_control *control, uint64_t sent, uint64_t window, int stall_ms);

/// Publisher side: records the start time of the measured window.
void bench_control_publisher_started(bench_control *control);

/// Publisher side: records the final count and marks the publisher done.
void bench_control_publisher_finished(bench_control *control, uint64_t sent);

/// Subscriber side, polled: 1 when the subscriber should stop: the publisher is done and either
/// everything arrived or nothing arrived for `idle_ms` milliseconds (the rest is lost).
int bench_control_subscriber_should_stop(const bench_control *control, int idle_ms);

/// An atomic load of `control->received`.
uint64_t bench_control_received(const bench_control *control);

/// Copies every field of `control` into `copy`, each with an atomic load.
void bench_control_snapshot(const bench_control *control, bench_control *copy);

// MARK: - Measuring

/// `CLOCK_MONOTONIC` in nanoseconds.
uint64_t bench_now_ns(void);

/// This process's CPU time so far, user + system, all threads (`getrusage(RUSAGE_SELF)`), in ns.
uint64_t bench_cpu_ns(void);

/// This process's peak resident set size (`VmHWM` in `/proc/self/status`), in KiB; -1 if unreadable.
/// Not `getrusage`'s `ru_maxrss`: Linux carries that across `execve`, so a spawned process would
/// report at least its parent's peak.
long bench_peak_rss_kib(void);

/// This process's current resident set size (`/proc/self/statm`), in KiB; -1 if unreadable.
long bench_current_rss_kib(void);

/// Current-RSS samples taken when a message count reaches given marks (for the memory check).
typedef struct bench_rss_samples {
    /// The counts at which to sample; 0 = unused.
    uint64_t marks[3];
    /// The RSS (KiB) measured at each mark; 0 = not reached.
    long rss_kib[3];
    /// The next mark to reach.
    int next;
} bench_rss_samples;

/// Sets the marks to 10 %, 50 % and 100 % of `total` (no marks when `total` is 0).
void bench_rss_samples_init(bench_rss_samples *samples, uint64_t total);

/// Samples the current RSS if `count` reached the next mark. Cheap when it did not.
void bench_rss_samples_note(bench_rss_samples *samples, uint64_t count);

/// Writes "ready\n" to standard output (unbuffered), the subscriber's handshake with the orchestrator.
void bench_announce_ready(void);

/// This process's current number of threads (`Threads:` in `/proc/self/status`); -1 if unreadable.
long bench_thread_count(void);

/// Counts this process's open descriptors (`/proc/self/fd`) into `count` and stores the highest
/// one in `highest`. Returns 0, or -1 when `/proc/self/fd` cannot be read.
int bench_open_descriptors(long *count, long *highest);

/// Raises this process's open-file limit (`RLIMIT_NOFILE`): the soft limit to the hard limit, and
/// both to `wanted` when the hard limit is lower and the process may raise it (`CAP_SYS_RESOURCE`).
/// Stores the resulting limits in `soft` and `hard`. Returns 0 when the soft limit is now at least
/// `wanted`, 1 when it stays lower (the hard limit could not be raised), -1 on error (errno set).
int bench_raise_open_file_limit(uint64_t wanted, uint64_t *soft, uint64_t *hard);

// MARK: - The C roles

/// What a role does: where, which topic, what to send and for how long.
typedef struct bench_role_options {
    const char *host;
    int port;
    const char *topic;
    /// 0, 1 or 2.
    int qos;
    /// Payload size in bytes.
    int payload_size;
    /// Publisher: stop after this many seconds (0 = no time limit).
    double seconds;
    /// Publisher: stop after this many messages (0 = no count limit); round trips: how many.
    uint64_t count;
    /// Publisher: the end-to-end window (messages).
    uint64_t window;
    /// `mosquitto_max_inflight_messages_set`.
    int max_inflight;
    /// Subscriber: how long to wait for stragglers once the publisher is done (ms).
    int idle_ms;
    /// Publisher and subscriber: the shared control block (NULL for round trips).
    bench_control *control;
} bench_role_options;

/// What a role measured.
typedef struct bench_role_result {
    /// Messages published (publisher), received (subscriber) or round trips timed.
    uint64_t messages;
    /// CPU time (user + system, ns) spent in the measured window.
    uint64_t cpu_ns;
    /// Start and end of the measured window (`CLOCK_MONOTONIC`, ns).
    uint64_t start_ns;
    uint64_t end_ns;
    /// Current-RSS samples at 10/50/100 % of `options.count` (when a count was given).
    bench_rss_samples rss;
    /// Empty on success; otherwise what failed.
    char error[256];
} bench_role_result;

/// Publishes for `seconds` or `count` messages through a `mosquitto_loop_start` client, keeping
/// within the control block's window; for QoS 1/2 waits for every acknowledgement.
/// Returns 0 on success, -1 with `result->error` set.
int bench_c_publisher(const bench_role_options *options, bench_role_result *result);

/// Subscribes through a `mosquitto_loop_start` client, announces "ready", then counts messages
/// until the control block says to stop. Returns 0 on success, -1 with `result->error` set.
int bench_c_subscriber(const bench_role_options *options, bench_role_result *result);

/// Times `options->count` round trips (after `warmup` untimed ones) of a QoS 0 message published
/// and received back on the same client's subscription. `threaded` non-zero uses
/// `mosquitto_loop_start` (the caller waits on a condition variable); zero runs
/// `mosquitto_loop` on the calling thread. Writes one latency (ns) per round trip.
/// Returns 0 on success, -1 with `result->error` set.
int bench_c_round_trips(
    const bench_role_options *options, int threaded, uint64_t warmup, uint64_t *latencies_ns, bench_role_result *result
);

/// The connections benchmark's publisher: one `mosquitto_loop_start` client publishes one message
/// to each of `options->count` topics, `options->topic` followed by the index (0, 1, ...), at
/// `options->qos`, and for QoS 1/2 waits for every acknowledgement. Marks the control block's
/// publisher start and finish (the receivers count into it). Returns 0 on success, -1 with
/// `result->error` set.
int bench_c_fanout_publisher(const bench_role_options *options, bench_role_result *result);

// MARK: - Role command line (shared by the C and the Swift role executables)

/// Which job a role process does.
typedef enum bench_role_kind {
    BENCH_ROLE_PUBLISHER = 0,
    BENCH_ROLE_SUBSCRIBER = 1,
    BENCH_ROLE_ROUND_TRIPS = 2,
    /// One message to each of `count` topics (`bench_c_fanout_publisher`); C only.
    BENCH_ROLE_FANOUT = 3,
} bench_role_kind;

/// A parsed role command line: `KIND --host H --port P --topic T --qos Q --payload N --seconds S
/// --count N --window N --inflight N --idle-ms N [--control PATH] [--single-thread]`.
typedef struct bench_role_spec {
    bench_role_kind kind;
    /// The C round trips: 1 with `mosquitto_loop_start` (default), 0 with `--single-thread`.
    int threaded;
    /// The file holding the control block (publisher and subscriber); NULL otherwise.
    const char *control_path;
    /// Everything else; its strings point into argv.
    bench_role_options options;
} bench_role_spec;

/// Parses `argv[1...]`. Returns 0, or -1 with a message in `error`.
int bench_role_parse(int argc, char *const *argv, bench_role_spec *spec, char *error, size_t error_size);

/// How many untimed round trips precede `count` timed ones: max(100, count / 10).
uint64_t bench_round_trip_warmup(uint64_t count);

/// Sorts `latencies_ns` and stores its 50th and 99th percentiles (nearest rank).
void bench_latency_percentiles(uint64_t *latencies_ns, uint64_t count, uint64_t *p50_ns, uint64_t *p99_ns);

/// Prints the role's one `result key=value ...` line on standard output (unbuffered), with the
/// process's peak RSS, the RSS it had at start (`floor_rss_kib`) and the latency percentiles.
void bench_print_result(const bench_role_result *result, long floor_rss_kib, uint64_t p50_ns, uint64_t p99_ns);

#ifdef __cplusplus
}
#endif

#endif
