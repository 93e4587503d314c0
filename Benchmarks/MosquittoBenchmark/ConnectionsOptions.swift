// MARK: - ConnectionsOptions

/// The command line of `mqtt-bench connections`: many clients in one process.
struct ConnectionsOptions: Sendable, Equatable {
    /// How many clients the Swift role process connects.
    var count = 10_000
    /// The network driver: `shared` (an epoll event-loop group, like the library's default) or
    /// `thread` (a thread per client).
    var driver = "shared"
    /// How many connects (and disconnects) are in flight at once.
    var concurrency = 64
    /// The shared driver's thread count.
    var driverThreads = 1
    /// The QoS of the subscriptions and of the messages.
    var qos = 0
    /// How long the role waits for the messages once connecting is over, in seconds.
    var timeoutSeconds = 60
    /// An external broker's host instead of one started here.
    var host: String?
    /// The external broker's port.
    var port = 1883

    /// The usage text.
    static let usage = """
        usage: mqtt-bench connections [--count N] [--driver thread|shared] [--concurrency N]
                                      [--driver-threads N] [--qos Q] [--timeout S] [--host H --port P]

        Connects N clients (default 10,000) in one Swift process, each with its own client ID, clean
        session and keepalive 60 s, --concurrency at a time (default 64); each subscribes to its own
        topic and iterates its subscription. A C client then publishes one message to each topic, and
        the role waits (up to --timeout seconds, default 60) until every client got its message, then
        disconnects them all. Reports the time to connect and subscribe all, the time to deliver all
        messages, messages lost, the role process's peak thread count (/proc/self/status, sampled every
        50 ms) and peak RSS (VmHWM), and the time to disconnect. The broker it starts gets an open-file
        limit of N + 1,024; the role raises its own to what N clients need (1 descriptor each on an
        event loop, 3 with a thread each) as far as the hard limit allows. When not every client can
        connect, it reports how far it got and the first error (exit status 0: that is the measurement).
        --driver shared (the default): all clients on one MQTTEventLoopGroup of --driver-threads
        event-loop threads (default 1) and 1 connect thread.
        --driver thread: a network thread per client (eventLoopGroup = nil), libmosquitto's select() loop.
        """

    /// Parses the arguments after `connections`.
    /// - Throws: ``UsageError`` for an unknown flag or a bad value.
    static func parse(_ arguments: [String]) throws(UsageError) -> ConnectionsOptions {
        var options = ConnectionsOptions()
        var reader = ArgumentReader(arguments)
        while let flag = reader.next() {
            switch flag {
            case "--count": options.count = try reader.number(for: flag)
            case "--driver": options.driver = try reader.value(for: flag)
            case "--concurrency": options.concurrency = try reader.number(for: flag)
            case "--driver-threads": options.driverThreads = try reader.number(for: flag)
            case "--qos": options.qos = try reader.number(for: flag)
            case "--timeout": options.timeoutSeconds = try reader.number(for: flag)
            case "--host": options.host = try reader.value(for: flag)
            case "--port": options.port = try reader.number(for: flag)
            default: throw UsageError("connections: unknown argument \(flag)")
            }
        }
        guard ["thread", "shared"].contains(options.driver) else {
            throw UsageError("connections: --driver must be thread or shared, not \(options.driver)")
        }
        guard (1 ... 1_000_000).contains(options.count), (1 ... 10_000).contains(options.concurrency),
              (1 ... 64).contains(options.driverThreads), (0 ... 2).contains(options.qos), options.timeoutSeconds >= 1
        else {
            throw UsageError("connections: out-of-range value (count 1...1,000,000, concurrency 1...10,000, driver threads 1...64, QoS 0...2, timeout >= 1)")
        }
        return options
    }
}
