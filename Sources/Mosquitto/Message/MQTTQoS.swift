// MARK: - MQTTQoS

/// An MQTT quality-of-service level.
public enum MQTTQoS: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    /// QoS 0: at most once, no acknowledgement.
    case atMostOnce = 0
    /// QoS 1: at least once, acknowledged by PUBACK; duplicates possible.
    case atLeastOnce = 1
    /// QoS 2: exactly once, acknowledged by PUBCOMP after a four-way handshake.
    case exactlyOnce = 2

    /// Orders levels by their number.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `"QoS 0"`, `"QoS 1"` or `"QoS 2"`.
    public var description: String { "QoS \(rawValue)" }
}

// MARK: - MQTTProtocolVersion

/// The MQTT protocol version a client speaks.
public enum MQTTProtocolVersion: Int32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// MQTT 3.1 (protocol level 3). Client IDs are limited to 23 bytes.
    case v3_1 = 3
    /// MQTT 3.1.1 (protocol level 4), the default.
    case v3_1_1 = 4
    /// MQTT 5.0 (protocol level 5).
    case v5 = 5

    /// `"3.1"`, `"3.1.1"` or `"5"`.
    public var description: String {
        switch self {
        case .v3_1: "3.1"
        case .v3_1_1: "3.1.1"
        case .v5: "5"
        }
    }
}
