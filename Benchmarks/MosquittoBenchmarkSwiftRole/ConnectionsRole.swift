import CMosquittoBaseline
import Mosquitto
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The connections benchmark's Swift side: many `MQTTClient`s in this one process, each
// connected, subscribed to its own topic and iterating its subscription, until each got the one
// message the orchestrator's fan-out publisher sends to its topic.
//
//   MosquittoBenchmarkSwiftRole connections --host H --port P --count N --driver thread|shared
//       [--concurrency N] [--driver-threads N] [--qos Q] [--topic-prefix P] --control PATH
//       [--timeout-ms N]
//
// Output lines (the orchestrator reads them): `note ...` and `progress ...` (echoed), `error ...`
// (the first failure, free text), `ready key=value ...` once connecting is over, `result
// key=value ...` at the end. Exit status 0 whenever a result line was printed, also when not every
// client could connect: how far it got is the measurement.

// MARK: - ConnectionDriver

/// Which network driver the clients use.
enum ConnectionDriver: String, Sendable {
    /// A network thread per client (`MQTTConfiguration` without an event-loop group), like
    /// libmosquitto's `mosquitto_loop_start`.
    case thread
    /// All clients on one ``MQTTEventLoopGroup`` (epoll) of `--driver-threads` threads.
    case shared
}

// MARK: - ClientFactory

/// The one place where the driver choice becomes client configuration: nothing else in the role
/// knows which driver runs.
struct ClientFactory: Sendable {
    /// The role's settings.
    let options: ConnectionsRoleOptions
    /// The shared driver's group; `nil` for a thread per client.
    private let group: MQTTEventLoopGroup?

    /// A factory for `options.driver`.
    /// - Throws: ``MQTTError`` when the event-loop group cannot start.
    init(options: ConnectionsRoleOptions) throws(MQTTError) {
        self.options = options
        switch options.driver {
        case .thread:
            group = nil
        case .shared:
            group = try MQTTEventLoopGroup(numberOfThreads: options.driverThreads, numberOfConnectThreads: 1)
        }
    }

    /// The configuration of client `index`: its own client ID, clean session, keepalive 60 s, no
    /// automatic reconnect (a lost connection must show, not heal silently).
    func configuration(forClient index: Int) -> MQTTConfiguration {
        var configuration = MQTTConfiguration(
            host: options.host, port: options.port, clientID: "c\(getpid())-\(index)", keepAlive: .seconds(60), cleanSession: true
        )
        configuration.reconnect = .disabled
        configuration.connectTimeout = .seconds(30)
        configuration.operationTimeout = .seconds(30)
        configuration.eventLoopGroup = group
        return configuration
    }
}

// MARK: - Options

/// A command line the connections role does not accept.
struct RoleUsageError: Error, Sendable, CustomStringConvertible {
    /// What was wrong.
    let description: String

    /// Creates an error saying `description`.
    init(_ description: String) {
        self.description = description
    }
}

/// The connections role's command line.
struct ConnectionsRoleOptions: Sendable {
    /// The broker's address.
    var host = "127.0.0.1"
    /// The broker's port.
    var port = 1883
    /// How many clients to connect.
    var count = 10_000
    /// Which network driver the clients use.
    var driver = ConnectionDriver.thread
    /// How many connects (and disconnects) are in flight at once.
    var concurrency = 64
    /// The shared driver's thread count (unused by `.thread`).
    var driverThreads = 1
    /// The QoS of the subscriptions.
    var qos = MQTTQoS.atMostOnce
    /// Client `i` subscribes to this followed by `i`.
    var topicPrefix = "bench/conn/"
    /// The control block shared with the fan-out publisher.
    var controlPath = ""
    /// How long to wait for the messages once connecting is over (ms).
    var timeoutMilliseconds = 60_000

    /// Parses the arguments after `connections`.
    /// - Throws: ``RoleUsageError`` for an unknown flag or a bad value.
    static func parse(_ arguments: ArraySlice<String>) throws(RoleUsageError) -> ConnectionsRoleOptions {
        var options = ConnectionsRoleOptions()
        var remaining = arguments
        while let flag = remaining.popFirst() {
            guard let value = remaining.popFirst() else { throw RoleUsageError("\(flag) needs a value") }
            /// `value` as a number in `range`.
            func number(_ range: ClosedRange<Int>) throws(RoleUsageError) -> Int {
                guard let number = Int(value), range.contains(number) else {
                    throw RoleUsageError("\(flag): expected a number in \(range.lowerBound)...\(range.upperBound), not \(value)")
                }
                return number
            }
            switch flag {
            case "--host": options.host = value
            case "--port": options.port = try number(1 ... 65535)
            case "--count": options.count = try number(0 ... 1_000_000)
            case "--driver":
                guard let driver = ConnectionDriver(rawValue: value) else { throw RoleUsageError("--driver: thread or shared, not \(value)") }
                options.driver = driver
            case "--concurrency": options.concurrency = try number(1 ... 10_000)
            case "--driver-threads": options.driverThreads = try number(1 ... 64)
            case "--qos": options.qos = MQTTQoS(rawValue: try number(0 ... 2)) ?? .atMostOnce
            case "--topic-prefix": options.topicPrefix = value
            case "--control": options.controlPath = value
            case "--timeout-ms": options.timeoutMilliseconds = try number(1 ... 3_600_000)
            default: throw RoleUsageError("unknown flag \(flag)")
            }
        }
        guard !options.controlPath.isEmpty else { throw RoleUsageError("--control is required") }
        return options
    }
}

// MARK: - ThreadSampler

/// The process's peak thread count, sampled from `/proc/self/status` every 50 ms by a task that
/// sleeps in between (so it adds no thread of its own), and at each phase boundary.
final class ThreadSampler: Sendable {
    /// The highest count seen.
    private let peak = Atomic<Int>(0)

    /// Samples now; returns the current count.
    @discardableResult
    func sample() -> Int {
        let count = bench_thread_count()
        peak.max(Int(count))
        return Int(count)
    }

    /// The highest count seen so far.
    var peakCount: Int { peak.load(ordering: .relaxed) }

    /// Samples every 50 ms until cancelled.
    func run() async {
        while !Task.isCancelled {
            sample()
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

extension Atomic where Value == Int {
    /// Raises the value to `candidate` if that is larger.
    fileprivate func max(_ candidate: Int) {
        var current = load(ordering: .relaxed)
        while candidate > current {
            let (exchanged, original) = compareExchange(expected: current, desired: candidate, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

// MARK: - ConnectionsRole

/// Connects many clients in this process, counts their messages, disconnects them, reports.
enum ConnectionsRole {
    /// One client that connected and subscribed.
    struct Connected: Sendable {
        let client: MQTTClient
        let subscription: MQTTSubscription
    }

    /// What became of one connection attempt.
    enum Outcome: Sendable {
        case connected(Connected)
        case failed(index: Int, String)
    }

    /// Runs the role; returns the exit status.
    static func main(_ arguments: ArraySlice<String>) async -> Int32 {
        let floorRSS = bench_current_rss_kib()
        let options: ConnectionsRoleOptions
        let factory: ClientFactory
        do {
            options = try ConnectionsRoleOptions.parse(arguments)
            factory = try ClientFactory(options: options)
        } catch let error as MQTTError {
            printError("swift role: \(error)")
            return 1
        } catch {
            // On standard output, where the orchestrator reads it, to tell its user.
            say("error \(error)")
            return 2
        }
        guard let pointer = bench_control_map(options.controlPath, 0) else {
            printError("swift role: cannot map the control block (errno \(errno))")
            return 1
        }
        defer { bench_control_unmap(pointer) }
        let control = ControlBlock(pointer: pointer)

        // A client with its own thread holds 3 descriptors while connected: its socket and the
        // socket pair libmosquitto uses to wake its loop. On an event loop the pair is closed.
        let perClient: UInt64 = options.driver == .thread ? 3 : 1
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        let wanted = UInt64(options.count) * perClient + 64
        if bench_raise_open_file_limit(wanted, &soft, &hard) != 0 {
            say("note open-file limit \(soft) (hard \(hard), not raisable here) is below the \(wanted) descriptors"
                + " \(options.count) clients need: about \((Int(soft) - 64) / Int(perClient)) clients fit")
        }

        let sampler = ThreadSampler()
        sampler.sample()
        let samplerTask = Task { await sampler.run() }

        // Connect and subscribe, `concurrency` at a time; stop starting new ones after the first failure.
        let connectStart = bench_now_ns()
        var clients: [Connected] = []
        clients.reserveCapacity(options.count)
        var failed = 0
        var attempted = 0
        var firstError: String?
        await withTaskGroup(of: Outcome.self) { group in
            while attempted < min(options.concurrency, options.count) {
                let index = attempted
                group.addTask { await connectOne(index, factory: factory) }
                attempted += 1
            }
            while let outcome = await group.next() {
                switch outcome {
                case .connected(let client):
                    clients.append(client)
                    if clients.count % 1000 == 0 {
                        say("progress \(clients.count) connected, \(sampler.sample()) threads,"
                            + " \(Double((bench_now_ns() - connectStart) / 1_000_000) / 1000) s")
                    }
                case .failed(let index, let error):
                    failed += 1
                    if firstError == nil {
                        var open = 0
                        var highest = 0
                        bench_open_descriptors(&open, &highest)
                        let text = "client \(index) of \(options.count), after \(clients.count) connected: \(error)"
                            + " [descriptors open: \(open), highest \(highest)]"
                        firstError = text
                    }
                }
                if firstError == nil, attempted < options.count {
                    let index = attempted
                    group.addTask { await connectOne(index, factory: factory) }
                    attempted += 1
                }
            }
        }
        let connectNanoseconds = bench_now_ns() - connectStart
        let threadsConnected = sampler.sample()
        let rssConnected = bench_current_rss_kib()

        // Every client iterates its own subscription.
        let subscriptions = clients.map(\.subscription)
        let consumers = Task {
            await withDiscardingTaskGroup { group in
                for subscription in subscriptions {
                    group.addTask {
                        do {
                            for try await _ in subscription {
                                bench_control_note_received(control.pointer)
                            }
                        } catch {}
                    }
                }
            }
        }
        if let firstError { say("error \(firstError)") }
        say("ready attempted=\(attempted) connected=\(clients.count) failed=\(failed) connect_ns=\(connectNanoseconds)"
            + " threads=\(threadsConnected) rss_kib=\(rssConnected) nofile=\(soft)")

        // Wait for one message per client: until all arrived, nothing arrived for 5 s after the
        // publisher finished, or the timeout.
        let expected = UInt64(clients.count)
        let deadline = bench_now_ns() + UInt64(options.timeoutMilliseconds) * 1_000_000
        var publisherDoneAt: UInt64 = 0
        var snapshot = bench_control()
        while true {
            bench_control_snapshot(pointer, &snapshot)
            if snapshot.received >= expected { break }
            let now = bench_now_ns()
            if now >= deadline { break }
            if snapshot.publisher_done != 0 {
                if publisherDoneAt == 0 { publisherDoneAt = now }
                let lastActivity = Swift.max(publisherDoneAt, snapshot.last_receive_ns)
                if now - lastActivity > 5_000_000_000 { break }
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        bench_control_snapshot(pointer, &snapshot)
        let deliverNanoseconds = snapshot.received > 0 && snapshot.last_receive_ns > snapshot.publish_start_ns
            ? snapshot.last_receive_ns - snapshot.publish_start_ns : 0
        let threadsDelivered = sampler.sample()

        // Disconnect, `concurrency` at a time.
        let disconnectStart = bench_now_ns()
        var disconnectFailures = 0
        var firstDisconnectError: String?
        await withTaskGroup(of: String?.self) { group in
            var next = 0
            while next < min(options.concurrency, clients.count) {
                let client = clients[next].client
                group.addTask { await disconnectOne(client) }
                next += 1
            }
            while let error = await group.next() {
                if let error {
                    disconnectFailures += 1
                    if firstDisconnectError == nil { firstDisconnectError = error }
                }
                if next < clients.count {
                    let client = clients[next].client
                    group.addTask { await disconnectOne(client) }
                    next += 1
                }
            }
        }
        let disconnectNanoseconds = bench_now_ns() - disconnectStart
        consumers.cancel()
        await consumers.value
        let connectedCount = clients.count
        clients.removeAll()
        // Network threads end shortly after their disconnect; give them a moment before counting.
        try? await Task.sleep(for: .milliseconds(200))
        samplerTask.cancel()
        await samplerTask.value
        let threadsAfter = sampler.sample()
        if let firstDisconnectError { say("error disconnect: \(firstDisconnectError)") }

        say("result connections=\(connectedCount) received=\(snapshot.received) deliver_ns=\(deliverNanoseconds)"
            + " disconnect_ns=\(disconnectNanoseconds) disconnect_failed=\(disconnectFailures)"
            + " peak_threads=\(sampler.peakCount) threads_delivered=\(threadsDelivered) threads_after=\(threadsAfter)"
            + " peak_rss_kib=\(bench_peak_rss_kib()) floor_rss_kib=\(floorRSS)")
        return 0
    }

    /// Creates, connects and subscribes client `index`.
    private static func connectOne(_ index: Int, factory: ClientFactory) async -> Outcome {
        let client: MQTTClient
        do {
            client = try MQTTClient(configuration: factory.configuration(forClient: index))
        } catch {
            return .failed(index: index, "creating the client: \(error)")
        }
        do {
            try await client.connect()
        } catch {
            return .failed(index: index, "connect: \(error)")
        }
        do {
            let subscription = try await client.subscribe(to: "\(factory.options.topicPrefix)\(index)", qos: factory.options.qos)
            return .connected(Connected(client: client, subscription: subscription))
        } catch {
            try? await client.disconnect()
            return .failed(index: index, "subscribe: \(error)")
        }
    }

    /// Disconnects `client`; returns the error, if any.
    private static func disconnectOne(_ client: MQTTClient) async -> String? {
        do {
            try await client.disconnect()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Writes `line` to standard output (unbuffered: the orchestrator reads it as it comes).
    private static func say(_ line: String) {
        var text = line + "\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(STDOUT_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 {
                    if written < 0, errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
