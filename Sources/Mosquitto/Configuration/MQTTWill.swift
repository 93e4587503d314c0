// MARK: - MQTTWill

/// The "last will": a message the broker publishes on the client's behalf when the client
/// vanishes without sending DISCONNECT (network failure, crash, keepalive expiry).
///
/// A clean ``MQTTClient/disconnect(reasonCode:properties:timeout:)`` - and dropping the last reference to a connected
/// client, which disconnects cleanly - discards the will.
public struct MQTTWill: Sendable, Hashable {
    /// The topic the will is published to.
    public var topic: String
    /// The will's payload.
    public var payload: [UInt8]
    /// The QoS the will is published with.
    public var qos: MQTTQoS
    /// Whether the will is retained.
    public var retain: Bool
    /// MQTT 5 will properties: ``MQTTProperties/willDelayInterval``, message expiry, content
    /// type, response topic, correlation data, payload format, user properties.
    public var properties: MQTTProperties

    /// Creates a will.
    ///
    /// - Parameters:
    ///   - topic: The topic.
    ///   - payload: The payload bytes: any collection of bytes (`[UInt8]`, `Data`, a slice).
    ///   - qos: The QoS. Defaults to QoS 0.
    ///   - retain: Whether it is retained. Defaults to `false`.
    ///   - properties: MQTT 5 will properties. Defaults to none.
    public init(
        topic: String, payload: some Collection<UInt8>, qos: MQTTQoS = .atMostOnce, retain: Bool = false,
        properties: MQTTProperties = MQTTProperties()
    ) {
        self.topic = topic
        self.payload = Array(payload)
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }

    /// Creates a will with a text payload, sent as UTF-8.
    ///
    /// - Parameters:
    ///   - topic: The topic.
    ///   - payload: The payload text.
    ///   - qos: The QoS. Defaults to QoS 0.
    ///   - retain: Whether it is retained. Defaults to `false`.
    ///   - properties: MQTT 5 will properties. Defaults to none.
    public init(topic: String, payload: String, qos: MQTTQoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = MQTTProperties()) {
        self.init(topic: topic, payload: payload.utf8, qos: qos, retain: retain, properties: properties)
    }
}
