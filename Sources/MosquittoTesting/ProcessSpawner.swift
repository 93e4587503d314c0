#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Exit status

/// How a child process ended, decoded from a `waitpid` status word.
enum ProcessExit: Sendable, Equatable, CustomStringConvertible {
    /// The process called `exit` with this code.
    case exited(Int32)
    /// The process was terminated by this signal.
    case signaled(Int32)

    /// Decodes a raw `waitpid` status (the `WIFEXITED`/`WTERMSIG` macros are not imported into Swift).
    init(rawStatus status: Int32) {
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(signal)
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal): return "signal \(signal)"
        }
    }
}

// MARK: - Spawner

/// Starts child processes with `posix_spawn`, resetting the signal mask and dispositions the test runner may have changed.
enum ProcessSpawner {
    /// The signals whose disposition is reset to the default in the child (ignored dispositions survive `exec`).
    private static let defaultedSignals: [Int32] = [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGUSR1]

    /// Spawns `executable` with stdin from `/dev/null` and stdout/stderr appended to files.
    /// - Parameters:
    ///   - executable: Absolute path of the program.
    ///   - arguments: Arguments after `argv[0]`.
    ///   - stdoutPath: File receiving standard output (created if missing, appended to).
    ///   - stderrPath: File receiving standard error; `nil` sends it to `stdoutPath`.
    ///   - environment: Variables set in the child on top of this process's environment (replacing same-named ones).
    ///   - standardInput: A descriptor to become the child's stdin instead of `/dev/null`.
    /// - Throws: `MosquittoTestingError` if `posix_spawn` fails.
    /// - Returns: The child's process id.
    static func spawn(
        executable: String,
        arguments: [String],
        stdoutPath: String,
        stderrPath: String? = nil,
        environment: [String: String] = [:],
        standardInput: Int32? = nil
    ) throws -> pid_t {
        #if canImport(Darwin)
        var fileActions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #else
        var fileActions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // Standard streams.
        let outputFlags = O_WRONLY | O_CREAT | O_APPEND
        if let standardInput {
            posix_spawn_file_actions_adddup2(&fileActions, standardInput, 0)
        } else {
            posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&fileActions, 1, stdoutPath, outputFlags, 0o644)
        if let stderrPath {
            posix_spawn_file_actions_addopen(&fileActions, 2, stderrPath, outputFlags, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        }
        closeInheritedDescriptors(&fileActions)

        // Signals: empty mask, default dispositions for the signals we care about.
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in defaultedSignals {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // argv, NULL-terminated, owned by us.
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }

        // envp: this process's environment plus `environment`, NULL-terminated, owned by us.
        let envp: [UnsafeMutablePointer<CChar>?] = Environment.inherited(overriding: environment).map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let result = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                posix_spawn(&pid, executable, &fileActions, &attributes, argvBuffer.baseAddress!, envpBuffer.baseAddress!)
            }
        }
        guard result == 0 else {
            throw MosquittoTestingError("could not spawn \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    // MARK: Descriptor hygiene

    private typealias AddCloseFrom = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

    /// Closes every descriptor above stderr in the child where glibc offers `posix_spawn_file_actions_addclosefrom_np` (2.34+),
    /// so a leftover broker cannot hold the test runner's pipes open.
    private static func closeInheritedDescriptors<T>(_ fileActions: inout T) {
        #if os(Linux)
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        let addCloseFrom = unsafeBitCast(symbol, to: AddCloseFrom.self)
        _ = withUnsafeMutablePointer(to: &fileActions) { addCloseFrom(UnsafeMutableRawPointer($0), 3) }
        #endif
    }

    // MARK: Waiting

    /// Reaps `pid` if it has exited, without blocking.
    /// - Parameters:
    ///   - pid: A child of this process.
    /// - Returns: How it ended, or `nil` while it is still running. A child reaped elsewhere counts as exited.
    static func exitIfFinished(_ pid: pid_t) -> ProcessExit? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return ProcessExit(rawStatus: status) }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            return .exited(-1)  // ECHILD: already reaped (e.g. SIGCHLD ignored).
        }
    }

    /// Blocks until `pid` exits and reaps it.
    /// - Parameters:
    ///   - pid: A child of this process.
    /// - Returns: How it ended.
    @discardableResult
    static func waitForExit(_ pid: pid_t) -> ProcessExit {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, 0)
            if result == pid { return ProcessExit(rawStatus: status) }
            if result == -1 && errno == EINTR { continue }
            return .exited(-1)
        }
    }

    // MARK: Stopping

    /// Sends `signal` to `pid`.
    static func send(_ signal: Int32, to pid: pid_t) {
        _ = kill(pid, signal)
    }

    /// Sends SIGTERM, polls for up to `timeout` seconds, then sends SIGKILL; always reaps the process.
    /// - Parameters:
    ///   - pid: A child of this process.
    ///   - timeout: Seconds to wait for a graceful exit.
    static func terminate(_ pid: pid_t, timeout: Double) {
        send(SIGTERM, to: pid)
        let deadline = MonotonicClock.now + timeout
        while MonotonicClock.now < deadline {
            if exitIfFinished(pid) != nil { return }
            usleep(10_000)
        }
        forceKill(pid)
    }

    /// Sends SIGKILL and reaps the process.
    /// - Parameters:
    ///   - pid: A child of this process.
    static func forceKill(_ pid: pid_t) {
        send(SIGKILL, to: pid)
        waitForExit(pid)
    }

    // MARK: Running helpers

    /// The result of a helper process run to completion.
    struct Output: Sendable {
        var exit: ProcessExit
        var standardOutput: String
        var standardError: String
    }

    /// Runs a helper program to completion, capturing its output in files inside `scratchDirectory`.
    /// - Parameters:
    ///   - executable: Absolute path of the program.
    ///   - arguments: Arguments after `argv[0]`.
    ///   - scratchDirectory: An existing directory for the temporary output files.
    /// - Throws: `MosquittoTestingError` if the program cannot be spawned or exits with a non-zero status;
    ///   `CancellationError` if the task is cancelled (the child is killed).
    /// - Returns: The captured output.
    @discardableResult
    static func run(executable: String, arguments: [String], scratchDirectory: String) async throws -> Output {
        let stem = "\(scratchDirectory)/.run-\(UInt64.random(in: 0 ... .max))"
        let outPath = stem + ".out", errPath = stem + ".err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        let pid = try spawn(executable: executable, arguments: arguments, stdoutPath: outPath, stderrPath: errPath)
        var exit: ProcessExit
        while true {
            if let finished = exitIfFinished(pid) {
                exit = finished
                break
            }
            do {
                try await Task.sleep(nanoseconds: 2_000_000)
            } catch {
                forceKill(pid)
                throw error
            }
        }
        let output = Output(
            exit: exit,
            standardOutput: FileSystem.readText(outPath),
            standardError: FileSystem.readText(errPath)
        )
        guard output.exit == .exited(0) else {
            let name = executable.split(separator: "/").last.map(String.init) ?? executable
            var details = output.standardError.trimmingWhitespace()
            if details.isEmpty { details = output.standardOutput.trimmingWhitespace() }
            throw MosquittoTestingError("\(name) failed (\(output.exit)): \(details)")
        }
        return output
    }

    // MARK: Locating programs

    /// Finds an executable by an environment override, explicit candidates, then `PATH` and common install dirs.
    /// - Parameters:
    ///   - name: The program name, e.g. `openssl`.
    ///   - environmentVariable: A variable whose value, when set, is used as the path.
    ///   - preferred: Absolute paths tried before `PATH`.
    /// - Returns: An absolute path of an executable file, or `nil`.
    static func findExecutable(named name: String, environmentVariable: String? = nil, preferred: [String] = []) -> String? {
        if let environmentVariable, let override = Environment.value(environmentVariable) {
            return override.contains("/") ? (isExecutable(override) ? override : nil) : findExecutable(named: override)
        }
        let pathDirectories = (Environment.value("PATH") ?? "").split(separator: ":").map(String.init)
        let fallbackDirectories = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/sbin", "/opt/homebrew/bin"]
        let candidates = preferred + (pathDirectories + fallbackDirectories).map { "\($0)/\(name)" }
        return candidates.first(where: isExecutable)
    }

    private static func isExecutable(_ path: String) -> Bool {
        var info = stat()
        return access(path, X_OK) == 0 && stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}

// MARK: - Clock

/// Seconds on the monotonic clock, for deadlines in synchronous code.
enum MonotonicClock {
    /// The current monotonic time in seconds.
    static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1_000_000_000
    }
}

// MARK: - Environment

/// Reads environment variables.
enum Environment {
    /// The value of `name`, or `nil` when unset or empty.
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }

    /// This process's environment as `NAME=value` entries, with `overrides` replacing or adding variables.
    static func inherited(overriding overrides: [String: String]) -> [String] {
        var entries: [String] = []
        var cursor: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let current = cursor, let entry = current.pointee {
            let text = String(cString: entry)
            let name = String(text.prefix { $0 != "=" })
            if overrides[name] == nil { entries.append(text) }
            cursor = current + 1
        }
        return entries + overrides.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
