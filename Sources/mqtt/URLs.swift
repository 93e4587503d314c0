#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - BrokerURL

/// `-L mqtt(s)://[username[:password]@]host[:port]/topic`, split as mosquitto 2.0.11 splits it.
///
/// The topic is everything after the first `/` (a filter for `sub`); before it, the last part
/// after the first `@` is `host[:port]` and what precedes the `@` is `username[:password]` (the
/// password starts at the first `:`). Nothing is percent-decoded. `mqtt://` means port 1883,
/// `mqtts://` port 8883 and TLS with the system's CA certificates, unless the URL gives a port;
/// a port is read as C's `atoi` reads it.
struct BrokerURL {
    var host: String
    var port: Int
    var username: Argument?
    var password: [UInt8]?
    /// The topic (or filter), already checked to be MQTT UTF-8.
    var topic: String
    /// `mqtts://`: TLS, trusting the system's CA certificates (mosquitto's `--tls-use-os-certs`).
    var tls: Bool

    /// Splits `argument`.
    ///
    /// - Throws: ``CLIError`` (usage) with mosquitto's texts: an unsupported scheme, no topic, a
    ///   topic that is not MQTT UTF-8, a port out of range.
    init(_ argument: Argument) throws(CLIError) {
        var rest = argument.bytes[...]
        if Self.hasPrefix(rest, "mqtt://") {
            rest = rest.dropFirst(7)
            port = 1883
            tls = false
        } else if Self.hasPrefix(rest, "mqtts://") {
            rest = rest.dropFirst(8)
            port = 8883
            tls = true
        } else {
            throw CLIError.usage("unsupported URL scheme.", spaced: true)
        }
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
            throw CLIError.usage("Invalid URL for -L argument specified - topic missing.")
        }
        let topic = Argument(Array(rest[(slash + 1)...]))
        guard topic.isMQTTUTF8 else { throw CLIError.usage("Malformed UTF-8 in -L topic argument.", spaced: true) }
        self.topic = topic.text
        var authority = rest[..<slash]
        if let at = authority.firstIndex(of: UInt8(ascii: "@")) {
            let credentials = authority[..<at]
            if let colon = credentials.firstIndex(of: UInt8(ascii: ":")) {
                username = Argument(Array(credentials[..<colon]))
                password = Array(credentials[(colon + 1)...])
            } else {
                username = Argument(Array(credentials))
            }
            authority = authority[(at + 1)...]
        }
        if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
            port = Self.cInteger(authority[(colon + 1)...])
            authority = authority[..<colon]
        }
        guard (1...65_535).contains(port) else {
            throw CLIError.usage("Invalid port given: \(port)")
        }
        host = String(decoding: authority, as: UTF8.self)
    }

    /// Whether `bytes` start with `prefix`, ignoring ASCII case (mosquitto's `strncasecmp`).
    static func hasPrefix(_ bytes: ArraySlice<UInt8>, _ prefix: String) -> Bool {
        let prefix = Array(prefix.utf8)
        guard bytes.count >= prefix.count else { return false }
        return zip(bytes, prefix).allSatisfy { tolower(Int32($0)) == tolower(Int32($1)) }
    }

    /// C's `atoi`: leading blanks, an optional sign, then digits up to the first other byte; 0
    /// when there are none.
    static func cInteger(_ bytes: ArraySlice<UInt8>) -> Int {
        ValueParser.cInteger(String(decoding: bytes, as: UTF8.self))
    }
}

// MARK: - ProxyURL

/// `--proxy socks5h://[username[:password]@]host[:port]`, read as mosquitto 2.0.11 reads it: the
/// port defaults to 1080; `%25`, `%3A` and `%40` in the username and password stand for `%`, `:`
/// and `@` (mosquitto decodes `%40` as `:`, a slip `mqtt` does not copy), any other `%` escape is
/// an error.
struct ProxyURL {
    var host: String
    var port: Int
    var username: String?
    var password: String?

    /// Splits `text`.
    ///
    /// - Throws: ``CLIError`` (usage) with mosquitto's texts: another scheme, no host, a port out
    ///   of range; `Invalid proxy.` for a URL mosquitto refuses without a word.
    init(_ text: String) throws(CLIError) {
        let scheme = "socks5h://"
        guard text.hasPrefix(scheme) else { throw CLIError.usage("Unsupported proxy protocol: \(text)") }
        var authority = Substring(text.dropFirst(scheme.count))
        let malformed = CLIError.usage("Invalid proxy.")
        if let at = authority.firstIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            guard !credentials.isEmpty, !authority.contains("@") else { throw malformed }
            if let colon = credentials.firstIndex(of: ":") {
                guard colon > credentials.startIndex, credentials.index(after: colon) < credentials.endIndex else { throw malformed }
                username = try Self.decode(credentials[..<colon])
                password = try Self.decode(credentials[credentials.index(after: colon)...])
            } else {
                username = try Self.decode(credentials)
            }
        }
        var portText: Substring?
        if let colon = authority.firstIndex(of: ":") {
            portText = authority[authority.index(after: colon)...]
            authority = authority[..<colon]
            // After credentials, a second colon is malformed; without, the port is atoi'd.
            guard !authority.isEmpty, portText?.isEmpty == false, username == nil || portText?.contains(":") == false else { throw malformed }
        }
        guard !authority.isEmpty else { throw malformed }
        host = String(authority)
        if let portText {
            port = BrokerURL.cInteger(ArraySlice(portText.utf8))
            guard (1...65_535).contains(port) else { throw CLIError.usage("Invalid proxy port \(port)") }
        } else {
            port = 1080
        }
    }

    /// The username or password with its three escapes decoded.
    private static func decode(_ text: Substring) throws(CLIError) -> String {
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            guard character == "%" else {
                result.append(character)
                index = text.index(after: index)
                continue
            }
            let code = text[text.index(after: index)...].prefix(2).uppercased()
            switch code {
            case "25": result.append("%")
            case "3A": result.append(":")
            case "40": result.append("@")
            default: throw CLIError.usage("Invalid proxy.")
            }
            index = text.index(index, offsetBy: 3)
        }
        return result
    }
}
