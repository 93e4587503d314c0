#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - JSONValue

/// A JSON document as cJSON 1.7 holds it: mosquitto_sub 2.0.11 builds its `%j` / `%J` output
/// with cJSON, so `mqtt` prints these values the way cJSON prints them (``append(to:pretty:)``)
/// and reads a `%J` payload the way cJSON parses it (``parse(_:)``), to give the same bytes.
///
/// Objects keep their members in order, duplicates included (cJSON does not merge them).
indirect enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// A number known to be an integer (a QoS, a length): printed in decimal.
    case integer(Int)
    /// A number read from a payload: printed as cJSON prints doubles.
    case number(Double)
    /// A string's bytes, before escaping.
    case string([UInt8])
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])
}

// MARK: - Printing

extension JSONValue {
    /// Appends the value as cJSON's `cJSON_PrintUnformatted` (`pretty == false`) or `cJSON_Print`
    /// (`pretty`: members one per line, indented with tabs, `"key":<tab>value`; arrays on one
    /// line, `[1, 2]`) does.
    ///
    /// Unlike cJSON, the output is always valid JSON: a string that is not valid UTF-8 has each
    /// malformed sequence replaced by U+FFFD, and a NUL is written as `\u0000` (cJSON writes the
    /// raw bytes, and stops a string at a NUL).
    func append(to bytes: inout [UInt8], pretty: Bool, depth: Int = 0) {
        switch self {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .integer(let value): bytes.append(contentsOf: String(value).utf8)
        case .number(let value): bytes.append(contentsOf: Self.cJSONNumber(value).utf8)
        case .string(let value): Self.appendString(value, to: &bytes)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { bytes.append(contentsOf: pretty ? ", ".utf8 : ",".utf8) }
                element.append(to: &bytes, pretty: pretty, depth: depth + 1)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            if pretty { bytes.append(UInt8(ascii: "\n")) }
            for (index, member) in members.enumerated() {
                if pretty { bytes.append(contentsOf: repeatElement(UInt8(ascii: "\t"), count: depth + 1)) }
                Self.appendString(Array(member.key.utf8), to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                if pretty { bytes.append(UInt8(ascii: "\t")) }
                member.value.append(to: &bytes, pretty: pretty, depth: depth + 1)
                if index < members.count - 1 { bytes.append(UInt8(ascii: ",")) }
                if pretty { bytes.append(UInt8(ascii: "\n")) }
            }
            if pretty { bytes.append(contentsOf: repeatElement(UInt8(ascii: "\t"), count: depth)) }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// A quoted string, escaped as cJSON escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
    /// other bytes below 0x20 as `\u00xx`; everything else, `/` and non-ASCII included, as is).
    static func appendString(_ value: [UInt8], to bytes: inout [UInt8]) {
        if JSONMessage.isValidUTF8(value) {
            JSONMessage.appendString(value, to: &bytes)
        } else {
            // Malformed sequences become U+FFFD (String(decoding:) repairs them).
            JSONMessage.appendString(String(decoding: value, as: UTF8.self).utf8, to: &bytes)
        }
    }

    /// cJSON's `print_number`: an integral value within `Int32` in decimal, else `%1.15g` if
    /// that reads back as the same double, else `%1.17g`; not-a-number and infinities as `null`.
    static func cJSONNumber(_ value: Double) -> String {
        if value.isNaN || value.isInfinite { return "null" }
        // cJSON's `valueint`, saturated at INT_MAX / INT_MIN.
        let integer: Int32 = value >= Double(Int32.max) ? .max : value <= Double(Int32.min) ? .min : Int32(value)
        // cJSON 1.7.15 (Debian 12) prints a negative zero as `-0` (checked against mosquitto_sub).
        if value == 0 && value.sign == .minus { return "-0" }
        if value == Double(integer) { return String(integer) }
        let short = format("%1.15g", value)
        let back = strtod(short, nil)
        // cJSON's compare_double.
        let largest = max(abs(back), abs(value))
        if abs(back - value) <= largest * Double.ulpOfOne { return short }
        return format("%1.17g", value)
    }

    private static func format(_ specification: String, _ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = withVaList([value]) { vsnprintf(&buffer, buffer.count, specification, $0) }
        return String(decoding: buffer.prefix(max(0, min(Int(count), buffer.count - 1))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

// MARK: - Parsing

extension JSONValue {
    /// The payload read as mosquitto_sub's `%J` reads it (cJSON's `cJSON_ParseWithOpts`, with the
    /// whole payload required): `nil` when it is not JSON to cJSON.
    ///
    /// cJSON's leniencies are kept, so that the same payloads are accepted: a UTF-8 byte order
    /// mark first, any byte up to 0x20 as white space, numbers as `strtod` reads the longest run
    /// of `0-9 + - e E .` (so `01` and `1.` are numbers), raw control characters and bytes that are
    /// not UTF-8 inside strings, and at most 1000 nested arrays and objects. A NUL anywhere makes
    /// the payload invalid (mosquitto's check of the parsed length).
    static func parse(_ payload: [UInt8]) -> JSONValue? {
        guard !payload.contains(0) else { return nil }
        var parser = Parser(bytes: payload)
        if payload.starts(with: [0xEF, 0xBB, 0xBF]) { parser.index = 3 }
        parser.skipWhitespace()
        guard let value = parser.value() else { return nil }
        parser.skipWhitespace()
        return parser.index == payload.count ? value : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var depth = 0

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte <= 0x20 { index += 1 }
        }

        private func starts(with literal: String) -> Bool {
            bytes[index...].starts(with: literal.utf8)
        }

        mutating func value() -> JSONValue? {
            guard let byte = current else { return nil }
            if starts(with: "null") { index += 4; return .null }
            if starts(with: "false") { index += 5; return .bool(false) }
            if starts(with: "true") { index += 4; return .bool(true) }
            switch byte {
            case UInt8(ascii: "\""): return string().map(JSONValue.string)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            case UInt8(ascii: "["): return array()
            case UInt8(ascii: "{"): return object()
            default: return nil
            }
        }

        private mutating func number() -> JSONValue? {
            var text: [CChar] = []
            var position = index
            // Debian's cJSON 1.7.15 reads the whole run (upstream 1.7.15 stopped at 63 bytes).
            while position < bytes.count, "0123456789+-eE.".utf8.contains(bytes[position]) {
                text.append(CChar(bitPattern: bytes[position]))
                position += 1
            }
            text.append(0)
            return text.withUnsafeBufferPointer { buffer -> JSONValue? in
                var end: UnsafeMutablePointer<CChar>?
                let value = strtod(buffer.baseAddress!, &end)
                guard let end else { return nil }
                let consumed = UnsafePointer(end) - buffer.baseAddress!
                guard consumed > 0 else { return nil }
                index += consumed
                return .number(value)
            }
        }

        private mutating func string() -> [UInt8]? {
            index += 1
            var output: [UInt8] = []
            while let byte = current, byte != UInt8(ascii: "\"") {
                index += 1
                guard byte == UInt8(ascii: "\\") else {
                    output.append(byte)
                    continue
                }
                guard let escaped = current else { return nil }
                index += 1
                switch escaped {
                case UInt8(ascii: "b"): output.append(0x08)
                case UInt8(ascii: "f"): output.append(0x0C)
                case UInt8(ascii: "n"): output.append(0x0A)
                case UInt8(ascii: "r"): output.append(0x0D)
                case UInt8(ascii: "t"): output.append(0x09)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escaped)
                case UInt8(ascii: "u"):
                    guard let scalar = unicodeEscape() else { return nil }
                    output.append(contentsOf: String(Character(scalar)).utf8)
                default: return nil
                }
            }
            guard current == UInt8(ascii: "\"") else { return nil }
            index += 1
            return output
        }

        /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
        private mutating func unicodeEscape() -> Unicode.Scalar? {
            guard let first = hex4() else { return nil }
            if (0xDC00...0xDFFF).contains(first) { return nil }
            guard (0xD800...0xDBFF).contains(first) else { return Unicode.Scalar(first) }
            guard starts(with: "\\u") else { return nil }
            index += 2
            guard let second = hex4(), (0xDC00...0xDFFF).contains(second) else { return nil }
            return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        }

        private mutating func hex4() -> UInt32? {
            guard index + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for byte in bytes[index..<(index + 4)] {
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            index += 4
            return value
        }

        private mutating func array() -> JSONValue? {
            guard depth < 1000 else { return nil }
            depth += 1
            defer { depth -= 1 }
            index += 1
            skipWhitespace()
            var elements: [JSONValue] = []
            if current == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                guard let element = value() else { return nil }
                elements.append(element)
                skipWhitespace()
                guard current == UInt8(ascii: ",") else { break }
                index += 1
            }
            guard current == UInt8(ascii: "]") else { return nil }
            index += 1
            return .array(elements)
        }

        private mutating func object() -> JSONValue? {
            guard depth < 1000 else { return nil }
            depth += 1
            defer { depth -= 1 }
            index += 1
            skipWhitespace()
            var members: [(key: String, value: JSONValue)] = []
            if current == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\""), let key = string() else { return nil }
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { return nil }
                index += 1
                skipWhitespace()
                guard let member = value() else { return nil }
                members.append((String(decoding: key, as: UTF8.self), member))
                skipWhitespace()
                guard current == UInt8(ascii: ",") else { break }
                index += 1
            }
            guard current == UInt8(ascii: "}") else { return nil }
            index += 1
            return .object(members)
        }
    }
}
