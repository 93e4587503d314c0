public import Logging

// MARK: - MQTTConfiguration

/// Everything a client needs to reach a broker: endpoint, identity, session, credentials, will,
/// TLS, and the bounds on waiting and buffering.
///
/// ```swift
/// var configuration = MQTTConfiguration(host: "broker.local", clientID: "sensor-1")
/// configuration.credentials = MQTTCredentials(username: "sensor", password: "s3cret")
/// configuration.will = MQTTWill(topic: "sensors/1/status", payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
/// ```
public struct MQTTConfiguration: Sendable {
    // MARK: Endpoint

    /// The broker's host name or IP address; with ``port`` 0, the path of a Unix socket.
    public var host: String
    /// The broker's TCP port: 1883 for plain MQTT, 8883 for MQTT over TLS.
    public var port: Int
    /// A local address to bind the client's socket to, or `nil` to let the system choose.
    public var bindAddress: String?

    // MARK: Identity and session

    /// The client identifier. Empty means "generate one" (`swift-mqtt-` and 12 random hex
    /// digits, 23 bytes, valid for MQTT 3.1 too), or with ``brokerAssignsClientID`` "let the
    /// broker assign one"; required when ``cleanSession`` is `false`.
    public var clientID: String
    /// Whether an empty ``clientID`` is sent empty, so that the broker assigns one (MQTT 3.1.1
    /// and 5, clean sessions only; MQTT 5 brokers report it in
    /// ``MQTTConnectResult/assignedClientIdentifier``, and ``MQTTClient/clientID`` then returns
    /// it), as the mosquitto tools do. Under MQTT 3.1, which has no assigned IDs, libmosquitto
    /// makes one up (`mosq-` and 18 random characters). Defaults to `false`: the client
    /// generates its ID.
    public var brokerAssignsClientID = false
    /// The protocol version. Defaults to MQTT 3.1.1.
    public var protocolVersion: MQTTProtocolVersion
    /// The keepalive interval, in whole seconds: 0 (off) or 5...65,535. Defaults to 60 s.
    public var keepAlive: Duration
    /// Whether the broker discards the session when the client disconnects (MQTT 5: clean start).
    /// A persistent session (`false`) needs a fixed ``clientID``.
    public var cleanSession: Bool
    /// The username and password, or `nil` to connect anonymously.
    public var credentials: MQTTCredentials?
    /// The message the broker publishes when this client vanishes without a DISCONNECT.
    public var will: MQTTWill?
    /// MQTT 5 CONNECT properties, e.g. ``MQTTProperties/sessionExpiryInterval`` (needed for a
    /// session to outlive the connection on MQTT 5), receive maximum, maximum packet size, topic
    /// alias maximum, request response information, user properties. Sent again on reconnects.
    public var connectProperties: MQTTProperties

    // MARK: Security

    /// TLS settings, or `nil` for plain TCP. Mutually exclusive with ``psk``.
    public var tls: MQTTTLSConfiguration?
    /// TLS with a pre-shared key instead of certificates, or `nil`. Mutually exclusive with ``tls``.
    public var psk: MQTTPreSharedKey?

    // MARK: Transport and flow

    /// A SOCKS5 proxy to connect through, or `nil` to connect to the broker directly. Not for a
    /// Unix socket (``port`` 0).
    public var socksProxy: MQTTSOCKS5Proxy?

    /// Whether to disable Nagle's algorithm (`TCP_NODELAY`). Defaults to `true`: MQTT packets are
    /// small and latency matters more than the few bytes Nagle saves.
    public var tcpNoDelay: Bool
    /// How many packets an event-loop client reads from its socket in one network pass before the
    /// messages they carried are handed over (and before the loop turns to other work): 1 to
    /// 1,024, default 64. With 1, each received message reaches its sequence, and code running on
    /// ``MQTTClient/taskExecutor``, before the next packet is read, so that it interleaves with
    /// libmosquitto's log records as in libmosquitto's own callbacks (the `mqtt` CLI's `-d`);
    /// a burst then costs a pass per packet. The thread-per-client driver reads as libmosquitto's
    /// `mosquitto_loop` does and ignores it.
    public var packetsPerRead = 64
    /// How many QoS 1/2 messages libmosquitto keeps in flight at once (MQTT 5: the client's
    /// receive maximum towards the broker is separate). Defaults to 20, libmosquitto's default.
    public var maxInflightMessages: Int
    /// How many QoS 1/2 publishes may await acknowledgement (in flight or queued by libmosquitto)
    /// before ``MQTTClient/beginPublish(to:payload:qos:retain:properties:)-(_,Collection<UInt8>,_,_,_)`` throws
    /// ``MQTTError/Code/queueFull``. libmosquitto's own queue is unbounded; this bounds it.
    /// At most 65,535 (packet identifiers are 16 bits); defaults to 10,000.
    public var maxPendingPublishes: Int
    /// How many received messages each message sequence buffers for a slow consumer. When a
    /// sequence's buffer is full it ends with ``MQTTError/Code/messageBufferOverflow`` rather than
    /// dropping messages silently.
    public var messageBufferSize: Int
    /// What to do when an established connection is lost.
    public var reconnect: MQTTReconnectPolicy
    /// Whether the client subscribes again to what it had subscribed when a connection comes up
    /// without the broker's session (CONNACK session-present false: a broker restart without
    /// persistence, an expired session). Defaults to `true`. The re-subscription uses each
    /// filter's QoS, options and properties. When every SUBACK is in, ``MQTTClient/connectionEvents``
    /// reports ``MQTTConnectionEvent/resubscribed(refused:)``, listing any filter refused this time
    /// (whose sequences end with ``MQTTError/Code/subscriptionRefused``).
    public var resubscribeOnSessionLoss: Bool

    // MARK: Timeouts

    /// How long ``MQTTClient/connect(timeout:)`` waits for the CONNACK by default.
    public var connectTimeout: Duration
    /// How long publish acknowledgements, SUBACK, UNSUBACK and disconnect are awaited by default.
    public var operationTimeout: Duration

    // MARK: Observability

    /// Where the client logs (swift-log): libmosquitto's own lines (its packet traces at
    /// `trace`, its warnings and errors at `warning` and `error`) and connection changes
    /// (connected and disconnected at `info`, a lost connection at `warning`, reconnecting at
    /// `notice`), each with the client ID, host and port as metadata. `nil` (the default) logs
    /// nothing. No password or key passphrase is ever logged.
    public var logger: Logger?
    /// Dimensions added to every metric the client records (swift-metrics), e.g.
    /// `[("service", "ingest")]`. Metrics are recorded only when a metrics backend was
    /// bootstrapped before the client is created; the metric names are listed in <doc:Observability>.
    public var metricsDimensions: [(String, String)]
    /// The network threads that drive the connection: by default ``MQTTEventLoopGroup/shared``,
    /// whose few threads drive every client of the process. `nil` gives the client a thread of
    /// its own while it is connected, running libmosquitto's `select()` loop as
    /// `mosquitto_loop_start` does, which cannot use descriptor numbers of 1,024 or more.
    public var eventLoopGroup: MQTTEventLoopGroup? {
        get {
            switch driver {
            case .sharedGroup: .shared
            case .group(let group): group
            case .ownThread: nil
            }
        }
        set { driver = newValue.map(Driver.group) ?? .ownThread }
    }

    /// What drives the connection. The default names the shared group without touching it, so
    /// that its threads start only when a client uses it (not for every configuration made).
    private enum Driver: Sendable {
        case sharedGroup
        case group(MQTTEventLoopGroup)
        case ownThread
    }

    private var driver = Driver.sharedGroup

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - host: The broker's host. Defaults to `localhost`.
    ///   - port: The broker's port. Defaults to 1883.
    ///   - clientID: The client identifier; empty generates one.
    ///   - protocolVersion: The MQTT version. Defaults to 3.1.1.
    ///   - keepAlive: The keepalive interval. Defaults to 60 seconds.
    ///   - cleanSession: Whether to start a clean session. Defaults to `true`.
    ///   - credentials: Username and password, or `nil`.
    ///   - will: The will message, or `nil`.
    ///   - tls: TLS settings, or `nil` for plain TCP.
    public init(
        host: String = "localhost",
        port: Int = 1883,
        clientID: String = "",
        protocolVersion: MQTTProtocolVersion = .v3_1_1,
        keepAlive: Duration = .seconds(60),
        cleanSession: Bool = true,
        credentials: MQTTCredentials? = nil,
        will: MQTTWill? = nil,
        tls: MQTTTLSConfiguration? = nil
    ) {
        self.host = host
        self.port = port
        self.bindAddress = nil
        self.clientID = clientID
        self.protocolVersion = protocolVersion
        self.keepAlive = keepAlive
        self.cleanSession = cleanSession
        self.credentials = credentials
        self.will = will
        self.connectProperties = MQTTProperties()
        self.tls = tls
        self.psk = nil
        self.socksProxy = nil
        self.tcpNoDelay = true
        self.maxInflightMessages = 20
        self.maxPendingPublishes = 10_000
        self.messageBufferSize = 10_000
        self.reconnect = .exponentialBackoff()
        self.resubscribeOnSessionLoss = true
        self.connectTimeout = .seconds(10)
        self.operationTimeout = .seconds(30)
        self.logger = nil
        self.metricsDimensions = []
    }
}

// MARK: - MQTTCredentials

/// A username and password. The password never appears in descriptions, dumps or errors.
public struct MQTTCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The username.
    public var username: String
    /// The password's bytes, or `nil` to send only a username.
    ///
    /// MQTT passwords are binary data: any bytes but NUL (libmosquitto takes the password as a
    /// C string), at most 65,535 of them.
    public var passwordBytes: [UInt8]?

    /// The password as text, or `nil` to send only a username. Setting it sets
    /// ``passwordBytes`` to its UTF-8; a password of bytes that are not UTF-8 reads with U+FFFD
    /// in their place (``passwordBytes`` has them as they are).
    public var password: String? {
        get { passwordBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { passwordBytes = newValue.map { Array($0.utf8) } }
    }

    /// Creates credentials with a text password.
    ///
    /// - Parameters:
    ///   - username: The username.
    ///   - password: The password, or `nil`.
    public init(username: String, password: String? = nil) {
        self.username = username
        passwordBytes = password.map { Array($0.utf8) }
    }

    /// Creates credentials with a password of any bytes but NUL (MQTT passwords are binary data).
    ///
    /// - Parameters:
    ///   - username: The username.
    ///   - passwordBytes: The password's bytes, or `nil`.
    public init(username: String, passwordBytes: [UInt8]?) {
        self.username = username
        self.passwordBytes = passwordBytes
    }

    /// `username (password redacted)`.
    public var description: String {
        passwordBytes == nil ? "\(username)" : "\(username) (password redacted)"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// A mirror that shows the username only.
    public var customMirror: Mirror {
        Mirror(self, children: ["username": username, "password": passwordBytes == nil ? "nil" : "<redacted>"])
    }
}

// MARK: - MQTTReconnectPolicy

/// What the client does when an established connection is lost.
///
/// With reconnection on, QoS 1/2 publishes awaiting acknowledgement stay pending and libmosquitto
/// sends them again after the reconnect; with it off, they fail with
/// ``MQTTError/Code/connectionLost``. A refused CONNACK (bad credentials, not authorized) is never
/// retried.
public struct MQTTReconnectPolicy: Sendable, Hashable {
    /// The first delay.
    public var minimumDelay: Duration
    /// The largest delay; the delay doubles from ``minimumDelay`` up to this.
    public var maximumDelay: Duration
    /// Whether to add up to 25 % random jitter to each delay, so that many clients do not
    /// reconnect in lockstep after a broker restart.
    public var jitter: Bool
    /// Whether reconnection is on.
    public var isEnabled: Bool
    /// How long a connection must stay up before the backoff starts again from ``minimumDelay``.
    ///
    /// A CONNACK alone does not reset it: a broker that accepts each connection and then drops
    /// it (or sends a malformed packet right after CONNACK) is retried with a delay that keeps
    /// doubling up to ``maximumDelay``, not at the first delay for ever.
    public var stablePeriod: Duration = .seconds(10)

    /// Never reconnect: a lost connection ends the session and the client returns to disconnected.
    public static let disabled = MQTTReconnectPolicy(minimumDelay: .zero, maximumDelay: .zero, jitter: false, isEnabled: false)

    /// Reconnect with exponential backoff.
    ///
    /// - Parameters:
    ///   - minimumDelay: The first delay. Defaults to 1 second.
    ///   - maximumDelay: The largest delay. Defaults to 30 seconds.
    ///   - jitter: Whether to add random jitter. Defaults to `true`.
    ///   - stablePeriod: How long a connection must stay up before the backoff starts again
    ///     from `minimumDelay` (``stablePeriod``). Defaults to 10 seconds.
    public static func exponentialBackoff(
        minimumDelay: Duration = .seconds(1),
        maximumDelay: Duration = .seconds(30),
        jitter: Bool = true,
        stablePeriod: Duration = .seconds(10)
    ) -> MQTTReconnectPolicy {
        MQTTReconnectPolicy(
            minimumDelay: minimumDelay, maximumDelay: max(minimumDelay, maximumDelay), jitter: jitter, isEnabled: true, stablePeriod: stablePeriod
        )
    }

    /// The delay before reconnection attempt `attempt` (1-based).
    ///
    /// - Parameter attempt: Which attempt this is, starting at 1.
    /// - Returns: The delay to wait before that attempt.
    public func delay(forAttempt attempt: Int) -> Duration {
        var delay = minimumDelay
        var step = 1
        while step < attempt && delay < maximumDelay {
            delay *= 2
            step += 1
        }
        delay = min(delay, maximumDelay)
        if jitter, delay > .zero {
            delay += delay * Double.random(in: 0..<0.25)
        }
        return delay
    }
}

// MARK: - Derived

extension MQTTConfiguration {
    /// Whether the broker keeps this client's session (and subscriptions) after the connection
    /// closes: a persistent session on MQTT 3.1/3.1.1, a non-zero session expiry on MQTT 5.
    var sessionOutlivesConnection: Bool {
        protocolVersion == .v5 ? (connectProperties.sessionExpiryInterval ?? 0) > 0 : !cleanSession
    }
}
