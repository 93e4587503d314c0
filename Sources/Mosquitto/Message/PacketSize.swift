// MARK: - PacketSize

/// The exact encoded size of the packets a broker's Maximum Packet Size limits, as MQTT 5 counts
/// it (section 3.1.2.11.4: the whole packet: fixed header, remaining-length bytes, variable
/// header, properties and payload).
///
/// DESIGN: mosquitto 2.0.11 itself (the broker, and libmosquitto's own check before sending)
/// leaves out the fixed header's first byte, so it accepts a packet one byte over the limit; we
/// count as the specification does, so that a stricter broker never closes the connection.
enum PacketSize {
    /// How many bytes MQTT's variable byte integer takes for `value` (1 to 4).
    static func variableByteIntegerLength(_ value: Int) -> Int {
        switch value {
        case ..<128: 1
        case ..<16_384: 2
        case ..<2_097_152: 3
        default: 4
        }
    }

    /// The whole packet for a remaining length: fixed header byte, length bytes, the rest.
    static func packet(remainingLength: Int) -> Int {
        1 + variableByteIntegerLength(remainingLength) + remainingLength
    }

    /// The property section of an MQTT 5 packet: its length, then the properties; none before 5.
    static func propertySection(_ properties: MQTTProperties, version: MQTTProtocolVersion) -> Int {
        guard version == .v5 else { return 0 }
        let length = propertyBytes(properties)
        return variableByteIntegerLength(length) + length
    }

    /// A PUBLISH of `topicLength` bytes of topic and `payloadLength` bytes of payload.
    static func publish(topicLength: Int, payloadLength: Int, qos: MQTTQoS, properties: MQTTProperties, version: MQTTProtocolVersion) -> Int {
        let remaining = 2 + topicLength + (qos == .atMostOnce ? 0 : 2) + propertySection(properties, version: version) + payloadLength
        return packet(remainingLength: remaining)
    }

    /// A SUBSCRIBE of `filters` (each with its options byte).
    static func subscribe(filters: [String], properties: MQTTProperties, version: MQTTProtocolVersion) -> Int {
        let payload = filters.reduce(0) { $0 + 2 + $1.utf8.count + 1 }
        return packet(remainingLength: 2 + propertySection(properties, version: version) + payload)
    }

    /// An UNSUBSCRIBE of `filters`.
    static func unsubscribe(filters: [String], properties: MQTTProperties, version: MQTTProtocolVersion) -> Int {
        let payload = filters.reduce(0) { $0 + 2 + $1.utf8.count }
        return packet(remainingLength: 2 + propertySection(properties, version: version) + payload)
    }

    /// The encoded properties (each an identifier byte and its value), without the length prefix.
    static func propertyBytes(_ properties: MQTTProperties) -> Int {
        guard !properties.isEmpty else { return 0 }
        func string(_ value: String?) -> Int { value.map { 1 + 2 + $0.utf8.count } ?? 0 }
        func binary(_ value: [UInt8]?) -> Int { value.map { 1 + 2 + $0.count } ?? 0 }
        func fixed(_ present: Bool, _ size: Int) -> Int { present ? 1 + size : 0 }
        var total = 0
        total += fixed(properties.payloadFormat != nil, 1)
        total += fixed(properties.messageExpiryInterval != nil, 4)
        total += string(properties.contentType)
        total += string(properties.responseTopic)
        total += binary(properties.correlationData)
        total += properties.subscriptionIdentifiers.reduce(0) { $0 + 1 + variableByteIntegerLength(Int($1)) }
        total += fixed(properties.topicAlias != nil, 2)
        total += fixed(properties.willDelayInterval != nil, 4)
        total += fixed(properties.sessionExpiryInterval != nil, 4)
        total += string(properties.assignedClientIdentifier)
        total += fixed(properties.serverKeepAlive != nil, 2)
        total += string(properties.authenticationMethod)
        total += binary(properties.authenticationData)
        total += fixed(properties.requestProblemInformation != nil, 1)
        total += fixed(properties.requestResponseInformation != nil, 1)
        total += string(properties.responseInformation)
        total += string(properties.serverReference)
        total += string(properties.reasonString)
        total += fixed(properties.receiveMaximum != nil, 2)
        total += fixed(properties.topicAliasMaximum != nil, 2)
        total += fixed(properties.maximumQoS != nil, 1)
        total += fixed(properties.retainAvailable != nil, 1)
        total += fixed(properties.maximumPacketSize != nil, 4)
        total += fixed(properties.wildcardSubscriptionAvailable != nil, 1)
        total += fixed(properties.subscriptionIdentifiersAvailable != nil, 1)
        total += fixed(properties.sharedSubscriptionAvailable != nil, 1)
        total += properties.userProperties.reduce(0) { $0 + 1 + 2 + $1.name.utf8.count + 2 + $1.value.utf8.count }
        return total
    }
}
