// MARK: - MQTTConnectResult

/// What the broker's CONNACK said about an accepted connection.
public struct MQTTConnectResult: Sendable, Hashable {
    /// Whether the broker resumed a session it kept for this client ID (only possible with
    /// ``MQTTConfiguration/cleanSession`` off).
    public var sessionPresent: Bool

    /// Creates a result.
    ///
    /// - Parameter sessionPresent: The CONNACK's session-present flag.
    public init(sessionPresent: Bool) {
        self.sessionPresent = sessionPresent
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

    /// Creates a receipt.
    ///
    /// - Parameters:
    ///   - messageID: The packet identifier.
    ///   - qos: The publish QoS.
    ///   - reasonCode: The broker's reason code.
    public init(messageID: UInt16, qos: MQTTQoS, reasonCode: MQTTReasonCode = .success) {
        self.messageID = messageID
        self.qos = qos
        self.reasonCode = reasonCode
    }
}

// MARK: - MQTTPendingPublish

/// A publish handed to libmosquitto whose acknowledgement can be awaited later.
///
/// Returned by ``MQTTClient/beginPublish(to:payload:qos:retain:)`` so that many messages can be
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
    let promise: Promise<MQTTPublishReceipt>
    let defaultTimeout: Duration

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
        var receipt = try await promise.wait(timeout: timeout ?? defaultTimeout, operation: .publish)
        receipt.qos = qos
        return receipt
    }

    /// Whether the acknowledgement has arrived (or the publish failed).
    public var isComplete: Bool { promise.result != nil }
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
