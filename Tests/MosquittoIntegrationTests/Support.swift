import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Clients and topics

/// A topic no other test uses.
func uniqueTopic(_ name: String = #function) -> String {
    let cleaned = name.filter { $0.isLetter || $0.isNumber }
    return "test/\(cleaned)/\(UInt32.random(in: 0...UInt32.max))"
}

/// A client ID no other test uses (23 bytes at most, valid for MQTT 3.1).
func uniqueClientID(_ prefix: String = "t") -> String {
    String("\(prefix)-\(UInt64.random(in: 0...UInt64.max))".prefix(23))
}

/// The driver of every test client: the default (``MQTTEventLoopGroup/shared``), or with
/// `MQTT_TEST_DRIVER=thread` a network thread per client (scripts/test.sh runs the integration
/// suites once per driver).
let testEventLoopGroup: MQTTEventLoopGroup? = {
    guard let driver = getenv("MQTT_TEST_DRIVER").map({ String(cString: $0) }), !driver.isEmpty, driver != "event-loop" else {
        return MQTTConfiguration().eventLoopGroup
    }
    precondition(driver == "thread", "MQTT_TEST_DRIVER must be event-loop or thread, not \(driver)")
    return nil
}()

/// A client for `broker`, not yet connected; reconnection is off unless `configure` turns it on.
func makeClient(
    _ broker: MosquittoBroker,
    clientID: String = uniqueClientID(),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) throws -> MQTTClient {
    try makeClient(host: broker.host, port: broker.port, clientID: clientID, configure)
}

/// A client for the broker at `host`:`port`, not yet connected; reconnection is off and waits
/// are 10 s unless `configure` changes them.
func makeClient(
    host: String,
    port: Int,
    clientID: String = uniqueClientID(),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) throws -> MQTTClient {
    var configuration = MQTTConfiguration(host: host, port: port, clientID: clientID)
    configuration.reconnect = .disabled
    configuration.connectTimeout = .seconds(10)
    configuration.operationTimeout = .seconds(10)
    configuration.eventLoopGroup = testEventLoopGroup
    configure(&configuration)
    return try MQTTClient(configuration: configuration)
}

/// A connected client for `broker`.
func connectedClient(
    _ broker: MosquittoBroker,
    clientID: String = uniqueClientID(),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTClient {
    let client = try makeClient(broker, clientID: clientID, configure)
    try await client.connect()
    return client
}

// MARK: - Collecting messages

/// A message sequence that ended, without an error, before a test was done with it: a wait on it
/// must fail, not pass for want of messages.
struct SequenceEnded: Error, CustomStringConvertible {
    /// How many messages it delivered before it ended.
    let after: Int
    var description: String { "the message sequence ended after \(after) messages" }
}

/// Collects `count` messages from `sequence`, failing after `timeout`; throws ``SequenceEnded``
/// if the sequence ends first, or the error it ends with.
func collect<S: AsyncSequence & Sendable>(
    _ count: Int,
    from sequence: S,
    timeout: Duration = .seconds(10)
) async throws -> [MQTTMessage] where S.Element == MQTTMessage {
    try await withThrowingTaskGroup(of: [MQTTMessage]?.self) { group in
        group.addTask {
            var messages: [MQTTMessage] = []
            for try await message in sequence {
                messages.append(message)
                if messages.count == count { return messages }
            }
            throw SequenceEnded(after: messages.count)
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let messages = first else {
            throw MQTTError(.timeout, operation: .receive, detail: "fewer than \(count) messages within \(timeout)")
        }
        return messages
    }
}

/// Whether no message arrives on `sequence` within `window`. A sequence that ends meanwhile
/// throws (``SequenceEnded`` or its own error): an ended sequence receives nothing for the wrong reason.
func receivesNothing<S: AsyncSequence & Sendable>(
    on sequence: S,
    within window: Duration = .milliseconds(500)
) async throws -> Bool where S.Element == MQTTMessage {
    do {
        _ = try await collect(1, from: sequence, timeout: window)
        return false
    } catch MQTTError.Code.timeout {
        return true
    }
}

/// Runs `body`, failing with a timeout error if it has not finished within `timeout` (the body
/// is cancelled then): for waits on a sequence that a regression could leave open for ever.
func within<T: Sendable>(
    _ timeout: Duration = .seconds(10),
    _ what: String = "the wait",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw MQTTError(.timeout, operation: .receive, detail: "\(what) did not end within \(timeout)")
        }
        return value
    }
}

// MARK: - The command-line client

/// The path of the `mqtt` executable built next to the test bundle.
func mqttExecutablePath() -> String { builtExecutablePath("mqtt") }

/// The path of an executable of this package built alongside the tests (`mqtt`, `mqtt-soak`).
func builtExecutablePath(_ name: String) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let executable = length > 0 ? String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    var directory = executable
    while let slash = directory.lastIndex(of: "/") {
        directory = String(directory[..<slash])
        if access(directory + "/" + name, X_OK) == 0 { return directory + "/" + name }
    }
    return name
}

/// Starts `mqtt arguments` (or another of this package's executables), with `input` then end of
/// file on its standard input and `environment` added to ours; its output is captured.
func startCommand(
    _ arguments: [String], input: String? = nil, environment: [String: String] = [:], executable: String = mqttExecutablePath()
) throws -> ChildProcess {
    try ChildProcess(
        executable: executable, arguments: arguments, environment: environment, standardInput: input.map { .text($0) } ?? .null
    )
}

// MARK: - Errors

/// Runs `body` and returns the ``MQTTError`` it threw, or `nil` if it succeeded (a success
/// makes an `#expect(error?.code == ...)` fail, as it should).
func thrownError(_ body: () async throws -> Void) async -> MQTTError? {
    do {
        try await body()
        return nil
    } catch let error as MQTTError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

// MARK: - A long-lived reader

/// Reads a message sequence in one task for as long as it lives, so that a test can wait for
/// messages repeatedly (a timed-out `collect` cancels its reader, which ends the sequence).
/// It keeps how the sequence ended: a wait on an ended sequence throws instead of passing.
final class MessageCollector: Sendable {
    private final class Log: Sendable {
        let messages = Mutex<[MQTTMessage]>([])
        /// `nil` while the sequence runs; then `.some(nil)` for a plain end, or the error.
        let end = Mutex<(any Error)??>(nil)
    }

    private let log = Log()
    private let reader: Task<Void, Never>

    init<S: AsyncSequence & Sendable>(_ sequence: S) where S.Element == MQTTMessage {
        let log = log
        reader = Task {
            do {
                for try await message in sequence {
                    log.messages.withLock { $0.append(message) }
                }
                log.end.withLock { $0 = .some(nil) }
            } catch {
                log.end.withLock { $0 = .some(error) }
            }
        }
    }

    deinit {
        reader.cancel()
    }

    /// Everything received so far.
    var messages: [MQTTMessage] { log.messages.withLock { $0 } }

    /// Whether the sequence has ended, and with which error (`nil` for a plain end).
    var ended: (any Error)?? { log.end.withLock { $0 } }

    /// Throws if the sequence has ended: its error, or ``SequenceEnded``.
    func checkRunning() throws {
        guard let end = ended else { return }
        throw end ?? SequenceEnded(after: messages.count)
    }

    /// Waits until at least `count` messages arrived (at most `timeout`), then returns them all;
    /// throws if the sequence ends with fewer.
    func waitFor(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [MQTTMessage] {
        let deadline = ContinuousClock.now + timeout
        while messages.count < count, ContinuousClock.now < deadline {
            if messages.count < count { try checkRunning() }
            try await Task.sleep(for: .milliseconds(10))
        }
        let received = messages
        if received.count < count { try checkRunning() }
        return received
    }

    /// Waits `window` and returns what arrived meanwhile; throws if the sequence ended (nothing
    /// arriving on an ended sequence proves nothing).
    func arrivals(within window: Duration) async throws -> [MQTTMessage] {
        let before = messages.count
        try await Task.sleep(for: window)
        let arrived = Array(messages.dropFirst(before))
        try checkRunning()
        return arrived
    }
}

// MARK: - Connection events

/// Records a client's connection events with the time each was seen, for ordered and timed assertions.
final class EventRecorder: Sendable {
    typealias Entry = (event: MQTTConnectionEvent, at: ContinuousClock.Instant)

    private final class Log: Sendable {
        let entries = Mutex<[Entry]>([])
    }

    private let log = Log()
    private let reader: Task<Void, Never>

    init(_ events: MQTTConnectionEvents) {
        let log = log
        reader = Task {
            for await event in events {
                let now = ContinuousClock.now
                log.entries.withLock { $0.append((event, now)) }
            }
        }
    }

    deinit {
        reader.cancel()
    }

    /// The events seen so far, in order.
    var events: [MQTTConnectionEvent] { log.entries.withLock { $0.map(\.event) } }

    /// Waits (at most `timeout`) for the first event at an index above `index` that matches `predicate`.
    func next(
        after index: Int, timeout: Duration = .seconds(10), _ predicate: (MQTTConnectionEvent) -> Bool
    ) async -> (index: Int, event: MQTTConnectionEvent, at: ContinuousClock.Instant)? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let entries = log.entries.withLock { $0 }
            if let found = entries.indices.first(where: { $0 > index && predicate(entries[$0].event) }) {
                return (found, entries[found].event, entries[found].at)
            }
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(5))) != nil else { return nil }
        }
    }
}

/// Waits (at most `timeout`) for the next `.disconnected` event and returns its error; a missing
/// event is recorded as an issue instead of hanging the test.
func nextDisconnection(on events: MQTTConnectionEvents, timeout: Duration = .seconds(15)) async -> MQTTError? {
    do {
        let found = try await within(timeout, "the wait for a disconnection") { () -> MQTTError?? in
            for await event in events {
                if case .disconnected(let error) = event { return .some(error) }
            }
            return .none
        }
        guard let error = found else {
            Issue.record("the connection events ended without a disconnection")
            return nil
        }
        return error
    } catch {
        Issue.record("no disconnection within \(timeout): \(error)")
        return nil
    }
}

/// Waits (at most `timeout`) until `events` has delivered `count` events matching `isWanted`
/// (by default `.connected`); records an issue if they do not come.
func waitForEvents(
    _ count: Int = 1,
    on events: MQTTConnectionEvents,
    timeout: Duration = .seconds(15),
    where isWanted: @escaping @Sendable (MQTTConnectionEvent) -> Bool = { if case .connected = $0 { true } else { false } }
) async {
    do {
        let seen = try await within(timeout, "the wait for \(count) connection events") {
            var seen = 0
            for await event in events where isWanted(event) {
                seen += 1
                if seen == count { break }
            }
            return seen
        }
        if seen < count { Issue.record("the connection events ended after \(seen) of \(count)") }
    } catch {
        Issue.record("\(error)")
    }
}
