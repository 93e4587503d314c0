#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CMosquitto
import Dispatch

// MARK: - DriverThread

/// Starts detached POSIX threads for the drivers (a ``ThreadDriver`` session, an
/// ``EventLoop``, a ``BlockingExecutor``) and names them.
enum DriverThread {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Runs `body` on a new detached thread.
    ///
    /// - Returns: `false` if the thread could not be created.
    static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Names the calling thread (at most 15 bytes are kept).
    static func setName(_ name: String) {
        swift_mosquitto_set_thread_name(name)
    }
}

// MARK: - Sleeper

/// An interruptible sleep for the reconnect backoff: ``wake()`` ends the current (or next) sleep.
struct Sleeper: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    /// Sleeps up to `duration`, or until ``wake()``.
    func sleep(_ duration: Duration) {
        _ = semaphore.wait(timeout: .now() + duration.timeInterval)
    }

    /// Ends a sleep early.
    func wake() {
        semaphore.signal()
    }
}
