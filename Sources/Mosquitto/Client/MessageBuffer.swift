// MARK: - MessageBuffer

/// The bounded buffer between the driver thread, which receives messages, and the one task that
/// consumes a ``MQTTMessageSequence``.
///
/// DESIGN: why not `AsyncThrowingStream`. A stream resumes its waiting consumer from every
/// `yield`: one continuation resume, and usually one thread wake-up, per message, plus the
/// stream's own bookkeeping (a lock, a `Deque` and a cancellation handler) on both sides of every
/// message. Profiles of a busy subscriber showed about 19% of its CPU time in resuming and waking
/// and about 24% in that bookkeeping. This buffer separates storing from waking and hands messages
/// over in batches:
/// - The producer (the driver thread) ``append(_:)``s under a lock without waking anyone. After
///   each pass of the network loop it calls ``flush()``, which resumes the waiting consumer, if
///   any, once for everything that pass received. When ``flushThreshold`` messages are waiting,
///   ``append(_:)`` wakes the consumer at once, so a consumer never waits for the end of a long
///   pass while much is queued.
/// - The consumer (``Iterator``) takes every buffered message in one lock acquisition (swapping
///   its emptied array for the buffer's) and returns them one by one without locking; it locks
///   again, or suspends, only when its batch is used up.
///
/// Semantics kept from the stream it replaces: ordered; bounded (``append(_:)`` refuses the
/// message and ends the sequence with ``MQTTError/Code/messageBufferOverflow`` when `capacity`
/// messages wait, never dropping one silently); ``finish(throwing:)`` takes effect after the
/// messages already buffered are delivered; cancelling the consuming task ends the sequence, and
/// so does releasing every sequence and iterator (``Reader``), both calling the termination
/// handler. The bound counts the messages in the shared buffer, not those the consumer already
/// took into its batch: a consumer that falls behind holds at most `capacity` messages in its
/// batch while up to `capacity` more wait.
///
/// Sendable: all mutable state is in a ``Locked``; the lock is held only to move messages and
/// flags, never while resuming a continuation or calling the termination handler.
final class MessageBuffer: Sendable {
    /// What ``append(_:)`` did with a message.
    enum AppendResult: Equatable {
        /// Buffered. `needsFlush` is `true` for the first message since the last ``flush()``:
        /// the producer must then call ``flush()`` once it has appended what is at hand.
        case appended(needsFlush: Bool)
        /// The buffer was full: the message was refused and the sequence now ends, after the
        /// buffered messages, with ``MQTTError/Code/messageBufferOverflow``.
        case overflowed
        /// The sequence had already ended (finished, failed, cancelled or released): dropped.
        case closed
    }

    /// What ``take(into:)`` found.
    enum TakeResult {
        /// Messages were moved into the batch (at least one).
        case taken
        /// Nothing is buffered and nothing will be: the sequence ended normally.
        case finished
        /// Nothing is buffered and the sequence ended with this error (reported once; after it
        /// the buffer reads as finished).
        case failed(MQTTError)
        /// Nothing is buffered yet: ``wait()``, then take again.
        case empty
    }

    private enum Terminal {
        case finished
        case failed(MQTTError)
    }

    private struct State {
        var messages = ContiguousArray<MQTTMessage>()
        /// The consumer, suspended in ``wait()`` until messages or the end arrive.
        var waiter: UnsafeContinuation<Void, Never>?
        var terminal: Terminal?
        /// Whether a message arrived since the last ``flush()`` (the producer was told to flush).
        var needsFlush = false
        var onTermination: (@Sendable () -> Void)?
    }

    /// How many messages may wait in the buffer.
    let capacity: Int
    /// How many waiting messages wake the consumer without waiting for ``flush()``.
    let flushThreshold: Int
    private let state: Locked<State>

    /// Creates an empty buffer.
    ///
    /// - Parameters:
    ///   - capacity: How many messages may wait; at least 1.
    ///   - onTermination: Called once (outside the lock) when the consumer side ends the sequence
    ///     first: its task was cancelled, or every sequence and iterator was released. Not called
    ///     when the producer ends it with ``finish(throwing:)`` or an overflow: the producer knows.
    init(capacity: Int, onTermination: (@Sendable () -> Void)? = nil) {
        precondition(capacity >= 1, "a message buffer holds at least one message")
        self.capacity = capacity
        self.flushThreshold = max(1, min(64, capacity / 2))
        self.state = Locked(State(onTermination: onTermination))
    }

    /// Whether the consumer is suspended in ``wait()`` (for tests and diagnostics).
    var isConsumerWaiting: Bool {
        state.withLock { $0.waiter != nil }
    }

    // MARK: Producer

    /// Buffers a message without waking the consumer (unless ``flushThreshold`` messages now
    /// wait and it is waiting). Never blocks; safe to call while holding another lock.
    func append(_ message: MQTTMessage) -> AppendResult {
        var wake: UnsafeContinuation<Void, Never>?
        let result = state.withLock { state -> AppendResult in
            guard state.terminal == nil else { return .closed }
            guard state.messages.count < capacity else {
                state.terminal = .failed(MQTTError(
                    .messageBufferOverflow, operation: .receive,
                    detail: "more than \(capacity) messages were waiting; the consumer fell behind"
                ))
                state.onTermination = nil
                swap(&wake, &state.waiter)
                return .overflowed
            }
            state.messages.append(message)
            if state.messages.count >= flushThreshold, state.waiter != nil {
                swap(&wake, &state.waiter)
            }
            if state.needsFlush { return .appended(needsFlush: false) }
            state.needsFlush = true
            return .appended(needsFlush: true)
        }
        wake?.resume()
        return result
    }

    /// Hands what was appended since the last flush to the consumer: resumes it if it waits and
    /// messages are buffered. Never blocks; safe to call while holding another lock.
    func flush() {
        let wake = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            state.needsFlush = false
            guard !state.messages.isEmpty else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        wake?.resume()
    }

    /// Ends the sequence once the buffered messages are delivered: normally, or by throwing
    /// `error`. Does nothing if it already ended.
    func finish(throwing error: MQTTError? = nil) {
        let wake = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard state.terminal == nil else { return nil }
            state.terminal = error.map(Terminal.failed) ?? .finished
            state.onTermination = nil
            defer { state.waiter = nil }
            return state.waiter
        }
        wake?.resume()
    }

    // MARK: Consumer

    /// Ends the sequence from the consumer's side (cancellation, release): later messages are
    /// dropped, those already buffered are still delivered, and the termination handler runs.
    func cancel() {
        var wake: UnsafeContinuation<Void, Never>?
        var handler: (@Sendable () -> Void)?
        state.withLock { state in
            guard state.terminal == nil else { return }
            state.terminal = .finished
            swap(&wake, &state.waiter)
            swap(&handler, &state.onTermination)
        }
        wake?.resume()
        handler?()
    }

    /// Moves every buffered message into `batch`, which must be empty (its storage is given to
    /// the buffer in exchange, so that steady traffic allocates nothing), or reports the end.
    func take(into batch: inout ContiguousArray<MQTTMessage>) -> TakeResult {
        state.withLock { state in
            if !state.messages.isEmpty {
                swap(&state.messages, &batch)
                return .taken
            }
            switch state.terminal {
            case nil:
                return .empty
            case .finished:
                return .finished
            case .failed(let error):
                state.terminal = .finished
                return .failed(error)
            }
        }
    }

    /// Puts messages the consumer took but did not deliver back in front of the buffer (an
    /// iterator released in the middle of its batch), so that the next iterator gets them.
    func putBack(_ messages: ArraySlice<MQTTMessage>) {
        state.withLock { state in
            state.messages.insert(contentsOf: messages, at: 0)
        }
    }

    /// Suspends until messages are buffered and flushed (or ``flushThreshold`` are waiting), or
    /// the sequence ends; returns at once if either is already the case. Cancelling the task
    /// ends the sequence (``cancel()``). One consumer at a time: a second concurrent waiter is a
    /// programming error, as with `AsyncThrowingStream`.
    func wait() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                // Resumed exactly once: either here, or by whoever takes it out of the state
                // under the lock (flush, append at the threshold, finish, cancel, overflow).
                let parked = state.withLock { state -> Bool in
                    guard state.messages.isEmpty, state.terminal == nil else { return false }
                    precondition(state.waiter == nil, "attempt to await next() on more than one task")
                    state.waiter = continuation
                    return true
                }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            cancel()
        }
    }

    // MARK: Reader

    /// The consumer side's ownership of a buffer: held by a ``MQTTMessageSequence`` and by each
    /// of its iterators. When the last of them is released, the sequence ends (``cancel()``) and
    /// the termination handler runs, as `AsyncThrowingStream` does when it is dropped.
    final class Reader: Sendable {
        /// The buffer read.
        let buffer: MessageBuffer

        /// Creates the consumer side of `buffer`.
        init(_ buffer: MessageBuffer) {
            self.buffer = buffer
        }

        deinit {
            buffer.cancel()
        }
    }

    // MARK: Iterator

    /// The consumer's iterator: delivers a batch taken in one lock acquisition message by message
    /// without locking, and takes the next batch (or waits) only when it is used up.
    ///
    /// Not `Sendable`: it belongs to the one task that iterates. Copies of an
    /// ``MQTTMessageSequence/AsyncIterator`` share it, as copies of a stream's iterator share
    /// their stream.
    final class Iterator {
        private let reader: Reader
        private var batch = ContiguousArray<MQTTMessage>()
        private var index = 0

        /// Creates an iterator over the buffer of `reader`.
        init(_ reader: Reader) {
            self.reader = reader
        }

        deinit {
            // Messages taken but never delivered go back, for a later iterator of the sequence.
            if index < batch.count {
                reader.buffer.putBack(batch[index...])
            }
        }

        /// The next message; `nil` once the sequence ended.
        ///
        /// - Throws: The error the sequence ended with (once).
        func next() async throws(MQTTError) -> MQTTMessage? {
            if index < batch.count {
                let message = batch[index]
                index += 1
                return message
            }
            return try await nextBatch()
        }

        private func nextBatch() async throws(MQTTError) -> MQTTMessage? {
            // The storage of a large batch is released rather than kept for the next one.
            batch.removeAll(keepingCapacity: batch.capacity <= 256)
            index = 0
            let buffer = reader.buffer
            // Checked once per batch: a cancelled consumer ends after what is already buffered,
            // even when messages keep arriving (the buffer then never runs empty).
            if Task.isCancelled { buffer.cancel() }
            while true {
                switch buffer.take(into: &batch) {
                case .taken:
                    index = 1
                    return batch[0]
                case .finished:
                    return nil
                case .failed(let error):
                    throw error
                case .empty:
                    await buffer.wait()
                }
            }
        }
    }
}
