#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Launching a broker process

/// Spawns `mosquitto -c <config>` and waits until it accepts TCP connections on its port.
enum BrokerLauncher {
    /// How long a single launch may take before it is considered hung.
    static let readinessTimeout: Double = 10
    /// How often the port is probed while waiting.
    static let pollInterval: UInt64 = 20_000_000
    /// How long the port must keep accepting while the process stays alive when the log never says "running"
    /// (e.g. `log_type none` in `extraConfigLines`).
    static let fallbackSettleTime: Double = 0.25

    /// The outcome of one launch.
    enum Readiness: Sendable {
        /// The broker accepts connections.
        case ready
        /// The process exited before accepting connections (typically: the port was taken).
        case exited(ChildProcess.ExitStatus)
        /// The process neither exited nor accepted connections before the deadline; it has been killed.
        case timedOut
    }

    /// The result of one launch: the process (already reaped unless ready) and what happened.
    struct Launch: Sendable {
        let process: ChildProcess
        let readiness: Readiness
        /// Byte offsets of the log and output files when the process was spawned, for error details.
        let logOffset: Int
        let outputOffset: Int
    }

    // MARK: Locating mosquitto

    /// The path of the `mosquitto` binary: `$MOSQUITTO_BINARY`, else `/usr/sbin/mosquitto`, else `mosquitto` on `PATH`.
    /// - Throws: `MosquittoTestingError` if it cannot be found.
    static func locateMosquitto() throws -> String {
        if let path = ExecutableSearch.find(
            named: "mosquitto",
            environmentVariable: "MOSQUITTO_BINARY",
            preferred: ["/usr/sbin/mosquitto"]
        ) {
            return path
        }
        if let override = Environment.value("MOSQUITTO_BINARY") {
            throw MosquittoTestingError("MOSQUITTO_BINARY=\(override) is not an executable file")
        }
        throw MosquittoTestingError("mosquitto not found; install the `mosquitto` package (or set MOSQUITTO_BINARY)")
    }

    // MARK: Launching

    /// Spawns the broker with `layout.configFile` and waits for it to accept connections on 127.0.0.1:`port`.
    /// - Parameters:
    ///   - executable: The `mosquitto` binary.
    ///   - layout: The broker's files; the config must already be written.
    ///   - port: The port in the config's `listener` line.
    ///   - deadline: `MonotonicClock` time after which the launch counts as hung.
    ///   - environment: Extra environment variables for the broker process (e.g. `OPENSSL_CONF`).
    ///   - maximumOpenFiles: The open-file limit applied to the process right after it is spawned, or `nil`.
    /// - Throws: `MosquittoTestingError` if spawning fails or the open-file limit cannot be set (the process
    ///   is killed); `CancellationError` if the task is cancelled (the process is killed).
    /// - Returns: The process and its readiness.
    static func launch(
        executable: String,
        layout: BrokerLayout,
        port: Int,
        deadline: Double,
        environment: [String: String] = [:],
        maximumOpenFiles: Int? = nil
    ) async throws -> Launch {
        let logOffset = FileSystem.size(of: layout.logFile)
        let outputOffset = FileSystem.size(of: layout.outputFile)
        let process = try ChildProcess(
            executable: executable,
            arguments: ["-c", layout.configFile],
            environment: environment,
            standardOutput: .file(layout.outputFile),
            standardError: .standardOutput
        )
        OrphanReaper.shared?.watch(pid: process.processIdentifier, directory: layout.directory)
        if let maximumOpenFiles {
            // Before mosquitto can accept a connection: it is still parsing its config and opening its log.
            do {
                try ResourceLimits.setOpenFileLimit(maximumOpenFiles, of: process.processIdentifier)
            } catch {
                process.kill()
                throw error
            }
        }
        func result(_ readiness: Readiness) -> Launch {
            Launch(process: process, readiness: readiness, logOffset: logOffset, outputOffset: outputOffset)
        }

        var firstAccepted: Double?
        while true {
            if let exit = process.exitStatus {
                return result(.exited(exit))
            }
            if LoopbackNetwork.acceptsConnections(port: port) {
                // The port may belong to another process that raced us to it; only trust it once our broker
                // says it is running (logged after its listeners are bound) or has stayed alive for a while.
                let acceptedAt = firstAccepted ?? MonotonicClock.now
                firstAccepted = acceptedAt
                let settled = MonotonicClock.now - acceptedAt >= fallbackSettleTime
                if logSaysRunning(layout.logFile, from: logOffset) || settled {
                    if let exit = process.exitStatus {
                        return result(.exited(exit))
                    }
                    return result(.ready)
                }
            }
            if MonotonicClock.now >= deadline {
                process.kill()
                return result(.timedOut)
            }
            do {
                try await Task.sleep(nanoseconds: pollInterval)
            } catch {
                process.kill()
                throw error
            }
        }
    }

    /// Whether the log, from `offset` on, contains mosquitto's "mosquitto version X running" line.
    private static func logSaysRunning(_ logFile: String, from offset: Int) -> Bool {
        FileSystem.readText(logFile, from: offset)
            .split(separator: "\n")
            .contains { $0.contains("mosquitto version") && $0.hasSuffix(" running") }
    }

    // MARK: Diagnostics

    /// Whether an early exit looks like a failure to bind the listener (worth retrying), rather than e.g. a config error.
    ///
    /// mosquitto logs "Opening ipv4 listen socket on port N." just before binding; config errors stop it earlier.
    /// - Parameters:
    ///   - launch: A launch whose process exited early.
    ///   - layout: The broker's files.
    static func exitLooksLikePortConflict(_ launch: Launch, layout: BrokerLayout) -> Bool {
        let text = FileSystem.readText(layout.logFile, from: launch.logOffset)
            + FileSystem.readText(layout.outputFile, from: launch.outputOffset)
        return text.contains("Address already in use") || text.contains("listen socket")
    }

    /// The last lines of the broker's log and of its stdout/stderr since the launch, for error messages.
    /// - Parameters:
    ///   - launch: The failed launch.
    ///   - layout: The broker's files.
    ///   - lineCount: How many trailing lines of each file to include.
    static func diagnostics(for launch: Launch, layout: BrokerLayout, lineCount: Int = 20) -> String {
        let log = FileSystem.readText(layout.logFile, from: launch.logOffset).lastLines(lineCount)
        let output = FileSystem.readText(layout.outputFile, from: launch.outputOffset).lastLines(lineCount)
        var parts: [String] = []
        if !log.isEmpty { parts.append("log (\(layout.logFile)):\n\(log)") }
        if !output.isEmpty { parts.append("output (\(layout.outputFile)):\n\(output)") }
        return parts.isEmpty ? "(no log output)" : parts.joined(separator: "\n")
    }
}
