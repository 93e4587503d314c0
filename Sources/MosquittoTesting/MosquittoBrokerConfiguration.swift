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

    /// Whether the broker persists its state to disk so that `restart()` keeps retained and queued messages.
    public var persistence: Bool

    /// Lines appended verbatim to the end of the generated config file (they apply to the single listener).
    public var extraConfigLines: [String]

    /// Creates a configuration.
    /// - Parameters:
    ///   - allowAnonymous: Whether clients may connect without a username.
    ///   - users: Usernames mapped to passwords for the generated password file.
    ///   - aclRules: Raw ACL file text, or `nil` for no ACL file.
    ///   - tls: The TLS mode, or `nil` for plain TCP.
    ///   - persistence: Whether the broker persists its state across `restart()`.
    ///   - extraConfigLines: Lines appended verbatim to the generated config.
    public init(
        allowAnonymous: Bool = true,
        users: [String: String] = [:],
        aclRules: String? = nil,
        tls: TLSMode? = nil,
        persistence: Bool = false,
        extraConfigLines: [String] = []
    ) {
        self.allowAnonymous = allowAnonymous
        self.users = users
        self.allowedSubscriptions = nil
        self.aclRules = aclRules
        self.tls = tls
        self.persistence = persistence
        self.extraConfigLines = extraConfigLines
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
        /// TLS with a pre-shared key instead of certificates (`psk_hint`, `psk_file`): clients
        /// connect with `identity` and the key given as hexadecimal digits.
        case preSharedKey(identity: String, hexKey: String)
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
