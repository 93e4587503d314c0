// MARK: - MQTTProperties

/// MQTT 5 properties, as sent on CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and the
/// will, and as received on CONNACK, PUBLISH, PUBACK/PUBREC/PUBCOMP, SUBACK and DISCONNECT.
///
/// Every property libmosquitto 2.0 handles has a typed field; `nil` (or empty) means "absent".
/// Properties go on the wire in the order they were set (user properties among the others, as
/// appended); that order is not part of equality.
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
public struct MQTTProperties: Sendable, Hashable, CustomStringConvertible {
    // DESIGN: the fields live in one immutable, shared box, and an empty set is no box at all.
    // Every message, publish receipt and acknowledgement carries properties, and almost always
    // none: inline, the 26 optional fields made each of those values about 300 bytes that were
    // copied, retained and released field by field on every hand-over (measured as the largest
    // value-witness copies in a QoS 1 publisher's profile, and 3 MiB of a window of pending
    // publishes). Boxed, an empty set is one nil pointer and a non-empty one a single retain.
    // Setting a property copies the fields into a new box (properties are built once, read many
    // times), which keeps the box immutable and therefore plainly `Sendable`.

    // The order in which properties were set is kept beside the fields (not compared, not
    // hashed): they are written in that order, as libmosquitto writes the properties a
    // mosquitto tool's `-D` adds, one after the other (see `wireOrder`).

    /// The fields, or `nil` when no property is set.
    private var storage: Storage?

    // MARK: PUBLISH and will

    /// Payload format indicator: whether the payload is UTF-8 text (PUBLISH, will).
    public var payloadFormat: MQTTPayloadFormat? {
        get { self[\.payloadFormat] }
        set { update(\.payloadFormat, to: newValue, identifier: 0x01) }
    }

    /// Seconds after which the broker discards the message if undelivered (PUBLISH, will).
    public var messageExpiryInterval: UInt32? {
        get { self[\.messageExpiryInterval] }
        set { update(\.messageExpiryInterval, to: newValue, identifier: 0x02) }
    }

    /// A MIME type describing the payload (PUBLISH, will).
    public var contentType: String? {
        get { self[\.contentType] }
        set { update(\.contentType, to: newValue, identifier: 0x03) }
    }

    /// The topic a responder should publish its answer to (PUBLISH, will).
    public var responseTopic: String? {
        get { self[\.responseTopic] }
        set { update(\.responseTopic, to: newValue, identifier: 0x08) }
    }

    /// Opaque bytes that tie a response to its request (PUBLISH, will).
    public var correlationData: [UInt8]? {
        get { self[\.correlationData] }
        set { update(\.correlationData, to: newValue, identifier: 0x09) }
    }

    /// Subscription identifiers: the one to attach to a SUBSCRIBE (1...268,435,455), or on a
    /// received PUBLISH, those of every matching subscription that carried one.
    public var subscriptionIdentifiers: [UInt32] {
        get { self[\.subscriptionIdentifiers] }
        set { update(\.subscriptionIdentifiers, to: newValue, identifier: 0x0B) }
    }

    /// A topic alias for an outgoing PUBLISH (1...the broker's ``topicAliasMaximum``).
    public var topicAlias: UInt16? {
        get { self[\.topicAlias] }
        set { update(\.topicAlias, to: newValue, identifier: 0x23) }
    }

    /// Seconds the broker waits before publishing the will after the connection is lost (will).
    public var willDelayInterval: UInt32? {
        get { self[\.willDelayInterval] }
        set { update(\.willDelayInterval, to: newValue, identifier: 0x18) }
    }

    // MARK: CONNECT, CONNACK, DISCONNECT

    /// Seconds the broker keeps the session after the connection closes; `UInt32.max` is
    /// "never expire" (CONNECT, CONNACK, DISCONNECT).
    public var sessionExpiryInterval: UInt32? {
        get { self[\.sessionExpiryInterval] }
        set { update(\.sessionExpiryInterval, to: newValue, identifier: 0x11) }
    }

    /// The client ID the broker assigned when the client sent an empty one (CONNACK).
    public var assignedClientIdentifier: String? {
        get { self[\.assignedClientIdentifier] }
        set { update(\.assignedClientIdentifier, to: newValue, identifier: 0x12) }
    }

    /// The keepalive the broker wants instead of the client's (CONNACK).
    public var serverKeepAlive: UInt16? {
        get { self[\.serverKeepAlive] }
        set { update(\.serverKeepAlive, to: newValue, identifier: 0x13) }
    }

    /// The extended authentication method (CONNECT, CONNACK).
    public var authenticationMethod: String? {
        get { self[\.authenticationMethod] }
        set { update(\.authenticationMethod, to: newValue, identifier: 0x15) }
    }

    /// The extended authentication data (CONNECT, CONNACK).
    public var authenticationData: [UInt8]? {
        get { self[\.authenticationData] }
        set { update(\.authenticationData, to: newValue, identifier: 0x16) }
    }

    /// Whether the broker may send reason strings and user properties on failures (CONNECT).
    public var requestProblemInformation: Bool? {
        get { self[\.requestProblemInformation] }
        set { update(\.requestProblemInformation, to: newValue, identifier: 0x17) }
    }

    /// Whether the client asks for ``responseInformation`` in the CONNACK (CONNECT).
    public var requestResponseInformation: Bool? {
        get { self[\.requestResponseInformation] }
        set { update(\.requestResponseInformation, to: newValue, identifier: 0x19) }
    }

    /// A basis for response topics, from the broker (CONNACK).
    public var responseInformation: String? {
        get { self[\.responseInformation] }
        set { update(\.responseInformation, to: newValue, identifier: 0x1A) }
    }

    /// Another server the client should use (CONNACK, DISCONNECT).
    public var serverReference: String? {
        get { self[\.serverReference] }
        set { update(\.serverReference, to: newValue, identifier: 0x1C) }
    }

    /// A human-readable reason from the broker (every acknowledgement and DISCONNECT).
    public var reasonString: String? {
        get { self[\.reasonString] }
        set { update(\.reasonString, to: newValue, identifier: 0x1F) }
    }

    /// How many QoS 1/2 messages the sender will process at once (CONNECT, CONNACK).
    public var receiveMaximum: UInt16? {
        get { self[\.receiveMaximum] }
        set { update(\.receiveMaximum, to: newValue, identifier: 0x21) }
    }

    /// The highest topic alias the sender accepts (CONNECT, CONNACK).
    public var topicAliasMaximum: UInt16? {
        get { self[\.topicAliasMaximum] }
        set { update(\.topicAliasMaximum, to: newValue, identifier: 0x22) }
    }

    /// The highest QoS the broker accepts (CONNACK).
    public var maximumQoS: MQTTQoS? {
        get { self[\.maximumQoS] }
        set { update(\.maximumQoS, to: newValue, identifier: 0x24) }
    }

    /// Whether the broker accepts retained messages (CONNACK).
    public var retainAvailable: Bool? {
        get { self[\.retainAvailable] }
        set { update(\.retainAvailable, to: newValue, identifier: 0x25) }
    }

    /// The largest packet, in bytes, the sender accepts (CONNECT, CONNACK).
    public var maximumPacketSize: UInt32? {
        get { self[\.maximumPacketSize] }
        set { update(\.maximumPacketSize, to: newValue, identifier: 0x27) }
    }

    /// Whether the broker supports wildcard subscriptions (CONNACK).
    public var wildcardSubscriptionAvailable: Bool? {
        get { self[\.wildcardSubscriptionAvailable] }
        set { update(\.wildcardSubscriptionAvailable, to: newValue, identifier: 0x28) }
    }

    /// Whether the broker supports subscription identifiers (CONNACK).
    public var subscriptionIdentifiersAvailable: Bool? {
        get { self[\.subscriptionIdentifiersAvailable] }
        set { update(\.subscriptionIdentifiersAvailable, to: newValue, identifier: 0x29) }
    }

    /// Whether the broker supports shared subscriptions (CONNACK).
    public var sharedSubscriptionAvailable: Bool? {
        get { self[\.sharedSubscriptionAvailable] }
        set { update(\.sharedSubscriptionAvailable, to: newValue, identifier: 0x2A) }
    }

    // MARK: Every packet

    /// Name/value pairs, in order; a name may repeat (every packet).
    public var userProperties: [MQTTUserProperty] {
        get { self[\.userProperties] }
        set { update(\.userProperties, to: newValue, identifier: 0x26) }
    }

    /// Creates an empty property set.
    public init() {
        storage = nil
    }

    /// Wraps `values` (no box when they are all absent), set in `order` (identifiers; see
    /// ``wireOrder``).
    init(_ values: Values, order: [UInt8] = []) {
        storage = values == Values() ? nil : Storage(values, order: order)
    }

    /// The identifiers of the set properties in the order they were set, one entry per user
    /// property and per subscription identifier (the n-th `0x26` is the n-th user property);
    /// empty for properties that were received, or built from ``Values`` directly.
    var wireOrder: [UInt8] { storage?.order ?? [] }

    /// Whether no property is set.
    public var isEmpty: Bool { storage == nil }

    /// The fields (all absent when there is no box).
    var values: Values { storage?.values ?? Values() }

    /// Reads one field.
    private subscript<Value>(field: WritableKeyPath<Values, Value>) -> Value {
        values[keyPath: field]
    }

    /// Sets a single-valued property; the fields go into a new box, and the property to the end
    /// of ``wireOrder`` if it was not set (or out of it when `newValue` is `nil`).
    private mutating func update<Value>(_ field: WritableKeyPath<Values, Value?>, to newValue: Value?, identifier: UInt8) {
        replace(field, with: newValue, identifier: identifier, entries: newValue == nil ? 0 : 1)
    }

    /// Sets a property that may appear several times (user properties, subscription
    /// identifiers): ``wireOrder`` keeps one entry per element, new ones at the end.
    private mutating func update<Element>(_ field: WritableKeyPath<Values, [Element]>, to newValue: [Element], identifier: UInt8) {
        replace(field, with: newValue, identifier: identifier, entries: newValue.count)
    }

    private mutating func replace<Value>(_ field: WritableKeyPath<Values, Value>, with newValue: Value, identifier: UInt8, entries: Int) {
        var values = self.values
        values[keyPath: field] = newValue
        var order = wireOrder
        var present = order.reduce(0) { $1 == identifier ? $0 + 1 : $0 }
        while present > entries, let last = order.lastIndex(of: identifier) {
            order.remove(at: last)
            present -= 1
        }
        order += repeatElement(identifier, count: max(0, entries - present))
        self = MQTTProperties(values, order: order)
    }

    /// Whether both sets hold the same properties (user properties in the same order).
    public static func == (lhs: MQTTProperties, rhs: MQTTProperties) -> Bool {
        lhs.storage === rhs.storage || lhs.values == rhs.values
    }

    /// Hashes the properties that are set.
    public func hash(into hasher: inout Hasher) {
        values.hash(into: &hasher)
    }

    /// The properties that are set, as `MQTTProperties(name: value, ...)`.
    public var description: String {
        let set = Mirror(reflecting: values).children.compactMap { child -> String? in
            guard let label = child.label else { return nil }
            let value = Mirror(reflecting: child.value)
            if value.displayStyle == .optional {
                guard let some = value.children.first else { return nil }
                return "\(label): \(String(reflecting: some.value))"
            }
            if value.displayStyle == .collection, value.children.isEmpty { return nil }
            return "\(label): \(String(reflecting: child.value))"
        }
        return "MQTTProperties(" + set.joined(separator: ", ") + ")"
    }

    /// The immutable box that holds a non-empty set.
    private final class Storage: Sendable {
        let values: Values
        let order: [UInt8]

        init(_ values: Values, order: [UInt8]) {
            self.values = values
            self.order = order
        }
    }

    /// Every field, stored (see the DESIGN note at the top); documented on the public accessors.
    struct Values: Sendable, Hashable {
        var payloadFormat: MQTTPayloadFormat?
        var messageExpiryInterval: UInt32?
        var contentType: String?
        var responseTopic: String?
        var correlationData: [UInt8]?
        var subscriptionIdentifiers: [UInt32] = []
        var topicAlias: UInt16?
        var willDelayInterval: UInt32?
        var sessionExpiryInterval: UInt32?
        var assignedClientIdentifier: String?
        var serverKeepAlive: UInt16?
        var authenticationMethod: String?
        var authenticationData: [UInt8]?
        var requestProblemInformation: Bool?
        var requestResponseInformation: Bool?
        var responseInformation: String?
        var serverReference: String?
        var reasonString: String?
        var receiveMaximum: UInt16?
        var topicAliasMaximum: UInt16?
        var maximumQoS: MQTTQoS?
        var retainAvailable: Bool?
        var maximumPacketSize: UInt32?
        var wildcardSubscriptionAvailable: Bool?
        var subscriptionIdentifiersAvailable: Bool?
        var sharedSubscriptionAvailable: Bool?
        var userProperties: [MQTTUserProperty] = []
    }
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
///
/// MQTT 5 defines 0 (``bytes``) and 1 (``utf8``). A struct rather than an enum so that a value
/// received from a peer that sends another one (libmosquitto 2.0 and the mosquitto broker pass
/// any byte through) is kept and can be shown, not dropped: compare with the static members, and
/// read ``rawValue`` for anything else.
public struct MQTTPayloadFormat: RawRepresentable, Sendable, Hashable {
    /// The byte on the wire.
    public var rawValue: UInt8

    /// The indicator with this byte; values other than 0 and 1 are kept as they are.
    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// Unspecified bytes (0).
    public static let bytes = MQTTPayloadFormat(rawValue: 0)
    /// UTF-8 encoded character data (1).
    public static let utf8 = MQTTPayloadFormat(rawValue: 1)
}
