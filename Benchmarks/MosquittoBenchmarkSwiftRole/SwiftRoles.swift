import CMosquittoBaseline
import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - RoleFailure

/// A role that failed outright.
struct RoleFailure: Error, Sendable, CustomStringConvertible {
    /// What failed.
    let description: String
}

// MARK: - ControlBlock

/// The page shared with the other role process (see `bench_control` in CMosquittoBaseline.h).
///
/// `@unchecked Sendable` is safe: the pointee is shared with another process anyway, and it is
/// only ever read and written through CMosquittoBaseline's functions, which use atomic builtins
/// for every field.
struct ControlBlock: @unchecked Sendable {
    /// The mapped block.
    let pointer: UnsafeMutablePointer<bench_control>

    /// Messages the subscriber received so far.
    var received: UInt64 { bench_control_received(pointer) }
}

// MARK: - SwiftRoleOptions

/// The role's settings as Swift values (copied out of the parsed C command line).
struct SwiftRoleOptions: Sendable {
    /// The broker's address.
    let host: String
    /// The broker's port.
    let port: Int
    /// The topic published to and subscribed to.
    let topic: String
    /// The QoS of publish and subscription.
    let qos: MQTTQoS
    /// The payload size in bytes.
    let payloadSize: Int
    /// Publisher: how long to publish (0 = no time limit).
    let seconds: Double
    /// Publisher: how many to publish (0 = no limit); round trips: how many to time.
    let count: UInt64
    /// Publisher: the end-to-end window, in messages.
    let window: UInt64
    /// The client's maximum of QoS 1/2 messages in flight.
    let maxInflight: Int
    /// Subscriber: how long to wait for stragglers once the publisher is done (ms).
    let idleMilliseconds: Int32

    /// Copies `options` (its strings point into argv).
    init(_ options: bench_role_options) {
        host = String(cString: options.host)
        port = Int(options.port)
        topic = String(cString: options.topic)
        qos = MQTTQoS(rawValue: Int(options.qos)) ?? .atMostOnce
        payloadSize = Int(options.payload_size)
        seconds = options.seconds
        count = options.count
        window = options.window
        maxInflight = Int(options.max_inflight)
        idleMilliseconds = options.idle_ms
    }
}

// MARK: - SwiftRoles

/// The Swift client's side of each workload, through `MQTTClient`'s public API only, doing what
/// the C roles in CMosquittoBaseline/roles.c do, step for step: same settings (MQTT 3.1.1, clean
/// session, keepalive 60 s, TCP_NODELAY, the given max in-flight), same window, same bookkeeping
/// calls per message.
enum SwiftRoles {
    /// How long without progress before a publisher calls the rest lost (ms); as in roles.c.
    static let stallMilliseconds: Int32 = 3000

    /// The network driver: the library's default (the shared event-loop group), or with
    /// `MQTT_BENCH_SWIFT_DRIVER=thread` a thread per client running libmosquitto's own loop
    /// (`eventLoopGroup = nil`), like the C baseline's `mosquitto_loop_start`.
    static let eventLoopGroup: MQTTEventLoopGroup? = {
        guard let driver = getenv("MQTT_BENCH_SWIFT_DRIVER").map({ String(cString: $0) }), driver == "thread" else {
            return MQTTConfiguration().eventLoopGroup
        }
        return nil
    }()

    /// Whether the subscriber's consumer and the round-trip loop run on the client's event-loop
    /// thread (``MQTTClient/taskExecutor``, the default here), or with
    /// `MQTT_BENCH_SWIFT_EXECUTOR=global` on Swift's global executor. The publisher always runs
    /// on the global executor: its window wait blocks its thread, which must not be the loop's.
    static let useLoopExecutor: Bool = {
        getenv("MQTT_BENCH_SWIFT_EXECUTOR").map { String(cString: $0) } != "global"
    }()

    /// The executor the consumer and round-trip tasks prefer (`nil`: the global one).
    static func preferredExecutor(_ client: MQTTClient) -> (any TaskExecutor)? {
        useLoopExecutor ? client.taskExecutor : nil
    }

    /// A connected client configured like the C baseline's.
    static func connectedClient(_ options: SwiftRoleOptions) async throws -> MQTTClient {
        var configuration = MQTTConfiguration(host: options.host, port: options.port)
        configuration.eventLoopGroup = eventLoopGroup
        configuration.maxInflightMessages = options.maxInflight
        configuration.reconnect = .disabled
        configuration.tcpNoDelay = true
        // The window keeps far fewer than these waiting; they must not be what limits.
        configuration.maxPendingPublishes = max(10_000, Int(options.window) * 4)
        configuration.messageBufferSize = max(10_000, Int(options.window) * 4)
        let client = try MQTTClient(configuration: configuration)
        try await client.connect()
        return client
    }

    // MARK: Publisher

    /// Publishes for `options.seconds` or `options.count` messages with `beginPublish`, keeping
    /// within the window; for QoS 1/2 awaits every acknowledgement (oldest first, once a window's
    /// worth is outstanding, so the awaits almost always find the ack already there), then waits
    /// until the subscriber has everything.
    ///
    /// The window wait blocks this (cooperative) thread on a futex, exactly as the C publisher
    /// blocks its main thread: acceptable in a single-purpose benchmark process, where the
    /// client's network thread is not part of the cooperative pool.
    static func publish(_ options: SwiftRoleOptions, control: ControlBlock) async throws -> bench_role_result {
        let client = try await connectedClient(options)
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: options.payloadSize)
        var result = bench_role_result()
        bench_rss_samples_init(&result.rss, options.count)
        var pending: [MQTTPendingPublish] = []
        var oldest = 0

        let cpuStart = bench_cpu_ns()
        bench_control_publisher_started(control.pointer)
        result.start_ns = bench_now_ns()
        let deadline = options.seconds > 0 ? result.start_ns + UInt64(options.seconds * 1e9) : .max
        var sent: UInt64 = 0
        while options.count == 0 || sent < options.count {
            if sent & 15 == 0, bench_now_ns() >= deadline { break }
            if bench_control_wait_window(control.pointer, sent, options.window, stallMilliseconds) != 0 { break }
            let publish = try client.beginPublish(to: options.topic, payload: payload, qos: options.qos)
            if options.qos != .atMostOnce {
                pending.append(publish)
                if pending.count - oldest > Int(options.window) {
                    try await pending[oldest].acknowledgement()
                    oldest += 1
                    if oldest >= Int(options.window) {
                        pending.removeFirst(oldest)
                        oldest = 0
                    }
                }
            }
            sent += 1
            bench_rss_samples_note(&result.rss, sent)
        }
        bench_control_publisher_finished(control.pointer, sent)
        for publish in pending[oldest...] {
            try await publish.acknowledgement()
        }
        pending.removeAll()
        waitUntilReceived(sent, control: control)
        result.end_ns = bench_now_ns()
        result.cpu_ns = bench_cpu_ns() - cpuStart
        result.messages = sent
        try await client.disconnect()
        return result
    }

    /// Polls (every 200 µs, as roles.c does) until the subscriber received `sent` messages or
    /// nothing moved for ``stallMilliseconds``.
    private static func waitUntilReceived(_ sent: UInt64, control: ControlBlock) {
        var lastSeen = control.received
        var lastProgress = bench_now_ns()
        while control.received < sent {
            let received = control.received
            if received != lastSeen {
                lastSeen = received
                lastProgress = bench_now_ns()
            } else if bench_now_ns() - lastProgress > UInt64(stallMilliseconds) * 1_000_000 {
                return
            }
            usleep(200)
        }
    }

    // MARK: Subscriber

    /// Subscribes, announces "ready", then counts messages from the subscription's
    /// `AsyncSequence` on a task of its own until the control block says to stop (checked every
    /// 10 ms, as roles.c does).
    static func subscribe(_ options: SwiftRoleOptions, control: ControlBlock) async throws -> bench_role_result {
        let client = try await connectedClient(options)
        let subscription = try await client.subscribe(to: options.topic, qos: options.qos)
        let total = options.count

        var result = bench_role_result()
        let cpuStart = bench_cpu_ns()
        result.start_ns = bench_now_ns()
        bench_announce_ready()
        let consumer = Task(executorPreference: preferredExecutor(client)) { () throws -> bench_rss_samples in
            var rss = bench_rss_samples()
            bench_rss_samples_init(&rss, total)
            var received: UInt64 = 0
            for try await _ in subscription {
                bench_control_note_received(control.pointer)
                received += 1
                bench_rss_samples_note(&rss, received)
            }
            return rss
        }
        while bench_control_subscriber_should_stop(control.pointer, options.idleMilliseconds) == 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        result.cpu_ns = bench_cpu_ns() - cpuStart
        consumer.cancel()
        if let rss = try? await consumer.value {
            result.rss = rss
        }
        var snapshot = bench_control()
        bench_control_snapshot(control.pointer, &snapshot)
        result.end_ns = snapshot.last_receive_ns
        result.messages = snapshot.received
        try await client.disconnect()
        return result
    }

    // MARK: Round trips

    /// Times `options.count` round trips (after `warmup` untimed ones): publish a QoS 0 message
    /// with `beginPublish` and wait for it on the same client's subscription iterator.
    static func roundTrips(_ options: SwiftRoleOptions, warmup: UInt64, latencies: inout [UInt64]) async throws -> bench_role_result {
        let client = try await connectedClient(options)
        return try await withTaskExecutorPreference(preferredExecutor(client)) {
            try await timeRoundTrips(client, options, warmup: warmup, latencies: &latencies)
        }
    }

    /// The round trips of ``roundTrips(_:warmup:latencies:)`` on a connected client.
    private static func timeRoundTrips(
        _ client: MQTTClient, _ options: SwiftRoleOptions, warmup: UInt64, latencies: inout [UInt64]
    ) async throws -> bench_role_result {
        let subscription = try await client.subscribe(to: options.topic, qos: .atMostOnce)
        var iterator = subscription.makeAsyncIterator()
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: min(options.payloadSize, 64))

        var result = bench_role_result()
        var cpuStart: UInt64 = 0
        for index in 0 ..< (warmup + options.count) {
            if index == warmup {
                cpuStart = bench_cpu_ns()
                result.start_ns = bench_now_ns()
            }
            let start = bench_now_ns()
            _ = try client.beginPublish(to: options.topic, payload: payload, qos: .atMostOnce)
            guard try await iterator.next() != nil else {
                throw RoleFailure(description: "the subscription ended during round trip \(index)")
            }
            let end = bench_now_ns()
            if index >= warmup {
                latencies[Int(index - warmup)] = end - start
                result.messages += 1
            }
        }
        result.end_ns = bench_now_ns()
        result.cpu_ns = bench_cpu_ns() - cpuStart
        try await client.disconnect()
        return result
    }
}
