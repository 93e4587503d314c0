import Synchronization
import Testing
@testable import Mosquitto
#if canImport(Glibc)
import Glibc
#endif

@Suite("Message buffer", .timeLimit(.minutes(1)))
struct MessageBufferTests {
    // MARK: Helpers

    private static func message(_ number: Int) -> MQTTMessage {
        MQTTMessage(topic: "t/\(number)", payload: Array("\(number)".utf8))
    }

    private static func numbers(_ messages: [MQTTMessage]) -> [Int] {
        messages.map { Int($0.payloadString ?? "") ?? -1 }
    }

    /// Counts calls of a termination handler.
    private final class Counter: Sendable {
        private let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
        func increment() { count.withLock { $0 += 1 } }
    }

    /// Reads until the end, recording what arrived and how it ended.
    private final class Consumer: Sendable {
        private final class Log: Sendable {
            let messages = Mutex<[MQTTMessage]>([])
        }

        private let log = Log()
        let task: Task<MQTTError?, Never>

        init(_ reader: MessageBuffer.Reader) {
            let log = log
            task = Task {
                let iterator = MessageBuffer.Iterator(reader)
                do throws(MQTTError) {
                    while let message = try await iterator.next() {
                        log.messages.withLock { $0.append(message) }
                    }
                    return nil
                } catch {
                    return error
                }
            }
        }

        var messages: [MQTTMessage] { log.messages.withLock { $0 } }
    }

    /// Polls `condition` every millisecond for at most `timeout`; returns whether it became true.
    private static func eventually(within timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    /// A continuation resumed by whichever caller comes first.
    private final class OneShot<Value: Sendable>: Sendable {
        private let continuation = Mutex<CheckedContinuation<Value, Never>?>(nil)
        func set(_ continuation: CheckedContinuation<Value, Never>) { self.continuation.withLock { $0 = continuation } }
        func resume(returning value: Value) { continuation.withLock { $0.take() }?.resume(returning: value) }
    }

    /// The task's result, or `nil` (after cancelling it) if it does not end within `timeout`.
    /// Bounded even if the task ignores cancellation: the wait is not a child of the task.
    private static func result<T: Sendable>(of task: Task<T, Never>, within timeout: Duration = .seconds(20)) async -> T? {
        let slot = OneShot<T?>()
        let value = await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            slot.set(continuation)
            Task { slot.resume(returning: await task.value) }
            Task {
                try? await Task.sleep(for: timeout)
                slot.resume(returning: nil)
            }
        }
        if value == nil { task.cancel() }
        return value
    }

    /// Drains an iterator that should see the end without waiting (everything already appended):
    /// bounded, so that a buffer that never ends fails within `timeout` instead of hanging.
    private static func drain(_ iterator: MessageBuffer.Iterator, within timeout: Duration = .seconds(20)) async -> (numbers: [Int], error: MQTTError?) {
        // Only the draining task uses the iterator from here on.
        nonisolated(unsafe) let iterator = iterator
        let task = Task { () -> (numbers: [Int], error: MQTTError?) in
            var messages: [MQTTMessage] = []
            do throws(MQTTError) {
                while let message = try await iterator.next() { messages.append(message) }
                return (numbers(messages), nil)
            } catch {
                return (numbers(messages), error)
            }
        }
        guard let drained = await result(of: task, within: timeout) else {
            Issue.record("the iterator did not reach the end within \(timeout)")
            return ([], MQTTError(.timeout, operation: .receive, detail: "drain"))
        }
        return drained
    }

    // MARK: Order and batches

    @Test("messages arrive in the order appended, then the end")
    func ordering() async {
        let buffer = MessageBuffer(capacity: 100)
        for number in 1...50 { _ = buffer.append(Self.message(number)) }
        buffer.flush()
        buffer.finish()
        let (numbers, error) = await Self.drain(MessageBuffer.Iterator(MessageBuffer.Reader(buffer)))
        #expect(numbers == Array(1...50))
        #expect(error == nil)
    }

    @Test("one take moves every buffered message; only the first message since a flush asks for one")
    func batchTake() {
        let buffer = MessageBuffer(capacity: 100)
        #expect(buffer.append(Self.message(1)) == .appended(needsFlush: true))
        #expect(buffer.append(Self.message(2)) == .appended(needsFlush: false))
        #expect(buffer.append(Self.message(3)) == .appended(needsFlush: false))
        var batch = ContiguousArray<MQTTMessage>()
        guard case .taken = buffer.take(into: &batch) else {
            Issue.record("nothing taken")
            return
        }
        #expect(Self.numbers(Array(batch)) == [1, 2, 3])
        batch.removeAll()
        guard case .empty = buffer.take(into: &batch) else {
            Issue.record("the buffer should be empty after one take")
            return
        }
        buffer.flush()
        #expect(buffer.append(Self.message(4)) == .appended(needsFlush: true))
    }

    @Test("the iterator takes the whole buffer at once: later appends come after the batch")
    func iteratorDeliversItsBatchFirst() async throws {
        let buffer = MessageBuffer(capacity: 100)
        for number in 1...3 { _ = buffer.append(Self.message(number)) }
        let iterator = MessageBuffer.Iterator(MessageBuffer.Reader(buffer))
        #expect(try await iterator.next()?.payloadString == "1")
        // The buffer is empty again: 2 and 3 are in the iterator's batch.
        var probe = ContiguousArray<MQTTMessage>()
        guard case .empty = buffer.take(into: &probe) else {
            Issue.record("the first next() should have taken every buffered message")
            return
        }
        _ = buffer.append(Self.message(4))
        buffer.finish()
        let (numbers, _) = await Self.drain(iterator)
        #expect(numbers == [2, 3, 4])
    }

    @Test("an iterator released in the middle of its batch leaves the rest to the next iterator")
    func releasedIteratorPutsBack() async throws {
        let buffer = MessageBuffer(capacity: 100)
        let reader = MessageBuffer.Reader(buffer)
        for number in 1...5 { _ = buffer.append(Self.message(number)) }
        do {
            let first = MessageBuffer.Iterator(reader)
            #expect(try await first.next()?.payloadString == "1")
            #expect(try await first.next()?.payloadString == "2")
        }
        _ = buffer.append(Self.message(6))
        buffer.finish()
        let (numbers, _) = await Self.drain(MessageBuffer.Iterator(reader))
        #expect(numbers == [3, 4, 5, 6])
    }

    // MARK: Waking

    @Test("appending does not wake a waiting consumer; flushing does")
    func flushWakes() async throws {
        let buffer = MessageBuffer(capacity: 1_000)
        let consumer = Consumer(MessageBuffer.Reader(buffer))
        #expect(try await Self.eventually { buffer.isConsumerWaiting })
        _ = buffer.append(Self.message(1))
        _ = buffer.append(Self.message(2))
        try await Task.sleep(for: .milliseconds(100))
        #expect(buffer.isConsumerWaiting, "append must not wake the consumer")
        #expect(consumer.messages.isEmpty)
        buffer.flush()
        #expect(try await Self.eventually { consumer.messages.count == 2 })
        #expect(Self.numbers(consumer.messages) == [1, 2])
        buffer.finish()
        #expect(await Self.result(of: consumer.task) == .some(nil))
    }

    @Test("reaching the flush threshold wakes a waiting consumer without a flush")
    func thresholdWakes() async throws {
        let buffer = MessageBuffer(capacity: 10)
        #expect(buffer.flushThreshold == 5)
        let consumer = Consumer(MessageBuffer.Reader(buffer))
        #expect(try await Self.eventually { buffer.isConsumerWaiting })
        for number in 1...4 { _ = buffer.append(Self.message(number)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(consumer.messages.isEmpty, "below the threshold only a flush wakes the consumer")
        _ = buffer.append(Self.message(5))
        #expect(try await Self.eventually { consumer.messages.count == 5 })
        #expect(Self.numbers(consumer.messages) == [1, 2, 3, 4, 5])
        buffer.finish()
        #expect(await Self.result(of: consumer.task) == .some(nil))
    }

    @Test("the flush threshold is half the capacity, at most 64 and at least 1", arguments: [(1, 1), (2, 1), (3, 1), (10, 5), (128, 64), (10_000, 64)])
    func flushThreshold(capacity: Int, threshold: Int) {
        #expect(MessageBuffer(capacity: capacity).flushThreshold == threshold)
    }

    // MARK: Bounds and ends

    @Test("a full buffer refuses the next message and ends with messageBufferOverflow after what it holds")
    func overflow() async throws {
        let buffer = MessageBuffer(capacity: 3)
        for number in 1...3 { #expect(buffer.append(Self.message(number)) != .overflowed) }
        #expect(buffer.append(Self.message(4)) == .overflowed)
        #expect(buffer.append(Self.message(5)) == .closed)
        let iterator = MessageBuffer.Iterator(MessageBuffer.Reader(buffer))
        let (numbers, error) = await Self.drain(iterator)
        #expect(numbers == [1, 2, 3])
        #expect(error?.code == .messageBufferOverflow)
        #expect(error?.operation == .receive)
        #expect(try await iterator.next() == nil, "after the error the sequence is finished")
    }

    @Test("messages the consumer took do not count against the bound")
    func takenMessagesLeaveTheBound() async throws {
        let buffer = MessageBuffer(capacity: 2)
        _ = buffer.append(Self.message(1))
        _ = buffer.append(Self.message(2))
        let iterator = MessageBuffer.Iterator(MessageBuffer.Reader(buffer))
        #expect(try await iterator.next()?.payloadString == "1")
        #expect(buffer.append(Self.message(3)) != .overflowed)
        #expect(buffer.append(Self.message(4)) != .overflowed)
        #expect(buffer.append(Self.message(5)) == .overflowed)
    }

    @Test("finish ends the sequence after the buffered messages; later appends are dropped")
    func finishAfterBuffered() async {
        let counter = Counter()
        let buffer = MessageBuffer(capacity: 100) { counter.increment() }
        for number in 1...3 { _ = buffer.append(Self.message(number)) }
        buffer.finish()
        #expect(buffer.append(Self.message(4)) == .closed)
        let (numbers, error) = await Self.drain(MessageBuffer.Iterator(MessageBuffer.Reader(buffer)))
        #expect(numbers == [1, 2, 3])
        #expect(error == nil)
        #expect(counter.value == 0, "the producer's own finish does not call the termination handler")
    }

    @Test("finish(throwing:) throws the error after the buffered messages, once")
    func finishThrowing() async throws {
        let buffer = MessageBuffer(capacity: 100)
        for number in 1...2 { _ = buffer.append(Self.message(number)) }
        buffer.finish(throwing: MQTTError(.connectionLost, operation: .connection))
        let iterator = MessageBuffer.Iterator(MessageBuffer.Reader(buffer))
        let (numbers, error) = await Self.drain(iterator)
        #expect(numbers == [1, 2])
        #expect(error?.code == .connectionLost)
        #expect(try await iterator.next() == nil)
    }

    @Test("finish wakes a waiting consumer")
    func finishWakes() async throws {
        let buffer = MessageBuffer(capacity: 100)
        let consumer = Consumer(MessageBuffer.Reader(buffer))
        #expect(try await Self.eventually { buffer.isConsumerWaiting })
        buffer.finish(throwing: MQTTError(.connectionLost, operation: .connection))
        #expect(await Self.result(of: consumer.task)??.code == .connectionLost)
    }

    // MARK: Consumer-side termination

    @Test("cancelling a waiting consumer ends its sequence and calls the termination handler once")
    func cancellationEndsWaitingConsumer() async throws {
        let counter = Counter()
        let buffer = MessageBuffer(capacity: 100) { counter.increment() }
        let reader = MessageBuffer.Reader(buffer)
        let consumer = Consumer(reader)
        #expect(try await Self.eventually { buffer.isConsumerWaiting })
        consumer.task.cancel()
        #expect(await Self.result(of: consumer.task) == .some(nil), "the consumer ends without an error")
        #expect(counter.value == 1)
        #expect(buffer.append(Self.message(1)) == .closed)
        withExtendedLifetime(reader) {}
        #expect(counter.value == 1, "releasing the sequence afterwards does not call it again")
    }

    @Test("a cancelled consumer still gets what was buffered, then the end, even while messages keep coming")
    func cancelledConsumerDrainsBuffered() async throws {
        let counter = Counter()
        let buffer = MessageBuffer(capacity: 100) { counter.increment() }
        let reader = MessageBuffer.Reader(buffer)
        for number in 1...3 { _ = buffer.append(Self.message(number)) }
        let task = Task { () -> [Int]? in
            withUnsafeCurrentTask { $0?.cancel() }
            let iterator = MessageBuffer.Iterator(reader)
            guard let first = try? await iterator.next() else { return nil }
            // Arrives after the cancellation was seen: not delivered.
            guard buffer.append(Self.message(4)) == .closed else { return nil }
            let (rest, error) = await Self.drain(iterator)
            return error == nil ? Self.numbers([first]) + rest : nil
        }
        #expect(await Self.result(of: task) == .some([1, 2, 3]))
        #expect(counter.value == 1)
    }

    @Test("releasing a sequence that never made an iterator calls the termination handler")
    func releaseWithoutIterator() {
        let counter = Counter()
        let buffer = MessageBuffer(capacity: 100) { counter.increment() }
        do {
            let reader = MessageBuffer.Reader(buffer)
            withExtendedLifetime(reader) {
                #expect(counter.value == 0)
            }
        }
        #expect(counter.value == 1)
        #expect(buffer.append(Self.message(1)) == .closed)
    }

    @Test("the handler runs only when the sequence and its last iterator are released")
    func releaseWaitsForIterators() async throws {
        let counter = Counter()
        let buffer = MessageBuffer(capacity: 100) { counter.increment() }
        var iterator: MessageBuffer.Iterator? = MessageBuffer.Iterator(MessageBuffer.Reader(buffer))
        #expect(counter.value == 0, "the iterator keeps the sequence alive")
        _ = buffer.append(Self.message(1))
        #expect(try await iterator?.next()?.payloadString == "1")
        iterator = nil
        #expect(counter.value == 1)
    }

    // MARK: Threads

    @Test("100,000 messages from another thread arrive complete and in order", .timeLimit(.minutes(1)))
    func stress() async throws {
        let total = 100_000
        let buffer = MessageBuffer(capacity: total)
        let reader = MessageBuffer.Reader(buffer)
        let produced = Counter()
        let started = DriverThread.start {
            var pendingFlush = false
            for number in 1...total {
                switch buffer.append(MQTTMessage(topic: "s", payload: [UInt8(truncatingIfNeeded: number)], messageID: UInt16(truncatingIfNeeded: number))) {
                case .appended(let needsFlush): pendingFlush = pendingFlush || needsFlush
                case .overflowed, .closed: return
                }
                produced.increment()
                // A loop pass of a few messages, sometimes a pause as while polling the socket.
                if number % 7 == 0, pendingFlush {
                    buffer.flush()
                    pendingFlush = false
                }
                if number % 1_000 == 0 { usleep(100) }
            }
            buffer.flush()
            buffer.finish()
        }
        #expect(started)
        let task = Task { () -> (count: Int, inOrder: Bool, error: MQTTError?) in
            let iterator = MessageBuffer.Iterator(reader)
            var count = 0
            var inOrder = true
            do throws(MQTTError) {
                while let message = try await iterator.next() {
                    count += 1
                    if message.messageID != UInt16(truncatingIfNeeded: count) || message.payload != [UInt8(truncatingIfNeeded: count)] {
                        inOrder = false
                    }
                }
                return (count, inOrder, nil)
            } catch {
                return (count, inOrder, error)
            }
        }
        let result = await Self.result(of: task, within: .seconds(30))
        #expect(produced.value == total)
        #expect(result?.count == total)
        #expect(result?.inOrder == true)
        #expect(result?.error == nil)
    }
}
