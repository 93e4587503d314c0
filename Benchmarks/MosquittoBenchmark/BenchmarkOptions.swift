// MARK: - BenchmarkOptions

/// The orchestrator's command line: `mqtt-bench [--quick] [--repetitions N] [--seconds S] ...`.
struct BenchmarkOptions: Sendable, Equatable {
    /// `--quick`: one repetition, ~0.5 s per row, fewer round trips and messages (for CI).
    var quick = false
    /// Repetitions per row; the table shows medians.
    var repetitions = 3
    /// How long each throughput row publishes.
    var seconds = 3.0
    /// Timed round trips per round-trip run.
    var roundTrips: UInt64 = 20_000
    /// Messages in the memory check.
    var memoryMessages: UInt64 = 1_000_000
    /// The QoS of the memory check.
    var memoryQoS = 1
    /// The end-to-end window: at most this many messages between published and received.
    var window: UInt64 = 1000
    /// Max in-flight QoS 1/2 messages on both clients (libmosquitto's default is 20).
    var maxInflight = 20
    /// An external broker's host instead of one started here.
    var host: String?
    /// The external broker's port.
    var port = 1883
    /// Only these rows (ids of ``Workload`` plus `rtt` and `memory`); empty = all.
    var only: Set<String> = []

    /// The usage text.
    static let usage = """
        usage: mqtt-bench [--quick] [--repetitions N] [--seconds S] [--rtt-count N]
                          [--memory-messages N] [--memory-qos Q] [--window N] [--inflight N]
                          [--host H --port P] [--only ROW[,ROW...]]

        Runs each workload through the Swift client and through a C baseline calling libmosquitto
        directly, one process per client, against a mosquitto it starts on 127.0.0.1 (or --host/--port),
        and prints medians with Swift/C ratios. Rows: qos0-64, qos0-1k, qos1-64, qos2-64, rtt, memory.
        Defaults: 3 repetitions, 3 s per row, 20,000 round trips, 1,000,000 messages for the memory check.
        --quick: 1 repetition, 0.5 s per row, 2,000 round trips, 100,000 messages.
        Profiling: MQTT_BENCH_WRAP="perf record -g -o /tmp/p.data --" MQTT_BENCH_WRAP_ROLE=swift-publisher
        runs that role process under the given command (roles: swift|c|c-loop + -publisher|-subscriber|-rtt).

               mqtt-bench connections [--count N] [--driver thread|shared] [--concurrency N] ...
        Many clients in one process (default 10,000): connect time, threads, peak RSS, delivery of one
        message per client. `mqtt-bench connections --help` for its options.
        """

    /// Parses the orchestrator's arguments.
    /// - Throws: ``UsageError`` for an unknown flag or a bad value.
    static func parse(_ arguments: [String]) throws(UsageError) -> BenchmarkOptions {
        var options = BenchmarkOptions()
        var explicit: Set<String> = []
        var reader = ArgumentReader(arguments)
        while let flag = reader.next() {
            explicit.insert(flag)
            switch flag {
            case "--quick": options.quick = true
            case "--repetitions": options.repetitions = try reader.number(for: flag)
            case "--seconds": options.seconds = try reader.number(for: flag)
            case "--rtt-count": options.roundTrips = try reader.number(for: flag)
            case "--memory-messages": options.memoryMessages = try reader.number(for: flag)
            case "--memory-qos": options.memoryQoS = try reader.number(for: flag)
            case "--window": options.window = try reader.number(for: flag)
            case "--inflight": options.maxInflight = try reader.number(for: flag)
            case "--host": options.host = try reader.value(for: flag)
            case "--port": options.port = try reader.number(for: flag)
            case "--only": options.only = Set(try reader.value(for: flag).split(separator: ",").map(String.init))
            default: throw UsageError("unknown argument \(flag)")
            }
        }
        if options.quick {
            if !explicit.contains("--repetitions") { options.repetitions = 1 }
            if !explicit.contains("--seconds") { options.seconds = 0.5 }
            if !explicit.contains("--rtt-count") { options.roundTrips = 2_000 }
            if !explicit.contains("--memory-messages") { options.memoryMessages = 100_000 }
        }
        guard options.repetitions >= 1, options.seconds > 0, options.roundTrips >= 10, options.memoryMessages >= 10,
              options.window >= 2, (0...2).contains(options.memoryQoS)
        else { throw UsageError("out-of-range value (repetitions >= 1, seconds > 0, counts >= 10, window >= 2, QoS 0...2)") }
        let known = Set(Workload.throughputRows.map(\.id) + ["rtt", "memory"])
        if let unknown = options.only.subtracting(known).first { throw UsageError("--only: unknown row \(unknown)") }
        return options
    }

    /// Whether the row with `id` runs.
    func runs(_ id: String) -> Bool {
        only.isEmpty || only.contains(id)
    }
}

// MARK: - Workload

/// One throughput row: a QoS and a payload size, publisher and subscriber on separate connections.
struct Workload: Sendable, Equatable {
    /// The row's id for `--only`.
    let id: String
    /// The row's label in the table.
    let title: String
    /// The QoS of publish and subscription.
    let qos: Int
    /// The payload size in bytes.
    let payloadSize: Int
    /// Whether the issue sets the >= 0.90 throughput target for this row.
    let hasThroughputTarget: Bool

    /// The rows of the throughput table, in order.
    static let throughputRows = [
        Workload(id: "qos0-64", title: "QoS 0, 64 B", qos: 0, payloadSize: 64, hasThroughputTarget: true),
        Workload(id: "qos0-1k", title: "QoS 0, 1 KiB", qos: 0, payloadSize: 1024, hasThroughputTarget: false),
        Workload(id: "qos1-64", title: "QoS 1, 64 B", qos: 1, payloadSize: 64, hasThroughputTarget: true),
        Workload(id: "qos2-64", title: "QoS 2, 64 B", qos: 2, payloadSize: 64, hasThroughputTarget: true),
    ]
}
