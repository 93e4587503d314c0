// MARK: - Configuration

/// How a test broker is configured.
public struct MosquittoBrokerConfiguration: Sendable, Equatable {
    /// Whether clients may connect without a username (mosquitto's `allow_anonymous`).
    public var allowAnonymous: Bool

    /// Usernames mapped to passwords; when non-empty, a `password_file` is generated with `mosquitto_passwd -b`.
    public var users: [String: String]

    /// Raw ACL file text in mosquitto `acl_file` syntax, or `nil` for no ACL file.
    public var aclRules: String?

    /// Subscription filters the broker allows, or `nil` for no restriction.
    ///
    /// When set, the broker runs mosquitto's dynamic-security plugin instead of a password file:
    /// every user in ``users`` may publish and receive anything but subscribe only to these patterns
    /// (`+`/`#` allowed); any other SUBSCRIBE is refused in the SUBACK (0x80 on MQTT 3.1.1, 0x87 on
    /// MQTT 5). Mosquitto 2.0's `acl_file` (``aclRules``) never refuses a subscription, it only
    /// filters deliveries, so this is how a test gets a refused subscription.
    public var allowedSubscriptions: [String]?

    /// The TLS mode of the listener, or `nil` for plain TCP.
    public var tls: TLSMode?

    /// The oldest TLS version the listener accepts (mosquitto's `tls_version`); TLS 1.2 by default.
    ///
    /// Applies to the certificate modes of ``tls-property``, not to ``TLSMode/preSharedKey(identity:hexKey:)``.
    public var minimumTLSVersion: TLSVersion

    /// The newest TLS version the broker accepts, or `nil` for OpenSSL's newest (TLS 1.3).
    ///
    /// mosquitto 2.0 has no setting for this, so the broker process is started with `OPENSSL_CONF`
    /// naming a generated OpenSSL config whose `system_default` section sets `MaxProtocol` (mosquitto
    /// loads the OpenSSL config at start-up). A client that requires a newer version then fails the
    /// handshake with OpenSSL's "protocol version" alert.
    public var maximumTLSVersion: TLSVersion?

    /// Whether the broker persists its state to disk so that `restart()` keeps retained and queued messages.
    public var persistence: Bool

    /// Lines appended verbatim to the end of the generated config file (they apply to the single listener).
    public var extraConfigLines: [String]

    /// The broker process's open-file limit (the soft `RLIMIT_NOFILE`), or `nil` to inherit this process's.
    ///
    /// mosquitto needs one descriptor per connected client plus a few of its own, so a test with
    /// thousands of clients sets this to the client count plus some headroom (for 10,000 clients,
    /// e.g. 10,240). The fixture applies it with Linux's `prlimit` right after spawning the broker,
    /// before the broker accepts connections (and again on `restart()`); when the value exceeds the
    /// hard limit, the hard limit is raised to it as well, which needs `CAP_SYS_RESOURCE` (root
    /// outside a restricted container) and is capped by `fs.nr_open`. The generated config leaves
    /// mosquitto's own connection limit unlimited (`max_connections -1`).
    ///
    /// A broker that cannot get the limit is not started: `MosquittoBroker.start(_:)` throws a
    /// `MosquittoTestingError` naming the hard limit. Linux only.
    public var maximumOpenFiles: Int?

    /// Creates a configuration.
    /// - Parameters:
    ///   - allowAnonymous: Whether clients may connect without a username.
    ///   - users: Usernames mapped to passwords for the generated password file.
    ///   - aclRules: Raw ACL file text, or `nil` for no ACL file.
    ///   - tls: The TLS mode, or `nil` for plain TCP.
    ///   - minimumTLSVersion: The oldest TLS version the listener accepts.
    ///   - maximumTLSVersion: The newest TLS version the broker accepts, or `nil` for no limit.
    ///   - persistence: Whether the broker persists its state across `restart()`.
    ///   - extraConfigLines: Lines appended verbatim to the generated config.
    ///   - maximumOpenFiles: The broker process's open-file limit, or `nil` to inherit this process's.
    public init(
        allowAnonymous: Bool = true,
        users: [String: String] = [:],
        aclRules: String? = nil,
        tls: TLSMode? = nil,
        minimumTLSVersion: TLSVersion = .v1_2,
        maximumTLSVersion: TLSVersion? = nil,
        persistence: Bool = false,
        extraConfigLines: [String] = [],
        maximumOpenFiles: Int? = nil
    ) {
        self.allowAnonymous = allowAnonymous
        self.users = users
        self.allowedSubscriptions = nil
        self.aclRules = aclRules
        self.tls = tls
        self.minimumTLSVersion = minimumTLSVersion
        self.maximumTLSVersion = maximumTLSVersion
        self.persistence = persistence
        self.extraConfigLines = extraConfigLines
        self.maximumOpenFiles = maximumOpenFiles
    }

    // MARK: TLS mode

    /// How the test broker's listener uses TLS.
    public enum TLSMode: Sendable, Equatable {
        /// Server certificate only, clients verify it with the generated CA.
        case serverAuthentication
        /// `require_certificate true`: clients must present a certificate signed by the generated CA.
        case mutual
        /// Like ``serverAuthentication``, but the server certificate (signed by the same CA) names
        /// only `wrong.example.invalid`, so clients connecting to `localhost` or `127.0.0.1` see a
        /// hostname mismatch.
        case serverAuthenticationWithMismatchedHostname
        /// Like ``serverAuthentication``, but the server certificate (signed by the same CA, naming
        /// `localhost` and `127.0.0.1`) expired in 2020, so clients that verify it see an expired certificate.
        case serverAuthenticationWithExpiredCertificate
        /// TLS with a pre-shared key instead of certificates (`psk_hint`, `psk_file`): clients
        /// connect with `identity` and the key given as hexadecimal digits.
        case preSharedKey(identity: String, hexKey: String)
    }

    // MARK: TLS versions

    /// A TLS protocol version, for ``minimumTLSVersion`` and ``maximumTLSVersion``.
    public enum TLSVersion: Sendable, Hashable {
        /// TLS 1.2.
        case v1_2
        /// TLS 1.3.
        case v1_3

        /// mosquitto's spelling, for `tls_version`.
        var mosquittoName: String {
            switch self {
            case .v1_2: "tlsv1.2"
            case .v1_3: "tlsv1.3"
            }
        }

        /// OpenSSL's spelling, for `MaxProtocol`.
        var openSSLName: String {
            switch self {
            case .v1_2: "TLSv1.2"
            case .v1_3: "TLSv1.3"
            }
        }

        /// The text of an OpenSSL config file whose `system_default` section sets `MaxProtocol` to this version.
        ///
        /// A process started with `OPENSSL_CONF` naming such a file negotiates no newer TLS version, provided
        /// it loads the OpenSSL config: mosquitto 2.0 does, and so does a client using libmosquitto. The file
        /// replaces the system's `openssl.cnf` for that process.
        public var openSSLConfigLimitingMaximum: String {
            """
            openssl_conf = openssl_init

            [openssl_init]
            ssl_conf = ssl_configuration

            [ssl_configuration]
            system_default = tls_system_default

            [tls_system_default]
            MaxProtocol = \(openSSLName)

            """
        }
    }

    // MARK: Presets

    /// A plain-TCP broker that accepts anonymous clients (the default).
    public static var anonymous: Self { Self() }

    /// A plain-TCP broker that only accepts the given users and refuses their subscriptions outside
    /// `allowedSubscriptions` (see ``allowedSubscriptions``).
    /// - Parameters:
    ///   - users: Usernames mapped to passwords.
    ///   - allowedSubscriptions: The subscription patterns the users may subscribe to.
    public static func subscriptionACL(users: [String: String], allowedSubscriptions: [String]) -> Self {
        var configuration = Self(allowAnonymous: false, users: users)
        configuration.allowedSubscriptions = allowedSubscriptions
        return configuration
    }

    /// A plain-TCP broker that only accepts the given users.
    /// - Parameters:
    ///   - users: Usernames mapped to passwords.
    public static func password(users: [String: String]) -> Self {
        Self(allowAnonymous: false, users: users)
    }

    /// An anonymous broker whose listener uses TLS with a server certificate signed by the generated CA.
    public static var tls: Self { Self(tls: .serverAuthentication) }

    /// An anonymous broker whose listener requires clients to present a certificate signed by the generated CA.
    public static var mutualTLS: Self { Self(tls: .mutual) }

    /// An anonymous plain-TCP broker with persistence enabled, so `restart()` keeps retained and queued messages.
    public static var persistent: Self { Self(persistence: true) }
}
