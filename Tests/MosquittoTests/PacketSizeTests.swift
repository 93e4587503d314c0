import Testing
@testable import Mosquitto

/// Exact packet sizes, checked against encodings worked out by hand from MQTT 5 (section 2).
@Suite("Packet sizes", .timeLimit(.minutes(1)))
struct PacketSizeTests {
    @Test("variable byte integers take 1 to 4 bytes at the specification's boundaries")
    func variableByteIntegers() {
        let cases = [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_151, 3), (2_097_152, 4), (268_435_455, 4)]
        for (value, length) in cases {
            #expect(PacketSize.variableByteIntegerLength(value) == length, "\(value)")
        }
    }

    @Test("PUBLISH: fixed header, length, topic, packet ID, properties and payload")
    func publish() {
        // 30 | 1c | 00 08 "pub/test" | 00 | 17 bytes: 1 + 1 + 28.
        #expect(PacketSize.publish(topicLength: 8, payloadLength: 17, qos: .atMostOnce, properties: MQTTProperties(), version: .v5) == 30)
        // MQTT 3.1.1 has no property length byte; QoS 1 adds the packet ID.
        #expect(PacketSize.publish(topicLength: 8, payloadLength: 17, qos: .atMostOnce, properties: MQTTProperties(), version: .v3_1_1) == 29)
        #expect(PacketSize.publish(topicLength: 8, payloadLength: 17, qos: .atLeastOnce, properties: MQTTProperties(), version: .v5) == 32)
        var properties = MQTTProperties()
        properties.contentType = "a/b"  // 03 00 03 "a/b": 6 bytes
        #expect(PacketSize.publish(topicLength: 8, payloadLength: 11, qos: .atMostOnce, properties: properties, version: .v5) == 30)
        // A remaining length of 128 takes two bytes.
        #expect(PacketSize.publish(topicLength: 1, payloadLength: 124, qos: .atMostOnce, properties: MQTTProperties(), version: .v5) == 131)
    }

    @Test("every kind of property is counted with its identifier byte")
    func propertyKinds() {
        var properties = MQTTProperties()
        properties.payloadFormat = .utf8                    // 2
        properties.messageExpiryInterval = 60               // 5
        properties.responseTopic = "r"                      // 4
        properties.correlationData = [1, 2, 3]              // 6
        properties.topicAlias = 3                           // 3
        properties.userProperties = [MQTTUserProperty("k", "vv")]  // 1 + 3 + 4 = 8
        #expect(PacketSize.propertyBytes(properties) == 28)
        #expect(PacketSize.propertySection(properties, version: .v5) == 29)
        #expect(PacketSize.propertySection(properties, version: .v3_1_1) == 0)
    }

    @Test("SUBSCRIBE and UNSUBSCRIBE: packet ID, properties, each filter (with its options byte)")
    func subscribeAndUnsubscribe() {
        // 82 | 1e | id id | 00 | 00 16 (22 bytes) | options: 1 + 1 + 28.
        #expect(PacketSize.subscribe(filters: [String(repeating: "a", count: 22)], properties: MQTTProperties(), version: .v5) == 30)
        #expect(PacketSize.subscribe(filters: ["a/b", "c"], properties: MQTTProperties(), version: .v3_1_1) == 1 + 1 + 2 + 6 + 4)
        // a2 | 1e | id id | 00 | 00 19 (25 bytes).
        #expect(PacketSize.unsubscribe(filters: [String(repeating: "a", count: 23)], properties: MQTTProperties(), version: .v5) == 30)
    }
}
