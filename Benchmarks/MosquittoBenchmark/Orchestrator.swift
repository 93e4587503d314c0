import CMosquittoBaseline
import MosquittoTesting

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Results

/// One publisher/subscriber run of one implementation, as the orchestrator sees it.
struct PairResult: Sendable {
    /// The publisher's report.
    let publisher: RoleReport
    /// The subscriber's report.
    let subscriber: RoleReport
    /// Messages published (from the control block, after both exited).
    let sent: UInt64
    /// Messages received (from the control block, after both exited).
    let received: UInt64
    /// From the publisher's first publish to the subscriber's last receipt, ns.
    let elapsedNanoseconds: UInt64

    /// Messages received end to end per second.
    var messagesPerSecond: Double {
        elapsedNanoseconds == 0 ? .nan : Double(received) / (Double(elapsedNanoseconds) / 1e9)
    }

    /// Messages published but not received.
    var losses: UInt64 { sent > received ? sent - received : 0 }
}

/// The implementations compared in the throughput rows, in the order of the table.
let throughputImplementations: [RoleSpec.Implementation] = [.swift, .c]

/// The implementations of the round-trip rows: the Swift client, C with `loop_start`, C with `mosquitto_loop`.
let roundTripImplementations: [RoleSpec.Implementation] = [.swift, .c, .cLoop]

// MARK: - Orchestrator

/// Starts the broker, runs every row for every implementation and repetition (each client in a
/// process of its own), and collects the results for ``Report``.
///
/// The orchestrator itself runs sequentially: it blocks on its role processes' output and exit
/// (``RoleProcess``, over the fixture's `ChildProcess`) on the main task, which is all this process
/// does meanwhile.
struct Orchestrator {
    /// The command line.
    let options: BenchmarkOptions
    /// The directory of this executable, where the role executables are built too.
    let binDirectory: String
    /// Where the control blocks go.
    let scratchDirectory: String

    /// An orchestrator for `options`, spawning the running executable.
    init(options: BenchmarkOptions) {
        self.options = options
        binDirectory = Self.executableDirectory
        scratchDirectory = Self.controlDirectory
    }

    /// The directory of this executable, where the role executables are built too.
    static var executableDirectory: String {
        var path = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &path, path.count - 1)
        let executable = length > 0 ? String(decoding: path[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    }

    /// Where control blocks go: `/dev/shm` when writable, else `/tmp`.
    static var controlDirectory: String {
        access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    }

    /// Runs everything and returns the collected results.
    /// - Throws: ``RoleFailure`` or the fixture's error when something fails outright.
    func run() async throws -> BenchmarkResults {
        var results = BenchmarkResults(options: options)
        results.loadBefore = LoadAverage.current
        // `log_dest none` silences the fixture's `log_type all` (two debug lines per message would
        // make the broker the bottleneck and hide client costs); the queue limit stays above the window.
        let broker = try await BenchmarkBroker.resolve(
            host: options.host, port: options.port,
            starting: MosquittoBrokerConfiguration(extraConfigLines: ["log_dest none", "max_queued_messages 1000000"])
        )
        let (host, port) = (broker.host, broker.port)
        defer { broker.stop() }
        results.brokerDescription = broker.started == nil ? "external \(host):\(port)" : "mosquitto started on \(host):\(port)"

        var run = 0
        for repetition in 0 ..< options.repetitions {
            let order = repetition % 2 == 0 ? throughputImplementations : throughputImplementations.reversed()
            for workload in Workload.throughputRows where options.runs(workload.id) {
                for implementation in order {
                    run += 1
                    progress("\(workload.title) \(implementation.rawValue) (repetition \(repetition + 1))")
                    var spec = RoleSpec(kind: .publisher, implementation: implementation, host: host, port: port)
                    spec.topic = "bench/\(getpid())/\(run)"
                    spec.qos = workload.qos
                    spec.payloadSize = workload.payloadSize
                    spec.seconds = options.seconds
                    spec.window = options.window
                    spec.maxInflight = options.maxInflight
                    let pair = try runPair(spec, run: run)
                    results.throughput[workload.id, default: [:]][implementation, default: []].append(pair)
                }
            }
            if options.runs("rtt") {
                for implementation in roundTripImplementations {
                    run += 1
                    progress("round trips \(implementation.rawValue) (repetition \(repetition + 1))")
                    var spec = RoleSpec(kind: .roundTrips, implementation: implementation, host: host, port: port)
                    spec.topic = "bench/\(getpid())/\(run)"
                    spec.count = options.roundTrips
                    spec.maxInflight = options.maxInflight
                    results.roundTrips[implementation, default: []].append(try runRoundTrips(spec))
                }
            }
        }
        if options.runs("memory") {
            for implementation in throughputImplementations {
                run += 1
                progress("memory check \(implementation.rawValue): \(options.memoryMessages) messages")
                var spec = RoleSpec(kind: .publisher, implementation: implementation, host: host, port: port)
                spec.topic = "bench/\(getpid())/\(run)"
                spec.qos = options.memoryQoS
                spec.payloadSize = 64
                spec.count = options.memoryMessages
                spec.window = options.window
                spec.maxInflight = options.maxInflight
                results.memory[implementation] = try runPair(spec, run: run)
            }
        }
        results.loadAfter = LoadAverage.current
        return results
    }

    // MARK: Runs

    /// Runs a subscriber, waits for its "ready", runs the publisher, and collects both reports.
    private func runPair(_ publisherSpec: RoleSpec, run: Int) throws -> PairResult {
        let path = "\(scratchDirectory)/mqtt-bench-\(getpid())-\(run)"
        let control = try ControlBlock.map(path: path, create: true)
        defer {
            control.unmap()
            unlink(path)
        }
        var publisherSpec = publisherSpec
        publisherSpec.controlPath = path
        var subscriberSpec = publisherSpec
        subscriberSpec.kind = .subscriber

        let subscriber = try spawn(subscriberSpec)
        _ = try subscriber.expectLine(startingWith: "ready", timeoutMilliseconds: 20_000)
        let publisher = try spawn(publisherSpec)
        // Generous: seconds-bound runs end on time; count-bound ones at >= 2,000 msg/s.
        let budget = Int(publisherSpec.seconds * 1000) + Int(publisherSpec.count / 2) + 60_000
        let publisherReport = try report(from: publisher, timeoutMilliseconds: budget)
        let subscriberReport = try report(from: subscriber, timeoutMilliseconds: subscriberSpec.idleMilliseconds + 30_000)

        let snapshot = control.snapshot
        let start = snapshot.publish_start_ns
        let end = snapshot.last_receive_ns
        return PairResult(
            publisher: publisherReport,
            subscriber: subscriberReport,
            sent: snapshot.sent,
            received: snapshot.received,
            elapsedNanoseconds: end > start ? end - start : 0
        )
    }

    /// Runs one round-trip process and returns its report.
    private func runRoundTrips(_ spec: RoleSpec) throws -> RoleReport {
        let process = try spawn(spec)
        return try report(from: process, timeoutMilliseconds: Int(spec.count / 100) + 60_000)
    }

    /// Reads the `result` line of `process` and reaps it.
    private func report(from process: RoleProcess, timeoutMilliseconds: Int) throws -> RoleReport {
        let line = try process.expectLine(startingWith: "result", timeoutMilliseconds: timeoutMilliseconds)
        let exit = process.reap(timeoutMilliseconds: 10_000)
        guard exit == "exit 0" else { throw RoleFailure("\(process.name) ended with \(exit)") }
        guard let report = RoleReport(line: line) else { throw RoleFailure("\(process.name): unreadable result \"\(line)\"") }
        return report
    }

    /// Starts the role executable for `spec`, under `MQTT_BENCH_WRAP` when `MQTT_BENCH_WRAP_ROLE` names it.
    private func spawn(_ spec: RoleSpec) throws -> RoleProcess {
        let name = "\(spec.implementation.rawValue)-\(spec.kind.rawValue)"
        var command = [spec.executablePath(in: binDirectory)] + spec.arguments
        if let wrapper = Environment.value("MQTT_BENCH_WRAP"), Environment.value("MQTT_BENCH_WRAP_ROLE") == name {
            command = wrapper.split(separator: " ").map(String.init) + command
        }
        return try RoleProcess(executable: command[0], arguments: Array(command.dropFirst()), name: name)
    }

    /// One progress line on standard error.
    private func progress(_ text: String) {
        Output.error("mqtt-bench: \(text)")
    }
}

// MARK: - BenchmarkResults

/// Everything measured, by row and implementation, with every repetition kept.
struct BenchmarkResults: Sendable {
    /// The command line the results were measured with.
    let options: BenchmarkOptions
    /// Throughput row id → implementation → one result per repetition.
    var throughput: [String: [RoleSpec.Implementation: [PairResult]]] = [:]
    /// Round trips: implementation → one report per repetition.
    var roundTrips: [RoleSpec.Implementation: [RoleReport]] = [:]
    /// The memory check: implementation → its run.
    var memory: [RoleSpec.Implementation: PairResult] = [:]
    /// The load average when the run started.
    var loadBefore = ""
    /// The load average when the run ended.
    var loadAfter = ""
    /// Which broker was used.
    var brokerDescription = ""

    /// Creates empty results for `options`.
    init(options: BenchmarkOptions) {
        self.options = options
    }
}

// MARK: - Environment

/// Reads environment variables (no Foundation).
enum Environment {
    /// The value of `name`, or `nil` when unset.
    static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

// MARK: - BenchmarkBroker

/// The broker a run talks to: the external one named by `--host`/`--port`, or a mosquitto the
/// fixture starts on a free loopback port (stopped by ``stop()``).
struct BenchmarkBroker {
    /// Its address.
    let host: String
    /// Its port.
    let port: Int
    /// The broker this run started, or `nil` for an external one.
    let started: MosquittoBroker?

    /// The external broker when `host` is given, otherwise one started with `configuration`.
    /// - Throws: The fixture's error when the broker cannot be started.
    static func resolve(host: String?, port: Int, starting configuration: @autoclosure () -> MosquittoBrokerConfiguration) async throws -> BenchmarkBroker {
        if let host { return BenchmarkBroker(host: host, port: port, started: nil) }
        let started = try await MosquittoBroker.start(configuration())
        return BenchmarkBroker(host: started.host, port: started.port, started: started)
    }

    /// Stops the broker this run started, if any.
    func stop() {
        started?.stop()
    }
}

// MARK: - LoadAverage

/// The system's load average, from `/proc/loadavg`.
enum LoadAverage {
    /// "1-min 5-min 15-min", or "?" when unreadable.
    static var current: String {
        guard let file = fopen("/proc/loadavg", "r") else { return "?" }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 128)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "?" }
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }
}
