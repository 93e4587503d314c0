#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - ChildProcess

/// A role process started by the orchestrator: standard output on a pipe we read line by line
/// (with deadlines), standard error inherited, signal mask and dispositions reset.
///
/// Owned by one task at a time (not `Sendable`); ``reap(timeoutMilliseconds:)`` or `deinit`
/// always collects the process.
final class ChildProcess {
    /// The child's process id.
    let pid: pid_t
    /// What the process is, for messages.
    let name: String
    /// The read end of the pipe on the child's standard output.
    private let output: Int32
    /// Bytes read but not yet returned as lines.
    private var buffer: [UInt8] = []
    /// Whether the process has been waited for.
    private var reaped = false

    /// Spawns `executable` with `arguments`; stdin is `/dev/null`.
    ///
    /// - Parameters:
    ///   - executable: The program (looked up on `PATH` when it has no slash).
    ///   - arguments: The arguments after `argv[0]`.
    ///   - name: What the process is, for messages.
    /// - Throws: ``RoleFailure`` when the pipe or `posix_spawn` fails.
    init(executable: String, arguments: [String], name: String) throws(RoleFailure) {
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else { throw RoleFailure("pipe: \(String(cString: strerror(errno)))") }
        // Neither end may leak into other children (dup2 onto fd 1 clears the flag for the child's copy).
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = argv.withUnsafeBufferPointer { argvBuffer in
            posix_spawnp(&child, executable, &actions, &attributes, argvBuffer.baseAddress!, environ)
        }
        close(pipeEnds[1])
        guard rc == 0 else {
            close(pipeEnds[0])
            throw RoleFailure("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        output = pipeEnds[0]
        self.name = name
    }

    deinit {
        if !reaped {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        }
        close(output)
    }

    // MARK: Reading

    /// The next line of the child's standard output, without the newline.
    ///
    /// - Parameter timeoutMilliseconds: How long to wait for it.
    /// - Returns: The line, or `nil` when the child closed its output first.
    /// - Throws: ``RoleFailure`` when the deadline passes.
    func readLine(timeoutMilliseconds: Int) throws(RoleFailure) -> String? {
        let deadline = Measurements.now + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let now = Measurements.now
            guard now < deadline else { throw RoleFailure("\(name): no output within \(timeoutMilliseconds / 1000) s") }
            var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min((deadline - now) / 1_000_000 + 1, 1000)))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                if buffer.isEmpty { return nil }
                defer { buffer.removeAll() }
                return String(decoding: buffer, as: UTF8.self)
            }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    /// Reads lines until one starts with `prefix`; other lines are echoed to standard error.
    ///
    /// - Throws: ``RoleFailure`` when the output ends or the deadline passes first.
    func expectLine(startingWith prefix: String, timeoutMilliseconds: Int) throws(RoleFailure) -> String {
        let deadline = Measurements.now + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let left = Int((deadline > Measurements.now ? deadline - Measurements.now : 0) / 1_000_000)
            guard let line = try readLine(timeoutMilliseconds: max(left, 1)) else {
                let exit = reap(timeoutMilliseconds: 2000)
                throw RoleFailure("\(name) ended (\(exit)) without printing \"\(prefix)\"")
            }
            if line.hasPrefix(prefix) { return line }
            Output.error("[\(name)] \(line)")
        }
    }

    // MARK: Waiting

    /// Waits up to `timeoutMilliseconds` for the child to exit, then kills it; always reaps it.
    ///
    /// - Returns: How it ended: `exit N` or `signal N`.
    @discardableResult
    func reap(timeoutMilliseconds: Int) -> String {
        guard !reaped else { return "already reaped" }
        let deadline = Measurements.now + UInt64(timeoutMilliseconds) * 1_000_000
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0, errno != EINTR { reaped = true; return "lost" }
            if Measurements.now >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                break
            }
            usleep(2000)
        }
        reaped = true
        let signal = status & 0x7f
        return signal == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(signal)"
    }
}
