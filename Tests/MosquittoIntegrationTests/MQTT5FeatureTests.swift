import Mosquitto
import MosquittoTesting
import Testing

@Suite("MQTT 5 features", .timeLimit(.minutes(1)))
struct MQTT5FeatureTests {
    // MARK: Subscription options

    @Test("no-local: a client does not receive its own publications")
    func noLocal() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedV5Client(broker)
            let other = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, noLocal: true)])
            try await client.publish(to: topic, payload: "mine", qos: .atLeastOnce)
            try await other.publish(to: topic, payload: "theirs", qos: .atLeastOnce)
            #expect(try await collect(1, from: subscription).compactMap(\.payloadString) == ["theirs"])
            #expect(try await receivesNothing(on: subscription))
        }
    }

    @Test("retain-as-published keeps the retain flag of live messages")
    func retainAsPublished() async throws {
        try await withMosquittoBroker { broker in
            let keeping = try await connectedV5Client(broker)
            let plain = try await connectedV5Client(broker)
            let publisher = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            let kept = try await keeping.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, retainAsPublished: true)])
            let cleared = try await plain.subscribe(to: topic, qos: .atLeastOnce)
            try await publisher.publish(to: topic, payload: "live", qos: .atLeastOnce, retain: true)
            #expect(try await collect(1, from: kept).map(\.retain) == [true])
            #expect(try await collect(1, from: cleared).map(\.retain) == [false])
        }
    }

    @Test("retain handling: 0 always sends retained messages, 1 only for a new subscription, 2 never")
    func retainHandling() async throws {
        try await withMosquittoBroker { broker in
            let publisher = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            try await publisher.publish(to: topic, payload: "kept", qos: .atLeastOnce, retain: true)
            let client = try await connectedV5Client(broker)
            let all = MessageCollector(client.messages)

            _ = try await client.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, retainHandling: .doNotSend)])
            #expect(try await all.arrivals(within: .milliseconds(500)).isEmpty)
            try await client.unsubscribe(from: topic)

            _ = try await client.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, retainHandling: .sendOnNewSubscription)])
            #expect(try await all.waitFor(1).compactMap(\.payloadString) == ["kept"])
            _ = try await client.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, retainHandling: .sendOnNewSubscription)])
            #expect(try await all.arrivals(within: .milliseconds(500)).isEmpty)

            _ = try await client.subscribe(to: [MQTTTopicFilter(topic, qos: .atLeastOnce, retainHandling: .sendOnSubscribe)])
            #expect(try await all.waitFor(2).compactMap(\.payloadString) == ["kept", "kept"])
        }
    }

    @Test("subscription identifiers come back with the messages they matched")
    func subscriptionIdentifiers() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedV5Client(broker)
            let root = uniqueTopic()
            var first = MQTTProperties()
            first.subscriptionIdentifiers = [42]
            var second = MQTTProperties()
            second.subscriptionIdentifiers = [7]
            let plus = MessageCollector(try await client.subscribe(to: "\(root)/+", qos: .atLeastOnce, properties: first))
            let hash = MessageCollector(try await client.subscribe(to: "\(root)/#", qos: .atLeastOnce, properties: second))
            try await client.publish(to: "\(root)/a", payload: "x", qos: .atLeastOnce)
            // Mosquitto sends one copy per overlapping subscription, each with its identifier,
            // and each copy reaches the subscription it belongs to.
            #expect(try await plus.waitFor(1).map(\.properties.subscriptionIdentifiers) == [[42]])
            #expect(try await hash.waitFor(1).map(\.properties.subscriptionIdentifiers) == [[7]])
            try await Task.sleep(for: .milliseconds(300))
            #expect(plus.messages.count == 1 && hash.messages.count == 1)
        }
    }

    // MARK: Shared subscriptions

    @Test("a shared subscription delivers each of 300 messages to exactly one of 3 consumers, and each gets some")
    func sharedSubscriptionSpreadsMessages() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let consumers = try await (0..<3).asyncMap { _ in try await connectedV5Client(broker) }
            var subscriptions: [MQTTSubscription] = []
            for consumer in consumers {
                subscriptions.append(try await consumer.subscribe(to: "$share/workers/\(topic)", qos: .atLeastOnce))
            }
            let publisher = try await connectedV5Client(broker)
            let pending = try (0..<300).map { try publisher.beginPublish(to: topic, payload: Array("\($0)".utf8), qos: .atLeastOnce) }
            for publish in pending { try await publish.acknowledgement() }

            let collectors = subscriptions.map(MessageCollector.init)
            let deadline = ContinuousClock.now + .seconds(15)
            while collectors.map(\.messages.count).reduce(0, +) < 300, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            // Anything beyond 300 (a duplicate) would show up within this window.
            try await Task.sleep(for: .milliseconds(300))
            let perConsumer = collectors.map { $0.messages.compactMap(\.payloadString) }
            let all = perConsumer.flatMap { $0 }
            #expect(all.count == 300)
            #expect(Set(all) == Set((0..<300).map { "\($0)" }))
            #expect(perConsumer.allSatisfy { !$0.isEmpty }, "per consumer: \(perConsumer.map(\.count))")
        }
    }

    // MARK: Session and message expiry

    @Test("with a session expiry interval the session and its subscriptions survive a disconnect; without, they do not")
    func sessionExpiry() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedV5Client(broker)
            for (expiry, kept) in [(UInt32(60), true), (0, false)] {
                let subscriber = try makeClient(broker, clientID: uniqueClientID("expiry")) {
                    $0.protocolVersion = .v5
                    $0.cleanSession = false
                    $0.connectProperties.sessionExpiryInterval = expiry
                }
                try await subscriber.connect()
                let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
                try await subscriber.disconnect()
                try await publisher.publish(to: topic, payload: "while away", qos: .atLeastOnce)
                let result = try await subscriber.connect()
                #expect(result.sessionPresent == kept, "session expiry \(expiry)")
                if kept {
                    #expect(try await collect(1, from: subscription).map(\.payloadString) == ["while away"])
                }
                try await subscriber.disconnect()
            }
        }
    }

    @Test("a message that expired while the subscriber was away is not delivered")
    func messageExpiry() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let subscriber = try makeClient(broker, clientID: uniqueClientID("msgexp")) {
                $0.protocolVersion = .v5
                $0.cleanSession = false
                $0.connectProperties.sessionExpiryInterval = 60
            }
            try await subscriber.connect()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = try await connectedV5Client(broker)
            var shortLived = MQTTProperties()
            shortLived.messageExpiryInterval = 1
            try await publisher.publish(to: topic, payload: "expires", qos: .atLeastOnce, properties: shortLived)
            try await publisher.publish(to: topic, payload: "stays", qos: .atLeastOnce)
            // Mosquitto keeps expiry times in whole seconds: a 1 s expiry is over within 2 s.
            try await Task.sleep(for: .milliseconds(3_000))
            #expect(try await subscriber.connect().sessionPresent)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["stays"])
            #expect(try await receivesNothing(on: subscription))
        }
    }

    // MARK: Will

    @Test("a will with a delay interval and properties is published after the delay")
    func willDelayAndProperties() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .atLeastOnce))
            var properties = MQTTProperties()
            // Mosquitto checks will delays in whole seconds: 3 s fires after 2 to 3 s.
            properties.willDelayInterval = 3
            properties.contentType = "text/plain"
            properties.userProperties = [MQTTUserProperty("device", "7")]
            let client = try await connectedV5Client(broker) {
                $0.will = MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .atLeastOnce, properties: properties)
                $0.connectProperties.sessionExpiryInterval = 10
            }
            // Reason 0x04 asks the broker to publish the will, as if the client had vanished.
            let start = ContinuousClock.now
            try await client.disconnect(reasonCode: .disconnectWithWillMessage)
            // Not "nothing within 1.5 s" by sleeping: on a loaded machine the sleep itself can
            // outlast the delay. The wait returns as soon as the will is there, so an early will
            // shows as a short wait.
            let messages = try await wills.waitFor(1, timeout: .seconds(8))
            #expect(ContinuousClock.now - start >= .milliseconds(1_900))
            #expect(messages.map(\.payloadString) == ["gone"])
            #expect(messages.first?.properties.contentType == "text/plain")
            #expect(messages.first?.properties.userProperties == [MQTTUserProperty("device", "7")])
        }
    }

    // MARK: Request/response

    @Test("request/response: a round trip, a timeout, and 100 concurrent requests each matched to its own response")
    func requestResponse() async throws {
        try await withMosquittoBroker { broker in
            let responder = try await connectedV5Client(broker)
            let requester = try await connectedV5Client(broker)
            let service = uniqueTopic()
            let serving = Task {
                try await responder.respond(to: service) { request in
                    // Answer out of order: later requests may finish first.
                    try? await Task.sleep(for: .milliseconds(Int.random(in: 0...20)))
                    return Array("echo:\(request.payloadString ?? "")".utf8)
                }
            }
            defer { serving.cancel() }
            // The responder's subscription must exist before the first request.
            try await waitForSubscription(broker, clientID: responder.clientID, filter: service)

            let response = try await requester.request(topic: service, payload: Array("ping".utf8), timeout: .seconds(5))
            #expect(response.payloadString == "echo:ping")

            let nobody = await thrownError {
                _ = try await requester.request(topic: uniqueTopic(), payload: Array("hello?".utf8), timeout: .milliseconds(300))
            }
            #expect(nobody?.code == .timeout)

            let answers = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<100 {
                    group.addTask {
                        let answer = try await requester.request(topic: service, payload: Array("\(index)".utf8), timeout: .seconds(20))
                        return (index, answer.payloadString)
                    }
                }
                var answers: [Int: String?] = [:]
                for try await (index, answer) in group { answers[index] = answer }
                return answers
            }
            #expect(answers.count == 100)
            #expect(answers.allSatisfy { index, answer in answer == "echo:\(index)" })
        }
    }
}

extension Range where Bound == Int {
    /// Maps sequentially with an async transform.
    func asyncMap<T>(_ transform: (Int) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for index in self { results.append(try await transform(index)) }
        return results
    }
}
