import Mosquitto

// MARK: - PropertyOptions

/// The MQTT 5 properties given with `-D COMMAND IDENTIFIER VALUE` (and `-D COMMAND user-property
/// NAME VALUE`), one property set per packet they are sent on.
///
/// As in the mosquitto clients (checked against 2.0.11): command and identifier are matched
/// without regard to case; a property is checked against the command when it is read, with
/// mosquitto's error texts; giving a property twice for the same command is an error, except
/// `user-property`. A property for a packet the command never sends (`-D subscribe` with `pub`,
/// `-D will` without `--will-topic`, `-D unsubscribe`) is accepted and not used, as by mosquitto.
struct PropertyOptions {
    /// CONNECT.
    var connect = MQTTProperties()
    /// Every PUBLISH (`pub`, the request of `rr`).
    var publish = MQTTProperties()
    /// SUBSCRIBE (`sub`, the response subscription of `rr`).
    var subscribe = MQTTProperties()
    /// UNSUBSCRIBE (never sent by `mqtt`, accepted for compatibility).
    var unsubscribe = MQTTProperties()
    /// DISCONNECT.
    var disconnect = MQTTProperties()
    /// The will (with `--will-topic`).
    var will = MQTTProperties()
    /// Whether any `-D` was given.
    var isGiven = false
    /// `command/identifier` of the properties given once already, to refuse duplicates.
    private var seen: Set<String> = []

    /// Whether `-D connect session-expiry-interval` was given (it then competes with `-x`).
    var hasConnectSessionExpiry: Bool { seen.contains("connect/session-expiry-interval") }

    /// Reads one `-D`: `COMMAND IDENTIFIER VALUE`, or `COMMAND user-property NAME VALUE`.
    ///
    /// - Throws: ``CLIError`` (usage) with mosquitto's text: too few arguments, an unknown
    ///   command or identifier, a property not allowed (or not supported) for the command, a
    ///   value that is not a number or out of range, a duplicate property.
    mutating func parse(_ values: inout OptionValues) throws(CLIError) {
        let first = try values.take(3)
        let (commandName, identifierName) = (first[0].text, first[1].text)
        guard let command = PropertyCommand(commandName) else {
            throw CLIError.usage("Invalid command given in --property argument.", spaced: true)
        }
        guard let property = PropertyIdentifier.named(identifierName) else {
            throw CLIError.usage("Invalid property name given in --property argument.", spaced: true)
        }
        guard property.allowed.contains(command.packet) else {
            throw CLIError.usage("\(identifierName) property not allowed for \(commandName) in --property argument.", spaced: true)
        }
        var arguments = [first[2]]
        if property.kind == .stringPair {
            arguments += try values.take(1)
        }
        guard let target = command.target, !(command == .publish && property.name == "subscription-identifier") else {
            throw CLIError.usage("\(identifierName) property not supported for \(commandName) in --property argument.", spaced: true)
        }
        let value = try property.kind.parse(arguments, name: identifierName)
        try property.check(value, name: identifierName)
        if property.kind != .stringPair {
            guard seen.insert("\(command)/\(property.name)").inserted else {
                throw CLIError.usage(verbatim: "Error in \(command.packetName) properties: Duplicate property in property list")
            }
        }
        property.apply(&self[keyPath: target], value)
        isGiven = true
    }
}

// MARK: - PropertyCommand

/// The `COMMAND` of `-D`: the packets mosquitto's `-D` knows (`mosquitto_string_to_command`).
enum PropertyCommand: String {
    case connect, connack, publish, puback, pubrec, pubrel, pubcomp, subscribe, unsubscribe, disconnect, auth, will

    /// `COMMAND` as typed, without regard to case; `nil` for an unknown one.
    init?(_ text: String) {
        self.init(rawValue: text.lowercased())
    }

    /// The packet, for the allowed-properties table (acknowledgements have their own entries).
    var packet: PropertyIdentifier.Packet {
        switch self {
        case .connect: .connect
        case .connack: .connack
        case .publish: .publish
        case .puback, .pubrec, .pubrel, .pubcomp: .publishAcknowledgement
        case .subscribe: .subscribe
        case .unsubscribe: .unsubscribe
        case .disconnect: .disconnect
        case .auth: .auth
        case .will: .will
        }
    }

    /// Where the properties go; `nil` for the packets a client's `-D` cannot fill (mosquitto:
    /// "not supported").
    var target: WritableKeyPath<PropertyOptions, MQTTProperties>? {
        switch self {
        case .connect: \.connect
        case .publish: \.publish
        case .subscribe: \.subscribe
        case .unsubscribe: \.unsubscribe
        case .disconnect: \.disconnect
        case .will: \.will
        case .connack, .puback, .pubrec, .pubrel, .pubcomp, .auth: nil
        }
    }

    /// The name in mosquitto's `Error in PUBLISH properties: ...`.
    var packetName: String {
        self == .will ? "Will" : rawValue.uppercased()
    }
}

// MARK: - PropertyIdentifier

/// One MQTT 5 property as `-D` names it: its value type, the packets it may be sent on
/// (MQTT 5 §2.2.2.2, as `mosquitto_property_check_command`), and where it goes in
/// `MQTTProperties`.
struct PropertyIdentifier: Sendable {
    /// The packets of the allowed-properties table.
    enum Packet {
        case connect, connack, publish, publishAcknowledgement, subscribe, unsubscribe, disconnect, auth, will
    }

    /// How the value is written on the command line.
    enum Kind: Equatable {
        case byte, int16, int32, varint, binary, string, stringPair

        /// libmosquitto's number for the type (`MQTT_PROP_TYPE_*`), which mosquitto prints when
        /// it cannot add a property.
        var typeNumber: Int {
            switch self {
            case .byte: 1
            case .int16: 2
            case .int32: 3
            case .varint: 4
            case .binary: 5
            case .string: 6
            case .stringPair: 7
            }
        }

        /// The value of `arguments` (one, or two for a pair): numbers as text, binary data as
        /// bytes, strings only if they are MQTT UTF-8 (mosquitto_property_add_string refuses the
        /// rest: `Error adding property content-type 6`).
        func parse(_ arguments: [Argument], name: String) throws(CLIError) -> PropertyValue {
            let text = arguments[0].text
            if self == .string || self == .stringPair, !arguments.allSatisfy(\.isMQTTUTF8) {
                throw CLIError.usage(verbatim: "Error adding property \(name) \(typeNumber)")
            }
            switch self {
            case .byte, .int16, .int32, .varint:
                guard let number = ValueParser.integer(text) else {
                    throw CLIError.usage("Property value '\(text)' not a number.", spaced: true)
                }
                let limit: Int = switch self {
                case .byte: Int(UInt8.max)
                case .int16: Int(UInt16.max)
                default: Int(UInt32.max)
                }
                guard (0...limit).contains(number) else { throw PropertyValue.outOfRange(number, name: name) }
                return .number(UInt32(number))
            case .binary, .string:
                guard arguments[0].bytes.count <= Int(UInt16.max) else {
                    throw CLIError.usage("Property value too long for property \(name).", spaced: true)
                }
                return self == .binary ? .bytes(arguments[0].bytes) : .text(text)
            case .stringPair:
                guard arguments.allSatisfy({ $0.bytes.count <= Int(UInt16.max) }) else {
                    throw CLIError.usage("Property value too long for property \(name).", spaced: true)
                }
                return .pair(MQTTUserProperty(arguments[0].text, arguments[1].text))
            }
        }
    }

    /// mosquitto's name (`message-expiry-interval`).
    let name: String
    let kind: Kind
    let allowed: Set<Packet>
    /// The smallest and largest value MQTT 5 accepts, when narrower than the type's range.
    var valid: ClosedRange<UInt32>?
    /// Stores the value.
    let apply: @Sendable (inout MQTTProperties, PropertyValue) -> Void

    /// Refuses the values MQTT 5 forbids (a topic alias or receive maximum of 0, a flag other
    /// than 0 or 1), which mosquitto reports only as a protocol error of the whole list.
    func check(_ value: PropertyValue, name typed: String) throws(CLIError) {
        guard let valid, case .number(let number) = value, !valid.contains(number) else { return }
        throw PropertyValue.outOfRange(Int(number), name: typed)
    }

    /// The identifier named `text`, without regard to case.
    static func named(_ text: String) -> PropertyIdentifier? {
        let lowered = text.lowercased()
        return all.first { $0.name == lowered }
    }

    /// Every property libmosquitto 2.0 names, including those only a broker sends (so that
    /// `-D connect server-keep-alive 5` is "not allowed", as in mosquitto, not "invalid").
    static let all: [PropertyIdentifier] = {
        let message: Set<Packet> = [.publish, .will]
        let connectAndAck: Set<Packet> = [.connect, .connack]
        let flag: ClosedRange<UInt32> = 0...1
        return [
            PropertyIdentifier(name: "payload-format-indicator", kind: .byte, allowed: message, valid: flag) {
                $0.payloadFormat = MQTTPayloadFormat(rawValue: UInt8($1.number))
            },
            PropertyIdentifier(name: "message-expiry-interval", kind: .int32, allowed: message) { $0.messageExpiryInterval = $1.number },
            PropertyIdentifier(name: "content-type", kind: .string, allowed: message) { $0.contentType = $1.text },
            PropertyIdentifier(name: "response-topic", kind: .string, allowed: message) { $0.responseTopic = $1.text },
            PropertyIdentifier(name: "correlation-data", kind: .binary, allowed: message) { $0.correlationData = $1.bytes },
            PropertyIdentifier(name: "subscription-identifier", kind: .varint, allowed: [.publish, .subscribe], valid: 1...268_435_455) {
                $0.subscriptionIdentifiers.append($1.number)
            },
            PropertyIdentifier(name: "session-expiry-interval", kind: .int32, allowed: [.connect, .connack, .disconnect]) {
                $0.sessionExpiryInterval = $1.number
            },
            PropertyIdentifier(name: "assigned-client-identifier", kind: .string, allowed: [.connack]) { $0.assignedClientIdentifier = $1.text },
            PropertyIdentifier(name: "server-keep-alive", kind: .int16, allowed: [.connack]) { $0.serverKeepAlive = UInt16($1.number) },
            PropertyIdentifier(name: "authentication-method", kind: .string, allowed: [.connect, .connack, .auth]) { $0.authenticationMethod = $1.text },
            PropertyIdentifier(name: "authentication-data", kind: .binary, allowed: [.connect, .connack, .auth]) {
                $0.authenticationData = $1.bytes
            },
            PropertyIdentifier(name: "request-problem-information", kind: .byte, allowed: [.connect], valid: flag) {
                $0.requestProblemInformation = $1.number == 1
            },
            PropertyIdentifier(name: "will-delay-interval", kind: .int32, allowed: [.will]) { $0.willDelayInterval = $1.number },
            PropertyIdentifier(name: "request-response-information", kind: .byte, allowed: [.connect], valid: flag) {
                $0.requestResponseInformation = $1.number == 1
            },
            PropertyIdentifier(name: "response-information", kind: .string, allowed: [.connack]) { $0.responseInformation = $1.text },
            PropertyIdentifier(name: "server-reference", kind: .string, allowed: [.connack, .disconnect]) { $0.serverReference = $1.text },
            PropertyIdentifier(name: "reason-string", kind: .string, allowed: [.connack, .publishAcknowledgement, .disconnect, .auth]) {
                $0.reasonString = $1.text
            },
            PropertyIdentifier(name: "receive-maximum", kind: .int16, allowed: connectAndAck, valid: 1...65_535) { $0.receiveMaximum = UInt16($1.number) },
            PropertyIdentifier(name: "topic-alias-maximum", kind: .int16, allowed: connectAndAck) { $0.topicAliasMaximum = UInt16($1.number) },
            PropertyIdentifier(name: "topic-alias", kind: .int16, allowed: [.publish], valid: 1...65_535) { $0.topicAlias = UInt16($1.number) },
            PropertyIdentifier(name: "maximum-qos", kind: .byte, allowed: [.connack]) { $0.maximumQoS = MQTTQoS(rawValue: Int($1.number)) },
            PropertyIdentifier(name: "retain-available", kind: .byte, allowed: [.connack]) { $0.retainAvailable = $1.number == 1 },
            PropertyIdentifier(name: "user-property", kind: .stringPair, allowed: [.connect, .connack, .publish, .publishAcknowledgement, .subscribe, .unsubscribe, .disconnect, .auth, .will]) {
                if case .pair(let pair) = $1 { $0.userProperties.append(pair) }
            },
            PropertyIdentifier(name: "maximum-packet-size", kind: .int32, allowed: connectAndAck, valid: 1...UInt32.max) { $0.maximumPacketSize = $1.number },
            PropertyIdentifier(name: "wildcard-subscription-available", kind: .byte, allowed: [.connack]) { $0.wildcardSubscriptionAvailable = $1.number == 1 },
            PropertyIdentifier(name: "subscription-identifier-available", kind: .byte, allowed: [.connack]) {
                $0.subscriptionIdentifiersAvailable = $1.number == 1
            },
            PropertyIdentifier(name: "shared-subscription-available", kind: .byte, allowed: [.connack]) { $0.sharedSubscriptionAvailable = $1.number == 1 },
        ]
    }()
}

// MARK: - PropertyValue

/// A parsed `-D` value.
enum PropertyValue: Sendable {
    case number(UInt32)
    case text(String)
    /// Binary data, as given.
    case bytes([UInt8])
    case pair(MQTTUserProperty)

    /// The number (0 for other kinds; the table pairs each property with its kind).
    var number: UInt32 {
        if case .number(let number) = self { return number }
        return 0
    }

    /// The text ("" for other kinds).
    var text: String {
        if case .text(let text) = self { return text }
        return ""
    }

    /// The binary data (empty for other kinds).
    var bytes: [UInt8] {
        if case .bytes(let bytes) = self { return bytes }
        return []
    }

    /// mosquitto's range error.
    static func outOfRange(_ number: Int, name: String) -> CLIError {
        CLIError.usage("Property value (\(number)) out of range for property \(name).", spaced: true)
    }
}
