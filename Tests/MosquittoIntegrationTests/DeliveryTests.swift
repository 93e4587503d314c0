import Foundation
import Mosquitto
import MosquittoTesting
import Testing

@Suite("Delivery", .timeLimit(.minutes(1)))
struct DeliveryTests {
    @Test("a message is delivered at each QoS", arguments: MQTTQoS.allCases)
    func messageIsDeliveredAtEachQoS(qos: MQTTQoS) async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: qos)
            #expect(subscription.results.map(\.grantedQoS) == [qos])
            let receipt = try await publisher.publish(to: topic, payload: [0, 1, 2, 255], qos: qos)
            #expect(receipt.qos == qos)
            let messages = try await collect(1, from: subscription)
            #expect(messages.map(\.topic) == [topic])
            #expect(messages.map(\.payload) == [[0, 1, 2, 255]])
            #expect(messages.map(\.qos) == [qos])
            #expect(messages.map(\.retain) == [false])
            #expect(messages[0].messageID == 0 || qos != .atMostOnce)
        }
    }

    @Test("a payload from any byte collection arrives byte for byte: array, slice, Data, string, raw buffer, non-contiguous")
    func payloadsFromAnyByteCollection() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            let bytes: [UInt8] = [0, 1, 2, 0xFE, 0xFF]
            try await publisher.publish(to: topic, payload: bytes, qos: .atLeastOnce)
            try await publisher.publish(to: topic, payload: bytes[1...3], qos: .atLeastOnce)
            try await publisher.publish(to: topic, payload: Data(bytes), qos: .atLeastOnce)
            try await publisher.publish(to: topic, payload: "grüße", qos: .atLeastOnce)
            try bytes.withUnsafeBytes { raw in
                _ = try publisher.beginPublish(to: topic, payload: raw, qos: .atLeastOnce)
            }
            try await publisher.publish(to: topic, payload: repeatElement(UInt8(7), count: 4), qos: .atLeastOnce)
            try await publisher.publish(to: topic, payload: [UInt8](), qos: .atLeastOnce)
            let payloads = try await received.waitFor(7).map(\.payload)
            #expect(payloads == [bytes, [1, 2, 0xFE], bytes, Array("grüße".utf8), bytes, [7, 7, 7, 7], []])
        }
    }

    @Test("the delivered QoS is the lower of publish and subscription QoS")
    func effectiveQoSIsTheMinimum() async throws {
        try await withMosquittoBroker { broker in
            let publisher = try await connectedClient(broker)
            for subscribed in MQTTQoS.allCases {
                let subscriber = try await connectedClient(broker)
                let topic = uniqueTopic()
                let subscription = try await subscriber.subscribe(to: topic, qos: subscribed)
                for published in MQTTQoS.allCases {
                    try await publisher.publish(to: topic, payload: "\(published.rawValue)", qos: published)
                }
                let messages = try await collect(3, from: subscription)
                let delivered = Dictionary(uniqueKeysWithValues: messages.map { ($0.payloadString ?? "", $0.qos) })
                for published in MQTTQoS.allCases {
                    #expect(delivered["\(published.rawValue)"] == min(published, subscribed), "published \(published), subscribed \(subscribed)")
                }
                try await subscriber.disconnect()
            }
        }
    }

    @Test("+ matches exactly one level and # any number of trailing levels")
    func wildcardsMatch() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let publisher = try await connectedClient(broker)
            let root = uniqueTopic()
            let plus = try await subscriber.subscribe(to: "\(root)/+/sensor", qos: .atLeastOnce)
            let hash = try await subscriber.subscribe(to: "\(root)/kitchen/#", qos: .atLeastOnce)
            for topic in ["livingroom/sensor", "kitchen/sensor", "kitchen/lamp/1", "a/b/sensor", "kitchen"] {
                try await publisher.publish(to: "\(root)/\(topic)", payload: topic, qos: .atLeastOnce)
            }
            let plusMessages = try await collect(2, from: plus)
            let hashMessages = try await collect(3, from: hash)
            #expect(plusMessages.compactMap(\.payloadString) == ["livingroom/sensor", "kitchen/sensor"])
            #expect(hashMessages.compactMap(\.payloadString) == ["kitchen/sensor", "kitchen/lamp/1", "kitchen"])
        }
    }

    @Test("every protocol version connects and exchanges messages", arguments: MQTTProtocolVersion.allCases)
    func protocolVersionsExchangeMessages(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker) { $0.protocolVersion = version }
            let other = try await connectedClient(broker) { $0.protocolVersion = version == .v5 ? .v3_1_1 : .v5 }
            let topic = uniqueTopic()
            let mine = try await client.subscribe(to: topic, qos: .exactlyOnce)
            let theirs = try await other.subscribe(to: topic, qos: .exactlyOnce)
            try await client.publish(to: topic, payload: "from \(version)", qos: .exactlyOnce)
            try await other.publish(to: topic, payload: "from other", qos: .atLeastOnce)
            // libmosquitto hands over a QoS 2 message at PUBREL, so across QoS levels the order may differ.
            let expected: Set = ["from \(version)", "from other"]
            #expect(Set(try await collect(2, from: mine).compactMap(\.payloadString)) == expected)
            #expect(Set(try await collect(2, from: theirs).compactMap(\.payloadString)) == expected)
        }
    }

    @Test("many QoS 1 publishes can be begun without waiting and awaited together")
    func publishesCanBePipelined() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            let pending = try (0..<1_000).map { try publisher.beginPublish(to: topic, payload: Array("\($0)".utf8), qos: .atLeastOnce) }
            #expect(Set(pending.map(\.messageID)).count == 1_000)
            for publish in pending {
                let receipt = try await publish.acknowledgement()
                #expect(receipt.messageID == publish.messageID)
            }
            let received = try await collect(1_000, from: subscription, timeout: .seconds(30))
            #expect(received.compactMap(\.payloadString) == (0..<1_000).map { "\($0)" })
        }
    }

    @Test("client.messages receives messages of every subscription")
    func messagesSequenceReceivesEverything() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let all = client.messages
            let topic = uniqueTopic()
            _ = try await client.subscribe(to: [MQTTTopicFilter("\(topic)/a", qos: .atLeastOnce), MQTTTopicFilter("\(topic)/b")])
            try await client.publish(to: "\(topic)/a", payload: "a", qos: .atLeastOnce)
            try await client.publish(to: "\(topic)/b", payload: "b", qos: .atLeastOnce)
            #expect(try await collect(2, from: all).map(\.topic) == ["\(topic)/a", "\(topic)/b"])
        }
    }

    @Test("unsubscribing stops delivery and finishes the subscription")
    func unsubscribeStopsDelivery() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            let all = client.messages
            try await client.unsubscribe(from: topic)
            // The sequence ends (bounded: a sequence left open fails with a timeout).
            await #expect(throws: SequenceEnded.self) { _ = try await collect(1, from: subscription) }
            try await client.publish(to: topic, payload: "late", qos: .atLeastOnce)
            #expect(try await receivesNothing(on: all))
        }
    }

    @Test("unsubscribing one filter of a subscription made with several: its sequence keeps receiving the others, not that one")
    func unsubscribingOneFilterOfSeveral() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: ["a", "b", "c"].map { MQTTTopicFilter("\(topic)/\($0)", qos: .atLeastOnce) })
            let messages = MessageCollector(subscription)
            let all = MessageCollector(client.messages)
            try await client.unsubscribe(from: "\(topic)/a")
            for name in ["a", "b", "c"] {
                try await client.publish(to: "\(topic)/\(name)", payload: name, qos: .atLeastOnce)
            }
            _ = try await client.subscribe(to: "\(topic)/end", qos: .atLeastOnce)
            try await client.publish(to: "\(topic)/end", payload: "end", qos: .atLeastOnce)
            // Everything published before "end" has arrived once "end" has (one connection, in order).
            #expect(try await all.waitFor(3).map(\.payloadString) == ["b", "c", "end"], "the broker stopped sending a only")
            #expect(try await messages.waitFor(2).map(\.payloadString) == ["b", "c"])
            try messages.checkRunning()
        }
    }

    @Test("unsubscribing the filter of one of several subscriptions ends only that one's sequence; the others keep receiving")
    func unsubscribingOneOfSeveralSubscriptions() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let first = try await client.subscribe(to: "\(topic)/a", qos: .atLeastOnce)
            let second = MessageCollector(try await client.subscribe(to: "\(topic)/b", qos: .atLeastOnce))
            let both = MessageCollector(try await client.subscribe(to: [MQTTTopicFilter("\(topic)/a", qos: .atLeastOnce), MQTTTopicFilter("\(topic)/c", qos: .atLeastOnce)]))
            try await client.unsubscribe(from: "\(topic)/a")
            await #expect(throws: SequenceEnded.self) { _ = try await collect(1, from: first) }
            try await client.publish(to: "\(topic)/a", payload: "a", qos: .atLeastOnce)
            try await client.publish(to: "\(topic)/b", payload: "b", qos: .atLeastOnce)
            try await client.publish(to: "\(topic)/c", payload: "c", qos: .atLeastOnce)
            #expect(try await second.waitFor(1).map(\.payloadString) == ["b"])
            #expect(try await both.waitFor(1).map(\.payloadString) == ["c"])
            #expect(try await second.arrivals(within: .milliseconds(300)).isEmpty)
            #expect(both.messages.map(\.payloadString) == ["c"])
        }
    }

    /// Each `unsubscribe` takes its filters out of the sequence (`EventRouter.removeFilters`): the
    /// sequence ends with its last filter, however many calls that takes (it used to end only
    /// when one call named all of them, and otherwise stayed open and silent for ever).
    @Test("a subscription made with several filters ends once all of them are unsubscribed, one call at a time")
    func subscriptionEndsOnceEveryFilterIsUnsubscribed() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: [MQTTTopicFilter("\(topic)/a"), MQTTTopicFilter("\(topic)/b")])
            try await client.unsubscribe(from: "\(topic)/a")
            try await client.unsubscribe(from: "\(topic)/b")
            await #expect(throws: SequenceEnded.self) { _ = try await collect(1, from: subscription, timeout: .seconds(2)) }
        }
    }

    /// An unsubscribed filter no longer routes to the sequence, even when the broker still sends
    /// the topic for another subscription (here a wildcard); it used to.
    @Test("after unsubscribing one filter of several, the sequence gets no message on that filter through another subscription")
    func unsubscribedFilterIsNotRoutedThroughAnotherSubscription() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = MessageCollector(try await client.subscribe(to: [MQTTTopicFilter("\(topic)/a"), MQTTTopicFilter("\(topic)/b")]))
            let wildcard = MessageCollector(try await client.subscribe(to: "\(topic)/#"))
            try await client.unsubscribe(from: "\(topic)/a")
            try await client.publish(to: "\(topic)/a", payload: "a", qos: .atLeastOnce)
            try await client.publish(to: "\(topic)/b", payload: "b", qos: .atLeastOnce)
            #expect(try await wildcard.waitFor(2).map(\.payloadString) == ["a", "b"])
            let received = try await subscription.waitFor(1).map(\.payloadString)
            #expect(received == ["b"])
        }
    }
}

/// `messageBufferSize` against a real broker: the consumer that falls behind loses its sequence,
/// loudly; nobody else does.
@Suite("Message buffer overflow", .timeLimit(.minutes(1)))
struct MessageBufferOverflowTests {
    @Test("a sequence nobody reads overflows after messageBufferSize messages and ends with messageBufferOverflow; another sequence keeps receiving")
    func overflowEndsOnlyThatSequence() async throws {
        try await withMosquittoBroker { broker in
            let bufferSize = 10
            let client = try await connectedClient(broker) { $0.messageBufferSize = bufferSize }
            let publisher = try await connectedClient(broker)
            let root = uniqueTopic()
            let unread = try await client.subscribe(to: "\(root)/unread", qos: .atLeastOnce)
            let read = MessageCollector(try await client.subscribe(to: "\(root)/read", qos: .atLeastOnce))
            // One message to each at a time, the read one waited for: it never holds more than one.
            for number in 0..<(bufferSize + 10) {
                try await publisher.publish(to: "\(root)/unread", payload: "\(number)", qos: .atLeastOnce)
                try await publisher.publish(to: "\(root)/read", payload: "\(number)", qos: .atLeastOnce)
                #expect(try await read.waitFor(number + 1).count == number + 1)
            }
            // The unread sequence holds the first bufferSize messages, then ends with the overflow.
            let (received, error) = try await within(.seconds(10), "the unread sequence") { () -> ([String], MQTTError?) in
                var received: [String] = []
                do {
                    for try await message in unread { received.append(message.payloadString ?? "?") }
                    return (received, nil)
                } catch {
                    return (received, error as? MQTTError)
                }
            }
            #expect(received == (0..<bufferSize).map { "\($0)" })
            #expect(error?.code == .messageBufferOverflow, "\(String(describing: error))")
            // The other sequence, and the client, go on.
            try await publisher.publish(to: "\(root)/read", payload: "after", qos: .atLeastOnce)
            #expect(try await read.waitFor(bufferSize + 11).last?.payloadString == "after")
            try read.checkRunning()
            #expect(client.isConnected)
        }
    }
}
