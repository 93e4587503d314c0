import MosquittoTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The fixture's process runner on its own (no broker): exit statuses, signals, output capture,
/// standard input, bounded waits, and that nothing outlives the object.
@Suite("Child processes", .timeLimit(.minutes(1)))
struct ChildProcessTests {
    /// `sh -c script`.
    private func shell(_ script: String, standardInput: ChildProcess.Input = .null) throws -> ChildProcess {
        try ChildProcess(executable: "/bin/sh", arguments: ["-c", script], standardInput: standardInput)
    }

    /// Whether `pid` names a process (a zombie included): `false` once it is reaped.
    private func exists(_ pid: Int32) -> Bool {
        access("/proc/\(pid)", F_OK) == 0
    }

    // MARK: Exit statuses

    @Test("an exit code is reported as exited(code), with that code and no signal")
    func exitCode() async throws {
        let child = try shell("exit 7")
        let status = try await child.wait(timeout: .seconds(10))
        #expect(status == .exited(7))
        #expect(status?.code == 7)
        #expect(status?.signal == nil)
        #expect(!child.isRunning)
    }

    @Test("a child that dies of a signal is reported as signaled(signal)")
    func signalExit() async throws {
        let child = try shell("kill -USR1 $$; sleep 5")
        let status = try await child.wait(timeout: .seconds(10))
        #expect(status == .signaled(SIGUSR1))
        #expect(status?.code == nil)
    }

    @Test("a child spawned from a thread that blocks SIGTERM blocks nothing, and SIGTERM ends it")
    func signalMaskIsReset() async throws {
        // Not through sh: dash clears its signal mask itself.
        let child = try spawnWithSignalBlocked(SIGTERM) { try ChildProcess(executable: "sleep", arguments: ["30"]) }
        #expect(blockedSignals(of: child.processIdentifier) == "0000000000000000")
        child.signal(SIGTERM)
        #expect(try await child.wait(timeout: .seconds(5)) == .signaled(SIGTERM))
    }

    /// The `SigBlk` mask of `pid` from `/proc/<pid>/status`, in hex.
    private func blockedSignals(of pid: Int32) -> String? {
        readFile("/proc/\(pid)/status").split(separator: "\n")
            .first { $0.hasPrefix("SigBlk:") }
            .map { String($0.dropFirst("SigBlk:".count).filter { !$0.isWhitespace }) }
    }

    /// Runs `body` with `signal` blocked on the calling thread (no suspension point in between).
    private func spawnWithSignalBlocked(_ signal: Int32, _ body: () throws -> ChildProcess) rethrows -> ChildProcess {
        var blocked = sigset_t()
        var previous = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, signal)
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    // MARK: Output

    @Test("5 MB on stdout and 3 MB on stderr are captured whole, without a deadlock")
    func largeOutput() async throws {
        let child = try shell(#"head -c 5000000 /dev/zero | tr '\0' x; head -c 3000000 /dev/zero | tr '\0' y >&2"#)
        #expect(try await child.wait(timeout: .seconds(30)) == .exited(0))
        let output = child.standardOutputBytes
        let errors = child.standardErrorBytes
        #expect(output.count == 5_000_000)
        #expect(output.allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(errors.count == 3_000_000)
        #expect(errors.allSatisfy { $0 == UInt8(ascii: "y") })
    }

    @Test("stdout to a file, stderr to the same place (2>&1)")
    func outputToFile() async throws {
        let path = "/tmp/child-process-test-\(UInt64.random(in: 0 ... .max)).out"
        defer { unlink(path) }
        let child = try ChildProcess(
            executable: "/bin/sh", arguments: ["-c", "echo out; echo err >&2"],
            standardOutput: .file(path), standardError: .standardOutput
        )
        #expect(try await child.wait(timeout: .seconds(10)) == .exited(0))
        #expect(readFile(path) == "out\nerr\n")
        #expect(child.standardOutput.isEmpty)
        #expect(child.standardError.isEmpty)
    }

    @Test("waitForLine returns the line once printed, and fails after its timeout or when the output ends")
    func waitingForLines() async throws {
        let child = try shell("echo one; sleep 0.2; echo two; exec sleep 30")
        #expect(try await child.waitForLine(timeout: .seconds(10)) { $0 == "two" } == "two")
        await #expect(throws: MosquittoTestingError.self) {
            try await child.waitForLine(timeout: .milliseconds(300)) { $0 == "three" }
        }
        child.kill()
        let ended = try shell("echo only")
        let error = await #expect(throws: MosquittoTestingError.self) {
            try await ended.waitForLine(timeout: .seconds(10)) { $0 == "never" }
        }
        #expect(error?.message.contains("ended (exit status 0)") == true, "\(String(describing: error))")
    }

    @Test("line(_:timeout:) reads lines in order, an unterminated last one at the end, then nil")
    func readingLinesInOrder() async throws {
        let child = try shell(#"printf 'a\n\nb'"#)
        #expect(try child.line(0, timeout: .seconds(10)) == "a")
        #expect(try child.line(1, timeout: .seconds(10)) == "")
        #expect(try child.line(2, timeout: .seconds(10)) == "b")
        #expect(try child.line(3, timeout: .seconds(10)) == nil)
        #expect(child.outputLines == ["a", "b"])

        let silent = try shell("exec sleep 30")
        #expect(throws: MosquittoTestingError.self) { try silent.line(0, timeout: .milliseconds(200)) }
    }

    // MARK: Input

    @Test("2 MiB fed to cat come back unchanged (fed and read at once, no deadlock)")
    func standardInputIsFed() async throws {
        let input = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let child = try ChildProcess(executable: "cat", standardInput: .bytes(input))
        #expect(try await child.wait(timeout: .seconds(30)) == .exited(0))
        #expect(child.standardOutputBytes.count == input.count)
        #expect(child.standardOutputBytes == input)
    }

    @Test("stdin is /dev/null by default: cat ends at once with no output")
    func standardInputDefaultsToNull() async throws {
        let child = try ChildProcess(executable: "cat")
        #expect(try await child.wait(timeout: .seconds(10)) == .exited(0))
        #expect(child.standardOutputBytes.isEmpty)
    }

    // MARK: Environment, directory, descriptors

    @Test("environment variables are added, or replace the environment; the working directory is set")
    func environmentAndDirectory() async throws {
        let child = try ChildProcess(
            executable: "/bin/sh", arguments: ["-c", #"echo "$CHILD_PROCESS_TEST"; pwd; echo "${HOME:+home}""#],
            environment: ["CHILD_PROCESS_TEST": "set"], workingDirectory: "/usr"
        )
        #expect(try await child.wait(timeout: .seconds(10)) == .exited(0))
        #expect(child.outputLines == ["set", "/usr", getenv("HOME") == nil ? nil : "home"].compactMap { $0 })

        let bare = try ChildProcess(executable: "env", environment: ["ONLY": "1"], inheritsEnvironment: false)
        #expect(try await bare.wait(timeout: .seconds(10)) == .exited(0))
        #expect(bare.standardOutput == "ONLY=1\n")
    }

    @Test("a descriptor of ours without close-on-exec does not reach the child")
    func descriptorsAreClosedInTheChild() async throws {
        let leaked = open("/dev/null", O_RDONLY)  // No O_CLOEXEC on purpose.
        try #require(leaked > 2)
        defer { close(leaked) }
        let child = try shell(#"for f in /proc/$$/fd/*; do echo "${f##*/}"; done"#)
        #expect(try await child.wait(timeout: .seconds(10)) == .exited(0))
        #expect(child.outputLines.contains("1"), "the listing works: \(child.outputLines)")
        #expect(!child.outputLines.contains("\(leaked)"), "\(child.outputLines)")
    }

    // MARK: Waiting, stopping, releasing

    @Test("a wait that times out returns nil and leaves the child running; kill() ends and reaps it")
    func timeoutThenKill() async throws {
        let child = try ChildProcess(executable: "sleep", arguments: ["30"])
        let started = ContinuousClock.now
        #expect(try await child.wait(timeout: .milliseconds(300)) == nil)
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(child.isRunning)
        #expect(child.kill() == .signaled(SIGKILL))
        #expect(!exists(child.processIdentifier), "the killed child is reaped, not a zombie")
        #expect(child.kill() == .signaled(SIGKILL), "kill() is idempotent")
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("terminate() lets a child exit on SIGTERM, and kills one that ignores it after the grace period")
    func terminate() async throws {
        let polite = try shell(#"trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"#)
        try await polite.waitForLine(timeout: .seconds(10), "ready") { $0 == "ready" }
        #expect(polite.terminate(gracePeriod: .seconds(5)) == .exited(3))

        let stubborn = try shell(#"trap '' TERM; echo ready; while :; do sleep 0.05; done"#)
        try await stubborn.waitForLine(timeout: .seconds(10), "ready") { $0 == "ready" }
        let started = ContinuousClock.now
        #expect(stubborn.terminate(gracePeriod: .milliseconds(300)) == .signaled(SIGKILL))
        #expect(ContinuousClock.now - started >= .milliseconds(300))
    }

    @Test("a child still running when its object is released is killed and reaped")
    func releaseKills() async throws {
        var child: ChildProcess? = try ChildProcess(executable: "sleep", arguments: ["30"])
        let pid = try #require(child?.processIdentifier)
        #expect(exists(pid))
        child = nil
        #expect(!exists(pid), "process \(pid) outlived its ChildProcess")
    }

    // MARK: Running to completion, failures

    @Test("run() returns the finished process on exit 0 and throws, naming the status and stderr, otherwise")
    func runToCompletion() async throws {
        let done = try await ChildProcess.run(executable: "/bin/sh", arguments: ["-c", "echo ok"])
        #expect(done.standardOutput == "ok\n")
        #expect(done.exitStatus == .exited(0))
        let error = await #expect(throws: MosquittoTestingError.self) {
            try await ChildProcess.run(executable: "/bin/sh", arguments: ["-c", "echo broken >&2; exit 4"])
        }
        #expect(error?.message == "sh failed (exit status 4): broken")
        let slow = await #expect(throws: MosquittoTestingError.self) {
            try await ChildProcess.run(executable: "sleep", arguments: ["30"], timeout: .milliseconds(200))
        }
        #expect(slow?.message.contains("did not finish") == true)
    }

    @Test("a missing executable, or a non-executable file, fails to start")
    func spawnFailures() throws {
        #expect(throws: MosquittoTestingError.self) { try ChildProcess(executable: "/nonexistent/program") }
        #expect(throws: MosquittoTestingError.self) { try ChildProcess(executable: "no-such-program-\(UInt32.random(in: 0 ... .max))") }
        #expect(throws: MosquittoTestingError.self) { try ChildProcess(executable: "/etc/hostname") }
        #expect(throws: MosquittoTestingError.self) { try ChildProcess(executable: "cat", standardOutput: .standardOutput) }
    }
}

/// The contents of the file at `path` ("" when unreadable).
private func readFile(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes += buffer[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}
