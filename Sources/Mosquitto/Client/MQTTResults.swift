// MARK: - MQTTConnectResult

/// What the broker's CONNACK said about an accepted connection, including (MQTT 5) the server's
/// capabilities. Read it from ``MQTTClient/connect(timeout:)`` or later from
/// ``MQTTClient/connectResult``. Absent capabilities take MQTT 5's defaults.
public struct MQTTConnectResult: Sendable, Hashable {
    /// Whether the broker resumed a session it kept for this client ID (only possible with
    /// ``MQTTConfiguration/cleanSession`` off).
    public var sessionPresent: Bool
    /// The CONNACK's MQTT 5 properties, as sent (empty on MQTT 3.1/3.1.1).
    public var properties: MQTTProperties

    /// Creates a result.
    ///
    /// - Parameters:
    ///   - sessionPresent: The CONNACK's session-present flag.
    ///   - properties: The CONNACK's properties.
    public init(sessionPresent: Bool, properties: MQTTProperties = MQTTProperties()) {
        self.sessionPresent = sessionPresent
        self.properties = properties
    }

    /// How many QoS 1/2 publishes the broker processes at once (default 65,535).
    public var receiveMaximum: Int { properties.receiveMaximum.map(Int.init) ?? 65_535 }
    /// The highest QoS the broker accepts (default QoS 2). Publishing above it throws
    /// ``MQTTError/Code/qosNotSupported`` before anything is sent.
    public var maximumQoS: MQTTQoS { properties.maximumQoS ?? .exactlyOnce }
    /// Whether the broker accepts retained messages (default `true`). Publishing a retained
    /// message when it does not throws ``MQTTError/Code/retainNotSupported`` before sending.
    public var retainAvailable: Bool { properties.retainAvailable ?? true }
    /// The largest packet the broker accepts, or `nil` for no limit beyond MQTT's. A larger
    /// publish throws ``MQTTError/Code/payloadTooLarge`` before sending.
    public var maximumPacketSize: Int? { properties.maximumPacketSize.map(Int.init) }
    /// The highest topic alias the broker accepts (default 0: none).
    public var topicAliasMaximum: Int { properties.topicAliasMaximum.map(Int.init) ?? 0 }
    /// Whether wildcard subscriptions are supported (default `true`).
    public var wildcardSubscriptionAvailable: Bool { properties.wildcardSubscriptionAvailable ?? true }
    /// Whether subscription identifiers are supported (default `true`).
    public var subscriptionIdentifiersAvailable: Bool { properties.subscriptionIdentifiersAvailable ?? true }
    /// Whether shared subscriptions are supported (default `true`).
    public var sharedSubscriptionAvailable: Bool { properties.sharedSubscriptionAvailable ?? true }
    /// The client ID the broker assigned, when the client sent none.
    public var assignedClientIdentifier: String? { properties.assignedClientIdentifier }
    /// The keepalive the broker imposes, if it overrides the client's.
    public var serverKeepAlive: Duration? { properties.serverKeepAlive.map { .seconds(Int($0)) } }
    /// The session expiry interval the broker applies, if it changed the client's.
    public var sessionExpiryInterval: UInt32? { properties.sessionExpiryInterval }

    /// What this CONNACK allows a publish, copied out once for the publish path.
    var publishLimits: PublishLimits {
        PublishLimits(maximumQoS: maximumQoS, retainAvailable: retainAvailable, maximumPacketSize: maximumPacketSize)
    }
}

// MARK: - PublishLimits

/// The broker's limits on what it accepts in a PUBLISH (from its CONNACK): a few plain values,
/// so that checking every publish copies no property list.
struct PublishLimits: Sendable {
    /// The highest QoS the broker accepts.
    let maximumQoS: MQTTQoS
    /// Whether the broker accepts retained messages.
    let retainAvailable: Bool
    /// The largest packet the broker accepts, if it said.
    let maximumPacketSize: Int?

    /// Refuses, before sending, a publish the broker said it will not accept.
    ///
    /// - Parameter packetSize: The PUBLISH's exact encoded size (``PacketSize/publish(topicLength:payloadLength:qos:properties:version:)``).
    func check(qos: MQTTQoS, retain: Bool, packetSize: Int) throws(MQTTError) {
        if qos > maximumQoS {
            throw MQTTError(.qosNotSupported, operation: .publish, detail: "the broker's maximum QoS is \(maximumQoS.rawValue)")
        }
        if retain, !retainAvailable {
            throw MQTTError(.retainNotSupported, operation: .publish, detail: "the broker does not accept retained messages")
        }
        if let maximumPacketSize, packetSize > maximumPacketSize {
            throw MQTTError(
                .payloadTooLarge, operation: .publish, detail: "a \(packetSize)-byte PUBLISH; the broker accepts packets up to \(maximumPacketSize) bytes"
            )
        }
    }

    /// Refuses, before sending, a SUBSCRIBE or UNSUBSCRIBE larger than the broker accepts.
    func check(packetSize: Int, operation: MQTTError.Operation) throws(MQTTError) {
        if let maximumPacketSize, packetSize > maximumPacketSize {
            let packet = operation == .subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE"
            throw MQTTError(
                .packetTooLarge, operation: operation, detail: "a \(packetSize)-byte \(packet); the broker accepts packets up to \(maximumPacketSize) bytes"
            )
        }
    }
}

// MARK: - MQTTPublishReceipt

/// The outcome of a publish.
public struct MQTTPublishReceipt: Sendable, Hashable {
    /// The packet identifier libmosquitto assigned.
    public var messageID: UInt16
    /// The QoS the message was published with.
    public var qos: MQTTQoS
    /// The broker's MQTT 5 reason code (``MQTTReasonCode/success`` for QoS 0, MQTT 3.1.1, and
    /// plain acknowledgements; e.g. ``MQTTReasonCode/noMatchingSubscribers`` is a success too).
    public var reasonCode: MQTTReasonCode
    /// The MQTT 5 properties of the PUBACK/PUBCOMP (reason string, user properties).
    public var properties: MQTTProperties

    /// Creates a receipt.
    ///
    /// - Parameters:
    ///   - messageID: The packet identifier.
    ///   - qos: The publish QoS.
    ///   - reasonCode: The broker's reason code.
    ///   - properties: The acknowledgement's properties.
    public init(messageID: UInt16, qos: MQTTQoS, reasonCode: MQTTReasonCode = .success, properties: MQTTProperties = MQTTProperties()) {
        self.messageID = messageID
        self.qos = qos
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

// MARK: - MQTTPendingPublish

/// A publish handed to libmosquitto whose acknowledgement can be awaited later.
///
/// Returned by ``MQTTClient/beginPublish(to:payload:qos:retain:properties:)-(_,Collection<UInt8>,_,_,_)`` so that many messages can be
/// published without one round trip each, then awaited together:
/// ```swift
/// let pending = try (0..<1000).map { try client.beginPublish(to: "t", payload: [UInt8]("\($0)".utf8), qos: .atLeastOnce) }
/// for publish in pending { try await publish.acknowledgement() }
/// ```
/// Dropping it without awaiting is fine: the message is still delivered.
public struct MQTTPendingPublish: Sendable {
    /// The packet identifier libmosquitto assigned.
    public let messageID: UInt16
    /// The QoS the message was published with.
    public let qos: MQTTQoS
    /// The acknowledgement to wait for (QoS 1/2), or `nil` when ``completed`` is already known.
    let promise: Promise<MQTTPublishReceipt>?
    /// The receipt of a QoS 0 message: it has no acknowledgement, so it costs no promise.
    let completed: MQTTPublishReceipt?
    let defaultTimeout: Duration

    /// A publish whose acknowledgement `promise` delivers.
    init(messageID: UInt16, qos: MQTTQoS, promise: Promise<MQTTPublishReceipt>, defaultTimeout: Duration) {
        self.messageID = messageID
        self.qos = qos
        self.promise = promise
        self.completed = nil
        self.defaultTimeout = defaultTimeout
    }

    /// A publish that is complete already (QoS 0, handed to libmosquitto).
    init(completed receipt: MQTTPublishReceipt) {
        self.messageID = receipt.messageID
        self.qos = receipt.qos
        self.promise = nil
        self.completed = receipt
        self.defaultTimeout = .zero
    }

    /// Waits until the broker acknowledged the message: PUBACK for QoS 1, PUBCOMP for QoS 2;
    /// returns at once for QoS 0.
    ///
    /// A timeout or a cancellation ends the wait only; the message stays queued.
    ///
    /// - Parameter timeout: How long to wait; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Returns: The receipt with the broker's reason code.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/publishRefused`` (MQTT 5 failure reason),
    ///   ``MQTTError/Code/connectionLost``, ``MQTTError/Code/timeout``, ``MQTTError/Code/cancelled``.
    @discardableResult
    public func acknowledgement(timeout: Duration? = nil) async throws(MQTTError) -> MQTTPublishReceipt {
        guard let promise else { return completed ?? MQTTPublishReceipt(messageID: messageID, qos: qos) }
        var receipt = try await promise.wait(timeout: timeout ?? defaultTimeout, operation: .publish)
        receipt.qos = qos
        return receipt
    }

    /// Whether the acknowledgement has arrived (or the publish failed).
    public var isComplete: Bool { promise.map { $0.result != nil } ?? true }
}

// MARK: - MQTTConnectionEvent

/// A change in a client's connection, in the order it happened.
public enum MQTTConnectionEvent: Sendable, Hashable {
    /// ``MQTTClient/connect(timeout:)`` started a connection attempt.
    case connecting
    /// The broker accepted the connection.
    case connected(sessionPresent: Bool)
    /// The connection ended: `nil` when the client disconnected on purpose, otherwise why
    /// (lost, refused, TLS failure, ...).
    case disconnected(MQTTError?)
    /// The client will try to reconnect after `delay` (attempt counts from 1).
    case reconnecting(attempt: Int, delay: Duration)
    /// The broker had lost the session on a reconnect (`connected(sessionPresent: false)`), so
    /// the client subscribed again to every filter it held
    /// (``MQTTConfiguration/resubscribeOnSessionLoss``), and the broker has now answered every
    /// one of those SUBSCRIBEs: from here on, messages published to those filters reach their
    /// sequences. `refused` names the filters the broker refused this time (an ACL changed
    /// meanwhile, a quota), or that could not be sent, each with its reason code; empty when
    /// all came back. Not sent when nothing had to be restored (a first connection, a session
    /// the broker kept, no subscriptions). Sent after the `.connected` it follows; if that
    /// connection is lost before the answers, the SUBSCRIBEs are sent again on the next one and
    /// the event follows that one's `.connected`.
    case resubscribed(refused: [MQTTSubscribeResult])
}

// MARK: - MQTTLogLevel

/// The level of a libmosquitto log line.
public enum MQTTLogLevel: Int, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Packet-level tracing (`MOSQ_LOG_DEBUG`), e.g. "Client x sending PUBLISH".
    case debug
    /// Informational (`MOSQ_LOG_INFO`, `MOSQ_LOG_NOTICE`, subscribe/unsubscribe notes).
    case info
    /// A warning (`MOSQ_LOG_WARNING`).
    case warning
    /// An error (`MOSQ_LOG_ERR`), e.g. OpenSSL's reason for a failed handshake.
    case error

    /// Orders levels by severity.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `debug`, `info`, `warning` or `error`.
    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }
}
