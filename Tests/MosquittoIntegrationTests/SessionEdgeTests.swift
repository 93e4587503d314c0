import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

/// Edges of a session that the README promises without a test so far: keepalive 0, a client
/// released while it backs off, payloads of several MB.
@Suite("Session edges", .timeLimit(.minutes(1)))
struct SessionEdgeTests {
    @Test("keepalive 0: CONNECT says 0, nothing is sent on an idle connection, and the client stays connected")
    func keepAliveZero() async throws {
        let keepAliveField = Mutex<Int?>(nil)
        let idlePackets = Atomic<Int>(0)
        // A read timeout past the test's own minute: under load this task may resume long after
        // its 2.5 s sleep, and the peer must not end the idle connection meanwhile.
        let peer = try ScriptedPeer(readTimeout: .seconds(90)) { connection in
            guard let connect = connection.read(until: 1) else { return }
            // Protocol name (2 + 4 bytes), level, flags, then the keepalive (MQTT 3.1.1).
            keepAliveField.withLock { $0 = Int(connect.body[8]) << 8 | Int(connect.body[9]) }
            connection.send([0x20, 0x02, 0x00, 0x00])
            while let packet = connection.readPacket() {
                if packet.type == 14 { return }
                idlePackets.add(1, ordering: .relaxed)
            }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.keepAlive = .zero }
        try await client.connect()
        // Idle: with keepalive 0 neither a PINGREQ nor the dead-link watchdog may act (2.5 s is
        // past the watchdog's 100 ms looks and libmosquitto's 1 s keepalive checks).
        try await Task.sleep(for: .milliseconds(2_500))
        #expect(client.isConnected)
        #expect(keepAliveField.withLock { $0 } == 0)
        #expect(idlePackets.load(ordering: .relaxed) == 0, "a packet on an idle keepalive-0 connection")
        try await client.disconnect()
    }

    @Test("a client released while it backs off stops at once: no reconnect follows, and it is freed")
    func releasedWhileBackingOff() async throws {
        let peer = try ScriptedPeer { connection in
            // Accept, then drop: the client backs off before its next attempt.
            guard connection.acceptConnect() else { return }
        }
        defer { peer.stop() }
        weak var released: MQTTClient?
        do {
            let client = try makeClient(host: "127.0.0.1", port: peer.port) {
                $0.reconnect = .exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(1), jitter: false)
            }
            released = client
            let events = EventRecorder(client.connectionEvents)
            try await client.connect()
            let backingOff = await events.next(after: -1) { if case .reconnecting = $0 { true } else { false } }
            #expect(backingOff != nil, "\(events.events)")
        }
        let attempts = peer.connectionCount
        // Freed once the session has ended (its driver holds it until then): promptly.
        let deadline = ContinuousClock.now + .seconds(5)
        while released != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(released == nil, "the client was not freed")
        // Past the 1 s backoff: nothing reconnected.
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(peer.connectionCount == attempts, "a released client reconnected")
    }

    @Test("a client whose connect is cancelled while the broker holds the CONNACK, then released, closes the connection and is freed")
    func releasedWhileConnecting() async throws {
        let connectSeen = Flag()
        let closed = Flag()
        let peer = try ScriptedPeer { connection in
            // CONNECT, never a CONNACK; then wait for the client to go.
            guard connection.read(until: 1) != nil else { return }
            connectSeen.set()
            while connection.readPacket() != nil {}
            closed.set()
        }
        defer { peer.stop() }
        weak var released: MQTTClient?
        do {
            let client = try makeClient(host: "127.0.0.1", port: peer.port) {
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(200), maximumDelay: .milliseconds(200), jitter: false)
            }
            released = client
            let connecting = Task { await thrownError { try await client.connect(timeout: .seconds(30)) } }
            let seen = ContinuousClock.now + .seconds(10)
            while !connectSeen.isSet, ContinuousClock.now < seen {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(connectSeen.isSet)
            connecting.cancel()
            let error = await connecting.value
            #expect(error?.code == .cancelled, "\(String(describing: error))")
        }
        // At once, not after the 5 s a stop gives queued packets (the attempt is abandoned); the
        // 3.5 s bound leaves room for a busy machine.
        let deadline = ContinuousClock.now + .milliseconds(3_500)
        while released != nil || !closed.isSet, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(released == nil, "the client was not freed")
        #expect(closed.isSet, "the connection stayed open")
        try await Task.sleep(for: .milliseconds(500))
        #expect(peer.connectionCount == 1, "an abandoned connect was retried")
    }

    @Test("payloads of several MB arrive byte for byte, QoS 0 and 1", arguments: [MQTTQoS.atMostOnce, .atLeastOnce])
    func largePayloads(qos: MQTTQoS) async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: qos)
            let publisher = try await connectedClient(broker)
            // Not one repeated byte, so that a misplaced chunk shows.
            let payload = (0..<(6 * 1_024 * 1_024 + 7)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 13) }
            try await publisher.publish(to: topic, payload: payload, qos: qos)
            let received = try await collect(1, from: subscription, timeout: .seconds(20))
            #expect(received.first?.payload.count == payload.count)
            #expect(received.first?.payload == payload)
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }
}
