#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - OrphanReaper

/// Makes the brokers a test process started die with it, even when it is killed with SIGKILL
/// (a test runner's timeout, `kill -9`, an OOM kill), and removes their temporary directories.
///
/// DESIGN: `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, and the threads
/// that start brokers (Swift's cooperative pool, Dispatch's) come and go, so it would kill brokers
/// in the middle of a test. Instead one small `sh` process per test process reads, on a pipe
/// whose only writer is this process (close-on-exec, so no child inherits it), one line per
/// broker: its process id and its directory. When this process ends, however it ends, the kernel
/// closes the pipe; the reader sees end of file, kills every recorded process that still is that
/// broker (its command line still names that directory: a process id reused meanwhile is left
/// alone), and removes the directories. Brokers stopped normally are already gone by then.
final class OrphanReaper: Sendable {
    /// The reaper of this process, started with the first broker; `nil` if it could not start
    /// (brokers then only die when stopped, as before).
    static let shared: OrphanReaper? = OrphanReaper()

    /// The pipe's write end (close-on-exec).
    private let writer: Int32

    /// The watchdog `sh`, kept for the life of this process (releasing it would kill it).
    private let watchdog: ChildProcess

    /// The reaper's script: collect lines until end of file, then clean up. It ignores the
    /// signals a terminal sends to the whole process group (Ctrl-C), so that it outlives a test
    /// run interrupted that way and cleans up after it.
    private static let script = """
        trap '' INT TERM HUP
        entries=$(cat)
        printf '%s\\n' "$entries" | while read -r pid dir; do
            [ -n "$pid" ] || continue
            if [ -r "/proc/$pid/cmdline" ] && tr '\\000' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$dir/"; then
                kill -KILL "$pid" 2>/dev/null
                sleep 0.2
            fi
            rm -rf -- "$dir"
        done
        """

    private init?() {
        var descriptors: [Int32] = [-1, -1]
        guard pipe(&descriptors) == 0 else { return nil }
        let (reader, writer) = (descriptors[0], descriptors[1])
        // Neither end may reach another child (ChildProcess also closes what is above stderr in
        // its children); the reaper gets the read end as its stdin through dup2, which clears it.
        _ = fcntl(reader, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writer, F_SETFD, FD_CLOEXEC)
        defer { close(reader) }
        do {
            watchdog = try ChildProcess(
                executable: "/bin/sh", arguments: ["-c", Self.script],
                standardInput: .descriptor(reader), standardOutput: .null, standardError: .null
            )
        } catch {
            close(writer)
            return nil
        }
        self.writer = writer
    }

    /// Records a broker to kill (and its directory to remove) if this process dies first.
    func watch(pid: pid_t, directory: String) {
        var line = "\(pid) \(directory)\n"
        line.withUTF8 { bytes in _ = write(writer, bytes.baseAddress, bytes.count) }
    }
}
