internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - MosquittoStatus

/// What a libmosquitto call returned: `MOSQ_ERR_SUCCESS` or one of its `MOSQ_ERR_*` codes.
///
/// ``MosquittoHandle`` returns this instead of a raw `Int32`, so the bridge and the event loop
/// ask `isSuccess` or compare with the few codes they act on, and never see libmosquitto's
/// constants; ``MQTTError/init(_:operation:errno:detail:)`` turns any other code into an error.
struct MosquittoStatus: Sendable, Equatable, CustomStringConvertible {
    /// The `MOSQ_ERR_*` value, as libmosquitto returned it.
    let rawValue: Int32
    /// For `MOSQ_ERR_ERRNO`, the `errno` right after the call (EPROTO: the TLS handshake failed,
    /// in libmosquitto 2.0.16 and later); `nil` otherwise.
    let errno: Int32?

    /// Wraps a libmosquitto return value; `errno` is read at once for `MOSQ_ERR_ERRNO`.
    init(_ rawValue: Int32) {
        self.rawValue = rawValue
        self.errno = rawValue == MOSQ_ERR_ERRNO.rawValue ? Glibc.errno : nil
    }

    /// Statuses are equal when their codes are (the `errno` is detail).
    static func == (lhs: Self, rhs: Self) -> Bool { lhs.rawValue == rhs.rawValue }

    /// `MOSQ_ERR_SUCCESS`.
    static let success = MosquittoStatus(MOSQ_ERR_SUCCESS.rawValue)
    /// `MOSQ_ERR_NO_CONN`: no socket (or, for a QoS 1/2 publish, queued for the next connection).
    static let noConnection = MosquittoStatus(MOSQ_ERR_NO_CONN.rawValue)
    /// `MOSQ_ERR_INVAL`: an invalid argument (from `mosquitto_loop`: a descriptor `select()` cannot take).
    static let invalidArgument = MosquittoStatus(MOSQ_ERR_INVAL.rawValue)
    /// `MOSQ_ERR_ERRNO`: a system call failed; `errno` says which way.
    static let systemError = MosquittoStatus(MOSQ_ERR_ERRNO.rawValue)

    /// Whether the call succeeded.
    var isSuccess: Bool { rawValue == MOSQ_ERR_SUCCESS.rawValue }

    /// libmosquitto's text for the code (`mosquitto_strerror`).
    var description: String { LibMosquitto.errorString(rawValue) }
}

extension MQTTError {
    /// The error for a failed libmosquitto call.
    ///
    /// - Parameters:
    ///   - status: What the call returned (not ``MosquittoStatus/success``).
    ///   - operation: The operation that failed.
    ///   - errno: The `errno` captured right after the call, kept for ``MosquittoStatus/systemError``.
    ///   - detail: Extra context without secrets.
    init(_ status: MosquittoStatus, operation: Operation, errno: Int32? = nil, detail: String? = nil) {
        self.init(mosquittoCode: status.rawValue, operation: operation, errno: errno ?? status.errno, detail: detail)
    }
}
