// MARK: - MQTTProperties

/// MQTT 5 properties, as sent on CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and the
/// will, and as received on CONNACK, PUBLISH, PUBACK/PUBREC/PUBCOMP, SUBACK and DISCONNECT.
///
/// Every property libmosquitto 2.0 handles has a typed field; `nil` (or empty) means "absent".
/// Which properties a packet may carry is fixed by MQTT 5: a property that is not allowed on the
/// packet being sent is rejected before sending with ``MQTTError/Code/propertyNotAllowed``
/// (libmosquitto's own `mosquitto_property_check_command`). On MQTT 3.1/3.1.1 connections,
/// non-empty properties are rejected with ``MQTTError/Code/propertyNotAllowed``.
///
/// ```swift
/// var properties = MQTTProperties()
/// properties.contentType = "application/json"
/// properties.messageExpiryInterval = 60
/// properties.userProperties = [MQTTUserProperty("source", "sensor-1")]
/// try await client.publish(to: "t", payload: json, qos: .atLeastOnce, properties: properties)
/// ```
public struct MQTTProperties: Sendable, Hashable {
    // MARK: PUBLISH and will

    /// Payload format indicator: whether the payload is UTF-8 text (PUBLISH, will).
    public var payloadFormat: MQTTPayloadFormat?
    /// Seconds after which the broker discards the message if undelivered (PUBLISH, will).
    public var messageExpiryInterval: UInt32?
    /// A MIME type describing the payload (PUBLISH, will).
    public var contentType: String?
    /// The topic a responder should publish its answer to (PUBLISH, will).
    public var responseTopic: String?
    /// Opaque bytes that tie a response to its request (PUBLISH, will).
    public var correlationData: [UInt8]?
    /// Subscription identifiers: the one to attach to a SUBSCRIBE (1...268,435,455), or on a
    /// received PUBLISH, those of every matching subscription that carried one.
    public var subscriptionIdentifiers: [UInt32]
    /// A topic alias for an outgoing PUBLISH (1...the broker's ``topicAliasMaximum``).
    public var topicAlias: UInt16?
    /// Seconds the broker waits before publishing the will after the connection is lost (will).
    public var willDelayInterval: UInt32?

    // MARK: CONNECT, CONNACK, DISCONNECT

    /// Seconds the broker keeps the session after the connection closes; `UInt32.max` is
    /// "never expire" (CONNECT, CONNACK, DISCONNECT).
    public var sessionExpiryInterval: UInt32?
    /// The client ID the broker assigned when the client sent an empty one (CONNACK).
    public var assignedClientIdentifier: String?
    /// The keepalive the broker wants instead of the client's (CONNACK).
    public var serverKeepAlive: UInt16?
    /// The extended authentication method (CONNECT, CONNACK).
    public var authenticationMethod: String?
    /// The extended authentication data (CONNECT, CONNACK).
    public var authenticationData: [UInt8]?
    /// Whether the broker may send reason strings and user properties on failures (CONNECT).
    public var requestProblemInformation: Bool?
    /// Whether the client asks for ``responseInformation`` in the CONNACK (CONNECT).
    public var requestResponseInformation: Bool?
    /// A basis for response topics, from the broker (CONNACK).
    public var responseInformation: String?
    /// Another server the client should use (CONNACK, DISCONNECT).
    public var serverReference: String?
    /// A human-readable reason from the broker (every acknowledgement and DISCONNECT).
    public var reasonString: String?
    /// How many QoS 1/2 messages the sender will process at once (CONNECT, CONNACK).
    public var receiveMaximum: UInt16?
    /// The highest topic alias the sender accepts (CONNECT, CONNACK).
    public var topicAliasMaximum: UInt16?
    /// The highest QoS the broker accepts (CONNACK).
    public var maximumQoS: MQTTQoS?
    /// Whether the broker accepts retained messages (CONNACK).
    public var retainAvailable: Bool?
    /// The largest packet, in bytes, the sender accepts (CONNECT, CONNACK).
    public var maximumPacketSize: UInt32?
    /// Whether the broker supports wildcard subscriptions (CONNACK).
    public var wildcardSubscriptionAvailable: Bool?
    /// Whether the broker supports subscription identifiers (CONNACK).
    public var subscriptionIdentifiersAvailable: Bool?
    /// Whether the broker supports shared subscriptions (CONNACK).
    public var sharedSubscriptionAvailable: Bool?

    // MARK: Every packet

    /// Name/value pairs, in order; a name may repeat (every packet).
    public var userProperties: [MQTTUserProperty]

    /// Creates an empty property set.
    public init() {
        subscriptionIdentifiers = []
        userProperties = []
    }

    /// Whether no property is set.
    public var isEmpty: Bool { self == MQTTProperties() }
}

// MARK: - MQTTUserProperty

/// One MQTT 5 user property: a UTF-8 name and value.
public struct MQTTUserProperty: Sendable, Hashable, CustomStringConvertible {
    /// The name.
    public var name: String
    /// The value.
    public var value: String

    /// Creates a user property.
    ///
    /// - Parameters:
    ///   - name: The name.
    ///   - value: The value.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// `name:value`, the form the mosquitto tools print.
    public var description: String { "\(name):\(value)" }
}

// MARK: - MQTTPayloadFormat

/// The payload format indicator of a PUBLISH or will.
public enum MQTTPayloadFormat: UInt8, Sendable, Hashable {
    /// Unspecified bytes (0).
    case bytes = 0
    /// UTF-8 encoded character data (1).
    case utf8 = 1
}
