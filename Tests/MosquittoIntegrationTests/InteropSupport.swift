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
        let run = try ChildProcess(executable: timeout, arguments: ["-k", "5", "300", bash, script])
        let status = try await run.wait(timeout: .seconds(310))
        guard status == .exited(0) else {
            run.kill()
            throw InteropError(
                "\(script) failed (\(status?.description ?? "still running")); it creates .build-python/venv with amqtt and paho-mqtt from PyPI:\n"
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
        ChildProcess.findExecutable(named: name)
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
            let port = try LoopbackNetwork.freePort()
            let tlsPort = try certificates.map { _ in try LoopbackNetwork.freePort() }
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
            let process = try ChildProcess(executable: executable, arguments: ["-c", configFile])
            let deadline = ContinuousClock.now + .seconds(15)
            while process.isRunning, ContinuousClock.now < deadline {
                if LoopbackNetwork.acceptsConnections(port: port), tlsPort.map({ LoopbackNetwork.acceptsConnections(port: $0) }) ?? true {
                    return AmqttBroker(port: port, tlsPort: tlsPort, process: process, directory: directory)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            process.kill()
            let status = try await process.wait(timeout: .seconds(2))
            let log = process.standardError + process.standardOutput
            failures.append("(\(status?.description ?? "still running"), ports \(port) \(tlsPort.map(String.init) ?? "-")): \(log.suffix(1_500))")
            guard log.contains("in use") else { break }
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw InteropError("amqtt did not start: " + failures.joined(separator: "\n"))
    }

    /// Kills the broker and removes its directory. Idempotent.
    func stop() {
        process.kill()
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
        let status = try await run.wait(timeout: .seconds(20))
        guard status == .exited(0), run.outputLines == ["published \(messages.count)"] else {
            throw InteropError("paho publisher failed (\(status?.description ?? "still running")): \(run.standardOutput) \(run.standardError)")
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
        let status = try await subscriber.wait(timeout: .seconds(20))
        guard status == .exited(0) else {
            throw InteropError("paho subscriber failed (\(status?.description ?? "still running")): \(subscriber.standardOutput) \(subscriber.standardError)")
        }
        return try subscriber.outputLines.dropFirst().map { line in
            try JSONDecoder().decode(PahoMessage.self, from: Data(line.utf8))
        }
    }

    private static func start(_ arguments: [String]) async throws -> ChildProcess {
        let python = try await Interop.python()
        // No __pycache__ next to the script in the source tree.
        return try ChildProcess(
            executable: python, arguments: [Interop.pahoScript] + arguments, environment: ["PYTHONDONTWRITEBYTECODE": "1"]
        )
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
