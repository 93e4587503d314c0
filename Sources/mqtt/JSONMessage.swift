import Mosquitto

// MARK: - JSONMessage

/// `mqtt sub --json` / `mqtt rr --json`: one JSON object per message, on one line.
///
/// ```json
/// {"topic":"a/b","qos":1,"retain":false,"mid":7,"payloadlen":5,"payload":"hello"}
/// {"topic":"a/b","qos":0,"retain":true,"payloadlen":3,"payload":"AP8A","payloadEncoding":"base64"}
/// {"topic":"a/b","qos":1,"retain":false,"mid":8,"payloadlen":2,"payload":"{}","properties":{
///   "contentType":"application/json","userProperties":[["site","berlin"],["site","paris"]]}}
/// ```
/// (the last object is one line in the output).
///
/// - `topic` (string), `qos` (0, 1, 2), `retain` (boolean), `payloadlen` (bytes); `mid` (the
///   packet identifier) only for QoS 1 and 2, as in mosquitto_sub's `%j`.
/// - `payload`: the payload as a string when it is valid UTF-8 (an empty payload is `""`);
///   otherwise its base64 (RFC 4648, with padding) and `"payloadEncoding":"base64"`. The marker
///   is absent for UTF-8 text, so `payloadEncoding` tells the two apart.
/// - `properties`: present only when the message carries MQTT 5 properties; only those present
///   appear: `payloadFormatIndicator` (the byte received: 0, 1, or any other value a peer
///   sent), `messageExpiryInterval` (seconds),
///   `contentType`, `responseTopic`, `correlationData` (UTF-8 string, or base64 with
///   `"correlationDataEncoding":"base64"`), `subscriptionIdentifiers` (array of numbers),
///   `topicAlias`, `userProperties` (array of `[name, value]` pairs, in the order received,
///   duplicates kept; mosquitto's `%j` makes them an object, which loses both).
/// - Strings are escaped as JSON requires: `"`, `\` and every control character below U+0020
///   (`\n`, `\t`, ... or `\u00XX`); other characters, including non-ASCII, are written as UTF-8.
enum JSONMessage {
    /// Appends `message` as one JSON object (without a newline) to `bytes`.
    static func append(_ message: MQTTMessage, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: #"{"topic":"#.utf8)
        appendString(message.topic.utf8, to: &bytes)
        bytes.append(contentsOf: #","qos":"#.utf8)
        appendNumber(message.qos.rawValue, to: &bytes)
        bytes.append(contentsOf: message.retain ? #","retain":true"#.utf8 : #","retain":false"#.utf8)
        if message.qos != .atMostOnce {
            bytes.append(contentsOf: #","mid":"#.utf8)
            appendNumber(message.messageID, to: &bytes)
        }
        bytes.append(contentsOf: #","payloadlen":"#.utf8)
        appendNumber(message.payload.count, to: &bytes)
        bytes.append(contentsOf: #","payload":"#.utf8)
        if !appendBytes(message.payload, to: &bytes) {
            bytes.append(contentsOf: #","payloadEncoding":"base64""#.utf8)
        }
        if !message.properties.isEmpty {
            bytes.append(contentsOf: #","properties":"#.utf8)
            appendProperties(message.properties, to: &bytes)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// Appends `message` as ``append(_:to:)`` does, then, with `pretty` (`--pretty`), reprints
    /// it the way mosquitto's `--pretty` prints JSON (cJSON's `cJSON_Print`, see ``JSONValue``).
    static func append(_ message: MQTTMessage, to bytes: inout [UInt8], pretty: Bool) {
        guard pretty else {
            append(message, to: &bytes)
            return
        }
        var compact: [UInt8] = []
        append(message, to: &compact)
        // Always JSON (the strings are valid UTF-8): reparsed only to be laid out.
        if let document = JSONValue.parse(compact) {
            document.append(to: &bytes, pretty: true)
        } else {
            bytes.append(contentsOf: compact)
        }
    }

    // MARK: mosquitto's %j and %J

    /// mosquitto_sub 2.0.11's `%j` (`parsePayload == false`: the payload as a JSON string) or
    /// `%J` (the payload parsed as JSON): `tst`, `topic`, `qos`, `retain` (0 or 1), `payloadlen`,
    /// `mid` (QoS 1 and 2 only), `properties` (only when the message carries MQTT 5 properties),
    /// `payload` (`null` when empty).
    ///
    /// `properties` holds, under libmosquitto's names, `subscription-identifier` (one key per
    /// identifier), `payload-format-indicator`, `content-type`, `response-topic`,
    /// `correlation-data`, `user-properties` (an object, duplicate names kept as cJSON prints
    /// them), `message-expiry-interval` and `topic-alias`. mosquitto prints them in the order
    /// of the PUBLISH packet; the library does not keep that order, so they come in the order
    /// the mosquitto broker sends the properties of a message published with `mqtt pub` or the
    /// library (subscription identifiers first, expiry interval last).
    ///
    /// - Parameter time: The `tst` value (see ``FormatString``).
    /// - Returns: `nil` for `%J` when the payload is not JSON (mosquitto then prints nothing for
    ///   the conversion and an error line).
    static func mosquittoDocument(_ message: MQTTMessage, parsePayload: Bool, time: String) -> JSONValue? {
        var members: [(key: String, value: JSONValue)] = [
            ("tst", .string(Array(time.utf8))),
            ("topic", .string(Array(message.topic.utf8))),
            ("qos", .integer(message.qos.rawValue)),
            ("retain", .integer(message.retain ? 1 : 0)),
            ("payloadlen", .integer(message.payload.count)),
        ]
        if message.qos != .atMostOnce { members.append(("mid", .integer(Int(message.messageID)))) }
        if !message.properties.isEmpty { members.append(("properties", mosquittoProperties(message.properties))) }
        let payload: JSONValue
        if message.payload.isEmpty {
            payload = .null
        } else if parsePayload {
            guard let parsed = JSONValue.parse(message.payload) else { return nil }
            payload = parsed
        } else {
            payload = .string(message.payload)
        }
        members.append(("payload", payload))
        return .object(members)
    }

    /// The `properties` object of ``mosquittoDocument(_:parsePayload:time:)``.
    private static func mosquittoProperties(_ properties: MQTTProperties) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = []
        for identifier in properties.subscriptionIdentifiers {
            members.append(("subscription-identifier", .integer(Int(identifier))))
        }
        if let format = properties.payloadFormat { members.append(("payload-format-indicator", .integer(Int(format.rawValue)))) }
        if let contentType = properties.contentType { members.append(("content-type", .string(Array(contentType.utf8)))) }
        if let responseTopic = properties.responseTopic { members.append(("response-topic", .string(Array(responseTopic.utf8)))) }
        if let correlationData = properties.correlationData { members.append(("correlation-data", .string(correlationData))) }
        if !properties.userProperties.isEmpty {
            members.append(("user-properties", .object(properties.userProperties.map { ($0.name, .string(Array($0.value.utf8))) })))
        }
        if let interval = properties.messageExpiryInterval { members.append(("message-expiry-interval", .integer(Int(interval)))) }
        if let alias = properties.topicAlias { members.append(("topic-alias", .integer(Int(alias)))) }
        return .object(members)
    }

    // MARK: Properties

    /// The PUBLISH properties a received message can carry.
    private static func appendProperties(_ properties: MQTTProperties, to bytes: inout [UInt8]) {
        var first = true
        func key(_ name: String) {
            bytes.append(UInt8(ascii: first ? "{" : ","))
            first = false
            appendString(name.utf8, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
        }
        if let format = properties.payloadFormat {
            key("payloadFormatIndicator")
            appendNumber(format.rawValue, to: &bytes)
        }
        if let interval = properties.messageExpiryInterval {
            key("messageExpiryInterval")
            appendNumber(interval, to: &bytes)
        }
        if let contentType = properties.contentType {
            key("contentType")
            appendString(contentType.utf8, to: &bytes)
        }
        if let responseTopic = properties.responseTopic {
            key("responseTopic")
            appendString(responseTopic.utf8, to: &bytes)
        }
        if let correlationData = properties.correlationData {
            key("correlationData")
            if !appendBytes(correlationData, to: &bytes) {
                key("correlationDataEncoding")
                appendString("base64".utf8, to: &bytes)
            }
        }
        if !properties.subscriptionIdentifiers.isEmpty {
            key("subscriptionIdentifiers")
            bytes.append(UInt8(ascii: "["))
            for (index, identifier) in properties.subscriptionIdentifiers.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                appendNumber(identifier, to: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        }
        if let alias = properties.topicAlias {
            key("topicAlias")
            appendNumber(alias, to: &bytes)
        }
        if !properties.userProperties.isEmpty {
            key("userProperties")
            bytes.append(UInt8(ascii: "["))
            for (index, property) in properties.userProperties.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes.append(UInt8(ascii: "["))
                appendString(property.name.utf8, to: &bytes)
                bytes.append(UInt8(ascii: ","))
                appendString(property.value.utf8, to: &bytes)
                bytes.append(UInt8(ascii: "]"))
            }
            bytes.append(UInt8(ascii: "]"))
        }
        // Properties a PUBLISH cannot carry are not printed; `isEmpty` was false, so close what
        // was opened, or print an empty object.
        bytes.append(contentsOf: first ? "{}".utf8 : "}".utf8)
    }

    // MARK: Values

    /// Appends `value` as a JSON string when it is valid UTF-8 (returns `true`), else as a
    /// base64 string (returns `false`).
    static func appendBytes(_ value: [UInt8], to bytes: inout [UInt8]) -> Bool {
        if isValidUTF8(value) {
            appendString(value, to: &bytes)
            return true
        }
        bytes.append(UInt8(ascii: "\""))
        Base64.append(value, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        return false
    }

    /// Appends the UTF-8 text `text` as a quoted, escaped JSON string.
    static func appendString(_ text: some Sequence<UInt8>, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): bytes.append(contentsOf: #"\\"#.utf8)
            case 0x0A: bytes.append(contentsOf: #"\n"#.utf8)
            case 0x0D: bytes.append(contentsOf: #"\r"#.utf8)
            case 0x09: bytes.append(contentsOf: #"\t"#.utf8)
            case 0x08: bytes.append(contentsOf: #"\b"#.utf8)
            case 0x0C: bytes.append(contentsOf: #"\f"#.utf8)
            case 0..<0x20:
                bytes.append(contentsOf: #"\u00"#.utf8)
                bytes.append(hexDigit(byte >> 4))
                bytes.append(hexDigit(byte & 0x0F))
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func appendNumber(_ value: some BinaryInteger, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: String(value).utf8)
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or values above
    /// U+10FFFF), as JSON text must be.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        // The common case, ASCII, without decoding.
        if bytes.allSatisfy({ $0 < 0x80 }) { return true }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

// MARK: - Base64

/// RFC 4648 base64 with padding (the CLI does not import Foundation).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Appends the base64 of `value` to `bytes`.
    static func append(_ value: [UInt8], to bytes: inout [UInt8]) {
        var index = 0
        while index + 3 <= value.count {
            let group = UInt32(value[index]) << 16 | UInt32(value[index + 1]) << 8 | UInt32(value[index + 2])
            for shift in [18, 12, 6, 0] as [UInt32] {
                bytes.append(alphabet[Int(group >> shift & 0x3F)])
            }
            index += 3
        }
        let rest = value.count - index
        guard rest > 0 else { return }
        let group = UInt32(value[index]) << 16 | (rest == 2 ? UInt32(value[index + 1]) << 8 : 0)
        bytes.append(alphabet[Int(group >> 18 & 0x3F)])
        bytes.append(alphabet[Int(group >> 12 & 0x3F)])
        bytes.append(rest == 2 ? alphabet[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
        bytes.append(UInt8(ascii: "="))
    }
}
