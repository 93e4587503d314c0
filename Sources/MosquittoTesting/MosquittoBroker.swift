import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Broker

/// A running `mosquitto` broker started for a test (or an external broker named by environment variables).
///
/// A local broker listens on a free port on 127.0.0.1 only, with a config, log, certificates and persistence
/// file in a private temporary directory (`mosquitto-test-XXXXXX` under `$TMPDIR` or `/tmp`) that is removed
/// when the broker is deinitialized. A broker never outlives the process that started it: if that
/// process dies first (even by SIGKILL, or a test runner's timeout), the broker is killed and its
/// directory removed by a small watchdog process started with the first broker.
///
/// Environment variables:
/// - `MQTT_TEST_BROKER_HOST`: when set, `start(.anonymous)` (a configuration equal to the default) starts
///   nothing and returns an external broker at this host (`isExternal == true`); `stop()` and `kill()` do
///   nothing and `restart()` throws. Configurations that need a generated config (users, ACL, TLS,
///   persistence, extra lines, an open-file limit) still start a local broker.
/// - `MQTT_TEST_BROKER_PORT`: the external broker's port (default 1883).
/// - `MOSQUITTO_BINARY`: the `mosquitto` executable (default `/usr/sbin/mosquitto`, then `PATH`).
/// - `MOSQUITTO_PASSWD_BINARY`, `OPENSSL_BINARY`: the helper tools (default: `PATH` and common directories).
public final class MosquittoBroker: Sendable {
    // MARK: Properties

    /// The host clients connect to: `127.0.0.1` for a local broker.
    public let host: String

    /// The TCP port the broker listens on; it stays the same across `restart()`.
    public let port: Int

    /// The configuration the broker was started with.
    public let configuration: MosquittoBrokerConfiguration

    /// The generated certificates and keys; non-nil when `configuration.tls` uses certificates.
    public let certificates: TestCertificates?

    /// Whether this is an external broker named by `MQTT_TEST_BROKER_HOST` rather than a process started here.
    public let isExternal: Bool

    /// The path of the broker's log file (`log_type all`), for debugging failed tests; `nil` for an external broker.
    public let logFilePath: String?

    /// The broker's files; `nil` for an external broker.
    let layout: BrokerLayout?

    /// The `mosquitto` executable; `nil` for an external broker.
    private let executable: String?

    /// The mutable process state. Whoever takes `process` out of it stops it (a released process is
    /// killed and reaped anyway).
    private let state: Mutex<State>

    private struct State: Sendable {
        var process: ChildProcess?
        var isRestarting = false
    }

    // MARK: Initialization

    private init(external: ExternalBroker) {
        host = external.host
        port = external.port
        configuration = .anonymous
        certificates = nil
        isExternal = true
        logFilePath = nil
        layout = nil
        executable = nil
        state = Mutex(State(process: nil))
    }

    private init(
        port: Int,
        configuration: MosquittoBrokerConfiguration,
        certificates: TestCertificates?,
        layout: BrokerLayout,
        executable: String,
        process: ChildProcess
    ) {
        host = LoopbackNetwork.host
        self.port = port
        self.configuration = configuration
        self.certificates = certificates
        isExternal = false
        logFilePath = layout.logFile
        self.layout = layout
        self.executable = executable
        state = Mutex(State(process: process))
    }

    deinit {
        state.withLock { $0.process }?.kill()
        if let layout {
            FileSystem.removeTree(layout.directory)
        }
    }

    // MARK: Starting

    /// Starts a broker on a free 127.0.0.1 port and waits until it accepts TCP connections.
    ///
    /// Picks a free port, writes the config, spawns `mosquitto`, and polls the port every 20 ms for up to 10 s.
    /// If the process exits early (the port raced away), it retries with a new port, up to 5 attempts.
    /// - Parameters:
    ///   - configuration: How the broker is configured; `.anonymous` by default.
    /// - Throws: `MosquittoTestingError` if `mosquitto`, `mosquitto_passwd` or `openssl` is missing or fails,
    ///   or the broker does not accept connections in time (the message includes its last log lines);
    ///   `CancellationError` if the task is cancelled.
    /// - Returns: The running broker.
    public static func start(_ configuration: MosquittoBrokerConfiguration = .anonymous) async throws -> MosquittoBroker {
        if configuration == .anonymous, let external = try ExternalBroker.fromEnvironment() {
            return MosquittoBroker(external: external)
        }
        let executable = try BrokerLauncher.locateMosquitto()
        let layout = BrokerLayout(directory: try FileSystem.makeTemporaryDirectory())
        do {
            let needsCertificates: Bool
            switch configuration.tls {
            case nil, .preSharedKey: needsCertificates = false
            default: needsCertificates = true
            }
            let certificates = needsCertificates ? try await CertificateGenerator.generate(in: layout.directory) : nil
            try await BrokerConfigFile.writeSupportFiles(for: configuration, layout: layout)

            let attempts = 5
            var lastFailure = ""
            for _ in 1 ... attempts {
                let port = try LoopbackNetwork.freePort()
                try BrokerConfigFile.write(configuration, port: port, layout: layout, certificates: certificates)
                let launch = try await BrokerLauncher.launch(
                    executable: executable,
                    layout: layout,
                    port: port,
                    deadline: MonotonicClock.now + BrokerLauncher.readinessTimeout,
                    environment: BrokerConfigFile.environment(for: configuration, layout: layout),
                    maximumOpenFiles: configuration.maximumOpenFiles
                )
                switch launch.readiness {
                case .ready:
                    return MosquittoBroker(
                        port: port,
                        configuration: configuration,
                        certificates: certificates,
                        layout: layout,
                        executable: executable,
                        process: launch.process
                    )
                case .exited(let exit):
                    let details = "(\(exit), port \(port)): " + BrokerLauncher.diagnostics(for: launch, layout: layout)
                    guard BrokerLauncher.exitLooksLikePortConflict(launch, layout: layout) else {
                        throw MosquittoTestingError("mosquitto exited during startup " + details)
                    }
                    lastFailure = details
                case .timedOut:
                    throw MosquittoTestingError(
                        "broker did not accept connections within \(Int(BrokerLauncher.readinessTimeout)) s: "
                            + BrokerLauncher.diagnostics(for: launch, layout: layout)
                    )
                }
            }
            throw MosquittoTestingError("mosquitto could not bind a free port in \(attempts) attempts; last failure " + lastFailure)
        } catch {
            FileSystem.removeTree(layout.directory)
            throw error
        }
    }

    // MARK: Stopping

    /// Stops the broker: SIGTERM, wait up to 5 s, then SIGKILL; always reaps the process.
    ///
    /// Idempotent, synchronous (usable from `defer`), and a no-op for an external broker. With persistence
    /// enabled, mosquitto saves its database on SIGTERM.
    public func stop() {
        takeProcess()?.terminate(gracePeriod: .seconds(5))
    }

    /// Kills the broker with SIGKILL (a crash, for fault tests) and reaps it; a no-op for an external broker.
    public func kill() {
        takeProcess()?.kill()
    }

    /// Removes the process from the state, making the caller responsible for stopping it.
    private func takeProcess() -> ChildProcess? {
        state.withLock { state in
            defer { state.process = nil }
            return state.process
        }
    }

    // MARK: Restarting

    /// Starts the broker again on the same port with the same config and persistence directory.
    ///
    /// Stops the broker first if it is running. Retries for up to 10 s while the port cannot be bound yet.
    /// Do not call `stop()` or `kill()` concurrently with a restart: they only see the process once it is ready.
    /// - Throws: `MosquittoTestingError` for an external broker, if another restart is in progress, or if the
    ///   broker does not accept connections within 10 s (the message includes its last log lines);
    ///   `CancellationError` if the task is cancelled.
    public func restart() async throws {
        guard let layout, let executable else {
            throw MosquittoTestingError("cannot restart an external broker")
        }
        try state.withLock { state throws(MosquittoTestingError) in
            guard !state.isRestarting else {
                throw MosquittoTestingError("restart() is already in progress for the broker on port \(port)")
            }
            state.isRestarting = true
        }
        defer { state.withLock { $0.isRestarting = false } }

        stop()
        let deadline = MonotonicClock.now + BrokerLauncher.readinessTimeout
        while true {
            let launch = try await BrokerLauncher.launch(
                executable: executable,
                layout: layout,
                port: port,
                deadline: deadline,
                environment: BrokerConfigFile.environment(for: configuration, layout: layout),
                maximumOpenFiles: configuration.maximumOpenFiles
            )
            switch launch.readiness {
            case .ready:
                state.withLock { $0.process = launch.process }
                return
            case .exited(let exit):
                // Typically "Address already in use" while the old socket lingers; try again shortly.
                guard MonotonicClock.now < deadline, BrokerLauncher.exitLooksLikePortConflict(launch, layout: layout) else {
                    throw MosquittoTestingError(
                        "broker could not be restarted on port \(port) (\(exit)): "
                            + BrokerLauncher.diagnostics(for: launch, layout: layout)
                    )
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            case .timedOut:
                throw MosquittoTestingError(
                    "broker did not accept connections within \(Int(BrokerLauncher.readinessTimeout)) s: "
                        + BrokerLauncher.diagnostics(for: launch, layout: layout)
                )
            }
        }
    }

    // MARK: Status

    /// Whether the broker process is running (always `true` for an external broker).
    public var isRunning: Bool {
        if isExternal { return true }
        return state.withLock { state in
            guard let process = state.process else { return false }
            if process.exitStatus != nil {
                state.process = nil
                return false
            }
            return true
        }
    }

    /// The broker's process id while it runs, e.g. to send it SIGSTOP in a fault test; `nil` otherwise.
    public var processIdentifier: Int32? {
        state.withLock { $0.process?.processIdentifier }
    }

    // MARK: Logs

    /// Reads the broker's log file.
    /// - Returns: The log so far, or `""` for an external broker or when there is no log yet.
    public func logContents() -> String {
        guard let logFilePath else { return "" }
        return FileSystem.readText(logFilePath)
    }
}
