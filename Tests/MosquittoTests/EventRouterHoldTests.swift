import Testing
@testable import Mosquitto

/// Messages that arrive before any consumer (bug 5 of the lifecycle issue), without a broker:
/// the router holds the latest `bufferSize` of them for the first sequence that matches.
@Suite("Event router: messages before any consumer", .timeLimit(.minutes(1)))
struct EventRouterHoldTests {
    func router(bufferSize: Int) -> EventRouter {
        EventRouter(bufferSize: bufferSize, telemetry: ClientTelemetry(configuration: MQTTConfiguration()))
    }

    func message(_ topic: String, _ payload: String) -> MQTTMessage {
        MQTTMessage(topic: topic, payload: Array(payload.utf8), qos: .atLeastOnce)
    }

    /// The messages `sequence` has ready, without waiting for more.
    func ready(_ sequence: MQTTMessageSequence, count: Int) async throws -> [String] {
        var iterator = sequence.makeAsyncIterator()
        var payloads: [String] = []
        for _ in 0..<count {
            guard let next = try await iterator.next() else { break }
            payloads.append(next.payloadString ?? "")
        }
        return payloads
    }

    @Test("held messages go, oldest first, to the first sequence whose filter matches them, and only to it")
    func heldUntilAMatchingSequence() async throws {
        let router = router(bufferSize: 10)
        router.bridgeDidReceive(message("a/1", "one"))
        router.bridgeDidReceive(message("b/1", "other"))
        router.bridgeDidReceive(message("a/2", "two"))
        router.bridgeDidFinishLoopPass()
        #expect(router.unroutedMessageCount == 3)
        let first = router.makeMessageSequence(filters: ["a/#"]).sequence
        #expect(try await ready(first, count: 2) == ["one", "two"])
        // A second sequence on the same filter gets none of them again; "b/1" waits for its own.
        let everything = router.makeMessageSequence(filters: nil).sequence
        router.bridgeDidReceive(message("a/3", "live"))
        router.bridgeDidFinishLoopPass()
        #expect(try await ready(everything, count: 2) == ["other", "live"])
    }

    @Test("the hold keeps the latest bufferSize messages")
    func holdIsBounded() async throws {
        let router = router(bufferSize: 2)
        for number in 1...5 { router.bridgeDidReceive(message("t", "\(number)")) }
        router.bridgeDidFinishLoopPass()
        #expect(router.unroutedMessageCount == 5)
        let sequence = router.makeMessageSequence(filters: ["t"]).sequence
        #expect(try await ready(sequence, count: 2) == ["4", "5"])
    }
}

/// Unsubscribing takes filters out of the sequences, without a broker.
@Suite("Event router: unsubscribed filters", .timeLimit(.minutes(1)))
struct EventRouterFilterTests {
    @Test("a sequence of two filters loses one on unsubscribe and keeps the other; it ends when the last goes")
    func filtersLeaveOneByOne() async throws {
        let router = EventRouter(bufferSize: 10, telemetry: ClientTelemetry(configuration: MQTTConfiguration()))
        let sequence = router.makeMessageSequence(filters: ["a", "b"]).sequence
        var iterator = sequence.makeAsyncIterator()
        router.removeFilters(["a"])
        router.bridgeDidReceive(MQTTMessage(topic: "a", payload: Array("gone".utf8)))
        router.bridgeDidReceive(MQTTMessage(topic: "b", payload: Array("kept".utf8)))
        router.bridgeDidFinishLoopPass()
        let first = try await iterator.next()
        #expect(first?.payloadString == "kept")
        router.removeFilters(["b"])
        let end = try await iterator.next()
        #expect(end == nil, "the sequence ends with its last filter")
    }
}

