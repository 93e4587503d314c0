import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - ChildProcess

/// A child process started for a test or a tool: the one process runner of the package, used by the
/// broker fixture, the tests, the benchmark and the tools.
///
/// It is started with `posix_spawn`, with an empty signal mask and the default disposition for SIGTERM,
/// SIGINT, SIGPIPE, SIGHUP and SIGUSR1 (a test runner may block or ignore them, and both survive
/// `exec`: a `mosquitto` started from the runner was seen ignoring SIGTERM), and with no descriptor of
/// this process above standard error (every pipe end is close-on-exec, and glibc 2.34+ closes the rest).
/// Its standard streams are pipes, files, `/dev/null` or this process's own (``Input``, ``Output``).
///
/// Captured output is read as it arrives by a thread of the process object's own that `poll`s the
/// pipes (and writes ``Input/bytes(_:)`` to standard input): never a Dispatch or cooperative-pool
/// thread, and no deadlock however much the child writes while it is fed.
///
/// Every wait is bounded. The process is reaped exactly once, by whichever call first sees it exit,
/// and never signalled after that (its process id may belong to another process by then). A process
/// still running when the object is released is killed with SIGKILL and reaped, so none outlives its
/// test as a zombie, or as an orphan holding a port.
///
/// ```swift
/// let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo hello; exit 3"])
/// let status = try await child.wait(timeout: .seconds(10))
/// #expect(status == .exited(3))
/// #expect(child.standardOutput == "hello\n")
/// ```
public final class ChildProcess: Sendable, CustomStringConvertible {
    // MARK: Types

    /// Where a child's standard input comes from.
    public enum Input: Sendable {
        /// `/dev/null`: the child reads end of file at once.
        case null
        /// These bytes, written by the process's I/O thread; then end of file.
        case bytes([UInt8])
        /// The file at this path, opened read-only.
        case file(String)
        /// A copy of this process's descriptor (the caller keeps its own and closes it when it likes).
        case descriptor(Int32)

        /// `text` in UTF-8, then end of file.
        public static func text(_ text: String) -> Input { .bytes(Array(text.utf8)) }
    }

    /// Where a child's standard output or standard error goes.
    public enum Output: Sendable {
        /// `/dev/null`.
        case null
        /// A pipe read into memory as it arrives: ``ChildProcess/standardOutput``, ``ChildProcess/standardError``.
        case capture
        /// The file at this path, created (mode 0644) if missing and appended to.
        case file(String)
        /// This process's own descriptor (the benchmark's roles write their diagnostics to our terminal).
        case inherit
        /// Wherever standard output goes (`2>&1`); for standard error only.
        case standardOutput
    }

    /// How a child process ended, decoded from a `waitpid` status word.
    public enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
        /// The process called `exit` with this code. A child reaped by someone else (`ECHILD`) reads as `-1`.
        case exited(Int32)
        /// The process was terminated by this signal.
        case signaled(Int32)

        /// Decodes a raw `waitpid` status (the `WIFEXITED`/`WTERMSIG` macros are not imported into Swift).
        init(rawStatus status: Int32) {
            let signal = status & 0x7f
            self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
        }

        /// The exit code, or `nil` when a signal ended the process.
        public var code: Int32? {
            if case .exited(let code) = self { return code }
            return nil
        }

        /// The signal that ended the process, or `nil` when it exited by itself.
        public var signal: Int32? {
            if case .signaled(let signal) = self { return signal }
            return nil
        }

        /// `exit status N` or `signal N`.
        public var description: String {
            switch self {
            case .exited(let code): return "exit status \(code)"
            case .signaled(let signal): return "signal \(signal)"
            }
        }
    }

    // MARK: Properties

    /// The child's process id (it stays reserved for this child until the child is reaped).
    public let processIdentifier: Int32

    /// The command line, for messages: the executable and its arguments, separated by spaces.
    public let description: String

    /// The exit status once reaped, and when (for the bounded wait on output after the exit).
    private let state = Mutex<State>(State())

    private struct State: Sendable {
        var exitStatus: ExitStatus?
        var reapedAt: Double?
    }

    /// What the child printed on its captured streams.
    private let captured: CapturedOutput

    /// How long, after the exit, waits give the output thread to reach end of file on the pipes
    /// (a process the child started may hold them open for ever).
    private static let outputGracePeriod = 2.0

    // MARK: Starting

    /// Starts `executable` with `arguments`.
    /// - Parameters:
    ///   - executable: The program: a path, or a name looked up on `PATH` (then in the usual directories).
    ///   - arguments: The arguments after `argv[0]` (which is `executable`).
    ///   - environment: Variables set in the child on top of the inherited environment (replacing same-named ones).
    ///   - inheritsEnvironment: Whether the child starts from this process's environment; when `false`,
    ///     its environment is `environment` alone.
    ///   - workingDirectory: The child's working directory; `nil` for this process's. Relative file
    ///     paths in `standardInput`, `standardOutput` and `standardError` are opened before the change,
    ///     a relative `executable` after it.
    ///   - standardInput: Where standard input comes from; `/dev/null` by default.
    ///   - standardOutput: Where standard output goes; captured by default.
    ///   - standardError: Where standard error goes; captured by default.
    /// - Throws: `MosquittoTestingError` when the executable is not found, a pipe or file action fails,
    ///   `posix_spawn` fails (e.g. the file is not executable), or the I/O thread cannot start (the
    ///   child is then killed).
    public init(
        executable: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        inheritsEnvironment: Bool = true,
        workingDirectory: String? = nil,
        standardInput: Input = .null,
        standardOutput: Output = .capture,
        standardError: Output = .capture
    ) throws {
        let path = try Self.resolve(executable)
        let spawned = try ProcessSpawn.spawn(
            executable: path,
            arguments: arguments,
            environment: inheritsEnvironment ? Environment.inherited(overriding: environment) : Environment.entries(environment),
            workingDirectory: workingDirectory,
            input: standardInput,
            output: standardOutput,
            error: standardError
        )
        processIdentifier = spawned.pid
        description = ([executable] + arguments).joined(separator: " ")
        captured = CapturedOutput(capturesOutput: spawned.outputReader != nil, capturesError: spawned.errorReader != nil)
        var input: [UInt8] = []
        if case .bytes(let bytes) = standardInput { input = bytes }
        guard OutputPump.start(for: spawned, input: input, output: captured) else {
            kill()
            throw MosquittoTestingError("could not start the output thread for \(description)")
        }
    }

    deinit {
        kill()
        captured.abandon()
    }

    /// The path to spawn for `executable`: itself when it names a path, else the first match on `PATH`.
    private static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") { return executable }
        guard let path = ExecutableSearch.find(named: executable) else {
            throw MosquittoTestingError("\(executable) was not found on PATH")
        }
        return path
    }

    // MARK: Output

    /// Everything the child printed on standard output so far (when captured), decoded as UTF-8.
    public var standardOutput: String { String(decoding: captured.bytes(.standardOutput), as: UTF8.self) }

    /// Everything the child printed on standard error so far (when captured), decoded as UTF-8.
    public var standardError: String { String(decoding: captured.bytes(.standardError), as: UTF8.self) }

    /// The bytes the child printed on standard output so far (when captured).
    public var standardOutputBytes: [UInt8] { captured.bytes(.standardOutput) }

    /// The bytes the child printed on standard error so far (when captured).
    public var standardErrorBytes: [UInt8] { captured.bytes(.standardError) }

    /// The non-empty lines of standard output so far, without newlines (a last, unterminated line included).
    public var outputLines: [String] {
        standardOutput.split(separator: "\n").map(String.init)
    }

    /// Waits until a line of standard output satisfies `predicate`, and returns it.
    /// - Parameters:
    ///   - timeout: The longest wait.
    ///   - what: What the line is, for the error message.
    ///   - predicate: Tells the wanted line; it sees every non-empty line (``outputLines``) each time.
    /// - Throws: `MosquittoTestingError`, with the child's output, when the output ends first or the
    ///   timeout passes; `CancellationError` when the task is cancelled.
    /// - Returns: The first matching line.
    @discardableResult
    public func waitForLine(
        timeout: Duration = .seconds(10), _ what: String = "the expected line", where predicate: (String) -> Bool
    ) async throws -> String {
        let deadline = MonotonicClock.now + timeout.seconds
        while true {
            let ended = outputHasSettled(.standardOutput)
            if let line = outputLines.first(where: predicate) { return line }
            if ended {
                throw MosquittoTestingError("\(description) ended (\(statusDescription)) before printing \(what); \(transcript)")
            }
            if MonotonicClock.now >= deadline {
                throw MosquittoTestingError("\(description) did not print \(what) within \(timeout); \(transcript)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Blocks the calling thread until line `index` of standard output is complete, and returns it:
    /// for a caller that reads a child's lines one after another.
    /// - Parameters:
    ///   - index: The line's number, from 0; empty lines count.
    ///   - timeout: The longest wait.
    /// - Throws: `MosquittoTestingError` when the timeout passes first.
    /// - Returns: The line without its newline (an unterminated last line counts once the output has
    ///   ended), or `nil` when the output ended with fewer lines.
    public func line(_ index: Int, timeout: Duration) throws -> String? {
        let deadline = MonotonicClock.now + timeout.seconds
        while true {
            let ended = outputHasSettled(.standardOutput)
            if let line = captured.line(index, of: .standardOutput) { return line }
            if ended { return nil }
            if MonotonicClock.now >= deadline {
                throw MosquittoTestingError("\(description): no output line \(index + 1) within \(timeout)")
            }
            usleep(1_000)
        }
    }

    /// Whether `stream` will grow no more: it reached end of file, or the child exited more than
    /// ``outputGracePeriod`` ago (a process it started may hold the pipe open).
    private func outputHasSettled(_ stream: CapturedOutput.Stream) -> Bool {
        if captured.hasEnded(stream) { return true }
        _ = exitStatus
        guard let reapedAt = state.withLock({ $0.reapedAt }) else { return false }
        return MonotonicClock.now - reapedAt >= Self.outputGracePeriod
    }

    /// Standard output and error, for error messages.
    private var transcript: String {
        "stdout: \(standardOutput.suffix(2_000)) stderr: \(standardError.suffix(2_000))"
    }

    /// The exit status, or `still running`.
    private var statusDescription: String {
        exitStatus?.description ?? "still running"
    }

    // MARK: Status

    /// How the child ended, or `nil` while it runs; never blocks (it reaps the child if it has exited).
    public var exitStatus: ExitStatus? {
        reap(blocking: false)
    }

    /// Whether the child still runs (a child that exited is reaped).
    public var isRunning: Bool { exitStatus == nil }

    /// Reaps the child if it has exited (when `blocking`, waits until it does), exactly once.
    private func reap(blocking: Bool) -> ExitStatus? {
        state.withLock { state in
            if let status = state.exitStatus { return status }
            var raw: Int32 = 0
            while true {
                let result = waitpid(processIdentifier, &raw, blocking ? 0 : WNOHANG)
                if result == processIdentifier {
                    state.exitStatus = ExitStatus(rawStatus: raw)
                    break
                }
                if result == 0 { return nil }
                if errno == EINTR { continue }
                state.exitStatus = .exited(-1)  // ECHILD: reaped elsewhere (SIGCHLD ignored, say).
                break
            }
            state.reapedAt = MonotonicClock.now
            return state.exitStatus
        }
    }

    // MARK: Waiting

    /// Waits until the child exits and its captured output has reached end of file (at most
    /// 2 s after the exit, for a pipe a process it started still holds), polling every 5 ms.
    /// - Parameters:
    ///   - timeout: The longest wait for the exit; the child is left running when it passes.
    /// - Throws: `CancellationError` when the task is cancelled (the child is left running).
    /// - Returns: How the child ended, or `nil` if it still runs after `timeout`.
    public func wait(timeout: Duration) async throws -> ExitStatus? {
        let deadline = MonotonicClock.now + timeout.seconds
        while true {
            if let status = exitStatus {
                while !outputHasSettled(.standardOutput) || !outputHasSettled(.standardError) {
                    try await Task.sleep(for: .milliseconds(5))
                }
                return status
            }
            guard MonotonicClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Blocks the calling thread like ``wait(timeout:)``, polling every 2 ms: for synchronous code.
    /// - Parameters:
    ///   - timeout: The longest wait for the exit; the child is left running when it passes.
    /// - Returns: How the child ended, or `nil` if it still runs after `timeout`.
    public func waitUntilExit(timeout: Duration) -> ExitStatus? {
        let deadline = MonotonicClock.now + timeout.seconds
        while true {
            if let status = exitStatus {
                while !outputHasSettled(.standardOutput) || !outputHasSettled(.standardError) {
                    usleep(2_000)
                }
                return status
            }
            guard MonotonicClock.now < deadline else { return nil }
            usleep(2_000)
        }
    }

    // MARK: Signals

    /// Sends `signal` to the child; does nothing once it has been reaped.
    /// - Parameters:
    ///   - signal: The signal number, e.g. `SIGTERM`, `SIGSTOP`.
    public func signal(_ signal: Int32) {
        state.withLock { state in
            guard state.exitStatus == nil else { return }
            sendSignal(signal, to: processIdentifier)
        }
    }

    /// Kills the child with SIGKILL (it cannot be caught, blocked or ignored) and reaps it. Idempotent.
    ///
    /// Returns at once after the reap: output still in the pipes is read on; ``wait(timeout:)``
    /// returns it all.
    /// - Returns: How the child ended (a child that had already exited keeps its own status).
    @discardableResult
    public func kill() -> ExitStatus {
        signal(SIGKILL)
        return reap(blocking: true) ?? .exited(-1)
    }

    /// Stops the child gracefully: SIGTERM, a wait of up to `gracePeriod`, then SIGKILL. Always reaps it.
    /// - Parameters:
    ///   - gracePeriod: How long the child may take to exit after SIGTERM.
    /// - Returns: How the child ended.
    @discardableResult
    public func terminate(gracePeriod: Duration = .seconds(5)) -> ExitStatus {
        signal(SIGTERM)
        let deadline = MonotonicClock.now + gracePeriod.seconds
        while MonotonicClock.now < deadline {
            if let status = exitStatus { return status }
            usleep(10_000)
        }
        return kill()
    }

    // MARK: Running to completion

    /// Runs a program to completion with its output captured, and fails unless it exits with status 0.
    /// - Parameters:
    ///   - executable: The program: a path, or a name looked up on `PATH`.
    ///   - arguments: The arguments after `argv[0]`.
    ///   - environment: Variables set on top of the inherited environment.
    ///   - workingDirectory: The child's working directory; `nil` for this process's.
    ///   - standardInput: Where standard input comes from; `/dev/null` by default.
    ///   - timeout: The longest the program may run; it is killed then.
    /// - Throws: `MosquittoTestingError` when it cannot start, runs past `timeout`, or exits otherwise
    ///   than with status 0 (the message names the status and its standard error, else its standard
    ///   output); `CancellationError` when the task is cancelled (the child is killed).
    /// - Returns: The finished process, with its output.
    @discardableResult
    public static func run(
        executable: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        standardInput: Input = .null,
        timeout: Duration = .seconds(120)
    ) async throws -> ChildProcess {
        let process = try ChildProcess(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory, standardInput: standardInput
        )
        let name = executable.split(separator: "/").last.map(String.init) ?? executable
        let status: ExitStatus?
        do {
            status = try await process.wait(timeout: timeout)
        } catch {
            process.kill()
            throw error
        }
        guard let status else {
            process.kill()
            throw MosquittoTestingError("\(name) did not finish within \(timeout): \(process.transcript)")
        }
        guard status == .exited(0) else {
            var details = process.standardError.trimmingWhitespace()
            if details.isEmpty { details = process.standardOutput.trimmingWhitespace() }
            throw MosquittoTestingError("\(name) failed (\(status)): \(details)")
        }
        return process
    }

    // MARK: Locating programs

    /// Finds an executable: by an environment variable's value, explicit candidates, then `PATH` and the
    /// usual install directories (`/usr/sbin`, `/usr/bin`, `/bin`, `/usr/local/…`, `/opt/homebrew/…`).
    /// - Parameters:
    ///   - name: The program's name, e.g. `openssl`.
    ///   - environmentVariable: A variable whose value, when set, is the path (or a name to look up instead).
    ///   - preferred: Absolute paths tried before `PATH`.
    /// - Returns: The absolute path of an executable regular file, or `nil`.
    public static func findExecutable(named name: String, environmentVariable: String? = nil, preferred: [String] = []) -> String? {
        ExecutableSearch.find(named: name, environmentVariable: environmentVariable, preferred: preferred)
    }
}

/// `kill(2)`, out of reach of ``ChildProcess/kill()``'s name.
private func sendSignal(_ signal: Int32, to pid: pid_t) {
    _ = kill(pid, signal)
}
