internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - MQTTError.Code

extension MQTTError {
    /// What went wrong, as an extensible set of codes.
    ///
    /// A struct over a private enum: new codes can be added without breaking `switch` statements
    /// in user code. Compare with `==` or match with `~=`.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: Sendable, Hashable {
            // Library-level outcomes.
            case invalidConfiguration, invalidTopic, invalidTopicFilter, invalidArgument
            case notConnected, alreadyConnected, connectionRefused, badUsernameOrPassword
            case notAuthorized, connectionFailed, hostLookupFailed, tlsFailure, timeout
            case cancelled, connectionLost, clientClosed, subscriptionRefused
            case unsubscriptionRefused, publishRefused, payloadTooLarge, queueFull
            case messageBufferOverflow, protocolError, outOfMemory, notSupported
            case malformedUTF8, malformedPacket, unknown
            case propertyNotAllowed, qosNotSupported, retainNotSupported, packetTooLarge
            case proxyFailure
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The configuration is invalid (a bad keepalive, a missing client ID, an unreadable
        /// certificate file). Corresponds to `MOSQ_ERR_INVAL` while configuring.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// A publish topic is invalid: empty, contains `+` or `#`, contains NUL, is not valid
        /// UTF-8 or is longer than 65,535 bytes.
        public static let invalidTopic = Code(.invalidTopic)
        /// A subscription filter is invalid: empty, `#` not last, `+` or `#` sharing a level,
        /// NUL, invalid UTF-8, or longer than 65,535 bytes.
        public static let invalidTopicFilter = Code(.invalidTopicFilter)
        /// An argument is out of range. Corresponds to `MOSQ_ERR_INVAL`.
        public static let invalidArgument = Code(.invalidArgument)
        /// The client is not connected. Corresponds to `MOSQ_ERR_NO_CONN`.
        public static let notConnected = Code(.notConnected)
        /// `connect()` was called while connected or connecting.
        public static let alreadyConnected = Code(.alreadyConnected)
        /// The broker refused the connection with a CONNACK code other than the two below.
        /// Corresponds to `MOSQ_ERR_CONN_REFUSED`; see ``MQTTError/reasonCode``.
        public static let connectionRefused = Code(.connectionRefused)
        /// The broker refused the username or password (CONNACK 4, MQTT 5 reason 0x86).
        public static let badUsernameOrPassword = Code(.badUsernameOrPassword)
        /// The broker refused the client as not authorized (CONNACK 5, MQTT 5 reason 0x87), or
        /// an ACL denied an operation. Corresponds to `MOSQ_ERR_AUTH` / `MOSQ_ERR_ACL_DENIED`.
        public static let notAuthorized = Code(.notAuthorized)
        /// The TCP connection could not be made: refused, unreachable, reset.
        /// Corresponds to `MOSQ_ERR_ERRNO`; see ``MQTTError/errno``.
        public static let connectionFailed = Code(.connectionFailed)
        /// The host name could not be resolved. Corresponds to `MOSQ_ERR_EAI` / `MOSQ_ERR_LOOKUP`.
        public static let hostLookupFailed = Code(.hostLookupFailed)
        /// TLS failed: handshake, certificate verification, hostname mismatch, unreadable
        /// certificate. Corresponds to `MOSQ_ERR_TLS` / `MOSQ_ERR_TLS_HANDSHAKE` / `MOSQ_ERR_OCSP`;
        /// ``MQTTError/detail`` holds OpenSSL's reason where libmosquitto reported one.
        public static let tlsFailure = Code(.tlsFailure)
        /// The SOCKS5 proxy (``MQTTConfiguration/socksProxy``) refused or failed: it refused the
        /// authentication (no acceptable method, a wrong username or password), could not or
        /// would not reach the broker, or did not answer as a SOCKS5 proxy. Corresponds to
        /// `MOSQ_ERR_PROXY`, and to `MOSQ_ERR_AUTH` / `MOSQ_ERR_NO_CONN` from the proxy's
        /// replies before the broker's CONNACK; ``MQTTError/detail`` says which. An unreachable
        /// proxy is ``connectionFailed``, naming the proxy.
        public static let proxyFailure = Code(.proxyFailure)
        /// An operation did not complete in time. Corresponds to `MOSQ_ERR_TIMEOUT`.
        public static let timeout = Code(.timeout)
        /// The awaiting task was cancelled.
        public static let cancelled = Code(.cancelled)
        /// The connection was lost before the operation completed.
        /// Corresponds to `MOSQ_ERR_CONN_LOST` and `MOSQ_ERR_KEEPALIVE`.
        public static let connectionLost = Code(.connectionLost)
        /// The client was shut down (its last reference dropped) while the operation was pending.
        public static let clientClosed = Code(.clientClosed)
        /// The broker refused a subscription (SUBACK 0x80 or an MQTT 5 failure reason).
        public static let subscriptionRefused = Code(.subscriptionRefused)
        /// Never produced: libmosquitto 2.0 does not pass UNSUBACK reason codes to its client
        /// (`on_unsubscribe_v5` has only the packet ID and properties), so a refused
        /// unsubscription cannot be told from an accepted one. Kept so that code naming it
        /// still compiles.
        @available(*, deprecated, message: "never produced: libmosquitto 2.0 does not report UNSUBACK reason codes")
        public static let unsubscriptionRefused = Code(.unsubscriptionRefused)
        /// The broker refused a publish with an MQTT 5 failure reason (e.g. 0x87 not authorized).
        public static let publishRefused = Code(.publishRefused)
        /// The payload is larger than MQTT allows (268,435,455 bytes) or than the broker accepts.
        /// Corresponds to `MOSQ_ERR_PAYLOAD_SIZE` / `MOSQ_ERR_OVERSIZE_PACKET`.
        public static let payloadTooLarge = Code(.payloadTooLarge)
        /// A SUBSCRIBE or UNSUBSCRIBE would be larger than the broker's Maximum Packet Size
        /// (MQTT 5 CONNACK); refused before sending. (An oversized PUBLISH is ``payloadTooLarge``.)
        public static let packetTooLarge = Code(.packetTooLarge)
        /// Too many QoS 1/2 messages await acknowledgement; see
        /// ``MQTTConfiguration/maxPendingPublishes``.
        public static let queueFull = Code(.queueFull)
        /// A message sequence's buffer overflowed because its consumer fell behind; the sequence
        /// ends with this error and ``MQTTError/detail`` says how many messages were dropped.
        public static let messageBufferOverflow = Code(.messageBufferOverflow)
        /// The broker broke the protocol, or a property is duplicated or a topic alias invalid.
        /// Corresponds to `MOSQ_ERR_PROTOCOL`, `MOSQ_ERR_DUPLICATE_PROPERTY`, `MOSQ_ERR_TOPIC_ALIAS_INVALID`.
        public static let protocolError = Code(.protocolError)
        /// libmosquitto ran out of memory. Corresponds to `MOSQ_ERR_NOMEM`.
        public static let outOfMemory = Code(.outOfMemory)
        /// The operation is not supported by this build of libmosquitto.
        /// Corresponds to `MOSQ_ERR_NOT_SUPPORTED`.
        public static let notSupported = Code(.notSupported)
        /// A string is not valid UTF-8. Corresponds to `MOSQ_ERR_MALFORMED_UTF8`.
        public static let malformedUTF8 = Code(.malformedUTF8)
        /// A packet from the broker was malformed. Corresponds to `MOSQ_ERR_MALFORMED_PACKET`.
        public static let malformedPacket = Code(.malformedPacket)
        /// An MQTT 5 property is not allowed on the packet it was given for (e.g. a topic alias on
        /// SUBSCRIBE), or properties were given on an MQTT 3.1/3.1.1 connection. Checked before
        /// sending with libmosquitto's `mosquitto_property_check_command`.
        public static let propertyNotAllowed = Code(.propertyNotAllowed)
        /// The broker's CONNACK said it accepts a lower maximum QoS than the one asked for.
        /// Corresponds to `MOSQ_ERR_QOS_NOT_SUPPORTED`.
        public static let qosNotSupported = Code(.qosNotSupported)
        /// The broker's CONNACK said it does not accept retained messages.
        /// Corresponds to `MOSQ_ERR_RETAIN_NOT_SUPPORTED`.
        public static let retainNotSupported = Code(.retainNotSupported)
        /// Any other failure. Corresponds to `MOSQ_ERR_UNKNOWN` and unlisted codes.
        public static let unknown = Code(.unknown)

        /// A short, readable summary of the code.
        public var summary: String {
            switch value {
            case .invalidConfiguration: "invalid configuration"
            case .invalidTopic: "invalid topic"
            case .invalidTopicFilter: "invalid topic filter"
            case .invalidArgument: "invalid argument"
            case .notConnected: "not connected"
            case .alreadyConnected: "already connected or connecting"
            case .connectionRefused: "connection refused by the broker"
            case .badUsernameOrPassword: "bad username or password"
            case .notAuthorized: "not authorized"
            case .connectionFailed: "could not connect"
            case .hostLookupFailed: "host name lookup failed"
            case .tlsFailure: "TLS failure"
            case .proxyFailure: "SOCKS5 proxy failure"
            case .timeout: "timed out"
            case .cancelled: "cancelled"
            case .connectionLost: "connection lost"
            case .clientClosed: "client closed"
            case .subscriptionRefused: "subscription refused by the broker"
            case .unsubscriptionRefused: "unsubscription refused by the broker"
            case .publishRefused: "publish refused by the broker"
            case .payloadTooLarge: "payload too large"
            case .packetTooLarge: "packet larger than the broker accepts"
            case .queueFull: "too many messages awaiting acknowledgement"
            case .messageBufferOverflow: "message buffer overflow"
            case .protocolError: "protocol error"
            case .outOfMemory: "out of memory"
            case .notSupported: "not supported"
            case .malformedUTF8: "malformed UTF-8"
            case .malformedPacket: "malformed packet"
            case .unknown: "unknown error"
            case .propertyNotAllowed: "MQTT 5 property not allowed here"
            case .qosNotSupported: "QoS not supported by the broker"
            case .retainNotSupported: "retain not supported by the broker"
            }
        }

        /// The same as ``summary``.
        public var description: String { summary }
    }
}

// MARK: - Mapping libmosquitto return codes

extension MQTTError {
    /// The one choke point that turns a `MOSQ_ERR_*` return value into an error.
    ///
    /// - Parameters:
    ///   - mosquittoCode: A libmosquitto return value other than `MOSQ_ERR_SUCCESS`.
    ///   - operation: The operation that failed.
    ///   - errno: The `errno` captured right after the call, used for `MOSQ_ERR_ERRNO`.
    ///   - detail: Extra context without secrets.
    init(mosquittoCode: Int32, operation: Operation, errno: Int32? = nil, detail: String? = nil) {
        // libmosquitto 2.0.16 and later report a failed TLS handshake as MOSQ_ERR_ERRNO with
        // errno EPROTO (2.0.11: MOSQ_ERR_TLS).
        let tlsFailed = mosquittoCode == Int32(MOSQ_ERR_ERRNO.rawValue) && errno == EPROTO
        self.init(
            tlsFailed ? .tlsFailure : Self.code(forMosquittoError: mosquittoCode, operation: operation),
            operation: operation,
            mosquittoErrorCode: mosquittoCode,
            errno: mosquittoCode == Int32(MOSQ_ERR_ERRNO.rawValue) ? errno : nil,
            detail: detail
        )
    }

    /// The code for a `MOSQ_ERR_*` value.
    static func code(forMosquittoError value: Int32, operation: Operation) -> Code {
        switch mosq_err_t(rawValue: value) {
        case MOSQ_ERR_NOMEM: .outOfMemory
        case MOSQ_ERR_PROTOCOL, MOSQ_ERR_DUPLICATE_PROPERTY, MOSQ_ERR_TOPIC_ALIAS_INVALID:
            .protocolError
        case MOSQ_ERR_QOS_NOT_SUPPORTED: .qosNotSupported
        case MOSQ_ERR_RETAIN_NOT_SUPPORTED: .retainNotSupported
        case MOSQ_ERR_INVAL: operation == .configure ? .invalidConfiguration : .invalidArgument
        case MOSQ_ERR_NO_CONN: .notConnected
        case MOSQ_ERR_CONN_REFUSED: .connectionRefused
        case MOSQ_ERR_CONN_LOST, MOSQ_ERR_KEEPALIVE: .connectionLost
        case MOSQ_ERR_TLS, MOSQ_ERR_TLS_HANDSHAKE, MOSQ_ERR_OCSP: .tlsFailure
        case MOSQ_ERR_PROXY: .proxyFailure
        case MOSQ_ERR_PAYLOAD_SIZE, MOSQ_ERR_OVERSIZE_PACKET: .payloadTooLarge
        case MOSQ_ERR_NOT_SUPPORTED: .notSupported
        case MOSQ_ERR_AUTH, MOSQ_ERR_ACL_DENIED: .notAuthorized
        case MOSQ_ERR_ERRNO: .connectionFailed
        case MOSQ_ERR_EAI, MOSQ_ERR_LOOKUP: .hostLookupFailed
        case MOSQ_ERR_MALFORMED_UTF8: .malformedUTF8
        case MOSQ_ERR_MALFORMED_PACKET: .malformedPacket
        case MOSQ_ERR_TIMEOUT: .timeout
        default: .unknown
        }
    }

    /// The error for a refused CONNACK.
    ///
    /// - Parameters:
    ///   - returnCode: The CONNACK return code (MQTT 3.1/3.1.1) or reason code (MQTT 5).
    ///   - version: The protocol version in use, which decides how `returnCode` reads.
    static func connectRefused(returnCode: Int32, version: MQTTProtocolVersion) -> MQTTError {
        let reason = MQTTReasonCode(rawValue: UInt8(truncatingIfNeeded: returnCode))
        let code: Code
        if version == .v5 {
            switch reason {
            case .badUsernameOrPassword: code = .badUsernameOrPassword
            case .notAuthorized: code = .notAuthorized
            default: code = .connectionRefused
            }
        } else {
            switch returnCode {
            case 4: code = .badUsernameOrPassword
            case 5: code = .notAuthorized
            default: code = .connectionRefused
            }
        }
        if version == .v5 {
            return MQTTError(code, operation: .connect, reasonCode: reason)
        }
        var error = MQTTError(code, operation: .connect)
        error.connectReturnCode = UInt8(truncatingIfNeeded: returnCode)
        return error
    }
}
