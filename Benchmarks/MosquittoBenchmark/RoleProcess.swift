import MosquittoTesting

// MARK: - RoleProcess

/// A role process started by the orchestrator, on the fixture's ``ChildProcess``: standard output
/// captured and read line by line (with deadlines), standard error inherited, stdin `/dev/null`.
///
/// Owned by one task at a time (not `Sendable`: it keeps the reading position); the process is
/// always reaped, by ``reap(timeoutMilliseconds:)`` or when released.
final class RoleProcess {
    /// What the process is, for messages.
    let name: String
    private let process: ChildProcess
    /// The index of the next line of standard output to return.
    private var nextLine = 0

    /// Spawns `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - executable: The program (looked up on `PATH` when it has no slash).
    ///   - arguments: The arguments after `argv[0]`.
    ///   - name: What the process is, for messages.
    /// - Throws: ``RoleFailure`` when it cannot be started.
    init(executable: String, arguments: [String], name: String) throws(RoleFailure) {
        do {
            process = try ChildProcess(executable: executable, arguments: arguments, standardError: .inherit)
        } catch {
            throw RoleFailure("cannot start \(executable): \(error)")
        }
        self.name = name
    }

    // MARK: Reading

    /// The next line of the child's standard output, without the newline.
    ///
    /// - Parameter timeoutMilliseconds: How long to wait for it.
    /// - Returns: The line, or `nil` when the child closed its output first.
    /// - Throws: ``RoleFailure`` when the deadline passes.
    func readLine(timeoutMilliseconds: Int) throws(RoleFailure) -> String? {
        do {
            let line = try process.line(nextLine, timeout: .milliseconds(timeoutMilliseconds))
            if line != nil { nextLine += 1 }
            return line
        } catch {
            throw RoleFailure("\(name): no output within \(timeoutMilliseconds / 1000) s")
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
        let status = process.waitUntilExit(timeout: .milliseconds(timeoutMilliseconds)) ?? process.kill()
        switch status {
        case .exited(let code): return "exit \(code)"
        case .signaled(let signal): return "signal \(signal)"
        }
    }
}
