#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Locked

/// A value guarded by a `pthread_mutex_t`: the one lock type of this library.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer on Linux cannot see the
/// ordering `Mutex` provides (its futex and atomics live in the uninstrumented Synchronization
/// library) and reports false races on everything it guards, which would hide real ones;
/// ThreadSanitizer intercepts pthread mutexes. An uncontended `pthread_mutex_lock` costs about the
/// same as `Mutex`'s fast path.
///
/// `@unchecked Sendable` is safe: `value` is only reached through ``withLock(_:)`` and
/// ``withLockIfAvailable(_:)``, which hold
/// the mutex for the whole access, and the mutex lives in its own allocation (never moved).
final class Locked<Value: ~Copyable>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// Creates a lock around `value`.
    init(_ value: consuming Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value. Never call out to user code or
    /// libmosquitto from `body`.
    func withLock<Result: ~Copyable, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Runs `body` with exclusive access to the value if the mutex is free right now (even the
    /// calling thread holding it counts as taken); otherwise returns `nil` without waiting.
    func withLockIfAvailable<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

extension Locked: CustomReflectable where Value: ~Copyable {
    /// No children: reflection (`dump`, `Mirror`) must neither read the value without the lock
    /// nor copy a noncopyable one (the runtime traps on that).
    var customMirror: Mirror {
        Mirror(self, children: [])
    }
}
