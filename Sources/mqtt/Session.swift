import Dispatch
import Logging
import Mosquitto
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Session

/// A connected client as `pub`, `sub` and `rr` use it: creation from ``CommonOptions``, the `-d`
/// debug log, connecting, and a clean disconnect. Shared by the commands.
struct Session: Sendable {
    /// The client.
    let client: MQTTClient
    /// `-D disconnect ...`: the DISCONNECT properties.
    private let disconnectProperties: MQTTProperties
    /// The debug logger when `-d` is on (the client holds its delegate weakly; this keeps it).
    private let logger: DebugLogger?
    /// The counters of the statistics line, with `--stats`; `nil` otherwise.
    let statistics: Statistics?
    /// Prints the statistics line periodically; cancelled by ``disconnect()``.
    private let reporter: Task<Void, Never>?
    /// The connection's changes from before the connect on, read only by ``brokenProtocol()``.
    private let events: MQTTConnectionEvents

    /// Creates the client; nothing is sent yet.
    ///
    /// - Parameter options: The shared options.
    /// - Throws: ``CLIError`` for invalid options or a configuration the library rejects
    ///   (an unreadable CA file, a client ID too long for MQTT 3.1, ...).
    init(options: CommonOptions) throws(CLIError) {
        var configuration = try options.configuration()
        if options.debug {
            configuration.logger = Logger(label: "mqtt.debug") { _ in DebugLogHandler() }
            // Each message printed before the next packet is read: its payload line right after
            // the log lines of its packet, as mosquitto_sub prints them.
            configuration.packetsPerRead = 1
        }
        do {
            client = try MQTTClient(configuration: configuration)
        } catch {
            throw CLIError(error)
        }
        disconnectProperties = options.properties.disconnect
        events = client.connectionEvents
        if options.debug {
            let logger = DebugLogger()
            client.delegate = logger
            self.logger = logger
        } else {
            logger = nil
        }
        if let interval = options.statsInterval {
            let statistics = Statistics()
            self.statistics = statistics
            reporter = StatisticsReporter.start(
                statistics, events: client.connectionEvents, interval: .seconds(interval)
            )
        } else {
            statistics = nil
            reporter = nil
        }
    }

    /// Connects and waits for the CONNACK.
    ///
    /// - Throws: ``CLIError`` with mosquitto's text and exit status (CONNACK code when refused).
    func connect() async throws(CLIError) {
        do {
            try await client.connect()
        } catch {
            await flushLog()
            throw CLIError(error)
        }
    }

    /// Runs `body` (the command's work once connected) until it ends, or until the broker
    /// breaks the protocol: then `body` is cancelled and this throws the error.
    ///
    /// A protocol violation (an acknowledgement of the wrong kind, such as a PUBACK for a QoS 2
    /// publish, or a packet identifier of 0) or a malformed packet from the broker ends the
    /// mosquitto tools with libmosquitto's error (`loop_forever` does not reconnect after
    /// `MOSQ_ERR_PROTOCOL`): reconnecting would only send the same messages into the same
    /// failure. A lost connection is not such an error: the client reconnects unless
    /// `--no-reconnect`.
    func untilTheProtocolBreaks<T: Sendable>(_ body: @escaping @Sendable () async throws(CLIError) -> T) async throws(CLIError) -> T {
        let outcome = await withTaskGroup(of: Result<T, CLIError>?.self) { group in
            group.addTask {
                do throws(CLIError) {
                    return .success(try await body())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask { await brokenProtocol().map { .failure($0) } }
            var first: Result<T, CLIError>?
            while first == nil, let next = await group.next() {
                first = next
            }
            group.cancelAll()
            return first
        }
        // The body always ends with a result; the watcher only with an error (or when cancelled).
        guard let outcome else { throw CLIError.runtime("Error: interrupted", status: 1) }
        return try outcome.get()
    }

    /// Returns the error of the first connection the broker ended with a protocol violation or a
    /// malformed packet, as the mosquitto tools print it (`Error: <mosquitto_strerror>`, exit
    /// status the error number); `nil` once cancelled.
    private func brokenProtocol() async -> CLIError? {
        for await event in events {
            guard case .disconnected(let error?) = event, error.code == .protocolError || error.code == .malformedPacket else { continue }
            let status = error.mosquittoErrorCode ?? 1
            return .runtime("Error: " + (error.mosquittoErrorText ?? error.description), status: status)
        }
        return nil
    }

    /// Sends DISCONNECT, waits for the socket to close (at most 5 s), and lets the debug log
    /// print its last lines (`sending DISCONNECT`), then the last statistics line (if a
    /// connection was made). Errors are ignored: the work is done.
    ///
    /// - Parameter reasonCode: The MQTT 5 reason: mosquitto_sub sends
    ///   ``MQTTReasonCode/disconnectWithWillMessage`` when a signal or `-W` ends it, so that the
    ///   broker publishes the will (MQTT 3.1.1 has no reason: the will is discarded).
    func disconnect(reasonCode: MQTTReasonCode = .success) async {
        try? await client.disconnect(reasonCode: reasonCode, properties: disconnectProperties, timeout: .seconds(5))
        await flushLog()
        if let statistics, let reporter {
            reporter.cancel()
            await reporter.value
            if client.connectResult != nil {
                Output.printLine(statistics.line(final: true))
            }
        }
    }

    /// With `-d`, waits briefly until the delegate has printed the log lines up to the end of
    /// the connection; the delegate runs on a task of the client's, after the events.
    func flushLog() async {
        await logger?.waitUntilDisconnected(timeout: .seconds(1))
    }
}

// MARK: - DebugLogger

/// `-d`: prints mosquitto_sub's `Subscribed (mid: 1): 0` line, and tells when the disconnection
/// was reported (libmosquitto's own lines go through ``DebugLogHandler``).
final class DebugLogger: MQTTClientDelegate {
    private let disconnected = Atomic<Bool>(false)

    func mqttClient(_ client: MQTTClient, didSubscribe messageID: UInt16, reasonCodes: [MQTTReasonCode]) async {
        let granted = reasonCodes.map { String($0.rawValue) }.joined(separator: ", ")
        Output.printLine("Subscribed (mid: \(messageID)): \(granted)")
    }

    func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async {
        disconnected.store(true, ordering: .releasing)
    }

    /// Returns once the disconnection was delivered (so every earlier log line was printed),
    /// or after `timeout`.
    func waitUntilDisconnected(timeout: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !disconnected.load(ordering: .acquiring), clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

// MARK: - DebugLogHandler

/// `-d`: prints libmosquitto's log lines to stdout as mosquitto_pub/mosquitto_sub do
/// (`Client x sending CONNECT`), at the moment libmosquitto logs them: on the client's network
/// thread, inside the pass that reads the packet, so a `received PUBLISH` line always comes before
/// that message's payload line (printed once the pass hands the message over), as in mosquitto's
/// tools. The client's own records (connection changes) are not printed; libmosquitto's lines
/// never contain the password.
struct DebugLogHandler: LogHandler {
    var logLevel = Logger.Level.trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard case .string("libmosquitto") = event.metadata?["mqtt.source"] else { return }
        Output.printLine(event.message.description)
    }
}

// MARK: - SignalWatcher

/// Delivers SIGINT and SIGTERM as an `AsyncStream` instead of killing the process, so that
/// `sub` can disconnect cleanly and exit 0.
final class SignalWatcher: Sendable {
    /// The signals, in the order they arrived.
    let signals: AsyncStream<Int32>

    /// Starts watching `numbers` (the default actions are replaced until the process exits).
    init(_ numbers: [Int32] = [SIGINT, SIGTERM]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        signals = stream
        Signals.install(numbers) { continuation.yield($0) }
    }

    /// Returns when a signal arrives (or never; cancellable).
    func next() async -> Int32? {
        for await number in signals { return number }
        return nil
    }
}
