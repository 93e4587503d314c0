// MARK: - MQTTTLSConfiguration

/// Certificate-based TLS: how the client verifies the broker and, for mutual TLS, proves itself.
///
/// Verification is on by default: the broker's certificate must chain to ``caCertificates`` or a
/// certificate in ``caDirectory`` and name the host the client connects to. Turning hostname
/// checks off takes the plainly named ``insecureSkipHostnameVerification``.
///
/// Each credential is an ``MQTTTLSSource``: a PEM file (``caFile``, ``certificateFile`` and
/// ``keyFile`` are the same settings, as paths) or PEM data in memory. When every credential is a
/// file, libmosquitto reads them when it connects. When one is in memory, the client builds the
/// OpenSSL context itself when it is created (``MQTTClient/init(configuration:)``), so that data
/// that is not PEM, a wrong ``keyPassword`` or a key that does not match the certificate throws
/// ``MQTTError/Code/invalidConfiguration`` there, naming the setting.
public struct MQTTTLSConfiguration: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// Trusted CA certificates: a PEM file or PEM data holding one or more certificates.
    /// Combined with ``caDirectory`` when both are set.
    public var caCertificates: MQTTTLSSource?
    /// A directory of trusted CA certificates in OpenSSL's hashed layout (`openssl rehash`).
    /// When neither ``caCertificates`` nor this is set, `/etc/ssl/certs` is used (libmosquitto
    /// 2.0.11 cannot reconnect with the OS store option alone, #2288, so a directory is used instead).
    public var caDirectory: String?
    /// The client certificate for mutual TLS (PEM), optionally followed by the intermediate CA
    /// certificates of its chain. Requires ``privateKey``.
    public var certificate: MQTTTLSSource?
    /// The client certificate's private key (PEM, optionally encrypted: see ``keyPassword``).
    /// Never described: an in-memory key shows its length only. Requires ``certificate``.
    public var privateKey: MQTTTLSSource?
    /// The passphrase of an encrypted ``privateKey``. Never logged or described.
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

    /// A PEM file of trusted CA certificates: ``caCertificates`` as a path (`nil` when it is in
    /// memory). Setting it replaces ``caCertificates``.
    public var caFile: String? {
        get { caCertificates?.path }
        set { caCertificates = newValue.map(MQTTTLSSource.file) }
    }

    /// The client certificate (PEM) for mutual TLS: ``certificate`` as a path (`nil` when it is in
    /// memory). Setting it replaces ``certificate``.
    public var certificateFile: String? {
        get { certificate?.path }
        set { certificate = newValue.map(MQTTTLSSource.file) }
    }

    /// The client certificate's private key (PEM): ``privateKey`` as a path (`nil` when it is in
    /// memory). Setting it replaces ``privateKey``.
    public var keyFile: String? {
        get { privateKey?.path }
        set { privateKey = newValue.map(MQTTTLSSource.file) }
    }

    /// Creates TLS settings from files.
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
        self.init(
            caCertificates: caFile.map(MQTTTLSSource.file),
            caDirectory: caDirectory,
            certificate: certificateFile.map(MQTTTLSSource.file),
            privateKey: keyFile.map(MQTTTLSSource.file),
            keyPassword: keyPassword
        )
    }

    /// Creates TLS settings from sources, each a file or PEM data in memory.
    ///
    /// ```swift
    /// let tls = MQTTTLSConfiguration(
    ///     caCertificates: .pem(caPEM),
    ///     certificate: .pem(deviceCertificatePEM),
    ///     privateKey: .pem(deviceKeyPEM),
    ///     keyPassword: passphrase
    /// )
    /// ```
    ///
    /// - Parameters:
    ///   - caCertificates: Trusted CA certificates, or `nil` for `/etc/ssl/certs` (unless
    ///     `caDirectory` is set).
    ///   - caDirectory: A hashed directory of trusted CA certificates.
    ///   - certificate: The client certificate (and chain) for mutual TLS.
    ///   - privateKey: The client certificate's private key.
    ///   - keyPassword: The private key's passphrase, if it is encrypted.
    public init(
        caCertificates: MQTTTLSSource?,
        caDirectory: String? = nil,
        certificate: MQTTTLSSource? = nil,
        privateKey: MQTTTLSSource? = nil,
        keyPassword: String? = nil
    ) {
        self.caCertificates = caCertificates
        self.caDirectory = caDirectory
        self.certificate = certificate
        self.privateKey = privateKey
        self.keyPassword = keyPassword
        self.minimumVersion = .v1_2
        self.ciphers = nil
        self.alpn = nil
        self.insecureSkipHostnameVerification = false
    }

    /// Whether a credential is PEM data in memory (the client then builds the OpenSSL context).
    var hasInMemoryCredential: Bool {
        [caCertificates, certificate, privateKey].contains { $0?.isInMemory == true }
    }

    /// A summary without the key passphrase or any in-memory PEM data (only its length).
    public var description: String {
        func describe(_ source: MQTTTLSSource?, file: String, memory: String) -> String? {
            guard let source else { return nil }
            if let path = source.path { return "\(file): \(path)" }
            return "\(memory): \(source)"
        }
        var parts: [String] = []
        if let ca = describe(caCertificates, file: "caFile", memory: "caCertificates") { parts.append(ca) }
        if let caDirectory { parts.append("caDirectory: \(caDirectory)") }
        if let certificate = describe(certificate, file: "certificateFile", memory: "certificate") { parts.append(certificate) }
        if let key = describe(privateKey, file: "keyFile", memory: "privateKey") { parts.append(key) }
        if keyPassword != nil { parts.append("keyPassword: <redacted>") }
        parts.append("minimumVersion: \(minimumVersion)")
        if insecureSkipHostnameVerification { parts.append("INSECURE: hostname not verified") }
        return "MQTTTLSConfiguration(" + parts.joined(separator: ", ") + ")"
    }

    /// A mirror that hides the key passphrase and in-memory PEM data.
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
