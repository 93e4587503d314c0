import Foundation
import Mosquitto
import MosquittoTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Failures

/// A missing tool or a misbehaving helper process in the interoperability tests: always a test
/// failure, with a message that says what to install or what the process printed.
struct InteropError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

// MARK: - Paths and the Python environment

/// Where the interoperability tests find their helpers.
enum Interop {
    /// The package root (this file is `Tests/MosquittoIntegrationTests/InteropSupport.swift`).
    static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The paho-mqtt client script (`pub` / `sub`).
    static var pahoScript: String { packageRoot + "/scripts/interop/paho_client.py" }

    /// The virtualenv's python, with amqtt and paho-mqtt installed: `scripts/python-env.sh` runs
    /// once per test process (it returns at once when the venv is up to date, and builds it
    /// otherwise, bounded to 5 minutes), so `swift test` works without `scripts/test.sh`.
    /// - Throws: ``InteropError`` naming the script's output when it fails.
    static func python() async throws -> String {
        try await pythonEnvironment.value
    }

    private static let pythonEnvironment = Task<String, any Error> {
        let script = packageRoot + "/scripts/python-env.sh"
        // `timeout` puts the script in a process group of its own and kills all of it (pip too).
        guard let timeout = findExecutable("timeout"), let bash = findExecutable("bash") else {
            throw InteropError("`bash` and `timeout` (coreutils) are needed to run \(script)")
        }
        let run = try ChildProcess(timeout, ["-k", "5", "300", bash, script])
        guard let status = await run.waitForExit(timeout: .seconds(310)), status == 0 else {
            throw InteropError(
                "\(script) failed (\(run.exitDescription)); it creates .build-python/venv with amqtt and paho-mqtt from PyPI:\n"
                    + run.standardError.suffix(2_000)
            )
        }
        guard let python = run.standardOutput.split(separator: "\n").last.map(String.init),
              FileManager.default.isExecutableFile(atPath: python)
        else {
            throw InteropError("\(script) printed no python path: \(run.standardOutput)")
        }
        return python
    }

    /// The amqtt broker command of the virtualenv.
    static func amqttExecutable() async throws -> String {
        let python = try await python()
        return URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("amqtt").path
    }

    /// The absolute path of `name` on `PATH` (or in the usual directories), else a failure that
    /// says which package provides it.
    static func requireExecutable(_ name: String, package: String) throws -> String {
        guard let path = findExecutable(name) else {
            throw InteropError("`\(name)` was not found: install the Debian package \(package) (scripts/setup.sh does)")
        }
        return path
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin"]
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    static func freePort() throws -> Int {
        let listener = try makeLoopbackListener()
        close(listener.descriptor)
        return listener.port
    }

    /// Whether 127.0.0.1:`port` accepts a TCP connection right now (closed at once).
    static func acceptsConnections(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

// MARK: - Child processes

/// A child process whose standard output and error go to files in a private temporary directory,
/// read whenever asked: no thread blocks on a pipe. (With pipes read on `DispatchQueue.global()`,
/// a few long-running children made every wait in the suite seconds late on this 2-core machine:
/// the blocked readers hold Dispatch's few worker threads.) Killed with
/// SIGKILL and reaped when stopped or released, so no test leaves one behind.
final class ChildProcess: Sendable {
    /// The command, for messages.
    let command: String
    private let process: Process
    private let directory: String

    private var outputPath: String { directory + "/stdout" }
    private var errorPath: String { directory + "/stderr" }

    /// Starts `executable` with `arguments`, writing `input` to its standard input and closing it
    /// (standard input is `/dev/null` without `input`).
    /// - Throws: ``InteropError`` when it cannot be started.
    init(_ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws {
        command = ([executable] + arguments).joined(separator: " ")
        process = Process()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("interop-\(UInt64.random(in: 0 ... .max))").path
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let manager = FileManager.default
            guard manager.createFile(atPath: directory + "/stdout", contents: nil),
                  manager.createFile(atPath: directory + "/stderr", contents: nil)
            else { throw InteropError("could not create output files in \(directory)") }
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/stdout"))
            let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/stderr"))
            defer {
                try? output.close()
                try? errors.close()
            }
            process.standardOutput = output
            process.standardError = errors
            let stdin = input.map { _ in Pipe() }
            process.standardInput = stdin ?? FileHandle.nullDevice
            try process.run()
            if let input, let stdin {
                // Small inputs only: they fit in the pipe's buffer, so this never blocks.
                stdin.fileHandleForWriting.write(Data(input.utf8))
                try? stdin.fileHandleForWriting.close()
            }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw InteropError("could not start \(command): \(error)")
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var isRunning: Bool { process.isRunning }

    /// Everything printed on standard output so far.
    var standardOutput: String { Self.read(outputPath) }
    /// Everything printed on standard error so far.
    var standardError: String { Self.read(errorPath) }

    /// The non-empty lines of standard output so far.
    var outputLines: [String] {
        standardOutput.split(separator: "\n").map(String.init)
    }

    /// How the process ended, for messages.
    var exitDescription: String {
        if process.isRunning { return "still running" }
        return process.terminationReason == .uncaughtSignal
            ? "signal \(process.terminationStatus)" : "exit status \(process.terminationStatus)"
    }

    /// Waits until a line of standard output satisfies `predicate` and returns it; fails with the
    /// process's output after `timeout` or when it exits first.
    @discardableResult
    func waitForLine(
        timeout: Duration = .seconds(10), _ what: String, where predicate: (String) -> Bool
    ) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            let running = process.isRunning
            if let line = outputLines.first(where: predicate) { return line }
            if !running {
                throw InteropError("\(command) ended (\(exitDescription)) before printing \(what); stdout: \(standardOutput) stderr: \(standardError)")
            }
            if ContinuousClock.now >= deadline {
                throw InteropError("\(command) did not print \(what) within \(timeout); stdout: \(standardOutput) stderr: \(standardError)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits until the process exits (at most `timeout`) and returns its exit status; `nil` if it
    /// was still running (it is then killed) or died of a signal.
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard !process.isRunning else {
            stop()
            return nil
        }
        return process.terminationReason == .exit ? process.terminationStatus : nil
    }

    /// Kills the process with SIGKILL (it cannot be ignored or blocked) and reaps it. Idempotent.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        // Foundation reaps the child on a thread of its own: a short, bounded wait.
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline {
            usleep(2_000)
        }
    }

    private static func read(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}

// MARK: - The amqtt broker

/// A running amqtt broker (the Python `amqtt` package, MQTT 3.1.1 only) on 127.0.0.1, started
/// from a generated YAML config in a temporary directory, with an optional TLS listener.
final class AmqttBroker: Sendable {
    let host = "127.0.0.1"
    /// The plain TCP listener.
    let port: Int
    /// The TLS listener's port, when started with certificates.
    let tlsPort: Int?
    private let process: ChildProcess
    private let directory: String

    private init(port: Int, tlsPort: Int?, process: ChildProcess, directory: String) {
        self.port = port
        self.tlsPort = tlsPort
        self.process = process
        self.directory = directory
    }

    deinit {
        stop()
    }

    /// The broker's log so far (amqtt logs to standard error).
    var log: String { process.standardError + process.standardOutput }

    /// Starts amqtt and waits until every listener accepts TCP connections (at most 15 s per try;
    /// a port that raced away is retried with new ports, 3 tries).
    /// - Parameters:
    ///   - certificates: When set, a second listener speaks TLS with `serverCertificate`/`serverKey`.
    static func start(certificates: TestCertificates? = nil) async throws -> AmqttBroker {
        let executable = try await Interop.amqttExecutable()
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("amqtt-test-\(UInt64.random(in: 0 ... .max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var failures: [String] = []
        for _ in 1 ... 3 {
            let port = try Interop.freePort()
            let tlsPort = try certificates.map { _ in try Interop.freePort() }
            var config = """
                listeners:
                  default:
                    type: tcp
                    bind: 127.0.0.1:\(port)

                """
            if let certificates, let tlsPort {
                config += """
                      secure:
                        type: tcp
                        bind: 127.0.0.1:\(tlsPort)
                        ssl: true
                        certfile: \(certificates.serverCertificate)
                        keyfile: \(certificates.serverKey)

                    """
            }
            config += """
                plugins:
                  amqtt.plugins.authentication.AnonymousAuthPlugin:
                    allow_anonymous: true

                """
            let configFile = directory + "/broker.yaml"
            try config.write(toFile: configFile, atomically: true, encoding: .utf8)
            let process = try ChildProcess(executable, ["-c", configFile])
            let deadline = ContinuousClock.now + .seconds(15)
            while process.isRunning, ContinuousClock.now < deadline {
                if Interop.acceptsConnections(port: port), tlsPort.map(Interop.acceptsConnections(port:)) ?? true {
                    return AmqttBroker(port: port, tlsPort: tlsPort, process: process, directory: directory)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            process.stop()
            _ = await process.waitForExit(timeout: .seconds(2))
            let log = process.standardError + process.standardOutput
            failures.append("(\(process.exitDescription), ports \(port) \(tlsPort.map(String.init) ?? "-")): \(log.suffix(1_500))")
            guard log.contains("in use") else { break }
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw InteropError("amqtt did not start: " + failures.joined(separator: "\n"))
    }

    /// Kills the broker and removes its directory. Idempotent.
    func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs `body` with a started amqtt broker and always stops it afterwards, also when `body` throws.
func withAmqttBroker<T>(
    certificates: TestCertificates? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (AmqttBroker) async throws -> T
) async throws -> T {
    let broker = try await AmqttBroker.start(certificates: certificates)
    defer { broker.stop() }
    do {
        return try await body(broker)
    } catch {
        // The broker's view helps when a feature misbehaves.
        Issue.record("amqtt log:\n\(broker.log.suffix(3_000))")
        throw error
    }
}

/// An MQTT 3.1.1 client for `broker`, not yet connected; reconnection is off.
func makeAmqttClient(
    _ broker: AmqttBroker,
    clientID: String = uniqueClientID("aq"),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) throws -> MQTTClient {
    try makeClient(host: broker.host, port: broker.port, clientID: clientID) {
        $0.protocolVersion = .v3_1_1
        configure(&$0)
    }
}

/// A connected MQTT 3.1.1 client for `broker`.
func connectedAmqttClient(
    _ broker: AmqttBroker,
    clientID: String = uniqueClientID("aq"),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTClient {
    let client = try makeAmqttClient(broker, clientID: clientID, configure)
    try await client.connect()
    return client
}

// MARK: - paho-mqtt

/// A message as `paho_client.py sub` prints it.
struct PahoMessage: Decodable, Equatable, CustomStringConvertible {
    var topic: String
    var payload: String
    var qos: Int
    var retain: Bool
    var userProperties: [[String]]

    enum CodingKeys: String, CodingKey {
        case topic, payload, qos, retain
        case userProperties = "user_properties"
    }

    init(topic: String, payload: String, qos: Int, retain: Bool, userProperties: [[String]] = []) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.userProperties = userProperties
    }

    var description: String { "\(topic) \(payload) q\(qos) r\(retain) \(userProperties)" }
}

/// A message for `paho_client.py pub`.
struct PahoPublish: Encodable {
    var topic: String
    var payload: String
    var qos: Int
    var retain = false
    var userProperties: [[String]] = []

    enum CodingKeys: String, CodingKey {
        case topic, payload, qos, retain
        case userProperties = "user_properties"
    }
}

enum Paho {
    /// `311` or `5`, as the script takes it.
    static func protocolArgument(_ version: MQTTProtocolVersion) -> String {
        version == .v5 ? "5" : "311"
    }

    /// Publishes `messages` with paho-mqtt to the broker at 127.0.0.1:`port`, each acknowledged
    /// before the next, and returns when paho has disconnected.
    static func publish(_ messages: [PahoPublish], port: Int, version: MQTTProtocolVersion) async throws {
        let json = String(decoding: try JSONEncoder().encode(messages), as: UTF8.self)
        let run = try await start(["pub", "--port", "\(port)", "--protocol", protocolArgument(version), "--messages", json])
        let status = await run.waitForExit(timeout: .seconds(20))
        guard status == 0, run.outputLines == ["published \(messages.count)"] else {
            throw InteropError("paho publisher failed (\(run.exitDescription)): \(run.standardOutput) \(run.standardError)")
        }
    }

    /// Starts a paho-mqtt subscriber for `count` messages and returns once its SUBACK arrived.
    static func subscriber(
        port: Int, version: MQTTProtocolVersion, topic: String, qos: Int, count: Int
    ) async throws -> ChildProcess {
        let run = try await start([
            "sub", "--port", "\(port)", "--protocol", protocolArgument(version), "--topic", topic, "--qos", "\(qos)",
            "--count", "\(count)", "--timeout", "15",
        ])
        let line = try await run.waitForLine("its SUBACK") { $0.hasPrefix(#"{"subscribed""#) }
        guard line == #"{"subscribed": [\#(qos)]}"# else {
            throw InteropError("paho subscriber: unexpected SUBACK \(line)")
        }
        return run
    }

    /// Waits for `subscriber` to exit after its messages and returns them.
    static func messages(from subscriber: ChildProcess) async throws -> [PahoMessage] {
        let status = await subscriber.waitForExit(timeout: .seconds(20))
        guard status == 0 else {
            throw InteropError("paho subscriber failed (\(subscriber.exitDescription)): \(subscriber.standardOutput) \(subscriber.standardError)")
        }
        return try subscriber.outputLines.dropFirst().map { line in
            try JSONDecoder().decode(PahoMessage.self, from: Data(line.utf8))
        }
    }

    private static func start(_ arguments: [String]) async throws -> ChildProcess {
        let python = try await Interop.python()
        // No __pycache__ next to the script in the source tree.
        return try ChildProcess(python, [Interop.pahoScript] + arguments, environment: ["PYTHONDONTWRITEBYTECODE": "1"])
    }
}

// MARK: - Collecting

/// Everything `sequence` delivers (including what it buffered already) within `window`.
func collectAll<S: AsyncSequence & Sendable>(from sequence: S, within window: Duration) async throws -> [MQTTMessage]
where S.Element == MQTTMessage {
    let collector = MessageCollector(sequence)
    try await Task.sleep(for: window)
    return collector.messages
}
