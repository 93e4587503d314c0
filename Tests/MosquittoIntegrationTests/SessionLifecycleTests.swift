import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

/// The lifecycle against a scripted peer that sees every byte: a disconnect that must reach the
/// wire, a backlog that must be written before it, a reconnect storm that must not happen. Both
/// drivers (scripts/test.sh runs this suite once per driver).
@Suite("Session lifecycle against a scripted peer", .timeLimit(.minutes(1)))
struct SessionLifecycleTests {
    /// The race of the lifecycle issue: QoS 1, QoS 0, then disconnect() while the PUBACK is on
    /// its way (the peer answers right after the QoS 0 publish). A PUBACK read after DISCONNECT
    /// was queued used to close the socket with DISCONNECT unwritten, reported as success.
    @Test("disconnect() with a PUBACK in flight writes DISCONNECT before the socket closes, 200 of 200")
    func disconnectReachesTheWireWithAnAcknowledgementInFlight() async throws {
        let repetitions = 200
        let outcomes = Mutex<[Bool]>([])
        let peer = try ScriptedPeer { connection in
            var seen: [UInt8] = []
            defer {
                // (A QoS 1 message left unacknowledged by an earlier repetition's disconnect is
                // sent again first: libmosquitto keeps it for the next connection.)
                let complete = seen.count >= 4 && seen.first == 1 && seen.dropFirst().dropLast().allSatisfy { $0 == 3 } && seen.last == 14
                if !complete { print("peer saw packet types \(seen)") }
                outcomes.withLock { $0.append(complete) }
            }
            // CONNECT, PUBLISHes (each QoS 1 one acknowledged at once), then DISCONNECT and EOF.
            guard connection.acceptConnect() else { return }
            seen.append(1)
            while let packet = connection.readPacket() {
                seen.append(packet.type)
                if packet.type == 3, packet.qos == 1 {
                    connection.send([0x40, 0x02, UInt8(packet.packetID >> 8), UInt8(packet.packetID & 0xff)])
                }
            }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port)
        for _ in 0..<repetitions {
            try await client.connect()
            _ = try client.beginPublish(to: "lifecycle/q1", payload: "one", qos: .atLeastOnce)
            try await client.publish(to: "lifecycle/q0", payload: "zero")
            try await client.disconnect()
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while outcomes.withLock({ $0.count }) < repetitions, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let results = outcomes.withLock { $0 }
        #expect(results.count == repetitions)
        #expect(results.filter { $0 }.count == repetitions, "connections that ended without DISCONNECT: \(results.filter { !$0 }.count)")
    }

    /// A clean disconnect writes everything queued before it: 200,000 QoS 0 messages, with a peer
    /// that starts reading late, so that the backlog outlasts any fixed number of loop passes.
    @Test("disconnect() writes a 200,000-message QoS 0 backlog first, then DISCONNECT")
    func disconnectWritesTheBacklogFirst() async throws {
        let count = 200_000
        let seen = Mutex<(publishes: Int, disconnect: Bool)?>(nil)
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            // Reading starts late: the old thread driver gave a stopping session a fixed number
            // of passes (about 5 s in all when the socket is full) and, with a 0.3 s start, this
            // test could not tell; at 3 s it dropped the backlog and the DISCONNECT.
            Thread.sleep(forTimeInterval: 3)
            var publishes = 0
            var disconnect = false
            while let packet = connection.readPacket() {
                if packet.type == 3 { publishes += 1 }
                if packet.type == 14 { disconnect = true; break }
            }
            seen.withLock { $0 = (publishes, disconnect) }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port)
        try await client.connect()
        let payload = [UInt8](repeating: 0x61, count: 16)
        for _ in 0..<count {
            _ = try client.beginPublish(to: "lifecycle/backlog", payload: payload)
        }
        try await client.disconnect(timeout: .seconds(60))
        let deadline = ContinuousClock.now + .seconds(10)
        while seen.withLock({ $0 == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let result = seen.withLock { $0 }
        #expect(result?.publishes == count)
        #expect(result?.disconnect == true)
    }

    /// A backlog that cannot be written in time (the peer never reads) makes disconnect() throw,
    /// instead of reporting a clean disconnect the broker never saw.
    @Test("disconnect() throws when its backlog and DISCONNECT cannot be written within the timeout")
    func disconnectThatCannotBeWrittenThrows() async throws {
        let release = DispatchSemaphoreBox()
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            release.wait(upTo: .seconds(20))
        }
        defer {
            release.signal()
            peer.stop()
        }
        let client = try makeClient(host: "127.0.0.1", port: peer.port)
        try await client.connect()
        let payload = [UInt8](repeating: 0x62, count: 1_024)
        for _ in 0..<20_000 {  // 20 MiB: more than the socket buffers hold
            _ = try client.beginPublish(to: "lifecycle/stuck", payload: payload)
        }
        // 3 s: the session's own timeout must win over the call's outer bound (the timeout plus a
        // quarter, here 0.75 s), which under load fired first with a 1 s timeout (0.25 s margin).
        let error = await thrownError { try await client.disconnect(timeout: .seconds(3)) }
        #expect(error?.code == .timeout)
        #expect(error?.detail?.contains("without DISCONNECT") == true, "the session's own error: \(String(describing: error))")
        #expect(!client.isConnected)
    }

    /// A broker that accepts each connection and closes it at once: the backoff keeps growing
    /// (1, 2, 4, 8 s) instead of restarting after every CONNACK (which made 20 connections in 20 s).
    @Test("against a peer that CONNACKs and closes, 20 s hold the policy's 5 connections (1 s doubling), not 20")
    func reconnectBackoffGrowsUntilAConnectionIsStable() async throws {
        let peer = try ScriptedPeer { connection in
            connection.acceptConnect()
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.reconnect = .exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(30), jitter: false, stablePeriod: .seconds(10))
        }
        let start = ContinuousClock.now
        try await client.connect()
        try await Task.sleep(until: start + .seconds(20))
        // Connections at about 0, 1, 3, 7 and 15 s; the next is due at 31 s.
        #expect(peer.connectionCount == 5)
        try await client.disconnect()
    }
}

/// What there is to await: the connection, and the current state at the start of an event sequence.
@Suite("Awaiting the connection", .timeLimit(.minutes(1)))
struct AwaitingConnectionTests {
    @Test("a connection-event sequence made after connect() starts with .connected")
    func eventsStartWithTheCurrentState() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            // Read on a task of its own into a list, so that a missing event fails (bounded)
            // instead of hanging the test.
            let seen = EventLog()
            let events = client.connectionEvents
            let reader = Task {
                for await event in events { seen.events.withLock { $0.append(event) } }
            }
            defer { reader.cancel() }
            func waitFor(_ count: Int) async throws -> [MQTTConnectionEvent] {
                let deadline = ContinuousClock.now + .seconds(5)
                while seen.events.withLock({ $0.count }) < count, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                }
                return seen.events.withLock { $0 }
            }
            let first = try await waitFor(1)
            guard case .connected(let sessionPresent)? = first.first else {
                Issue.record("first events \(first)")
                return
            }
            #expect(!sessionPresent)
            try await client.disconnect()
            // Then each change once: the disconnection, not .connected again.
            let all = try await waitFor(2)
            #expect(all.count == 2)
            guard all.count == 2, case .disconnected(nil) = all[1] else {
                Issue.record("events \(all)")
                return
            }
        }
    }

    @Test("waitUntilConnected: notConnected before connect(), returns once a connect under way succeeds, at once when connected")
    func waitUntilConnected() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker)
            let early = await thrownError { try await client.waitUntilConnected(timeout: .seconds(1)) }
            #expect(early?.code == .notConnected)
            let connecting = Task { try await client.connect() }
            // Whether the connect has begun yet or not: wait until it has, then for the CONNACK.
            let deadline = ContinuousClock.now + .seconds(10)
            while !client.isConnected, ContinuousClock.now < deadline {
                if let error = await thrownError({ try await client.waitUntilConnected(timeout: .seconds(10)) }) {
                    #expect(error.code == .notConnected, "only before the connect has begun")
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            #expect(client.isConnected)
            _ = try await connecting.value
            try await client.waitUntilConnected(timeout: .milliseconds(1))
            try await client.disconnect()
            let after = await thrownError { try await client.waitUntilConnected() }
            #expect(after?.code == .notConnected)
        }
    }

    @Test("waitUntilConnected fails with the session's error when the connect fails")
    func waitUntilConnectedFailsWithTheSession() async throws {
        let connectSeen = Flag()
        let release = Flag()
        let peer = try ScriptedPeer { connection in
            // CONNACK: refused, not authorized (MQTT 3.1.1 code 5), once the test is waiting.
            guard connection.read(until: 1) != nil else { return }
            connectSeen.set()
            let deadline = ContinuousClock.now + .seconds(10)
            while !release.isSet, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
            connection.send([0x20, 0x02, 0x00, 0x05])
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port)
        let connecting = Task { try await client.connect() }
        let deadline = ContinuousClock.now + .seconds(10)
        while !connectSeen.isSet, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(connectSeen.isSet)
        // The session is surely running until the peer answers: wait, then let it answer.
        let waiting = Task { await thrownError { try await client.waitUntilConnected(timeout: .seconds(10)) } }
        try await Task.sleep(for: .milliseconds(500))
        release.set()
        let waitError = await waiting.value
        #expect(waitError?.code == .notAuthorized)
        _ = try? await connecting.value
    }
}

/// A flag one thread sets and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// SUBSCRIBE and UNSUBSCRIBE in flight when the connection drops: sent again after the reconnect.
@Suite("Subscribing across a connection loss", .timeLimit(.minutes(1)))
struct SubscribeAcrossReconnectTests {
    func throughProxy(_ body: (MosquittoBroker, TCPFaultProxy, MQTTClient) async throws -> Void) async throws {
        try await withMosquittoBroker { broker in
            let proxy = try TCPFaultProxy(forwardingTo: broker)
            defer { proxy.stop() }
            let client = try makeClient(host: proxy.host, port: proxy.port) {
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(200), jitter: false)
            }
            try await client.connect()
            try await body(broker, proxy, client)
            try await client.disconnect()
        }
    }

    @Test("a SUBSCRIBE lost with its connection completes after the reconnect, and its sequence receives")
    func subscribeInFlightSurvivesAReconnect() async throws {
        try await throughProxy { broker, proxy, client in
            let topic = uniqueTopic()
            // The SUBSCRIBE goes into a black hole: no SUBACK. Then the connection is cut.
            proxy.blackHole()
            let subscribing = Task { try await client.subscribe(to: topic, qos: .atLeastOnce, timeout: .seconds(15)) }
            try await Task.sleep(for: .milliseconds(300))
            proxy.cut()
            let subscription = try await subscribing.value
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic, payload: "after the reconnect", qos: .atLeastOnce)
            let messages = try await collect(1, from: subscription)
            #expect(messages.map(\.payloadString) == ["after the reconnect"])
            try await publisher.disconnect()
        }
    }

    @Test("an UNSUBSCRIBE lost with its connection completes after the reconnect")
    func unsubscribeInFlightSurvivesAReconnect() async throws {
        try await throughProxy { _, proxy, client in
            let topic = uniqueTopic()
            _ = try await client.subscribe(to: topic)
            proxy.blackHole()
            let unsubscribing = Task { try await client.unsubscribe(from: topic, timeout: .seconds(15)) }
            try await Task.sleep(for: .milliseconds(300))
            proxy.cut()
            _ = try await unsubscribing.value
            #expect(client.isConnected)
        }
    }
}

/// A re-subscription the broker refuses after a session loss is reported, not silently lost.
@Suite("Restoring subscriptions after a session loss", .timeLimit(.minutes(1)))
struct ResubscriptionTests {
    @Test("a filter refused on re-subscription is reported in `.resubscribed` and ends its sequence with subscriptionRefused")
    func refusedResubscriptionIsReported() async throws {
        let connections = Atomic<Int>(0)
        let peer = try ScriptedPeer { connection in
            let index = connections.add(1, ordering: .relaxed).newValue
            guard connection.acceptConnect(), let subscribe = connection.read(until: 8) else { return }
            let id = subscribe.packetID
            // The first connection grants QoS 1, then drops at once (the grant is recorded when
            // the SUBACK is read, so even this loss restores it); the next refuses (0x80).
            connection.send([0x90, 0x03, UInt8(id >> 8), UInt8(id & 0xff), index == 1 ? 0x01 : 0x80])
            if index == 1 { return }
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(50), maximumDelay: .milliseconds(100), jitter: false)
        }
        let events = EventRecorder(client.connectionEvents)
        try await client.connect()
        let subscription = try await client.subscribe(to: "acl/refused", qos: .atLeastOnce)
        let restored = await events.next(after: -1) { if case .resubscribed = $0 { true } else { false } }
        guard case .resubscribed(let refused) = restored?.event else {
            Issue.record("no .resubscribed in \(events.events)")
            return
        }
        #expect(refused.map(\.filter) == ["acl/refused"])
        #expect(refused.map(\.reasonCode) == [.unspecifiedError])
        let ended = await thrownError { for try await _ in subscription {} }
        #expect(ended?.code == .subscriptionRefused, "\(String(describing: ended))")
        #expect(client.isConnected)
        try await client.disconnect()
    }
}

extension ResubscriptionTests {
    @Test("the re-SUBSCRIBE after a session loss is the original one byte for byte (options, subscription identifier, user property), but for its packet ID")
    func resubscriptionKeepsOptionsAndProperties() async throws {
        let subscribes = Mutex<[[UInt8]]>([])
        let peer = try ScriptedPeer { connection in
            // MQTT 5 CONNACK without a session, every time.
            guard connection.read(until: 1) != nil else { return }
            connection.send([0x20, 0x03, 0x00, 0x00, 0x00])
            guard let subscribe = connection.read(until: 8) else { return }
            let count = subscribes.withLock { list in
                list.append(Array(subscribe.body.dropFirst(2)))
                return list.count
            }
            let id = subscribe.packetID
            connection.send([0x90, 0x04, UInt8(id >> 8), UInt8(id & 0xff), 0x00, 0x01])
            // The first connection drops right after its SUBACK.
            if count == 1 { return }
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = .v5
            $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(50), maximumDelay: .milliseconds(100), jitter: false)
        }
        let events = EventRecorder(client.connectionEvents)
        try await client.connect()
        var properties = MQTTProperties()
        properties.subscriptionIdentifiers = [7]
        properties.userProperties = [MQTTUserProperty("origin", "test")]
        let filter = MQTTTopicFilter("opts/#", qos: .atLeastOnce, noLocal: true, retainAsPublished: true, retainHandling: .doNotSend)
        _ = try await client.subscribe(to: [filter], properties: properties)
        let restored = await events.next(after: -1) { if case .resubscribed = $0 { true } else { false } }
        #expect(restored?.event == .resubscribed(refused: []), "\(events.events)")
        let sent = subscribes.withLock { $0 }
        #expect(sent.count == 2)
        if sent.count == 2 {
            #expect(sent[1] == sent[0], "first \(sent[0]), again \(sent[1])")
            // Options byte: QoS 1, no-local, retain-as-published, retain handling 2.
            let options: UInt8 = 0x01 | 0x04 | 0x08 | 0x20
            #expect(sent[0].last == options)
        }
        try await client.disconnect()
    }
}

/// Messages that arrive before anything can take them are held for the first consumer, bounded,
/// and counted: never silently lost.
@Suite("Messages nobody takes yet", .timeLimit(.minutes(1)))
struct UnroutedMessageTests {
    /// Queues `count` QoS 1 messages for a persistent session on `topic`, then connects a new
    /// client object for that session with no sequence and no delegate, and waits until all
    /// arrived (counted as unrouted).
    func reconnectWithQueued(
        _ count: Int, broker: MosquittoBroker, topic: String, bufferSize: Int = 1_000
    ) async throws -> (first: MQTTClient, second: MQTTClient) {
        let clientID = uniqueClientID("persistent")
        let first = try await connectedClient(broker, clientID: clientID) { $0.cleanSession = false }
        _ = try await first.subscribe(to: topic, qos: .atLeastOnce)
        try await first.disconnect()
        let publisher = try await connectedClient(broker)
        for number in 0..<count {
            try await publisher.publish(to: topic, payload: "queued \(number)", qos: .atLeastOnce)
        }
        try await publisher.disconnect()
        let second = try await connectedClient(broker, clientID: clientID) {
            $0.cleanSession = false
            $0.messageBufferSize = bufferSize
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while second.unroutedMessageCount < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        return (first, second)
    }

    @Test("a persistent session's queued messages that arrive before any sequence go, in order, to the first sequence that matches")
    func queuedMessagesWaitForTheFirstSequence() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let (first, second) = try await reconnectWithQueued(3, broker: broker, topic: topic)
            #expect(second.unroutedMessageCount == 3)
            #expect(first.unroutedMessageCount == 0)
            // A sequence for another topic takes none of them; the matching one takes all.
            let other = MessageCollector(try await second.subscribe(to: uniqueTopic(), qos: .atLeastOnce))
            let subscription = try await second.subscribe(to: topic, qos: .atLeastOnce)
            let messages = try await collect(3, from: subscription)
            #expect(messages.map(\.payloadString) == ["queued 0", "queued 1", "queued 2"])
            #expect(try await other.arrivals(within: .milliseconds(200)).isEmpty)
            // Handed over once: a second sequence does not see them again.
            #expect(try await receivesNothing(on: second.messages, within: .milliseconds(300)))
            try await second.disconnect()
        }
    }

    @Test("the hold is bounded by messageBufferSize: the latest are kept, the oldest dropped")
    func holdIsBounded() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let (_, second) = try await reconnectWithQueued(5, broker: broker, topic: topic, bufferSize: 2)
            #expect(second.unroutedMessageCount == 5)
            let messages = try await collect(2, from: second.messages)
            #expect(messages.map(\.payloadString) == ["queued 3", "queued 4"])
            try await second.disconnect()
        }
    }
}

/// Connection events read by a task, for a bounded look from the test.
final class EventLog: Sendable {
    let events = Mutex<[MQTTConnectionEvent]>([])
}

/// A semaphore a script can wait on, bounded.
final class DispatchSemaphoreBox: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func wait(upTo timeout: Duration) { _ = semaphore.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds) * 1_000)) }
    func signal() { semaphore.signal() }
}

/// Acknowledgements matched to their publishes, against a peer that acknowledges in an order of
/// its own choosing and names, in each acknowledgement, the message it acknowledges.
@Suite("Acknowledgements out of order", .timeLimit(.minutes(1)))
struct OutOfOrderAcknowledgementTests {
    @Test("40 QoS 1 and 2 publishes in flight, acknowledged shuffled: each receipt is its own message's, and a withheld one stays pending")
    func eachAcknowledgementCompletesItsOwnPublish() async throws {
        let count = 40
        let phaseOneDone = Flag()
        let release = DispatchSemaphoreBox()
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnectV5() else { return }
            // Read every PUBLISH: packet ID -> (QoS, payload).
            var publishes: [(id: UInt16, qos: UInt8, payload: String)] = []
            while publishes.count < count, let packet = connection.read(until: 3) {
                publishes.append((packet.packetID, packet.qos, String(decoding: packet.publishPayloadV5, as: UTF8.self)))
            }
            guard publishes.count == count else { return }
            let payloads = Dictionary(uniqueKeysWithValues: publishes.map { ($0.id, $0.payload) })
            // The acknowledgement names its message in its reason string.
            func acknowledge(_ type: UInt8, _ id: UInt16) {
                let properties = [0x1F] + PeerConnection.encode(payloads[id] ?? "?")
                connection.sendPacket(type, PeerConnection.encode(id) + [0x00] + PeerConnection.propertyBlock(properties))
            }
            func pubrec(_ id: UInt16) { connection.sendPacket(0x50, PeerConnection.encode(id) + [0x00, 0x00]) }
            // Withheld: the first QoS 1 and the first QoS 2 message.
            let withheld = [publishes.first { $0.qos == 1 }!, publishes.first { $0.qos == 2 }!]
            var rest = publishes.filter { publish in !withheld.contains { $0.id == publish.id } }
            rest.shuffle()
            for publish in rest {
                if publish.qos == 1 { acknowledge(0x40, publish.id) } else { pubrec(publish.id) }
            }
            // PUBRELs come back in the order of the PUBRECs: complete them the other way round.
            var released: [UInt16] = []
            let expected = rest.filter { $0.qos == 2 }.count
            while released.count < expected, let packet = connection.read(until: 6) { released.append(packet.packetID) }
            for id in released.reversed() { acknowledge(0x70, id) }
            phaseOneDone.set()
            release.wait(upTo: .seconds(20))
            acknowledge(0x40, withheld[0].id)
            pubrec(withheld[1].id)
            if let pubrel = connection.read(until: 6) { acknowledge(0x70, pubrel.packetID) }
            _ = connection.read(until: 14)
        }
        defer {
            release.signal()
            peer.stop()
        }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = .v5
            $0.maxInflightMessages = 100
        }
        try await client.connect()
        let pending = try (0..<count).map { number in
            (payload: "message \(number)", publish: try client.beginPublish(to: "acks/\(number)", payload: "message \(number)", qos: number % 2 == 0 ? .atLeastOnce : .exactlyOnce))
        }
        let firstQoS1 = try #require(pending.firstIndex { $0.publish.qos == .atLeastOnce })
        let firstQoS2 = try #require(pending.firstIndex { $0.publish.qos == .exactlyOnce })
        for (index, entry) in pending.enumerated() where index != firstQoS1 && index != firstQoS2 {
            let receipt = try await entry.publish.acknowledgement(timeout: .seconds(10))
            #expect(receipt.messageID == entry.publish.messageID)
            #expect(receipt.qos == entry.publish.qos)
            #expect(receipt.properties.reasonString == entry.payload, "the acknowledgement of another message completed \(entry.payload)")
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while !phaseOneDone.isSet, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(phaseOneDone.isSet)
        // Every other acknowledgement has arrived; the two withheld publishes are still waiting.
        #expect(!pending[firstQoS1].publish.isComplete)
        #expect(!pending[firstQoS2].publish.isComplete)
        release.signal()
        for index in [firstQoS1, firstQoS2] {
            let receipt = try await pending[index].publish.acknowledgement(timeout: .seconds(10))
            #expect(receipt.messageID == pending[index].publish.messageID)
            #expect(receipt.properties.reasonString == pending[index].payload)
        }
        try await client.disconnect()
    }
}
