import Mosquitto
import MosquittoTesting
import Testing

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

    @Test("with reconnection off, pending waits fail with connectionLost when the broker dies")
    func pendingWaitsFailWhenBrokerDies() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let subscription = try await client.subscribe(to: uniqueTopic(), qos: .atLeastOnce)
            broker.kill()
            do {
                for try await _ in subscription {}
                Issue.record("the subscription ended without an error")
            } catch let error as MQTTError {
                #expect(error.code == .connectionLost)
            }
            #expect(!client.isConnected)
        }
    }
}
