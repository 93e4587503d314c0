import Mosquitto
import MosquittoTesting
import Testing

/// Every bad input gets a typed error before anything is sent, and the connection survives it.
@Suite("Bad input", .timeLimit(.minutes(1)))
struct BadInputTests {
    static let badTopics: [String] = [
        "", "a/+", "a/#", "#", "+", "a/b#", "a\u{0}b", "a\u{1}b", "a\u{7F}b", "a\u{FFFF}",
        String(repeating: "t", count: 65_536),
    ]

    static let badFilters: [String] = [
        "", "a/#/b", "#/a", "a#", "a/b+", "+a", "a\u{0}", "a\u{1}b", "$share/g", "$share//a", "$share/g+/a",
        String(repeating: "f", count: 65_536),
    ]

    @Test("invalid topics, filters and arguments fail with typed errors and leave the connection up")
    func badInputIsRefusedBeforeSending() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            for topic in Self.badTopics {
                let error = await thrownError { try await client.publish(to: topic, payload: "x", qos: .atLeastOnce) }
                #expect(error?.code == .invalidTopic, "topic of \(topic.utf8.count) bytes: \(String(describing: error))")
                #expect(error?.operation == .publish)
            }
            for filter in Self.badFilters {
                let error = await thrownError { _ = try await client.subscribe(to: filter) }
                #expect(error?.code == .invalidTopicFilter, "filter of \(filter.utf8.count) bytes")
                let unsubscribeError = await thrownError { try await client.unsubscribe(from: filter) }
                #expect(unsubscribeError?.code == .invalidTopicFilter)
            }
            let noFilters = await thrownError { _ = try await client.subscribe(to: [MQTTTopicFilter]()) }
            #expect(noFilters?.code == .invalidArgument)
            // Nothing was sent, so the broker had no reason to drop us.
            #expect(client.isConnected)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            try await client.publish(to: topic, payload: "still fine", qos: .atLeastOnce)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["still fine"])
        }
    }

    @Test("connect and disconnect racing from 20 tasks neither crash nor hang, and the client still works")
    func connectAndDisconnectRace() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker)
            let outcomes = try await withThrowingTaskGroup(of: [MQTTError.Code?].self) { group in
                for task in 0..<20 {
                    group.addTask {
                        var codes: [MQTTError.Code?] = []
                        for step in 0..<10 {
                            if (task + step) % 2 == 0 {
                                codes.append(await thrownError { try await client.connect(timeout: .seconds(10)) }?.code)
                            } else {
                                codes.append(await thrownError { try await client.disconnect(timeout: .seconds(10)) }?.code)
                            }
                        }
                        return codes
                    }
                }
                var all: [MQTTError.Code?] = []
                for try await codes in group { all += codes }
                return all
            }
            #expect(outcomes.count == 200)
            // Every failure is one of the documented outcomes of racing calls.
            let allowed: Set<MQTTError.Code> = [.alreadyConnected, .cancelled, .connectionLost, .notConnected]
            #expect(outcomes.compactMap { $0 }.allSatisfy(allowed.contains), "\(Set(outcomes.compactMap { $0 }))")
            try await client.disconnect()
            try await client.connect()
            try await client.publish(to: uniqueTopic(), payload: "after the race", qos: .atLeastOnce)
        }
    }

    @Test("16 tasks publishing 100 QoS 1 messages each on one client: all acknowledged and delivered once")
    func concurrentPublishers() async throws {
        try await withMosquittoBroker { broker in
            let publisher = try await connectedClient(broker)
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<16 {
                    group.addTask {
                        for index in 0..<100 {
                            try await publisher.publish(to: topic, payload: "\(task)-\(index)", qos: .atLeastOnce)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let messages = try await received.waitFor(1_600, timeout: .seconds(20))
            #expect(messages.count == 1_600)
            #expect(Set(messages.compactMap(\.payloadString)).count == 1_600)
        }
    }

    @Test("50 clients connected at once from concurrent tasks each receive the message sent to their own topic")
    func fiftyClientsAtOnce() async throws {
        try await withMosquittoBroker { broker in
            let root = uniqueTopic()
            let publisher = try await connectedClient(broker)
            let ready = try await publisher.subscribe(to: "\(root)/ready", qos: .atLeastOnce)
            let received = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<50 {
                    group.addTask {
                        let client = try await connectedClient(broker, clientID: uniqueClientID("c\(index)"))
                        let subscription = try await client.subscribe(to: "\(root)/\(index)", qos: .atLeastOnce)
                        let collector = MessageCollector(subscription)
                        // Ask the publisher for our message by publishing our own readiness.
                        try await client.publish(to: "\(root)/ready", payload: "\(index)", qos: .atLeastOnce)
                        let message = try await collector.waitFor(1, timeout: .seconds(20)).first
                        try await client.disconnect()
                        return message?.payloadString
                    }
                }
                // The publisher answers each readiness note on that client's own topic (bounded:
                // it gives up after 20 s, and the missing answers then fail the expectation).
                let notes = MessageCollector(ready)
                group.addTask {
                    var answered: Set<String> = []
                    let deadline = ContinuousClock.now + .seconds(20)
                    while answered.count < 50, ContinuousClock.now < deadline {
                        for note in notes.messages {
                            let index = note.payloadString ?? ""
                            guard answered.insert(index).inserted else { continue }
                            try await publisher.publish(to: "\(root)/\(index)", payload: "for \(index)", qos: .atLeastOnce)
                        }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    return nil
                }
                var payloads: [String] = []
                for try await payload in group { if let payload { payloads.append(payload) } }
                return payloads
            }
            #expect(Set(received) == Set((0..<50).map { "for \($0)" }))
        }
    }
}
