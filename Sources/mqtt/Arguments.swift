#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Argument

/// One command-line argument, exactly as the process received it.
///
/// Swift's `CommandLine.arguments` repairs invalid UTF-8 with U+FFFD before anything can look at
/// it: `-m $'a\xffb'` would send `61 ef bf bd 62`, and `-t $'a/\xff'` would publish to another
/// topic. `mqtt` reads `argv` itself and keeps the bytes; each option then decides what its value
/// is (see ``OptionSpec``): payloads and passwords are bytes and go out as given, topics, client
/// IDs, usernames and property strings must be MQTT UTF-8 (``isMQTTUTF8``), and everything else
/// (numbers, host names, file names) is read as ``text``.
struct Argument: Hashable, Sendable {
    /// The bytes, without the terminating NUL.
    let bytes: [UInt8]
    /// The bytes as text; bytes that are not UTF-8 read as U+FFFD. For option names, numbers,
    /// host names, file names and messages; never for what goes on the wire as given.
    let text: String

    /// An argument of these bytes.
    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        text = String(decoding: bytes, as: UTF8.self)
    }

    /// An argument of this text (its UTF-8 bytes).
    init(_ text: String) {
        self.init(Array(text.utf8))
    }

    /// The bytes of a C string.
    init(cString pointer: UnsafePointer<CChar>) {
        self.init(Array(UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self), count: strlen(pointer))))
    }

    /// The process's arguments after the program name, from `argv` itself.
    static func processArguments() -> [Argument] {
        (1..<Int(CommandLine.argc)).compactMap { index in
            CommandLine.unsafeArgv[index].map { Argument(cString: $0) }
        }
    }

    /// Whether the bytes are UTF-8 as MQTT allows it in strings, by the rules of libmosquitto's
    /// `mosquitto_validate_utf8`, which the mosquitto tools apply to these arguments: well-formed
    /// (no overlong form, no surrogate, nothing past U+10FFFF), no control character (U+0000 to
    /// U+001F, U+007F to U+009F), no non-character (U+FDD0 to U+FDEF, U+xFFFE, U+xFFFF), and at
    /// most 65,536 bytes.
    var isMQTTUTF8: Bool {
        guard bytes.count <= 65_536 else { return false }
        // Swift's decoder refuses what is not well-formed UTF-8 (overlong forms, surrogates,
        // values past U+10FFFF, truncated sequences) with an error.
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                let value = scalar.value
                if value <= 0x1F || (0x7F...0x9F).contains(value) { return false }
                if (0xFDD0...0xFDEF).contains(value) || value & 0xFFFF >= 0xFFFE { return false }
            case .emptyInput:
                return true
            case .error:
                return false
            }
        }
    }
}
