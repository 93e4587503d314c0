import Mosquitto
import Testing

/// The waiting helpers themselves (no broker): an ended sequence must fail a wait, not pass it.
@Suite("Test helpers", .timeLimit(.minutes(1)))
struct SupportTests {
    /// A sequence that delivers `messages`, then ends (or throws `error`).
    private func ended(after messages: [MQTTMessage] = [], throwing error: MQTTError? = nil) -> AsyncThrowingStream<MQTTMessage, any Error> {
        AsyncThrowingStream { continuation in
            for message in messages { continuation.yield(message) }
            continuation.finish(throwing: error)
        }
    }

    /// A sequence that never delivers and never ends (until the test is over).
    private func silent() -> AsyncStream<MQTTMessage> {
        AsyncStream { _ in }
    }

    @Test("receivesNothing: true for a silent open sequence, false for a message, throws for an ended sequence")
    func receivesNothingNeedsAnOpenSequence() async throws {
        #expect(try await receivesNothing(on: silent(), within: .milliseconds(100)))
        #expect(try await !receivesNothing(on: ended(after: [MQTTMessage(topic: "t", payload: [1])])))
        await #expect(throws: SequenceEnded.self) { _ = try await receivesNothing(on: ended()) }
        let error = await thrownError { _ = try await receivesNothing(on: ended(throwing: MQTTError(.connectionLost, operation: .connection))) }
        #expect(error?.code == .connectionLost)
    }

    @Test("collect: throws the end error, and SequenceEnded when the sequence ends with fewer messages")
    func collectReportsTheEnd() async throws {
        let one = [MQTTMessage(topic: "t", payload: [1])]
        #expect(try await collect(1, from: ended(after: one)).count == 1)
        await #expect(throws: SequenceEnded.self) { _ = try await collect(2, from: ended(after: one)) }
        let error = await thrownError { _ = try await collect(2, from: ended(after: one, throwing: MQTTError(.messageBufferOverflow, operation: .receive))) }
        #expect(error?.code == .messageBufferOverflow)
        let timeout = await thrownError { _ = try await collect(1, from: silent(), timeout: .milliseconds(50)) }
        #expect(timeout?.code == .timeout)
    }

    @Test("MessageCollector: waitFor and arrivals throw once the sequence ended, with its error")
    func collectorKeepsTheEnd() async throws {
        let plain = MessageCollector(ended(after: [MQTTMessage(topic: "t", payload: [1])]))
        await #expect(throws: SequenceEnded.self) { _ = try await plain.waitFor(2, timeout: .seconds(5)) }
        await #expect(throws: SequenceEnded.self) { _ = try await plain.arrivals(within: .milliseconds(50)) }
        let failed = MessageCollector(ended(throwing: MQTTError(.connectionLost, operation: .connection)))
        let error = await thrownError { _ = try await failed.waitFor(1, timeout: .seconds(5)) }
        #expect(error?.code == .connectionLost)
        let open = MessageCollector(silent())
        #expect(try await open.arrivals(within: .milliseconds(50)).isEmpty)
        #expect(try await open.waitFor(1, timeout: .milliseconds(50)).isEmpty)
    }

    @Test("within: returns the body's value, or fails with a timeout")
    func withinIsBounded() async throws {
        #expect(try await within(.seconds(5)) { 7 } == 7)
        let error = await thrownError { _ = try await within(.milliseconds(50)) { try await Task.sleep(for: .seconds(30)) } }
        #expect(error?.code == .timeout)
    }
}
