// MARK: - MQTTError

/// Every failure of this library: a libmosquitto error, a refused connection, a refused
/// subscription, a timeout, or invalid input.
///
/// Match on ``code`` (`catch let error as MQTTError where error.code == .notConnected`) or use the
/// pattern form `catch MQTTError.Code.badUsernameOrPassword`. The ``description`` is built from
/// libmosquitto's own strings and never contains a payload, a password or a key passphrase.
public struct MQTTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public var code: Code
    /// The operation that failed.
    public var operation: Operation
    /// The MQTT 5 reason code the broker sent, when the failure came from an MQTT 5 broker.
    public var reasonCode: MQTTReasonCode?
    /// The CONNACK return code (1...5) an MQTT 3.1/3.1.1 broker refused the connection with.
    public var connectReturnCode: UInt8?
    /// The raw `MOSQ_ERR_*` value libmosquitto returned, when the failure came from libmosquitto.
    public var mosquittoErrorCode: Int32?
    /// The operating-system `errno` behind a `MOSQ_ERR_ERRNO` failure.
    public var errno: Int32?
    /// Extra context: the offending topic, OpenSSL's reason for a TLS failure, the refused filter.
    /// Never a payload or a secret.
    public var detail: String?
    /// For ``Code/subscriptionRefused``: the result of every filter of the call, in its order, so
    /// that a caller can tell which were granted (they stay subscribed at the broker); `nil`
    /// otherwise.
    public var subscribeResults: [MQTTSubscribeResult]?

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - operation: The operation that failed.
    ///   - reasonCode: The broker's reason code, if any.
    ///   - mosquittoErrorCode: The raw `MOSQ_ERR_*` value, if any.
    ///   - errno: The operating-system error number, if any.
    ///   - detail: Extra context that contains no secret.
    public init(
        _ code: Code,
        operation: Operation,
        reasonCode: MQTTReasonCode? = nil,
        mosquittoErrorCode: Int32? = nil,
        errno: Int32? = nil,
        detail: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.reasonCode = reasonCode
        self.mosquittoErrorCode = mosquittoErrorCode
        self.errno = errno
        self.detail = detail
    }

    /// libmosquitto's own sentence for ``mosquittoErrorCode`` (`mosquitto_strerror`), e.g.
    /// `A network protocol error occurred when communicating with the broker.`, or `nil` when the
    /// failure did not come from libmosquitto. The mosquitto tools print this text.
    public var mosquittoErrorText: String? {
        mosquittoErrorCode.map(LibMosquitto.errorString)
    }

    /// A one-line, human-readable description, e.g.
    /// `connect failed: bad username or password (Connection Refused: bad user name or password.)`,
    /// or, for an established connection, `connection lost (...)` / `connection: protocol error (...)`.
    public var description: String {
        var text =
            operation != .connection ? "\(operation.name) failed: \(code.summary)"
            : code == .connectionLost ? code.summary
            : "connection: \(code.summary)"
        var notes: [String] = []
        if let reasonCode {
            notes.append(reasonCode.description)
        }
        if let connectReturnCode {
            notes.append(LibMosquitto.connackString(connectReturnCode))
        }
        // `mosquitto_strerror(MOSQ_ERR_ERRNO)` reads the *current* errno; ours is below. For a
        // TLS failure with OpenSSL's reason, libmosquitto's sentence ("A TLS error occurred.")
        // only repeats the summary.
        let restatesTheSummary = code == .tlsFailure && !(detail ?? "").isEmpty
        if let mosquittoErrorCode, reasonCode == nil, errno == nil, !restatesTheSummary {
            notes.append(LibMosquitto.errorString(mosquittoErrorCode))
        }
        if let errno {
            // errno 0 would read "Success": say what it means instead.
            notes.append(errno == 0 ? "no error number set" : LibMosquitto.systemErrorString(errno))
        }
        if let detail, !detail.isEmpty {
            notes.append(detail)
        }
        if !notes.isEmpty {
            text += " (" + notes.joined(separator: "; ") + ")"
        }
        return text
    }
}

extension MQTTError.Code {
    /// Matches an error against a code, so that `catch MQTTError.Code.timeout` works.
    ///
    /// - Parameters:
    ///   - code: The code to match.
    ///   - error: The caught error.
    /// - Returns: Whether `error` is an ``MQTTError`` with this code.
    public static func ~= (code: MQTTError.Code, error: any Error) -> Bool {
        (error as? MQTTError)?.code == code
    }
}

// MARK: - Operation

extension MQTTError {
    /// The client operation during which an error happened.
    public struct Operation: Sendable, Hashable, CustomStringConvertible {
        /// The operation's name, as it appears in descriptions.
        public let name: String

        /// Creating the client from its configuration.
        public static let configure = Operation(name: "configure")
        /// Connecting to the broker, up to the CONNACK.
        public static let connect = Operation(name: "connect")
        /// Publishing a message, up to its acknowledgement.
        public static let publish = Operation(name: "publish")
        /// Subscribing, up to the SUBACK.
        public static let subscribe = Operation(name: "subscribe")
        /// Unsubscribing, up to the UNSUBACK.
        public static let unsubscribe = Operation(name: "unsubscribe")
        /// Disconnecting.
        public static let disconnect = Operation(name: "disconnect")
        /// Receiving messages through a message sequence.
        public static let receive = Operation(name: "receive")
        /// Validating a topic or a topic filter.
        public static let validate = Operation(name: "validate")
        /// The connection, after it was established.
        public static let connection = Operation(name: "connection")

        /// The operation's name.
        public var description: String { name }
    }
}
