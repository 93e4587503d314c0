// MARK: - UsageError

/// A command line that could not be understood; the message says what was wrong.
struct UsageError: Error, Sendable {
    /// What was wrong, for the user.
    let message: String

    /// Creates an error with `message`.
    init(_ message: String) {
        self.message = message
    }
}

// MARK: - ArgumentReader

/// Reads `--flag value` pairs off an argument list, front to back.
struct ArgumentReader {
    /// The arguments not read yet.
    private var remaining: ArraySlice<String>

    /// Creates a reader over `arguments`.
    init(_ arguments: [String]) {
        remaining = arguments[...]
    }

    /// The next argument, or `nil` at the end.
    mutating func next() -> String? {
        remaining.popFirst()
    }

    /// The value that must follow `flag`.
    /// - Throws: ``UsageError`` when there is none.
    mutating func value(for flag: String) throws(UsageError) -> String {
        guard let value = remaining.popFirst() else { throw UsageError("\(flag) needs a value") }
        return value
    }

    /// The value following `flag` as a number of type `T`.
    /// - Throws: ``UsageError`` when it is missing or not a number.
    mutating func number<T: LosslessStringConvertible>(for flag: String, as type: T.Type = T.self) throws(UsageError) -> T {
        let text = try value(for: flag)
        guard let number = T(text) else { throw UsageError("\(flag): not a number: \(text)") }
        return number
    }
}

// MARK: - RoleSpec

/// What one role process does, rendered into its command line.
///
/// The orchestrator spawns one process per client so that `getrusage(RUSAGE_SELF)` (CPU time)
/// and `VmHWM` (peak RSS) belong to exactly one client: the C baseline's clients run in a C
/// executable (pure C when `MQTT_BENCH_C_ROLE` names one: see ``pureCExecutable``), the Swift
/// client's in a Swift executable that links only `Mosquitto` (no Foundation).
struct RoleSpec: Sendable, Equatable {
    /// The job of the process.
    enum Kind: String, Sendable, CaseIterable {
        /// Publishes for a time or a count, within the end-to-end window.
        case publisher
        /// Subscribes, announces "ready", counts what arrives.
        case subscriber
        /// Publishes one message at a time and waits for it on its own subscription.
        case roundTrips = "rtt"
        /// Publishes one message to each of `count` topics, `topic` followed by the index (C only;
        /// the connections benchmark).
        case fanout
    }

    /// Which client library does the job.
    enum Implementation: String, Sendable, CaseIterable {
        /// This package's `MQTTClient`, through its public API only.
        case swift
        /// libmosquitto directly, with `mosquitto_loop_start`.
        case c
        /// libmosquitto directly, with `mosquitto_loop` on the calling thread (round trips only).
        case cLoop = "c-loop"
    }

    /// The job.
    var kind: Kind
    /// Which client does it.
    var implementation: Implementation
    /// The broker's address.
    var host = "127.0.0.1"
    /// The broker's port.
    var port = 1883
    /// The topic published to and subscribed to (unique per run).
    var topic = "bench"
    /// The QoS of publish and subscription (round trips: always 0).
    var qos = 0
    /// The payload size in bytes.
    var payloadSize = 64
    /// Publisher: how long to publish (0 = no time limit).
    var seconds = 0.0
    /// Publisher: how many to publish (0 = no limit); round trips: how many to time.
    var count: UInt64 = 0
    /// Publisher: the end-to-end window, in messages.
    var window: UInt64 = 1000
    /// The client's maximum of QoS 1/2 messages in flight.
    var maxInflight = 20
    /// Subscriber: how long to wait for stragglers once the publisher is done (ms).
    var idleMilliseconds = 1000
    /// Publisher and subscriber: the shared control block's file.
    var controlPath = ""

    /// The role executable's arguments (parsed by `bench_role_parse` in CMosquittoBaseline's role_cli.c).
    var arguments: [String] {
        [
            kind.rawValue, "--host", host, "--port", "\(port)", "--topic", topic,
            "--qos", "\(qos)", "--payload", "\(payloadSize)", "--seconds", "\(seconds)", "--count", "\(count)",
            "--window", "\(window)", "--inflight", "\(maxInflight)", "--idle-ms", "\(idleMilliseconds)",
        ]
            + (controlPath.isEmpty ? [] : ["--control", controlPath])
            + (implementation == .cLoop ? ["--single-thread"] : [])
    }

    /// The role executable's file name (a sibling of `mqtt-bench` in the build directory).
    var executableName: String {
        implementation == .swift ? "MosquittoBenchmarkSwiftRole" : "MosquittoBenchmarkCRole"
    }

    /// The C role executable built by a C compiler alone, when `MQTT_BENCH_C_ROLE` names one
    /// (scripts/bench.sh builds it). SwiftPM links every executable through `swiftc`, so its
    /// `MosquittoBenchmarkCRole` also loads libswiftCore and libstdc++ without using them: about
    /// 3 MiB of RSS that a C program does not have.
    static var pureCExecutable: String? { Environment.value("MQTT_BENCH_C_ROLE") }

    /// The role executable to run: a sibling of `mqtt-bench` in `directory`, or for C roles the
    /// pure C build when there is one.
    func executablePath(in directory: String) -> String {
        if implementation != .swift, let pure = Self.pureCExecutable { return pure }
        return "\(directory)/\(executableName)"
    }
}

// MARK: - RoleReport

/// What a role process measured: the one `result key=value ...` line it prints (`bench_print_result`).
struct RoleReport: Sendable, Equatable {
    /// Messages published, received, or round trips timed.
    var messages: UInt64 = 0
    /// CPU time (user + system, all threads) in the measured window, in ns.
    var cpuNanoseconds: UInt64 = 0
    /// The start of the measured window (`CLOCK_MONOTONIC`, ns).
    var startNanoseconds: UInt64 = 0
    /// The end of the measured window (`CLOCK_MONOTONIC`, ns).
    var endNanoseconds: UInt64 = 0
    /// Peak RSS of the whole process (`VmHWM`), KiB.
    var peakRSSKiB = 0
    /// RSS when the role started, before any client existed (the runtime's floor), KiB.
    var floorRSSKiB = 0
    /// RSS at 10 %, 50 % and 100 % of the message count, when a count was given; KiB.
    var rssSamplesKiB: [Int] = []
    /// Round trips: the median latency, ns.
    var latencyP50Nanoseconds: UInt64 = 0
    /// Round trips: the 99th-percentile latency, ns.
    var latencyP99Nanoseconds: UInt64 = 0

    /// CPU time per message, in microseconds.
    var cpuMicrosecondsPerMessage: Double {
        messages == 0 ? .nan : Double(cpuNanoseconds) / Double(messages) / 1000
    }

    /// Parses a line printed by `bench_print_result`; `nil` if it is not one.
    init?(line: String) {
        let words = line.split(separator: " ")
        guard words.first == "result" else { return nil }
        var fields: [Substring: Substring] = [:]
        for word in words.dropFirst() {
            guard let equals = word.firstIndex(of: "=") else { return nil }
            fields[word[..<equals]] = word[word.index(after: equals)...]
        }
        /// The field `key` as a number, if present and valid.
        func number<T: LosslessStringConvertible>(_ key: Substring) -> T? { fields[key].flatMap { T(String($0)) } }
        guard let messages: UInt64 = number("messages"), let cpu: UInt64 = number("cpu_ns") else { return nil }
        self.messages = messages
        cpuNanoseconds = cpu
        startNanoseconds = number("start_ns") ?? 0
        endNanoseconds = number("end_ns") ?? 0
        peakRSSKiB = number("peak_rss_kib") ?? 0
        floorRSSKiB = number("floor_rss_kib") ?? 0
        rssSamplesKiB = fields["rss_kib"].map { $0.split(separator: ",").compactMap { Int(String($0)) } } ?? []
        latencyP50Nanoseconds = number("p50_ns") ?? 0
        latencyP99Nanoseconds = number("p99_ns") ?? 0
    }

    /// Creates an empty report.
    init() {}
}
