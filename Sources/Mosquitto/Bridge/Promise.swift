import Dispatch

// MARK: - Promise

/// A one-shot result that any number of tasks can await, each with its own timeout and
/// cancellation. Completing it from a C callback never blocks: it only resumes continuations.
final class Promise<Value: Sendable>: Sendable {
    private struct Waiter {
        let continuation: CheckedContinuation<Value, any Error>
        /// The timeout; cancelling a `DispatchSourceTimer` releases it at once (a cancelled
        /// `asyncAfter` work item would stay queued until its deadline, 30 s of memory per wait).
        let timer: (any DispatchSourceTimer)?
    }

    private enum State {
        case pending(waiters: [UInt64: Waiter], nextID: UInt64)
        case done(Result<Value, MQTTError>)
    }

    private let state: Locked<State>

    /// Where timeouts fire: a private serial queue, which libdispatch serves on an overcommit
    /// thread, so a timeout fires on time even while every thread of the global pool (which
    /// Swift's cooperative executor shares) is busy; `.global()` would wait for one to free up.
    private static var timerQueue: DispatchQueue { promiseTimerQueue }

    /// Creates a pending promise.
    init() {
        state = Locked(.pending(waiters: [:], nextID: 0))
    }

    /// Creates a promise that is already complete.
    init(completed result: Result<Value, MQTTError>) {
        state = Locked(.done(result))
    }

    /// The result, once there is one.
    var result: Result<Value, MQTTError>? {
        state.withLock { state in
            if case .done(let result) = state { return result }
            return nil
        }
    }

    /// Completes the promise and resumes every waiter; later completions are ignored.
    func complete(_ result: Result<Value, MQTTError>) {
        let waiters: [Waiter] = state.withLock { state in
            guard case .pending(let waiters, _) = state else { return [] }
            state = .done(result)
            return Array(waiters.values)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(with: result.mapError { $0 as any Error })
        }
    }

    /// Succeeds the promise.
    func succeed(_ value: Value) { complete(.success(value)) }

    /// Fails the promise.
    func fail(_ error: MQTTError) { complete(.failure(error)) }

    /// Waits for the result.
    ///
    /// Timing out or being cancelled ends only this wait, not the operation behind the promise.
    ///
    /// - Parameters:
    ///   - timeout: How long to wait, or `nil` for as long as it takes.
    ///   - operation: The operation named in a timeout or cancellation error.
    /// - Throws: The promise's error, or ``MQTTError/Code/timeout`` / ``MQTTError/Code/cancelled``.
    func wait(timeout: Duration?, operation: MQTTError.Operation) async throws(MQTTError) -> Value {
        if let result { return try result.get() }
        let id = state.withLock { state -> UInt64 in
            guard case .pending(let waiters, let nextID) = state else { return 0 }
            state = .pending(waiters: waiters, nextID: nextID + 1)
            return nextID
        }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                    register(id: id, continuation: continuation, timeout: timeout, operation: operation)
                }
            } onCancel: {
                self.expire(id: id, with: MQTTError(.cancelled, operation: operation))
            }
        } catch let error as MQTTError {
            throw error
        } catch {
            throw MQTTError(.unknown, operation: operation, detail: "\(error)")
        }
    }

    // MARK: Internals

    private func register(
        id: UInt64,
        continuation: CheckedContinuation<Value, any Error>,
        timeout: Duration?,
        operation: MQTTError.Operation
    ) {
        // Cancellation sets the task's flag before running `onCancel`, and `expire` takes the same
        // lock, so checking the flag under the lock closes the window in which a cancellation
        // could slip between the check and the registration.
        let immediate: Result<Value, MQTTError>? = state.withLock { state in
            switch state {
            case .done(let result):
                return result
            case .pending(var waiters, let nextID):
                if Task.isCancelled {
                    return .failure(MQTTError(.cancelled, operation: operation))
                }
                var timer: (any DispatchSourceTimer)?
                if let timeout {
                    let source = DispatchSource.makeTimerSource(queue: Self.timerQueue)
                    source.setEventHandler { [weak self] in
                        self?.expire(id: id, with: MQTTError(.timeout, operation: operation, detail: "after \(timeout)"))
                    }
                    source.schedule(deadline: .now() + timeout.timeInterval)
                    source.resume()
                    timer = source
                }
                waiters[id] = Waiter(continuation: continuation, timer: timer)
                state = .pending(waiters: waiters, nextID: nextID)
                return nil
            }
        }
        if let immediate {
            continuation.resume(with: immediate.mapError { $0 as any Error })
        }
    }

    private func expire(id: UInt64, with error: MQTTError) {
        let waiter: Waiter? = state.withLock { state in
            guard case .pending(var waiters, let nextID) = state, let waiter = waiters.removeValue(forKey: id) else { return nil }
            state = .pending(waiters: waiters, nextID: nextID)
            return waiter
        }
        waiter?.timer?.cancel()
        waiter?.continuation.resume(throwing: error)
    }
}

/// The queue of every promise's timeout timer (a static stored property cannot live in a generic type).
private let promiseTimerQueue = DispatchQueue(label: "swift-mosquitto.timeouts")

// MARK: - Duration helpers

extension Duration {
    /// The duration in seconds, as a `DispatchTimeInterval`.
    var timeInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if nanos.overflow || nanos.partialValue > Int64(Int.max) { return .never }
        return .nanoseconds(Int(nanos.partialValue + attoseconds / 1_000_000_000))
    }

    /// The duration in whole seconds, rounded down.
    var wholeSeconds: Int64 { components.seconds }

    /// The duration in milliseconds, rounded up (so that a wait of it has surely passed), clamped
    /// to `Int32` for `epoll_wait`; negative durations give 0.
    var roundedUpMilliseconds: Int32 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        let milliseconds = seconds * 1_000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: max(0, milliseconds))
    }
}
