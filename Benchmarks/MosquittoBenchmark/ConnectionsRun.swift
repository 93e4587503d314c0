import CMosquitto
import MosquittoTesting

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - ConnectionsResult

/// What `mqtt-bench connections` measured, from the Swift role's `ready` and `result` lines.
struct ConnectionsResult: Sendable {
    /// The command line.
    let options: ConnectionsOptions
    /// Which broker was used (and its open-file limit).
    var brokerDescription = ""
    /// Connection attempts started (the role stops starting new ones after the first failure).
    var attempted = 0
    /// Clients connected and subscribed.
    var connected = 0
    /// Connection attempts that failed.
    var failed = 0
    /// From the first connect to the last client subscribed (or failed), ns.
    var connectNanoseconds: UInt64 = 0
    /// Threads in the role process once connecting was over.
    var threadsConnected = 0
    /// Current RSS of the role process once connecting was over, KiB.
    var rssConnectedKiB = 0
    /// The role's open-file soft limit.
    var openFileLimit = 0
    /// Messages received (one per client expected).
    var received = 0
    /// From the publisher's first publish to the last receipt, ns (0 when nothing arrived).
    var deliverNanoseconds: UInt64 = 0
    /// Time to disconnect every connected client, ns.
    var disconnectNanoseconds: UInt64 = 0
    /// Disconnects that failed.
    var disconnectFailed = 0
    /// The role process's peak thread count (sampled every 50 ms and at each phase boundary).
    var peakThreads = 0
    /// Threads once the messages were in (or the wait ended).
    var threadsDelivered = 0
    /// Threads after every client was disconnected.
    var threadsAfter = 0
    /// The role process's peak RSS (VmHWM), KiB.
    var peakRSSKiB = 0
    /// The role process's RSS at start, before any client, KiB.
    var floorRSSKiB = 0
    /// The role's `note` and `error` lines (limits, the first failure).
    var notes: [String] = []
    /// Set when the role process itself failed (crashed, timed out, printed no result).
    var roleFailure: String?
    /// How the role process ended when it ended early (`exit 2`: it refused the command line).
    var roleExit: String?
    /// Whether the role got as far as the `result` line.
    var finished = false

    /// Whether every client connected, got its message, and disconnected.
    var completed: Bool {
        roleFailure == nil && finished && connected == options.count && received == connected && disconnectFailed == 0
    }

    /// Messages expected (one per connected client) but not received.
    var lost: Int { max(connected - received, 0) }

    /// Creates an empty result for `options`.
    init(options: ConnectionsOptions) {
        self.options = options
    }

    /// Reads the fields of a `ready` or `result` line.
    mutating func read(_ line: String) {
        var fields: [Substring: Substring] = [:]
        for word in line.split(separator: " ").dropFirst() {
            guard let equals = word.firstIndex(of: "=") else { continue }
            fields[word[..<equals]] = word[word.index(after: equals)...]
        }
        /// Stores field `key` into `target` when present and a number.
        func take<T: LosslessStringConvertible>(_ key: Substring, _ target: inout T) {
            if let text = fields[key], let value = T(String(text)) { target = value }
        }
        take("attempted", &attempted)
        take("connected", &connected)
        take("failed", &failed)
        take("connect_ns", &connectNanoseconds)
        take("threads", &threadsConnected)
        take("rss_kib", &rssConnectedKiB)
        take("nofile", &openFileLimit)
        take("connections", &connected)
        take("received", &received)
        take("deliver_ns", &deliverNanoseconds)
        take("disconnect_ns", &disconnectNanoseconds)
        take("disconnect_failed", &disconnectFailed)
        take("peak_threads", &peakThreads)
        take("threads_delivered", &threadsDelivered)
        take("threads_after", &threadsAfter)
        take("peak_rss_kib", &peakRSSKiB)
        take("floor_rss_kib", &floorRSSKiB)
    }
}

// MARK: - ConnectionsRun

/// `mqtt-bench connections`: starts a broker allowed enough descriptors, runs the Swift role
/// with N clients, has a C client publish one message per client topic, collects the report.
struct ConnectionsRun {
    /// The command line.
    let options: ConnectionsOptions

    /// Runs the benchmark once.
    /// - Throws: ``UsageError`` when the role refuses the driver; ``RoleFailure`` or the fixture's
    ///   error when something fails before the role runs. Failures of the role itself are reported
    ///   in the result instead.
    func run() async throws -> ConnectionsResult {
        var result = ConnectionsResult(options: options)
        // One descriptor per client plus headroom; `log_dest none`: 10,000 connect lines would only
        // slow it down. `set_tcp_nodelay true`: otherwise Nagle holds each client's one PUBLISH
        // until the client's delayed ACK of its SUBACK (20-30 ms, measured), which is the broker's
        // latency, not the client's.
        let limit = options.count + 1024
        let broker = try await BenchmarkBroker.resolve(
            host: options.host, port: options.port,
            starting: MosquittoBrokerConfiguration(extraConfigLines: ["log_dest none", "set_tcp_nodelay true"], maximumOpenFiles: limit)
        )
        let (host, port) = (broker.host, broker.port)
        defer { broker.stop() }
        result.brokerDescription = broker.started == nil
            ? "external broker \(host):\(port)"
            : "mosquitto started on \(host):\(port) (open-file limit \(limit), TCP_NODELAY)"

        let controlPath = "\(Orchestrator.controlDirectory)/mqtt-bench-\(getpid())-connections"
        let control = try ControlBlock.map(path: controlPath, create: true)
        defer {
            control.unmap()
            unlink(controlPath)
        }
        let topicPrefix = "bench/\(getpid())/conn/"
        let role = try RoleProcess(
            executable: "\(Orchestrator.executableDirectory)/MosquittoBenchmarkSwiftRole",
            arguments: [
                "connections", "--host", host, "--port", "\(port)", "--count", "\(options.count)",
                "--driver", options.driver, "--concurrency", "\(options.concurrency)",
                "--driver-threads", "\(options.driverThreads)", "--qos", "\(options.qos)",
                "--topic-prefix", topicPrefix, "--control", controlPath, "--timeout-ms", "\(options.timeoutSeconds * 1000)",
            ],
            name: "swift-connections"
        )

        // Connecting: allow 20 ms per client on top of a minute before calling the role hung.
        let connectBudget = 60_000 + options.count * 20
        guard let ready = readUntil("ready", from: role, timeoutMilliseconds: connectBudget, into: &result) else {
            if result.roleExit == "exit 2" {
                throw UsageError(result.notes.last ?? "the Swift role refused its command line")
            }
            return result
        }
        result.read(ready)
        progress("\(result.connected) of \(options.count) clients connected and subscribed"
            + " in \(Format.decimal(Double(result.connectNanoseconds) / 1e9, 2)) s; publishing one message to each topic")

        if result.connected > 0 {
            var spec = RoleSpec(kind: .fanout, implementation: .c, host: host, port: port)
            spec.topic = topicPrefix
            spec.count = UInt64(result.attempted)
            spec.qos = options.qos
            spec.maxInflight = 100
            spec.controlPath = controlPath
            let publisher = try RoleProcess(
                executable: spec.executablePath(in: Orchestrator.executableDirectory), arguments: spec.arguments, name: "c-fanout"
            )
            do {
                _ = try publisher.expectLine(startingWith: "result", timeoutMilliseconds: 120_000)
                let exit = publisher.reap(timeoutMilliseconds: 10_000)
                if exit != "exit 0" { result.notes.append("the publisher ended with \(exit)") }
            } catch {
                result.notes.append("publisher: \(error)")
            }
        }

        let finishBudget = options.timeoutSeconds * 1000 + 60_000 + options.count * 10
        if let line = readUntil("result", from: role, timeoutMilliseconds: finishBudget, into: &result) {
            result.read(line)
            result.finished = true
            let exit = role.reap(timeoutMilliseconds: 10_000)
            if exit != "exit 0" { result.roleFailure = "the role ended with \(exit) after its result" }
        }
        return result
    }

    /// Reads the role's lines until one starts with `prefix` and returns it; `progress` and `note`
    /// lines are echoed, `note` and `error` lines kept. When the role ends or times out first,
    /// records that in `result.roleFailure` and returns `nil`.
    private func readUntil(
        _ prefix: String, from role: RoleProcess, timeoutMilliseconds: Int, into result: inout ConnectionsResult
    ) -> String? {
        let deadline = Measurements.now + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let left = deadline > Measurements.now ? Int((deadline - Measurements.now) / 1_000_000) : 0
            let line: String?
            do {
                line = try role.readLine(timeoutMilliseconds: max(left, 1))
            } catch {
                result.roleFailure = "\(error) (waiting for \"\(prefix)\")"
                role.reap(timeoutMilliseconds: 0)
                return nil
            }
            guard let line else {
                let exit = role.reap(timeoutMilliseconds: 2000)
                result.roleExit = exit
                result.roleFailure = "the role ended (\(exit)) before printing \"\(prefix)\""
                return nil
            }
            if line.hasPrefix(prefix + " ") || line == prefix { return line }
            if line.hasPrefix("error ") || line.hasPrefix("note ") {
                result.notes.append(String(line.drop { $0 != " " }.dropFirst()))
            }
            if !line.hasPrefix("error ") { progress(line) }
        }
    }

    /// One progress line on standard error.
    private func progress(_ text: String) {
        Output.error("mqtt-bench: \(text)")
    }
}

// MARK: - ConnectionsReport

/// Renders a ``ConnectionsResult``.
struct ConnectionsReport {
    /// What was measured.
    let result: ConnectionsResult

    /// The report: a header, one line per measurement, and a Markdown table row.
    var rendered: String {
        var major: Int32 = 0
        var minor: Int32 = 0
        var revision: Int32 = 0
        mosquitto_lib_version(&major, &minor, &revision)
        let r = result
        let options = r.options
        let driver = options.driver == "thread" ? "a network thread per client" : "shared event-loop group of \(options.driverThreads) event-loop thread(s) and 1 connect thread"
        let perClient = r.connected > 0 ? Double(r.peakRSSKiB - r.floorRSSKiB) / Double(r.connected) : .nan
        var lines = [
            "mqtt-bench connections: \(Format.grouped(Double(options.count))) clients in one Swift process (\(driver)),"
                + " QoS \(options.qos), libmosquitto \(major).\(minor).\(revision), \(r.brokerDescription)",
            "  role open-file limit \(Format.grouped(Double(r.openFileLimit))); connects in flight: \(options.concurrency)",
            "",
            "  connected + subscribed  \(Format.grouped(Double(r.connected))) of \(Format.grouped(Double(options.count)))"
                + " in \(Format.decimal(Double(r.connectNanoseconds) / 1e9, 2)) s"
                + (r.connectNanoseconds > 0 ? " (\(Format.grouped(Double(r.connected) / (Double(r.connectNanoseconds) / 1e9))) /s)" : "")
                + (r.failed > 0 ? "; \(r.failed) attempt(s) failed" : ""),
            "  messages delivered      \(Format.grouped(Double(r.received))) of \(Format.grouped(Double(r.connected)))"
                + " in \(Format.decimal(Double(r.deliverNanoseconds) / 1e6, 1)) ms; lost \(r.lost)",
            "  threads                 peak \(r.peakThreads); after connecting \(r.threadsConnected), after delivery"
                + " \(r.threadsDelivered), after disconnecting \(r.threadsAfter)",
            "  peak RSS (VmHWM)        \(Format.mebibytes(Double(r.peakRSSKiB))) MiB (at start \(Format.mebibytes(Double(r.floorRSSKiB))) MiB;"
                + " \(Format.decimal(perClient, 1)) KiB per connected client)",
            "  disconnected            \(Format.grouped(Double(r.connected - r.disconnectFailed))) of \(Format.grouped(Double(r.connected)))"
                + " in \(Format.decimal(Double(r.disconnectNanoseconds) / 1e6, 1)) ms",
            "  completed               \(r.completed ? "yes" : "NO")",
        ]
        lines += r.notes.map { "  note: \($0)" }
        if let failure = r.roleFailure { lines.append("  role failure: \(failure)") }
        lines += [
            "",
            "  | driver | clients | connected | connect s | deliver ms | lost | peak threads | peak RSS MiB | disconnect ms | completed |",
            "  | \(options.driver) | \(Format.grouped(Double(options.count))) | \(Format.grouped(Double(r.connected)))"
                + " | \(Format.decimal(Double(r.connectNanoseconds) / 1e9, 2)) | \(Format.decimal(Double(r.deliverNanoseconds) / 1e6, 1))"
                + " | \(r.lost) | \(r.peakThreads) | \(Format.mebibytes(Double(r.peakRSSKiB)))"
                + " | \(Format.decimal(Double(r.disconnectNanoseconds) / 1e6, 1)) | \(r.completed ? "yes" : "no") |",
        ]
        return lines.joined(separator: "\n")
    }
}
