import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - CLIError

/// A failure that ends the program: the message printed on standard error (one line, with the
/// blank lines and second line mosquitto prints around some) and the exit status.
///
/// Every failure path of `mqtt` ends in one of these, so that `main.swift` is the only place
/// that prints an error and exits. A bad command line is followed, as in the mosquitto tools, by
/// a blank line and `Use 'mqtt pub --help' to see usage.` (``pointsToHelp``).
struct CLIError: Error, Sendable {
    /// Whether the failure is bad input on the command line or a failure at run time.
    ///
    /// Like mosquitto's `--quiet`, run-time errors can be silenced, usage errors cannot.
    enum Kind: Sendable {
        /// A bad flag, a missing or malformed value, conflicting options.
        case usage
        /// Connecting, publishing, subscribing or I/O failed.
        case runtime
    }

    /// The message, without a trailing newline; printed as exactly one line.
    var message: String
    /// The process exit status.
    var status: Int32
    /// Usage or run-time failure.
    var kind: Kind
    /// Whether `--quiet` asked for run-time errors not to be printed.
    var isSilenced = false
    /// Whether the line is followed by the pointer to `--help`, as mosquitto does after the
    /// errors of its command-line parser (a setting libmosquitto refuses gets none).
    var pointsToHelp = false
    /// Whether a blank line follows the message, as after most of mosquitto's command-line
    /// errors (their text ends in two newlines; with the pointer to `--help`, two blank lines).
    var isSpaced = false
    /// A second line printed after ``message`` (and silenced with it), for the few failures
    /// where mosquitto prints two, such as mosquitto_pub after a refused CONNACK.
    var followingLine: String?
    /// Whether a blank line comes before ``message``, as mosquitto_sub prints its checks of
    /// option combinations made after parsing (`\nError: Combining '-R' and '--retained-only' ...`).
    var precedingBlankLine = false
    /// For a refused CONNACK, libmosquitto's text for the error its loop then returns:
    /// mosquitto_pub prints it as a second line (``afterRefusalAsPrintedByPub()``).
    private(set) var loopErrorAfterRefusal: String?

    /// A usage error: `Error: <text>`, exit status 1, then (with `spaced`, where mosquitto's
    /// text ends in a blank line) a blank line, then the pointer to `--help` (as
    /// mosquitto_pub/mosquitto_sub).
    static func usage(_ text: String, spaced: Bool = false) -> CLIError {
        CLIError(message: "Error: " + text, status: 1, kind: .usage, pointsToHelp: true, isSpaced: spaced)
    }

    /// A setting libmosquitto refuses once the command line is read (mosquitto's `mosquitto_new`
    /// and `client_opts_set`): `Error: <text>`, exit status 1, no pointer to `--help`; silenced by
    /// `--quiet`, as mosquitto prints these with `err_printf`.
    static func setting(_ text: String) -> CLIError {
        CLIError(message: "Error: " + text, status: 1, kind: .runtime)
    }

    /// A usage error printed as given, for mosquitto's texts without `Error: `
    /// (`Error in PUBLISH properties: Duplicate property in property list`), exit status 1,
    /// then the pointer to `--help`.
    static func usage(verbatim message: String) -> CLIError {
        CLIError(message: message, status: 1, kind: .usage, pointsToHelp: true)
    }

    /// A run-time error with a message printed as given.
    static func runtime(_ message: String, status: Int32 = 1) -> CLIError {
        CLIError(message: message, status: status, kind: .runtime)
    }

    /// The same error, printed after a blank line.
    func precededByBlankLine() -> CLIError {
        var error = self
        error.precedingBlankLine = true
        return error
    }

    /// The same error, silenced when `--quiet` was given and it is a run-time error (like
    /// mosquitto's `--quiet`, usage errors are always printed). A silenced error stays silenced.
    func silenced(quiet: Bool) -> CLIError {
        var error = self
        error.isSilenced = isSilenced || (quiet && kind == .runtime)
        return error
    }

    /// The message reduced to one line: embedded line breaks (from OpenSSL, a file name, a
    /// topic) become spaces, so that stderr always gets exactly one line per failure.
    var singleLine: String {
        String(message.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }
}

// MARK: - Exit statuses

/// The libmosquitto error numbers the mosquitto tools exit with, where `mqtt` must match them.
enum MosquittoStatus {
    /// `MOSQ_ERR_TIMEOUT`: mosquitto_sub's status when `-W` expires.
    static let timeout: Int32 = 27
    /// `MOSQ_ERR_TLS`: a failed TLS handshake or certificate check.
    static let tls: Int32 = 8
}

/// The exit statuses, as `--help` and the README list them (those of the mosquitto tools).
enum ExitStatus {
    static let help = """
        Exit status and messages (as mosquitto_pub, mosquitto_sub and mosquitto_rr 2.0.11):
          0        success: pub: every message sent (QoS 1/2: acknowledged); sub: -C messages
                   printed, or stopped by SIGINT/SIGTERM once connected; rr: a response printed
          1        bad flags; TCP connection or host lookup failed; an I/O error; a publish the
                   MQTT 5 broker refused; CONNACK code 1 (unacceptable protocol version)
          2-5      a refused MQTT 3.1/3.1.1 connection: the CONNACK code (5: not authorised)
          27       -W expired ("Timed out")
          128-162  a refused MQTT 5 connection: the CONNACK reason code (135: not authorized)
          130, 143 pub or rr ended by SIGINT / SIGTERM (128 + the signal)
          255      sub stopped by SIGINT / SIGTERM before the CONNACK
          other    libmosquitto's error number (7: connection lost, 8: TLS failure, ...)
        """
}

// MARK: - MQTTError → CLIError

extension CLIError {
    /// Translates a library error into the line and exit status the mosquitto tools would give.
    ///
    /// - A refused CONNACK prints `Connection error: <reason>` and exits with the CONNACK return
    ///   code (MQTT 3.1/3.1.1) or the reason code (MQTT 5), as mosquitto_pub/mosquitto_sub do.
    /// - A TCP connection that could not be made (refused, unreachable, bind failure) or a failed
    ///   host lookup exits 1, as the mosquitto tools do; one with an `errno` prints
    ///   `Error: <strerror>`, exactly like them.
    /// - Anything else exits with libmosquitto's error number when there is one (8 for a TLS
    ///   failure and 7 for a connection lost during the handshake, like mosquitto_pub), 27 for a
    ///   timeout, otherwise 1.
    ///
    /// Neither the library's descriptions nor ours contain a password or key.
    init(_ error: MQTTError) {
        if let refusal = Self.connectRefusal(error) {
            self = refusal
            return
        }
        let status: Int32
        if error.code == .connectionFailed || error.code == .hostLookupFailed {
            status = 1
        } else if error.code == .tlsFailure {
            // MOSQ_ERR_TLS, as mosquitto_pub 2.0.11 exits; libmosquitto 2.0.16 and later report
            // some handshake failures as MOSQ_ERR_ERRNO (14) with EPROTO instead, depending on
            // where the handshake stopped: one status whatever the library version.
            status = MosquittoStatus.tls
        } else if let code = error.mosquittoErrorCode, code > 0, code < 256 {
            status = code
        } else if error.code == .timeout {
            status = MosquittoStatus.timeout
        } else {
            status = 1
        }
        if error.code == .connectionFailed, let number = error.errno {
            self = .runtime("Error: " + systemErrorText(number), status: status)
        } else if error.code == .hostLookupFailed, let text = error.mosquittoErrorText {
            // client_shared.c, for a mosquitto_connect failure other than MOSQ_ERR_ERRNO.
            self = .runtime("Unable to connect (\(text)).", status: status)
        } else if error.code == .invalidConfiguration {
            self = CLIError(message: "Error: " + error.description, status: 1, kind: .usage)
        } else {
            self = .runtime("Error: " + error.description, status: status)
        }
    }

    /// The error for a CONNACK refusal, or `nil` when `error` is something else.
    private static func connectRefusal(_ error: MQTTError) -> CLIError? {
        let refusalCodes: [MQTTError.Code] = [.connectionRefused, .badUsernameOrPassword, .notAuthorized]
        guard refusalCodes.contains(error.code) else { return nil }
        if let returnCode = error.connectReturnCode {
            var refusal = CLIError.runtime("Connection error: " + connackText(returnCode), status: Int32(returnCode))
            // MOSQ_ERR_CONN_REFUSED
            refusal.loopErrorAfterRefusal = "Error: The connection was refused."
            return refusal
        }
        if let reason = error.reasonCode, error.operation == .connect || error.operation == .connection {
            var text = "Connection error: " + reasonText(reason)
            if reason == .unsupportedProtocolVersion {
                text += ". Try connecting to an MQTT v5 broker, or use MQTT v3.x mode."
            }
            var refusal = CLIError.runtime(text, status: Int32(reason.rawValue))
            // MOSQ_ERR_PROTOCOL: how libmosquitto's loop ends after an MQTT 5 refusal.
            refusal.loopErrorAfterRefusal = "Error: A network protocol error occurred when communicating with the broker."
            return refusal
        }
        return nil
    }

    /// The same error with `line` printed after it (mosquitto's second line, such as
    /// `Error loading input from stdin.`).
    func followed(by line: String) -> CLIError {
        var error = self
        error.followingLine = line
        return error
    }

    /// The error as mosquitto_pub prints it: after a refused CONNACK, a second line with the
    /// error its network loop ended with (mosquitto_sub and mosquitto_rr print only the first).
    func afterRefusalAsPrintedByPub() -> CLIError {
        guard let loopErrorAfterRefusal else { return self }
        return followed(by: loopErrorAfterRefusal)
    }

    /// The error for an MQTT 5 PUBACK/PUBREC failure reason of one publish.
    ///
    /// mosquitto_pub prints `Warning: Publish <mid> failed: <reason>.` and still exits 0; `mqtt`
    /// treats a refused publish as a failure (one line, exit status 1).
    static func publishRefused(messageID: UInt16, error: MQTTError) -> CLIError {
        guard error.code == .publishRefused, let reason = error.reasonCode else { return CLIError(error) }
        return .runtime("Error: Publish \(messageID) failed: \(reasonText(reason)).", status: 1)
    }
}

// MARK: - Texts

/// libmosquitto's `mosquitto_connack_string`, which the mosquitto tools print for a refused
/// MQTT 3.1/3.1.1 CONNACK. (The library keeps its wrapper internal, so the six strings of
/// libmosquitto 2.0 are repeated here.)
func connackText(_ code: UInt8) -> String {
    switch code {
    case 0: "Connection Accepted."
    case 1: "Connection Refused: unacceptable protocol version."
    case 2: "Connection Refused: identifier rejected."
    case 3: "Connection Refused: broker unavailable."
    case 4: "Connection Refused: bad user name or password."
    case 5: "Connection Refused: not authorised."
    default: "Connection Refused: unknown reason."
    }
}

/// libmosquitto's reason string for an MQTT 5 reason code (`Not authorized`), without the
/// ` (0x87)` suffix that ``MQTTReasonCode/description`` adds.
func reasonText(_ reason: MQTTReasonCode) -> String {
    let text = reason.description
    guard let open = text.lastIndex(of: "("), text[open...].hasPrefix("(0x"), open > text.startIndex else { return text }
    return String(text[..<open]).trimmingSuffix(" ")
}

extension String {
    /// The string without trailing copies of `character`.
    func trimmingSuffix(_ character: Character) -> String {
        var result = self
        while result.last == character { result.removeLast() }
        return result
    }
}

/// `strerror(number)`, e.g. `Connection refused`.
func systemErrorText(_ number: Int32) -> String {
    guard let text = strerror(number) else { return "error \(number)" }
    return String(cString: text)
}
