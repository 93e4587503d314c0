import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Signals

/// SIGINT and SIGTERM for the commands, caught by a `sigaction` handler that is in force the
/// moment ``install(_:action:)`` returns (a Dispatch signal source is armed later, on another
/// thread, and a signal in between would be lost to `SIG_IGN`).
///
/// The handler only writes the signal's number to a pipe (`write(2)` is async-signal-safe); a
/// thread of ours reads the pipe and runs the action, where anything may be done.
enum Signals {
    /// The pipe's write end, for the handler; -1 until installed.
    private static let writeEnd = Atomic<Int32>(-1)

    /// Installs the handler for `numbers` (once per process) and runs `action` for each signal
    /// that arrives, in order, on a thread of its own.
    static func install(_ numbers: [Int32] = [SIGINT, SIGTERM], action: @escaping @Sendable (Int32) -> Void) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        writeEnd.store(ends[1], ordering: .sequentiallyConsistent)
        let readEnd = ends[0]
        // A blocking read for the life of the process: a thread of Dispatch's that stays parked
        // in read(2), never one of the cooperative pool's.
        DispatchQueue(label: "mqtt.signals").async {
            var byte: UInt8 = 0
            while true {
                let count = read(readEnd, &byte, 1)
                if count == 1 {
                    action(Int32(byte))
                } else if count < 0, errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        for number in numbers {
            var handler = sigaction()
            handler.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                let saved = errno
                _ = write(Signals.writeEnd.load(ordering: .relaxed), &byte, 1)
                errno = saved
            }
            sigemptyset(&handler.sa_mask)
            handler.sa_flags = SA_RESTART
            sigaction(number, &handler, nil)
        }
    }

    /// Unblocks SIGINT and SIGTERM on the calling thread: run first thing on the main thread.
    ///
    /// A process started from a thread that blocks them (Foundation's `Process` spawns with the
    /// spawning thread's mask, and Dispatch's threads block every signal) would otherwise
    /// inherit a main thread that blocks them; every thread ours and Dispatch's create blocks
    /// them too, so the signals would stay pending for ever and the command would ignore them.
    static func unblockOnThisThread(_ numbers: [Int32] = [SIGINT, SIGTERM]) {
        var set = sigset_t()
        sigemptyset(&set)
        for number in numbers { sigaddset(&set, number) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Dies of `number` as if no handler had been installed (the shell sees 128 + `number`):
    /// restores the default action, unblocks the signal on this thread (Dispatch's threads block
    /// every signal, and a signal raised there would stay pending for ever), and raises it.
    static func die(of number: Int32) -> Never {
        signal(number, SIG_DFL)
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, number)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        raise(number)
        _exit(128 + number)
    }
}
