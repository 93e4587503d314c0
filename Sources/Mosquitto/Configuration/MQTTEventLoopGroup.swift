import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - MQTTEventLoopGroup

/// A few network threads that drive the connections of many clients, instead of one thread per
/// connected client.
///
/// Each thread of a group waits on many clients' sockets at once (`epoll`) and runs libmosquitto's
/// read, write and keepalive steps for the ones that are ready. Connecting and reconnecting (DNS,
/// TCP, the TLS handshake) block, so they run on a separate, small set of connect threads, and a
/// slow broker never stalls established connections. By default every client uses
/// ``shared``; a group of one's own separates busy clients from the rest, and setting
/// ``MQTTConfiguration/eventLoopGroup`` to `nil` gives a client a network thread of its own, as
/// libmosquitto's `mosquitto_loop_start` does (limited to descriptor numbers below 1,024 by
/// libmosquitto's `select()` loop).
///
/// Everything else is the same in both modes: the API, reconnects, the dead-link watchdog,
/// keepalive, TLS, and the order of events.
///
/// ```swift
/// let group = try MQTTEventLoopGroup(numberOfThreads: 2)
/// var configuration = MQTTConfiguration(host: "broker.local", clientID: "device-1")
/// configuration.eventLoopGroup = group
/// let client = try MQTTClient(configuration: configuration)
/// ```
///
/// Each client stays on one of the group's threads (assigned in turn when the client is
/// created). The threads end when the group is released; the clients using it keep it alive.
public final class MQTTEventLoopGroup: Sendable {
    /// The number of event-loop threads.
    public let numberOfThreads: Int
    /// The number of threads that make the blocking connect and reconnect calls.
    public let numberOfConnectThreads: Int

    private let loops: [EventLoop]
    private let executor: BlockingExecutor
    private let nextIndex = Atomic<Int>(0)

    /// Creates the group and starts its threads.
    ///
    /// - Parameters:
    ///   - numberOfThreads: Event-loop threads, 1 to 64. Defaults to 1; one thread keeps up
    ///     with thousands of mostly idle connections, more help when many are busy.
    ///   - numberOfConnectThreads: Threads for connecting and reconnecting, 1 to 64. Defaults
    ///     to 2; connects to an unreachable host each hold one until the TCP timeout.
    /// - Throws: ``MQTTError`` with code ``MQTTError/Code/invalidConfiguration`` for a count
    ///   out of range, ``MQTTError/Code/outOfMemory`` when a thread or descriptor cannot be had.
    public init(numberOfThreads: Int = 1, numberOfConnectThreads: Int = 2) throws(MQTTError) {
        for (name, value) in [("numberOfThreads", numberOfThreads), ("numberOfConnectThreads", numberOfConnectThreads)]
        where !(1...64).contains(value) {
            throw MQTTError(.invalidConfiguration, operation: .configure, detail: "\(name) must be 1 to 64, not \(value)")
        }
        self.numberOfThreads = numberOfThreads
        self.numberOfConnectThreads = numberOfConnectThreads
        let executor = try BlockingExecutor(numberOfThreads: numberOfConnectThreads)
        var loops: [EventLoop] = []
        do {
            for index in 0..<numberOfThreads {
                loops.append(try EventLoop(index: index, executor: executor))
            }
        } catch {
            loops.forEach { $0.shutdown() }
            executor.shutdown()
            throw error
        }
        self.executor = executor
        self.loops = loops
    }

    /// The group every client uses unless its configuration says otherwise
    /// (``MQTTConfiguration/eventLoopGroup``): one event-loop thread per core, at most 4, and 2
    /// connect threads, started when the first client is created. Its threads live as long as
    /// the process and cost nothing while idle.
    public static let shared: MQTTEventLoopGroup = {
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        do {
            return try MQTTEventLoopGroup(numberOfThreads: min(max(cores, 1), 4), numberOfConnectThreads: 2)
        } catch {
            // Only when the kernel refuses a thread or a descriptor at the very first client.
            fatalError("could not start the shared MQTT event-loop group: \(error)")
        }
    }()

    deinit {
        loops.forEach { $0.shutdown() }
        executor.shutdown()
    }

    /// The loop for a new client: the group's loops in turn.
    func nextLoop() -> EventLoop {
        let index = nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[index % loops.count]
    }
}

extension MQTTEventLoopGroup: CustomStringConvertible, CustomReflectable {
    /// `MQTTEventLoopGroup(threads: N, connect threads: M)`.
    public var description: String {
        "MQTTEventLoopGroup(threads: \(numberOfThreads), connect threads: \(numberOfConnectThreads))"
    }

    /// The thread counts only (a dump of a configuration shows them, not the loops' state).
    public var customMirror: Mirror {
        Mirror(self, children: ["numberOfThreads": numberOfThreads, "numberOfConnectThreads": numberOfConnectThreads])
    }
}
