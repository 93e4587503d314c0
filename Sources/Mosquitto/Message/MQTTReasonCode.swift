// MARK: - MQTTReasonCode

/// An MQTT 5 reason code, as carried by CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
/// UNSUBACK, DISCONNECT and AUTH.
///
/// Values below 0x80 are successes (some with information, such as
/// ``noMatchingSubscribers``); 0x80 and above are failures. The description comes from
/// libmosquitto's `mosquitto_reason_string`.
public struct MQTTReasonCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The code as it appears on the wire.
    public let rawValue: UInt8

    /// Creates a reason code from its wire value.
    ///
    /// - Parameter rawValue: The byte the broker sent.
    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// Whether the code reports a failure (0x80 or above).
    public var isFailure: Bool { rawValue >= 0x80 }

    /// libmosquitto's text for the code, e.g. `"Not authorized"`.
    public var description: String {
        "\(LibMosquitto.reasonString(rawValue)) (0x\(String(rawValue, radix: 16, uppercase: true)))"
    }

    // MARK: Successes

    /// 0x00: Success, normal disconnection, or granted QoS 0.
    public static let success = Self(rawValue: 0x00)
    /// 0x01: Granted QoS 1.
    public static let grantedQoS1 = Self(rawValue: 0x01)
    /// 0x02: Granted QoS 2.
    public static let grantedQoS2 = Self(rawValue: 0x02)
    /// 0x04: Disconnect with will message.
    public static let disconnectWithWillMessage = Self(rawValue: 0x04)
    /// 0x10: No matching subscribers (a successful publish nobody received).
    public static let noMatchingSubscribers = Self(rawValue: 0x10)
    /// 0x11: No subscription existed (a successful unsubscribe of nothing).
    public static let noSubscriptionExisted = Self(rawValue: 0x11)
    /// 0x18: Continue authentication.
    public static let continueAuthentication = Self(rawValue: 0x18)
    /// 0x19: Re-authenticate.
    public static let reAuthenticate = Self(rawValue: 0x19)

    // MARK: Failures

    /// 0x80: Unspecified error (also the MQTT 3.1.1 SUBACK failure code).
    public static let unspecifiedError = Self(rawValue: 0x80)
    /// 0x81: Malformed packet.
    public static let malformedPacket = Self(rawValue: 0x81)
    /// 0x82: Protocol error.
    public static let protocolError = Self(rawValue: 0x82)
    /// 0x83: Implementation specific error.
    public static let implementationSpecificError = Self(rawValue: 0x83)
    /// 0x84: Unsupported protocol version.
    public static let unsupportedProtocolVersion = Self(rawValue: 0x84)
    /// 0x85: Client identifier not valid.
    public static let clientIdentifierNotValid = Self(rawValue: 0x85)
    /// 0x86: Bad user name or password.
    public static let badUsernameOrPassword = Self(rawValue: 0x86)
    /// 0x87: Not authorized.
    public static let notAuthorized = Self(rawValue: 0x87)
    /// 0x88: Server unavailable.
    public static let serverUnavailable = Self(rawValue: 0x88)
    /// 0x89: Server busy.
    public static let serverBusy = Self(rawValue: 0x89)
    /// 0x8A: Banned.
    public static let banned = Self(rawValue: 0x8A)
    /// 0x8B: Server shutting down.
    public static let serverShuttingDown = Self(rawValue: 0x8B)
    /// 0x8C: Bad authentication method.
    public static let badAuthenticationMethod = Self(rawValue: 0x8C)
    /// 0x8D: Keep alive timeout.
    public static let keepAliveTimeout = Self(rawValue: 0x8D)
    /// 0x8E: Session taken over.
    public static let sessionTakenOver = Self(rawValue: 0x8E)
    /// 0x8F: Topic filter invalid.
    public static let topicFilterInvalid = Self(rawValue: 0x8F)
    /// 0x90: Topic name invalid.
    public static let topicNameInvalid = Self(rawValue: 0x90)
    /// 0x91: Packet identifier in use.
    public static let packetIdentifierInUse = Self(rawValue: 0x91)
    /// 0x92: Packet identifier not found.
    public static let packetIdentifierNotFound = Self(rawValue: 0x92)
    /// 0x93: Receive maximum exceeded.
    public static let receiveMaximumExceeded = Self(rawValue: 0x93)
    /// 0x94: Topic alias invalid.
    public static let topicAliasInvalid = Self(rawValue: 0x94)
    /// 0x95: Packet too large.
    public static let packetTooLarge = Self(rawValue: 0x95)
    /// 0x96: Message rate too high.
    public static let messageRateTooHigh = Self(rawValue: 0x96)
    /// 0x97: Quota exceeded.
    public static let quotaExceeded = Self(rawValue: 0x97)
    /// 0x98: Administrative action.
    public static let administrativeAction = Self(rawValue: 0x98)
    /// 0x99: Payload format invalid.
    public static let payloadFormatInvalid = Self(rawValue: 0x99)
    /// 0x9A: Retain not supported.
    public static let retainNotSupported = Self(rawValue: 0x9A)
    /// 0x9B: QoS not supported.
    public static let qosNotSupported = Self(rawValue: 0x9B)
    /// 0x9C: Use another server.
    public static let useAnotherServer = Self(rawValue: 0x9C)
    /// 0x9D: Server moved.
    public static let serverMoved = Self(rawValue: 0x9D)
    /// 0x9E: Shared subscriptions not supported.
    public static let sharedSubscriptionsNotSupported = Self(rawValue: 0x9E)
    /// 0x9F: Connection rate exceeded.
    public static let connectionRateExceeded = Self(rawValue: 0x9F)
    /// 0xA0: Maximum connect time.
    public static let maximumConnectTime = Self(rawValue: 0xA0)
    /// 0xA1: Subscription identifiers not supported.
    public static let subscriptionIdentifiersNotSupported = Self(rawValue: 0xA1)
    /// 0xA2: Wildcard subscriptions not supported.
    public static let wildcardSubscriptionsNotSupported = Self(rawValue: 0xA2)
}
