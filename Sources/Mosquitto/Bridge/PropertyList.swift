internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - PropertyPacket

/// The packets whose properties we build (and check against what MQTT 5 allows on each).
enum PropertyPacket: Sendable {
    case connect, will, publish, subscribe, unsubscribe, disconnect

    /// libmosquitto's `CMD_*` value (`CMD_WILL` for the will).
    var command: Int32 {
        switch self {
        case .connect: Int32(CMD_CONNECT)
        case .will: Int32(CMD_WILL)
        case .publish: Int32(CMD_PUBLISH)
        case .subscribe: Int32(CMD_SUBSCRIBE)
        case .unsubscribe: Int32(CMD_UNSUBSCRIBE)
        case .disconnect: Int32(CMD_DISCONNECT)
        }
    }

    /// The name in error messages.
    var name: String {
        switch self {
        case .connect: "CONNECT"
        case .will: "the will"
        case .publish: "PUBLISH"
        case .subscribe: "SUBSCRIBE"
        case .unsubscribe: "UNSUBSCRIBE"
        case .disconnect: "DISCONNECT"
        }
    }
}

// MARK: - PropertyList

/// A libmosquitto property list built from ``MQTTProperties``, freed when it goes out of scope.
///
/// This file is the one place where ``MQTTProperties`` meets `mosquitto_property`: building
/// lists to send and reading lists received (which are only valid during the callback).
struct PropertyList: ~Copyable {
    /// The list, or `nil` when there are no properties.
    private(set) var pointer: OpaquePointer?

    /// An empty list.
    init() {
        pointer = nil
    }

    deinit {
        var list = pointer
        if list != nil {
            mosquitto_property_free_all(&list)
        }
    }

    /// Hands the list to libmosquitto (for `mosquitto_will_set_v5`, which frees it on success).
    consuming func release() -> OpaquePointer? {
        let list = pointer
        pointer = nil
        return list
    }

    /// Builds the list for `packet`, checking that every property is allowed there.
    ///
    /// - Throws: ``MQTTError/Code/propertyNotAllowed`` naming the property, or
    ///   ``MQTTError/Code/invalidArgument`` for a value libmosquitto rejects.
    ///
    /// `checkingAllowed: false` skips the per-packet check (for tests of the conversion itself).
    init(_ properties: MQTTProperties, for packet: PropertyPacket, operation: MQTTError.Operation, checkingAllowed: Bool = true) throws(MQTTError) {
        pointer = nil
        var adder = Adder()
        adder.add(properties)
        // Free what was built even if a later step fails.
        pointer = adder.list
        if let failure = adder.failure {
            throw MQTTError(MosquittoStatus(failure.rc), operation: operation, detail: "property \(Self.name(failure.identifier))")
        }
        guard checkingAllowed else { return }
        var item = pointer
        while let current = item {
            let identifier = mosquitto_property_identifier(current)
            if mosquitto_property_check_command(packet.command, identifier) != MOSQ_ERR_SUCCESS.rawValue {
                throw MQTTError(
                    .propertyNotAllowed, operation: operation,
                    detail: "\(Self.name(identifier)) is not allowed on \(packet.name)"
                )
            }
            item = mosquitto_property_next(current)
        }
        let rc = mosquitto_property_check_all(packet.command, pointer)
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            throw MQTTError(MosquittoStatus(rc), operation: operation, detail: "properties for \(packet.name)")
        }
    }

    // MARK: Names

    static func name(_ identifier: Int32) -> String {
        guard let name = mosquitto_property_identifier_to_string(identifier) else { return "property \(identifier)" }
        return String(cString: name)
    }
}

// MARK: - Building

/// Appends properties to a list, remembering the first failure.
private struct Adder {
    var list: OpaquePointer?
    var failure: (rc: Int32, identifier: Int32)?

    /// Adds every set property, in the order they were set (``MQTTProperties/wireOrder``), or in
    /// the MQTT 5 table's order for a set copied from a received list (which records none; a set
    /// built through the accessors records every property it holds).
    mutating func add(_ properties: MQTTProperties) {
        guard !properties.isEmpty else { return }
        let p = properties.values
        var userProperties = p.userProperties[...]
        var subscriptionIdentifiers = p.subscriptionIdentifiers[...]
        let order = properties.wireOrder.isEmpty ? Self.tableOrder(of: p) : properties.wireOrder
        for identifier in order {
            add(identifier, p, &userProperties, &subscriptionIdentifiers)
        }
    }

    /// The MQTT 5 table's order, with one entry per user property and subscription identifier.
    private static func tableOrder(of p: MQTTProperties.Values) -> [UInt8] {
        let table: [UInt8] = [
            0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x18, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x19, 0x1A, 0x1C, 0x1F,
            0x21, 0x22, 0x24, 0x25, 0x27, 0x28, 0x29, 0x2A, 0x26,
        ]
        return table.flatMap { identifier -> [UInt8] in
            switch identifier {
            case 0x0B: Array(repeating: identifier, count: p.subscriptionIdentifiers.count)
            case 0x26: Array(repeating: identifier, count: p.userProperties.count)
            default: [identifier]
            }
        }
    }

    /// Adds the property `identifier` of `p` if it is set; a user property or subscription
    /// identifier is the next one of its list.
    private mutating func add(
        _ identifier: UInt8, _ p: MQTTProperties.Values,
        _ userProperties: inout ArraySlice<MQTTUserProperty>, _ subscriptionIdentifiers: inout ArraySlice<UInt32>
    ) {
        switch identifier {
        case 0x01: byte(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, p.payloadFormat?.rawValue)
        case 0x02: int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, p.messageExpiryInterval)
        case 0x03: string(MQTT_PROP_CONTENT_TYPE, p.contentType)
        case 0x08: string(MQTT_PROP_RESPONSE_TOPIC, p.responseTopic)
        case 0x09: binary(MQTT_PROP_CORRELATION_DATA, p.correlationData)
        case 0x0B:
            if let value = subscriptionIdentifiers.popFirst() {
                check(MQTT_PROP_SUBSCRIPTION_IDENTIFIER) { mosquitto_property_add_varint(&$0, $1, value) }
            }
        case 0x11: int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL, p.sessionExpiryInterval)
        case 0x12: string(MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, p.assignedClientIdentifier)
        case 0x13: int16(MQTT_PROP_SERVER_KEEP_ALIVE, p.serverKeepAlive)
        case 0x15: string(MQTT_PROP_AUTHENTICATION_METHOD, p.authenticationMethod)
        case 0x16: binary(MQTT_PROP_AUTHENTICATION_DATA, p.authenticationData)
        case 0x17: byte(MQTT_PROP_REQUEST_PROBLEM_INFORMATION, p.requestProblemInformation.map { $0 ? 1 : 0 })
        case 0x18: int32(MQTT_PROP_WILL_DELAY_INTERVAL, p.willDelayInterval)
        case 0x19: byte(MQTT_PROP_REQUEST_RESPONSE_INFORMATION, p.requestResponseInformation.map { $0 ? 1 : 0 })
        case 0x1A: string(MQTT_PROP_RESPONSE_INFORMATION, p.responseInformation)
        case 0x1C: string(MQTT_PROP_SERVER_REFERENCE, p.serverReference)
        case 0x1F: string(MQTT_PROP_REASON_STRING, p.reasonString)
        case 0x21: int16(MQTT_PROP_RECEIVE_MAXIMUM, p.receiveMaximum)
        case 0x22: int16(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, p.topicAliasMaximum)
        case 0x23: int16(MQTT_PROP_TOPIC_ALIAS, p.topicAlias)
        case 0x24: byte(MQTT_PROP_MAXIMUM_QOS, p.maximumQoS.map { UInt8($0.rawValue) })
        case 0x25: byte(MQTT_PROP_RETAIN_AVAILABLE, p.retainAvailable.map { $0 ? 1 : 0 })
        case 0x26:
            if let pair = userProperties.popFirst() {
                check(MQTT_PROP_USER_PROPERTY) { mosquitto_property_add_string_pair(&$0, $1, pair.name, pair.value) }
            }
        case 0x27: int32(MQTT_PROP_MAXIMUM_PACKET_SIZE, p.maximumPacketSize)
        case 0x28: byte(MQTT_PROP_WILDCARD_SUB_AVAILABLE, p.wildcardSubscriptionAvailable.map { $0 ? 1 : 0 })
        case 0x29: byte(MQTT_PROP_SUBSCRIPTION_ID_AVAILABLE, p.subscriptionIdentifiersAvailable.map { $0 ? 1 : 0 })
        case 0x2A: byte(MQTT_PROP_SHARED_SUB_AVAILABLE, p.sharedSubscriptionAvailable.map { $0 ? 1 : 0 })
        default: break
        }
    }

    private mutating func check(_ property: mqtt5_property, _ add: (inout OpaquePointer?, Int32) -> Int32) {
        guard failure == nil else { return }
        let identifier = Int32(property.rawValue)
        let rc = add(&list, identifier)
        if rc != MOSQ_ERR_SUCCESS.rawValue { failure = (rc, identifier) }
    }

    private mutating func byte(_ property: mqtt5_property, _ value: UInt8?) {
        guard let value else { return }
        check(property) { mosquitto_property_add_byte(&$0, $1, value) }
    }

    private mutating func int16(_ property: mqtt5_property, _ value: UInt16?) {
        guard let value else { return }
        check(property) { mosquitto_property_add_int16(&$0, $1, value) }
    }

    private mutating func int32(_ property: mqtt5_property, _ value: UInt32?) {
        guard let value else { return }
        check(property) { mosquitto_property_add_int32(&$0, $1, value) }
    }

    private mutating func string(_ property: mqtt5_property, _ value: String?) {
        guard let value else { return }
        check(property) { mosquitto_property_add_string(&$0, $1, value) }
    }

    private mutating func binary(_ property: mqtt5_property, _ value: [UInt8]?) {
        guard let value else { return }
        guard value.count <= Int(UInt16.max) else {
            if failure == nil { failure = (Int32(MOSQ_ERR_INVAL.rawValue), Int32(property.rawValue)) }
            return
        }
        check(property) { list, identifier in
            value.withUnsafeBytes { mosquitto_property_add_binary(&list, identifier, $0.baseAddress, UInt16($0.count)) }
        }
    }
}

// MARK: - Reading

extension MQTTProperties {
    /// Copies a received property list (valid only during the callback) into Swift values.
    init(copying list: OpaquePointer?) {
        guard list != nil else {
            self.init()
            return
        }
        var values = Values()
        var item = list
        while let current = item {
            values.read(current)
            item = mosquitto_property_next(current)
        }
        self.init(values)
    }
}

extension MQTTProperties.Values {

    fileprivate mutating func read(_ property: OpaquePointer) {
        let identifier = mosquitto_property_identifier(property)
        switch mqtt5_property(rawValue: UInt32(identifier)) {
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: payloadFormat = Self.byte(property).map(MQTTPayloadFormat.init(rawValue:))
        case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: messageExpiryInterval = Self.int32(property)
        case MQTT_PROP_CONTENT_TYPE: contentType = Self.string(property)
        case MQTT_PROP_RESPONSE_TOPIC: responseTopic = Self.string(property)
        case MQTT_PROP_CORRELATION_DATA: correlationData = Self.binary(property)
        case MQTT_PROP_SUBSCRIPTION_IDENTIFIER: Self.varint(property).map { subscriptionIdentifiers.append($0) }
        case MQTT_PROP_TOPIC_ALIAS: topicAlias = Self.int16(property)
        case MQTT_PROP_WILL_DELAY_INTERVAL: willDelayInterval = Self.int32(property)
        case MQTT_PROP_SESSION_EXPIRY_INTERVAL: sessionExpiryInterval = Self.int32(property)
        case MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER: assignedClientIdentifier = Self.string(property)
        case MQTT_PROP_SERVER_KEEP_ALIVE: serverKeepAlive = Self.int16(property)
        case MQTT_PROP_AUTHENTICATION_METHOD: authenticationMethod = Self.string(property)
        case MQTT_PROP_AUTHENTICATION_DATA: authenticationData = Self.binary(property)
        case MQTT_PROP_REQUEST_PROBLEM_INFORMATION: requestProblemInformation = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_REQUEST_RESPONSE_INFORMATION: requestResponseInformation = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_RESPONSE_INFORMATION: responseInformation = Self.string(property)
        case MQTT_PROP_SERVER_REFERENCE: serverReference = Self.string(property)
        case MQTT_PROP_REASON_STRING: reasonString = Self.string(property)
        case MQTT_PROP_RECEIVE_MAXIMUM: receiveMaximum = Self.int16(property)
        case MQTT_PROP_TOPIC_ALIAS_MAXIMUM: topicAliasMaximum = Self.int16(property)
        case MQTT_PROP_MAXIMUM_QOS: maximumQoS = Self.byte(property).flatMap { MQTTQoS(rawValue: Int($0)) }
        case MQTT_PROP_RETAIN_AVAILABLE: retainAvailable = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_MAXIMUM_PACKET_SIZE: maximumPacketSize = Self.int32(property)
        case MQTT_PROP_WILDCARD_SUB_AVAILABLE: wildcardSubscriptionAvailable = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_SUBSCRIPTION_ID_AVAILABLE: subscriptionIdentifiersAvailable = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_SHARED_SUB_AVAILABLE: sharedSubscriptionAvailable = Self.byte(property).map { $0 != 0 }
        case MQTT_PROP_USER_PROPERTY:
            var name: UnsafeMutablePointer<CChar>?
            var value: UnsafeMutablePointer<CChar>?
            if mosquitto_property_read_string_pair(property, identifier, &name, &value, false) != nil, let name, let value {
                userProperties.append(MQTTUserProperty(String(cString: name), String(cString: value)))
            }
            free(name)
            free(value)
        default:
            break
        }
    }

    // Each reader reads `property` itself (not a search through the list): `skip_first` false on
    // a single item returns that item when its identifier matches.
    private static func byte(_ property: OpaquePointer) -> UInt8? {
        var value: UInt8 = 0
        return mosquitto_property_read_byte(property, mosquitto_property_identifier(property), &value, false) == nil ? nil : value
    }

    private static func int16(_ property: OpaquePointer) -> UInt16? {
        var value: UInt16 = 0
        return mosquitto_property_read_int16(property, mosquitto_property_identifier(property), &value, false) == nil ? nil : value
    }

    private static func int32(_ property: OpaquePointer) -> UInt32? {
        var value: UInt32 = 0
        return mosquitto_property_read_int32(property, mosquitto_property_identifier(property), &value, false) == nil ? nil : value
    }

    private static func varint(_ property: OpaquePointer) -> UInt32? {
        var value: UInt32 = 0
        return mosquitto_property_read_varint(property, mosquitto_property_identifier(property), &value, false) == nil ? nil : value
    }

    private static func string(_ property: OpaquePointer) -> String? {
        var value: UnsafeMutablePointer<CChar>?
        guard mosquitto_property_read_string(property, mosquitto_property_identifier(property), &value, false) != nil, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }

    private static func binary(_ property: OpaquePointer) -> [UInt8]? {
        var value: UnsafeMutableRawPointer?
        var length: UInt16 = 0
        guard mosquitto_property_read_binary(property, mosquitto_property_identifier(property), &value, &length, false) != nil else { return nil }
        defer { free(value) }
        guard let value, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
    }
}
