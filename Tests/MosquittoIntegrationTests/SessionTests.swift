import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Sessions and reconnection", .timeLimit(.minutes(1)))
struct SessionTests {
    @Test("a persistent-session client receives the QoS 1 messages queued while it was offline")
    func persistentSessionReceivesQueuedMessages() async throws {
        try await withMosquittoBroker { broker in
            let clientID = uniqueClientID("persistent")
            let topic = uniqueTopic()
            let subscriber = try makeClient(broker, clientID: clientID) { $0.cleanSession = false }
            let first = try await subscriber.connect()
            #expect(first.sessionPresent == false)
            _ = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            try await subscriber.disconnect()

            let publisher = try await connectedClient(broker)
            for index in 0..<5 {
                try await publisher.publish(to: topic, payload: "queued \(index)", qos: .atLeastOnce)
            }
            // Messages can arrive right after the CONNACK: listen before connecting.
            let messages = subscriber.messages
            let second = try await subscriber.connect()
            #expect(second.sessionPresent == true)
            let received = try await collect(5, from: messages)
            #expect(received.compactMap(\.payloadString) == (0..<5).map { "queued \($0)" })
            #expect(received.allSatisfy { $0.qos == .atLeastOnce })
        }
    }

    @Test("a persistent session's subscription stays open across disconnect and receives what was queued")
    func persistentSubscriptionSurvivesDisconnect() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let subscriber = try makeClient(broker, clientID: uniqueClientID("keep")) { $0.cleanSession = false }
            try await subscriber.connect()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic, payload: "while away", qos: .atLeastOnce)
            #expect(try await subscriber.connect().sessionPresent)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["while away"])
        }
    }

    @Test("a clean-session client gets no messages from before it reconnected")
    func cleanSessionDropsQueuedMessages() async throws {
        try await withMosquittoBroker { broker in
            let clientID = uniqueClientID("clean")
            let topic = uniqueTopic()
            let subscriber = try await connectedClient(broker, clientID: clientID)
            _ = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic, payload: "missed", qos: .atLeastOnce)
            let messages = subscriber.messages
            #expect(try await subscriber.connect().sessionPresent == false)
            #expect(try await receivesNothing(on: messages))
        }
    }

    @Test("a persistent session and its queue survive a broker restart with persistence")
    func sessionSurvivesBrokerRestart() async throws {
        try await withMosquittoBroker(.persistent) { broker in
            let clientID = uniqueClientID("restart")
            let topic = uniqueTopic()
            let subscriber = try makeClient(broker, clientID: clientID) { $0.cleanSession = false }
            try await subscriber.connect()
            _ = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic, payload: "before restart", qos: .atLeastOnce)
            try await publisher.disconnect()

            try await broker.restart()

            let messages = subscriber.messages
            #expect(try await subscriber.connect().sessionPresent == true)
            #expect(try await collect(1, from: messages).map(\.payloadString) == ["before restart"])
        }
    }

    @Test("with reconnection on, a client reconnects after the broker restarts and keeps working")
    func clientReconnectsAfterBrokerRestart() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker) {
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(500))
            }
            let events = client.connectionEvents
            try await client.connect()
            broker.kill()
            try await broker.restart()
            let seen = try await within(.seconds(20), "the reconnect") {
                var seen: [String] = []
                for await event in events {
                    switch event {
                    case .connecting: seen.append("connecting")
                    case .connected: seen.append("connected")
                    case .disconnected(let error): seen.append(error == nil ? "disconnected" : "lost")
                    case .reconnecting: if seen.last != "reconnecting" { seen.append("reconnecting") }
                    case .resubscribed: seen.append("resubscribed")
                    }
                    if seen.filter({ $0 == "connected" }).count == 2 { break }
                }
                return seen
            }
            #expect(seen == ["connecting", "connected", "lost", "reconnecting", "connected"])
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            try await client.publish(to: topic, payload: "after", qos: .atLeastOnce)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["after"])
        }
    }

    @Test("connect() called as soon as the connection is lost reports the real failure, then works once the broker is back")
    func connectRightAfterLossReportsRealFailure() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker)
            let events = client.connectionEvents
            try await client.connect()
            broker.kill()
            let error = await nextDisconnection(on: events)
            #expect(error?.code == .connectionLost)
            do {
                try await client.connect()
                Issue.record("connected to a dead broker")
            } catch let error as MQTTError {
                #expect(error.code == .connectionFailed, "\(error)")
            }
            try await broker.restart()
            try await client.connect()
            #expect(client.isConnected)
        }
    }

    @Test("with reconnection off, pending waits fail with connectionLost when the broker dies: a PUBACK, a SUBACK, an UNSUBACK and a subscription's sequence")
    func pendingWaitsFailWhenBrokerDies() async throws {
        try await withMosquittoBroker { broker in
            let log = LibraryLog()
            let client = try makeClient(broker)
            client.delegate = log
            try await client.connect()
            let subscribed = uniqueTopic()
            let subscription = try await client.subscribe(to: subscribed, qos: .atLeastOnce)
            // Frozen, the broker answers nothing: every wait below is pending when it dies.
            let pid = try #require(broker.processIdentifier)
            kill(pid, SIGSTOP)
            defer { kill(pid, SIGCONT) }
            let publish = try client.beginPublish(to: uniqueTopic(), payload: Array("x".utf8), qos: .atLeastOnce)
            let newTopic = uniqueTopic()
            let subscribing = Task { await thrownError { _ = try await client.subscribe(to: newTopic, qos: .atLeastOnce, timeout: .seconds(30)) } }
            let unsubscribing = Task { await thrownError { _ = try await client.unsubscribe(from: subscribed, timeout: .seconds(30)) } }
            // Both packets are on the wire (libmosquitto logs each as it sends it).
            try await log.waitFor("sending SUBSCRIBE (Mid: ", containing: newTopic)
            try await log.waitFor("sending UNSUBSCRIBE (Mid: ", containing: subscribed)
            broker.kill()

            let acknowledgement = await thrownError { _ = try await publish.acknowledgement(timeout: .seconds(10)) }
            #expect(acknowledgement?.code == .connectionLost, "\(String(describing: acknowledgement))")
            let suback = await subscribing.value
            #expect(suback?.code == .connectionLost, "\(String(describing: suback))")
            let unsuback = await unsubscribing.value
            #expect(unsuback?.code == .connectionLost, "\(String(describing: unsuback))")
            let end = await thrownError {
                try await within(.seconds(10), "the subscription's sequence") {
                    for try await _ in subscription {}
                }
            }
            #expect(end?.code == .connectionLost, "\(String(describing: end))")
            #expect(!client.isConnected)
        }
    }
}

/// A delegate that keeps libmosquitto's log lines, to wait until a packet was sent.
final class LibraryLog: MQTTClientDelegate {
    private final class Lines: Sendable {
        let lines = Mutex<[String]>([])
    }

    private let storage = Lines()

    var lines: [String] { storage.lines.withLock { $0 } }

    func mqttClient(_ client: MQTTClient, didLog message: String, level: MQTTLogLevel) async {
        storage.lines.withLock { $0.append(message) }
    }

    /// Waits (at most `timeout`) for a line containing `text` and `detail`; records an issue if none came.
    func waitFor(_ text: String, containing detail: String = "", timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if lines.contains(where: { $0.contains(text) && $0.contains(detail) }) { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("libmosquitto logged no \"\(text)\" line with \"\(detail)\" within \(timeout)")
    }
}
