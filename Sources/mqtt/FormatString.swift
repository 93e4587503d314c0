import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - FormatString

/// mosquitto_sub's `-F` output format, compiled once and applied to every message.
///
/// Checked byte for byte against mosquitto_sub 2.0.11:
/// - `%t` topic, `%p` payload, `%x`/`%X` payload in hex, `%l` payload length, `%q` QoS, `%r`
///   retain flag, `%m` message ID, `%%`; the MQTT 5 properties `%A` topic alias, `%C` content
///   type, `%D` correlation data, `%E` message expiry interval, `%F` payload format indicator,
///   `%P` user properties (`name:value`, space separated), `%R` response topic, `%S` (first)
///   subscription identifier; an absent property prints nothing (or the field width in blanks).
/// - `%I` ISO-8601 local time, `%U` Unix time with nanoseconds, `@X` strftime's `%X`, `@N`
///   nanoseconds, `@@` a literal `@`.
/// - Flags, width and precision as in mosquitto: `%-10t`, `%05l`, `%10.5C`, including its quirks
///   (a width truncates `%p`; `%-p` without a width pads with as many blanks as the payload is long).
/// - Escapes `\\`, `\0`, `\a`, `\e`, `\n`, `\r`, `\t`, `\v`.
/// - A malformed format is a usage error with mosquitto's text (`Invalid format specifier 'z'.`).
/// - `%j` and `%J`: the message as one JSON object, as mosquitto_sub prints it (see
///   ``JSONMessage/mosquittoDocument(_:parsePayload:time:)``); `tst` is the local time with
///   microseconds, written as mosquitto writes it (`2026-12-04T21:48:00.123456Z+0100`: a `Z`, then
///   the offset). `--pretty` lays it out over several lines. A `%J` payload that is not JSON
///   prints nothing for the conversion, and mosquitto's error line on stderr.
struct FormatString: Sendable {
    /// A piece of the format.
    private enum Token: Sendable {
        /// Bytes printed as they are.
        case literal([UInt8])
        /// A `%` conversion.
        case field(Field)
        /// `@X`: strftime's `%X` (a byte after `@`).
        case time(UInt8)
        /// `@N`: nanoseconds of the current second, 9 digits.
        case nanoseconds
    }

    /// A `%` conversion with its flags.
    private struct Field: Sendable {
        var specifier: UInt8
        /// `-`: align left.
        var leftAligned = false
        /// `0`: pad numbers with zeros.
        var zeroPadded = false
        var width = 0
        /// `.N`; `nil` when not given.
        var precision: Int?
    }

    private let tokens: [Token]

    /// The specifiers mosquitto accepts after `%`.
    private static let specifiers = Set("%ACDEFIlmPpqRSrtjJUxX".utf8)

    /// Compiles `text`.
    ///
    /// - Throws: ``CLIError`` (usage) with mosquitto's texts for an incomplete or invalid
    ///   specifier or escape.
    init(_ text: String) throws(CLIError) {
        let bytes = Array(text.utf8)
        var tokens: [Token] = []
        var literal: [UInt8] = []
        var index = 0
        /// The byte after `index`, or the "incomplete" error.
        func next(_ what: String) throws(CLIError) -> UInt8 {
            index += 1
            guard index < bytes.count else { throw CLIError.usage("Incomplete \(what) specifier.") }
            return bytes[index]
        }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "%"):
                var field = Field(specifier: 0)
                var current = try next("format")
                if current == UInt8(ascii: "-") || current == UInt8(ascii: "0") {
                    field.leftAligned = current == UInt8(ascii: "-")
                    field.zeroPadded = current == UInt8(ascii: "0")
                    current = try next("format")
                    // `%-05l`: mosquitto reads the 0 as padding and as the first width digit.
                    if field.leftAligned && current == UInt8(ascii: "0") { field.zeroPadded = true }
                }
                while let digit = Self.digit(current) {
                    field.width = min(field.width * 10 + digit, 1 << 20)
                    current = try next("format")
                }
                if current == UInt8(ascii: ".") {
                    var precision = 0
                    current = try next("format")
                    while let digit = Self.digit(current) {
                        precision = min(precision * 10 + digit, 1 << 20)
                        current = try next("format")
                    }
                    field.precision = precision
                }
                guard Self.specifiers.contains(current) else {
                    throw CLIError.usage("Invalid format specifier '\(Self.character(at: index, in: bytes))'.")
                }
                field.specifier = current
                Self.flush(&literal, into: &tokens)
                tokens.append(.field(field))
            case UInt8(ascii: "@"):
                let current = try next("format")
                if current == UInt8(ascii: "@") {
                    literal.append(current)
                } else {
                    Self.flush(&literal, into: &tokens)
                    tokens.append(current == UInt8(ascii: "N") ? .nanoseconds : .time(current))
                }
            case UInt8(ascii: "\\"):
                let current = try next("escape")
                guard let escaped = Self.escapes[current] else {
                    throw CLIError.usage("Invalid escape specifier '\(Self.character(at: index, in: bytes))'.")
                }
                literal.append(escaped)
            default:
                literal.append(byte)
            }
            index += 1
        }
        Self.flush(&literal, into: &tokens)
        self.tokens = tokens
    }

    /// The bytes for `message` (without the end of line that `-N` controls).
    ///
    /// - Parameters:
    ///   - pretty: `--pretty`: `%j` and `%J` over several lines.
    ///   - warning: Set to mosquitto's error line when a `%J` payload is not JSON.
    func render(_ message: MQTTMessage, pretty: Bool = false, warning: inout String?) -> [UInt8] {
        var output: [UInt8] = []
        var clock = Clock()
        for token in tokens {
            switch token {
            case .literal(let bytes): output.append(contentsOf: bytes)
            case .field(let field) where field.specifier == UInt8(ascii: "j") || field.specifier == UInt8(ascii: "J"):
                let time = Self.jsonTime(&clock)
                if let document = JSONMessage.mosquittoDocument(message, parsePayload: field.specifier == UInt8(ascii: "J"), time: time) {
                    document.append(to: &output, pretty: pretty)
                } else {
                    warning = "Error: Message payload is not valid JSON on topic \(message.topic)."
                }
            case .field(let field): Self.render(field, of: message, clock: &clock, into: &output)
            case .time(let conversion): output.append(contentsOf: clock.formatted([UInt8(ascii: "%"), conversion]))
            case .nanoseconds: output.append(contentsOf: Self.padded(String(clock.now.nanoseconds), width: 9, with: "0").utf8)
            }
        }
        return output
    }

    /// mosquitto's `tst`: `strftime("%Y-%m-%dT%H:%M:%S.000000Z%z")` with the microseconds
    /// written over the zeros.
    private static func jsonTime(_ clock: inout Clock) -> String {
        let microseconds = padded(String(clock.now.nanoseconds / 1000), width: 6, with: "0")
        let seconds = String(decoding: clock.formatted(Array("%Y-%m-%dT%H:%M:%S".utf8)), as: UTF8.self)
        let offset = String(decoding: clock.formatted(Array("%z".utf8)), as: UTF8.self)
        return seconds + "." + microseconds + "Z" + offset
    }

    // MARK: Parsing helpers

    /// `\n` and the other escapes mosquitto knows, by the byte after the backslash.
    private static let escapes: [UInt8: UInt8] = [
        UInt8(ascii: "\\"): UInt8(ascii: "\\"), UInt8(ascii: "0"): 0, UInt8(ascii: "a"): 7, UInt8(ascii: "e"): 27,
        UInt8(ascii: "n"): 10, UInt8(ascii: "r"): 13, UInt8(ascii: "t"): 9, UInt8(ascii: "v"): 11,
    ]

    private static func digit(_ byte: UInt8) -> Int? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// The character starting at `index` (mosquitto prints its first byte only).
    private static func character(at index: Int, in bytes: [UInt8]) -> Character {
        String(decoding: bytes[index...], as: UTF8.self).first ?? "?"
    }

    private static func flush(_ literal: inout [UInt8], into tokens: inout [Token]) {
        guard !literal.isEmpty else { return }
        tokens.append(.literal(literal))
        literal = []
    }
}

// MARK: - Rendering

extension FormatString {
    /// One `%` conversion, as mosquitto's `formatted_print_percent`.
    private static func render(_ field: Field, of message: MQTTMessage, clock: inout Clock, into output: inout [UInt8]) {
        let properties = message.properties
        /// A number, or `width` pad characters when absent.
        func number(_ value: Int?) {
            guard let value else {
                output.append(contentsOf: repeatElement(field.zeroPadded ? UInt8(ascii: "0") : UInt8(ascii: " "), count: field.width))
                return
            }
            output.append(contentsOf: integer(value, field))
        }
        switch field.specifier {
        case UInt8(ascii: "%"): output.append(UInt8(ascii: "%"))
        case UInt8(ascii: "A"): number(properties.topicAlias.map(Int.init))
        case UInt8(ascii: "C"): output.append(contentsOf: string(properties.contentType.map { Array($0.utf8) }, field))
        case UInt8(ascii: "D"): output.append(contentsOf: properties.correlationData ?? [])
        case UInt8(ascii: "E"): number(properties.messageExpiryInterval.map { Int(Int32(bitPattern: $0)) })
        case UInt8(ascii: "F"): number(properties.payloadFormat.map { Int($0.rawValue) })
        case UInt8(ascii: "I"): output.append(contentsOf: string(clock.formatted(Array("%FT%T%z".utf8)), field))
        case UInt8(ascii: "l"): number(message.payload.count)
        case UInt8(ascii: "m"): number(Int(message.messageID))
        case UInt8(ascii: "P"): output.append(contentsOf: properties.userProperties.map(\.description).joined(separator: " ").utf8)
        case UInt8(ascii: "p"): output.append(contentsOf: payload(message.payload, hex: nil, field))
        case UInt8(ascii: "q"): output.append(UInt8(ascii: "0") + UInt8(message.qos.rawValue))
        case UInt8(ascii: "R"):
            if let topic = properties.responseTopic { output.append(contentsOf: string(Array(topic.utf8), field)) }
        case UInt8(ascii: "r"): output.append(message.retain ? UInt8(ascii: "1") : UInt8(ascii: "0"))
        case UInt8(ascii: "S"): number(properties.subscriptionIdentifiers.first.map(Int.init))
        case UInt8(ascii: "t"): output.append(contentsOf: string(Array(message.topic.utf8), field))
        case UInt8(ascii: "U"):
            let now = clock.now
            output.append(contentsOf: "\(now.seconds).".utf8)
            output.append(contentsOf: padded(String(now.nanoseconds), width: 9, with: "0").utf8)
        case UInt8(ascii: "x"): output.append(contentsOf: payload(message.payload, hex: Array("0123456789abcdef".utf8), field))
        case UInt8(ascii: "X"): output.append(contentsOf: payload(message.payload, hex: Array("0123456789ABCDEF".utf8), field))
        default: break
        }
    }

    /// printf's `%d`, `%-*d`, `%0*d` or `%*d`.
    private static func integer(_ value: Int, _ field: Field) -> [UInt8] {
        let digits = String(value.magnitude)
        let sign = value < 0 ? "-" : ""
        if field.leftAligned { return pad(Array((sign + digits).utf8), to: field.width, left: true) }
        if field.zeroPadded { return Array((sign + padded(digits, width: field.width - sign.count, with: "0")).utf8) }
        return pad(Array((sign + digits).utf8), to: field.width, left: false)
    }

    /// printf's `%*.*s` on bytes; an absent value prints `width` blanks.
    private static func string(_ value: [UInt8]?, _ field: Field) -> [UInt8] {
        guard var value else { return Array(repeating: UInt8(ascii: " "), count: field.width) }
        if let precision = field.precision, value.count > precision { value = Array(value.prefix(precision)) }
        return pad(value, to: field.width, left: field.leftAligned)
    }

    /// mosquitto's `write_payload`: a width truncates the payload (to half as many bytes in hex).
    ///
    /// - Parameter hex: The 16 hexadecimal digits to print the bytes with, or `nil` for raw bytes.
    private static func payload(_ payload: [UInt8], hex: [UInt8]?, _ field: Field) -> [UInt8] {
        var length = payload.count
        let padding: Int
        if field.width > 0 {
            length = min(length, field.width)
            if hex != nil { length /= 2 }
            padding = field.width - length * (hex != nil ? 2 : 1)
        } else {
            // No width: mosquitto's `printf("%*s", -length, "")` still pads a `-` field.
            padding = -length
        }
        let blank = field.zeroPadded && !field.leftAligned ? UInt8(ascii: "0") : UInt8(ascii: " ")
        var output: [UInt8] = []
        if !field.leftAligned && padding > 0 { output.append(contentsOf: repeatElement(blank, count: padding)) }
        if let hex {
            for byte in payload.prefix(length) {
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0x0F)])
            }
        } else {
            output.append(contentsOf: payload.prefix(length))
        }
        if field.leftAligned { output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: abs(padding))) }
        return output
    }

    private static func pad(_ bytes: [UInt8], to width: Int, left: Bool) -> [UInt8] {
        guard bytes.count < width else { return bytes }
        let blanks = [UInt8](repeating: UInt8(ascii: " "), count: width - bytes.count)
        return left ? bytes + blanks : blanks + bytes
    }

    private static func padded(_ text: String, width: Int, with character: Character) -> String {
        text.count >= width ? text : String(repeating: character, count: width - text.count) + text
    }
}

// MARK: - Clock

/// The time of one message, read once (on first use) for all its `%I`, `%U` and `@` conversions.
private struct Clock {
    private var cached: (seconds: Int, nanoseconds: Int, local: tm)?

    /// Now: seconds since the epoch, nanoseconds, and the local broken-down time.
    var now: (seconds: Int, nanoseconds: Int, local: tm) {
        mutating get {
            if let cached { return cached }
            var spec = timespec()
            clock_gettime(CLOCK_REALTIME, &spec)
            var seconds = spec.tv_sec
            var local = tm()
            localtime_r(&seconds, &local)
            let value = (Int(spec.tv_sec), Int(spec.tv_nsec), local)
            cached = value
            return value
        }
    }

    /// `strftime` with `format` (e.g. `%H`); empty when the result is empty or too long.
    mutating func formatted(_ format: [UInt8]) -> [UInt8] {
        var local = now.local
        var buffer = [CChar](repeating: 0, count: 100)
        let format = format.map { CChar(bitPattern: $0) } + [0]
        let count = strftime(&buffer, buffer.count, format, &local)
        return buffer.prefix(count).map { UInt8(bitPattern: $0) }
    }
}
