// MARK: - MQTTMessage

/// A message received from the broker.
///
/// The payload is copied once out of libmosquitto's buffer when the message arrives; the value
/// owns its bytes and can be kept and sent across tasks.
///
/// Reading the payload: ``payload`` is the bytes themselves (`payload.withUnsafeBytes` for a C
/// API, no copy); ``payloadString`` decodes UTF-8 (a `String` owns its storage, so that is a
/// second copy, made only when asked for); with Foundation, `Data(message.payload)` copies too.
public struct MQTTMessage: Sendable, Hashable {
    // DESIGN: libmosquitto frees its message buffer when the callback returns, so one copy into
    // Swift-owned storage is unavoidable; it is made on the network thread, straight from the C
    // buffer into an array of exactly the right size, and never again on the way to the
    // consumer (the message moves through the buffers by reference-counted value). `[UInt8]`
    // rather than `Data` keeps the library free of Foundation, and is what the Swift standard
    // library and swift-nio accept without conversion; a `Data` would cost the same one copy.

    /// The topic the message was published to.
    public var topic: String
    /// The payload bytes (empty for a zero-length message).
    public var payload: [UInt8]
    /// The QoS the message was delivered with: the lower of the publish QoS and the subscription's.
    public var qos: MQTTQoS
    /// Whether the broker delivered the message from its retained store (a late subscriber's
    /// copy), rather than as a live publish.
    public var retain: Bool
    /// The packet identifier of the delivery (0 for QoS 0).
    public var messageID: UInt16
    /// The MQTT 5 properties the message arrived with: content type, response topic, correlation
    /// data, message expiry (the time left), subscription identifiers, user properties, ...
    /// Empty on MQTT 3.1/3.1.1.
    public var properties: MQTTProperties

    /// Creates a message value.
    ///
    /// - Parameters:
    ///   - topic: The topic.
    ///   - payload: The payload bytes.
    ///   - qos: The delivery QoS.
    ///   - retain: The retain flag.
    ///   - messageID: The packet identifier.
    ///   - properties: The MQTT 5 properties.
    public init(
        topic: String, payload: [UInt8], qos: MQTTQoS = .atMostOnce, retain: Bool = false, messageID: UInt16 = 0,
        properties: MQTTProperties = MQTTProperties()
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.messageID = messageID
        self.properties = properties
    }

    /// The payload decoded as UTF-8, or `nil` when it is not valid UTF-8.
    public var payloadString: String? {
        String(validating: payload, as: UTF8.self)
    }
}
