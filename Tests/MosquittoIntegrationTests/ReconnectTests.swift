import Mosquitto
import MosquittoTesting
import Testing

@Suite("Reconnection", .timeLimit(.minutes(1)))
struct ReconnectTests {
    /// A client that reconnects quickly.
    private func reconnectingClient(
        _ broker: MosquittoBroker, _ configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) throws -> MQTTClient {
        try makeClient(broker) {
            $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(300))
            configure(&$0)
        }
    }

    /// Connects `client`, subscribes to a new topic, kills and restarts the broker (losing the
    /// session), and waits for the reconnect.
    private func subscribeAndLoseSession(
        _ client: MQTTClient, broker: MosquittoBroker
    ) async throws -> (topic: String, received: MessageCollector) {
        let events = client.connectionEvents
        try await client.connect()
        let topic = uniqueTopic()
        let received = MessageCollector(try await client.subscribe(to: topic, qos: .atLeastOnce))
        broker.kill()
        try await broker.restart()
        await waitForConnections(2, on: events)
        return (topic, received)
    }

    /// Waits until `events` has delivered `count` `.connected` events.
    private func waitForConnections(_ count: Int, on events: MQTTConnectionEvents) async {
        await waitForEvents(count, on: events)
    }

    @Test("after a restart that lost the session, the client subscribes again and the subscription keeps receiving")
    func resubscribesAfterSessionLoss() async throws {
        try await withMosquittoBroker { broker in
            let client = try reconnectingClient(broker)
            let (topic, received) = try await subscribeAndLoseSession(client, broker: broker)
            #expect(client.connectResult?.sessionPresent == false)
            // The re-subscription follows the CONNACK; publish until it is in place.
            let publisher = try await connectedClient(broker)
            let deadline = ContinuousClock.now + .seconds(10)
            while received.messages.isEmpty, ContinuousClock.now < deadline {
                try await publisher.publish(to: topic, payload: "after restart", qos: .atLeastOnce)
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(received.messages.first?.payloadString == "after restart")
        }
    }

    @Test("`.resubscribed` says when the restored subscriptions are in place: a single publish right after it arrives, each filter at its QoS")
    func resubscribedEventMarksTheEndOfRestoration() async throws {
        try await withMosquittoBroker { broker in
            let client = try reconnectingClient(broker)
            let events = EventRecorder(client.connectionEvents)
            try await client.connect()
            let topics = [uniqueTopic(), uniqueTopic()]
            let atLeastOnce = MessageCollector(try await client.subscribe(to: topics[0], qos: .atLeastOnce))
            let exactlyOnce = MessageCollector(try await client.subscribe(to: topics[1], qos: .exactlyOnce))
            broker.kill()
            try await broker.restart()
            let restored = await events.next(after: -1, timeout: .seconds(20)) { if case .resubscribed = $0 { true } else { false } }
            #expect(restored != nil, "no .resubscribed in \(events.events)")
            let seen = events.events.filter {
                switch $0 {
                case .connecting, .reconnecting: false
                default: true
                }
            }
            // Connected, lost, connected again without the session, then the restoration.
            #expect(seen.count == 4)
            #expect(seen.first == .connected(sessionPresent: false))
            #expect(seen.dropFirst(2).first == .connected(sessionPresent: false))
            #expect(seen.last == .resubscribed(refused: []))
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topics[0], payload: "once", qos: .atLeastOnce)
            try await publisher.publish(to: topics[1], payload: "once", qos: .exactlyOnce)
            let first = try await atLeastOnce.waitFor(1)
            let second = try await exactlyOnce.waitFor(1)
            #expect(first.map(\.qos) == [.atLeastOnce])
            #expect(second.map(\.qos) == [.exactlyOnce])
            try await publisher.disconnect()
        }
    }

    @Test("without re-subscription a lost session stays lost")
    func noResubscriptionWhenTurnedOff() async throws {
        try await withMosquittoBroker { broker in
            let client = try reconnectingClient(broker) { $0.resubscribeOnSessionLoss = false }
            let (topic, received) = try await subscribeAndLoseSession(client, broker: broker)
            let publisher = try await connectedClient(broker)
            try await Task.sleep(for: .milliseconds(300))
            try await publisher.publish(to: topic, payload: "nobody listens", qos: .atLeastOnce)
            #expect(try await received.arrivals(within: .milliseconds(500)).isEmpty)
        }
    }

    @Test("while reconnecting, QoS 1 is queued and delivered after the reconnect; QoS 0 fails with notConnected")
    func publishingWhileReconnecting() async throws {
        try await withMosquittoBroker { broker in
            let client = try reconnectingClient(broker)
            let events = client.connectionEvents
            try await client.connect()
            broker.kill()
            _ = await nextDisconnection(on: events)
            let lost = await thrownError { try await client.publish(to: uniqueTopic(), payload: "lost", qos: .atMostOnce) }
            #expect(lost?.code == .notConnected)

            let topic = uniqueTopic()
            let queued = try client.beginPublish(to: topic, payload: Array("queued".utf8), qos: .atLeastOnce, retain: true)
            try await broker.restart()
            let receipt = try await queued.acknowledgement(timeout: .seconds(10))
            #expect(receipt.messageID == queued.messageID)
            // The broker really has it: a new subscriber gets it as the retained message.
            let late = try await connectedClient(broker)
            #expect(try await collect(1, from: late.subscribe(to: topic, qos: .atLeastOnce)).map(\.payloadString) == ["queued"])
        }
    }

    @Test("the pending-publish bound gives queueFull while the broker is away")
    func queueBoundWhileDisconnected() async throws {
        try await withMosquittoBroker { broker in
            let client = try reconnectingClient(broker) { $0.maxPendingPublishes = 5 }
            let events = client.connectionEvents
            try await client.connect()
            broker.kill()
            _ = await nextDisconnection(on: events)
            let topic = uniqueTopic()
            let accepted = try (0..<5).map { try client.beginPublish(to: topic, payload: [UInt8($0)], qos: .atLeastOnce) }
            let full = await thrownError { _ = try client.beginPublish(to: topic, payload: [9], qos: .atLeastOnce) }
            #expect(full?.code == .queueFull)
            try await broker.restart()
            for publish in accepted { try await publish.acknowledgement(timeout: .seconds(10)) }
            try await client.publish(to: topic, payload: "room again", qos: .atLeastOnce)
        }
    }

    @Test("with the broker down for 10 s, the client keeps retrying with growing delays and connects when it is back")
    func brokerDownForTenSeconds() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker) {
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(200), maximumDelay: .seconds(2), jitter: false)
            }
            let events = client.connectionEvents
            try await client.connect()
            broker.kill()
            let downSince = ContinuousClock.now
            let restarter = Task {
                try await Task.sleep(for: .seconds(10))
                try await broker.restart()
                return ContinuousClock.now
            }
            var delays: [Duration] = []
            var reconnectedAt: ContinuousClock.Instant?
            for await event in events {
                switch event {
                case .reconnecting(_, let delay): delays.append(delay)
                case .connected where delays.count > 0: reconnectedAt = .now
                default: break
                }
                if reconnectedAt != nil { break }
            }
            let backAt = try await restarter.value
            // 0.2, 0.4, 0.8, 1.6, then 2 s each: about 9 attempts in 10 s.
            #expect(delays.count >= 6, "\(delays)")
            #expect(Array(delays.prefix(5)) == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1_600), .seconds(2)])
            #expect(delays.allSatisfy { $0 <= .seconds(2) })
            // Down for at least the 10 s, and back within one maximum delay (plus scheduling slack)
            // of the broker listening again: a restart's own duration varies with the machine's load.
            let reconnected = try #require(reconnectedAt)
            #expect(reconnected - downSince >= .seconds(10), "reconnected after \(reconnected - downSince)")
            #expect(reconnected - backAt < .seconds(4), "reconnected \(reconnected - backAt) after the broker was back")
            try await client.publish(to: uniqueTopic(), payload: "back", qos: .atLeastOnce)
        }
    }
}
