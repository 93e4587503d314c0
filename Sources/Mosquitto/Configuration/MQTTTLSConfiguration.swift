// MARK: - MQTTTLSConfiguration

/// Certificate-based TLS: how the client verifies the broker and, for mutual TLS, proves itself.
///
/// Verification is on by default: the broker's certificate must chain to ``caFile`` or a
/// certificate in ``caDirectory`` and name the host the client connects to. Turning hostname
/// checks off takes the plainly named ``insecureSkipHostnameVerification``.
public struct MQTTTLSConfiguration: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// A PEM file of trusted CA certificates.
    public var caFile: String?
    /// A directory of trusted CA certificates in OpenSSL's hashed layout (`openssl rehash`).
    /// When neither ``caFile`` nor this is set, `/etc/ssl/certs` is used (libmosquitto 2.0.11
    /// cannot reconnect with the OS store option alone, #2288, so a directory is used instead).
    public var caDirectory: String?
    /// The client certificate (PEM) for mutual TLS.
    public var certificateFile: String?
    /// The client certificate's private key (PEM).
    public var keyFile: String?
    /// The passphrase of an encrypted ``keyFile``. Never logged or described.
    public var keyPassword: String?
    /// The lowest TLS version the client accepts. Defaults to TLS 1.2.
    public var minimumVersion: MQTTTLSVersion
    /// An OpenSSL cipher list (TLS 1.2 and below), or `nil` for OpenSSL's default.
    public var ciphers: String?
    /// The ALPN protocol to offer, e.g. `x-amzn-mqtt-ca` for AWS IoT on port 443.
    public var alpn: String?
    /// Turns OFF the check that the broker's certificate names the host connected to. The
    /// certificate chain is still verified. Insecure: anyone with a certificate from the same CA
    /// can impersonate the broker. For tests and broken deployments only.
    public var insecureSkipHostnameVerification: Bool

    /// Creates TLS settings.
    ///
    /// - Parameters:
    ///   - caFile: A PEM file of trusted CA certificates.
    ///   - caDirectory: A hashed directory of trusted CA certificates.
    ///   - certificateFile: The client certificate for mutual TLS.
    ///   - keyFile: The client certificate's private key.
    ///   - keyPassword: The private key's passphrase, if it is encrypted.
    public init(
        caFile: String? = nil,
        caDirectory: String? = nil,
        certificateFile: String? = nil,
        keyFile: String? = nil,
        keyPassword: String? = nil
    ) {
        self.caFile = caFile
        self.caDirectory = caDirectory
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.keyPassword = keyPassword
        self.minimumVersion = .v1_2
        self.ciphers = nil
        self.alpn = nil
        self.insecureSkipHostnameVerification = false
    }

    /// A summary without the key passphrase.
    public var description: String {
        var parts: [String] = []
        if let caFile { parts.append("caFile: \(caFile)") }
        if let caDirectory { parts.append("caDirectory: \(caDirectory)") }
        if let certificateFile { parts.append("certificateFile: \(certificateFile)") }
        if let keyFile { parts.append("keyFile: \(keyFile)") }
        if keyPassword != nil { parts.append("keyPassword: <redacted>") }
        parts.append("minimumVersion: \(minimumVersion)")
        if insecureSkipHostnameVerification { parts.append("INSECURE: hostname not verified") }
        return "MQTTTLSConfiguration(" + parts.joined(separator: ", ") + ")"
    }

    /// A mirror that hides the key passphrase.
    public var customMirror: Mirror {
        Mirror(self, children: ["description": description])
    }
}

// MARK: - MQTTTLSVersion

/// A minimum TLS protocol version.
public enum MQTTTLSVersion: String, Sendable, Hashable, CustomStringConvertible {
    /// TLS 1.2 or newer.
    case v1_2 = "tlsv1.2"
    /// TLS 1.3 only.
    case v1_3 = "tlsv1.3"

    /// libmosquitto's name for the version, e.g. `tlsv1.2`.
    public var description: String { rawValue }
}

// MARK: - MQTTPreSharedKey

/// TLS with a pre-shared key (TLS-PSK, TLS 1.2 cipher suites) instead of certificates.
public struct MQTTPreSharedKey: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// The identity the client announces.
    public var identity: String
    /// The key, as hexadecimal digits without a leading `0x`. Never logged or described.
    public var hexKey: String
    /// An OpenSSL PSK cipher list, or `nil` for the default.
    public var ciphers: String?

    /// Creates PSK settings.
    ///
    /// - Parameters:
    ///   - identity: The PSK identity.
    ///   - hexKey: The key in hexadecimal.
    ///   - ciphers: An optional cipher list.
    public init(identity: String, hexKey: String, ciphers: String? = nil) {
        self.identity = identity
        self.hexKey = hexKey
        self.ciphers = ciphers
    }

    /// The identity, with the key redacted.
    public var description: String { "MQTTPreSharedKey(identity: \(identity), key: <redacted>)" }

    /// A mirror that hides the key.
    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}
