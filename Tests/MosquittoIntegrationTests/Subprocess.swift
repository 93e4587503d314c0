import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Running the command-line client


/// A running `mqtt` process whose standard output is read line by line as it arrives.
final class StreamingCommand: Sendable {
    /// Bytes read from one pipe.
    private final class Capture: Sendable {
        let bytes = Mutex<[UInt8]>([])
        var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
    }

    private let process: Process
    private let output = Capture()
    private let errors = Capture()
    private let finished = DispatchGroup()

    /// Starts `mqtt arguments` (or another `executable`), with `environment` added to ours,
    /// feeding it `input` (then end of file) on a Dispatch thread.
    init(
        _ arguments: [String], input: String? = nil, environment: [String: String] = [:], executable: String = mqttExecutablePath()
    ) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        try process.run()
        for (pipe, sink) in [(stdout, output), (stderr, errors)] {
            finished.enter()
            // Blocking reads belong on threads of their own, not on the cooperative pool.
            DispatchQueue.global().async { [finished] in
                while true {
                    let data = pipe.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    sink.bytes.withLock { $0 += data }
                }
                finished.leave()
            }
        }
        let writer = stdin.fileHandleForWriting
        DispatchQueue.global().async {
            if let input { writer.write(Data(input.utf8)) }
            try? writer.close()
        }
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    /// The lines printed so far.
    var lines: [String] {
        output.text.split(separator: "\n").map(String.init)
    }

    /// Everything printed on standard output so far.
    var standardOutput: String { output.text }

    /// Everything printed on standard error.
    var standardError: String { errors.text }

    /// Whether the process still runs.
    var isRunning: Bool { process.isRunning }

    /// Sends SIGTERM.
    func terminate() { process.terminate() }

    /// The child's process id.
    var processIdentifier: Int32 { process.processIdentifier }

    /// The signal that ended the process (SIGABRT from a failed assertion, ...), or `nil` if it
    /// exited by itself or still runs.
    var terminationSignal: Int32? {
        guard !process.isRunning, process.terminationReason == .uncaughtSignal else { return nil }
        return process.terminationStatus
    }

    /// Waits (bounded) for the process to exit and its output to be read; returns its status,
    /// or `nil` (after killing it) if it did not exit in time.
    func exitStatus(within timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        process.waitUntilExit()
        _ = finished.wait(timeout: .now() + 5)
        return process.terminationStatus
    }
}
