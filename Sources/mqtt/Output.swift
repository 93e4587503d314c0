import Dispatch
import Mosquitto
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Output

/// Standard output (buffered) and standard error (unbuffered).
///
/// Standard output goes through ``BufferedOutput``: on a terminal every unit (a message, a log
/// line) is written at once; otherwise units collect in a 64 KiB buffer written when it fills,
/// at most 5 ms after the first unwritten byte (so a reader of a pipe sees a quiet `mqtt sub`'s
/// messages promptly), before an error line, and at exit (`main.swift`; `sub` and `rr` exit
/// through it on SIGINT/SIGTERM too, `pub` flushes in its signal handler). Units are appended
/// whole under a lock, so log lines and messages never interleave mid-line.
///
/// Standard error gets one `write(2)` per line: it carries only the error line (and nothing else
/// is buffered there to lose).
enum Output {
    /// The buffer of standard output.
    static let standardOutputBuffer = BufferedOutput(descriptor: STDOUT_FILENO)

    /// Appends `bytes` to standard output.
    ///
    /// - Returns: `0`, or the `errno` of a failed write (now or of an earlier buffered one, e.g.
    ///   `EPIPE` when the reader went away; libmosquitto ignores `SIGPIPE`, so the process is not
    ///   killed by it).
    @discardableResult
    static func standardOutput(_ bytes: [UInt8]) -> Int32 {
        standardOutputBuffer.append { $0.append(contentsOf: bytes) }
    }

    /// Appends `line` and a newline to standard output.
    @discardableResult
    static func printLine(_ line: String) -> Int32 {
        standardOutputBuffer.append { buffer in
            buffer.append(contentsOf: line.utf8)
            buffer.append(UInt8(ascii: "\n"))
        }
    }

    /// Writes what standard output holds.
    ///
    /// - Returns: `0`, or the `errno` of the first failed write.
    @discardableResult
    static func flush() -> Int32 {
        standardOutputBuffer.flush()
    }

    /// Writes `line` and a newline to standard error, after flushing standard output (so that on
    /// a terminal the error follows what was printed before it).
    static func printError(_ line: String) {
        flush()
        _ = writeAll(Array((line + "\n").utf8), to: STDERR_FILENO)
    }

    /// Writes everything, retrying after partial writes and `EINTR`.
    ///
    /// - Returns: `0`, or `errno`.
    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Int32 {
        bytes.withUnsafeBytes { buffer -> Int32 in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return 0
        }
    }

    /// On SIGINT or SIGTERM: flushes standard output, then dies of the signal as if no handler
    /// were installed (the shell sees 130 / 143). For `pub`, which has no clean-exit path for
    /// signals (mosquitto_pub is killed by them too); `sub` and `rr` handle them with
    /// ``SignalWatcher`` and exit through `main`, which flushes.
    ///
    /// - Returns: The handlers, active while the value is alive.
    static func flushBeforeDyingOfSignals() -> SignalFlusher {
        SignalFlusher()
    }
}

/// The signal handlers of ``Output/flushBeforeDyingOfSignals()``: flush standard output, then
/// die of the signal.
struct SignalFlusher: Sendable {
    fileprivate init() {
        Signals.install { number in
            Output.flush()
            Signals.die(of: number)
        }
    }
}

// MARK: - BufferedOutput

/// A buffered, thread-safe writer of one file descriptor (see ``Output``).
///
/// Two locks: `pending` guards the buffer being filled (held only to append or swap), `writing`
/// serializes the `write(2)` calls and owns the buffer being written, so that appending never
/// waits for a slow reader unless the buffer is full, and bytes reach the descriptor in order.
final class BufferedOutput: Sendable {
    private struct Pending {
        var bytes: [UInt8] = []
        /// Whether a deferred flush is scheduled.
        var flushScheduled = false
        /// The first write error; every later call reports it.
        var error: Int32 = 0
    }

    /// Write once this many bytes are buffered.
    static let capacity = 64 * 1024
    /// Write at most this long after the first unwritten byte (when the buffer is not full).
    static let delay = DispatchTimeInterval.milliseconds(5)

    private let descriptor: Int32
    /// Whether the descriptor is a terminal: then every unit is written at once.
    let isTerminal: Bool
    private let pending = Mutex(Pending())
    private let writing = Mutex<[UInt8]>([])
    private let timer = DispatchQueue(label: "mqtt.output.flush")

    init(descriptor: Int32) {
        self.descriptor = descriptor
        isTerminal = isatty(descriptor) == 1
    }

    /// Appends a unit with `fill`, which runs under the lock and must only append.
    ///
    /// - Returns: `0`, or the `errno` of a failed write.
    @discardableResult
    func append(_ fill: (inout [UInt8]) -> Void) -> Int32 {
        let (error, full, schedule) = pending.withLock { pending -> (Int32, Bool, Bool) in
            guard pending.error == 0 else { return (pending.error, false, false) }
            if pending.bytes.capacity == 0 { pending.bytes.reserveCapacity(Self.capacity + 4096) }
            fill(&pending.bytes)
            if isTerminal || pending.bytes.count >= Self.capacity { return (0, true, false) }
            guard !pending.flushScheduled else { return (0, false, false) }
            pending.flushScheduled = true
            return (0, false, true)
        }
        if error != 0 { return error }
        if schedule {
            timer.asyncAfter(deadline: .now() + Self.delay) { [self] in
                flush(resettingSchedule: true)
            }
        }
        return full ? flush() : 0
    }

    /// Writes what is buffered.
    ///
    /// - Returns: `0`, or the `errno` of the first failed write.
    @discardableResult
    func flush() -> Int32 {
        flush(resettingSchedule: false)
    }

    @discardableResult
    private func flush(resettingSchedule: Bool) -> Int32 {
        writing.withLock { outgoing in
            let earlier = pending.withLock { pending -> Int32 in
                if resettingSchedule { pending.flushScheduled = false }
                if pending.error == 0 { swap(&pending.bytes, &outgoing) }
                return pending.error
            }
            guard earlier == 0 else { return earlier }
            guard !outgoing.isEmpty else { return 0 }
            let error = Output.writeAll(outgoing, to: descriptor)
            outgoing.removeAll(keepingCapacity: true)
            if error != 0 {
                pending.withLock { $0.error = error }
            }
            return error
        }
    }
}

// MARK: - MessageFormat

/// How `mqtt sub` and `mqtt rr` print a received message: mosquitto_sub's output, with `-v`, `-N`
/// and `-F`, or one JSON object per message with `--json`.
///
/// Verified against mosquitto_sub 2.0.11:
/// - `payload\n`; `-N` drops the newline.
/// - `-v`: `topic payload\n`; a zero-length payload prints `topic (null)\n`.
/// - A zero-length payload without `-v`, or with `-v -N`, prints nothing at all.
/// - `-F`: the format (see ``FormatString``) replaces `-v`; a newline still follows unless `-N`.
/// The payload is written as raw bytes, not decoded.
/// - `--json` (ours; see ``JSONMessage``) replaces `-v`; a newline follows unless `-N`.
/// - `--pretty` lays out the JSON of `--json`, `%j` and `%J` over several lines (mosquitto's).
struct MessageFormat: Sendable {
    /// `-v`: prefix the topic.
    var verbose = false
    /// `-N`: no end-of-line after each message.
    var noEndOfLine = false
    /// `-F`: mosquitto's format string.
    var custom: FormatString?
    /// `--json`: one JSON object per message.
    var json = false
    /// `--pretty`: JSON over several lines, indented with tabs.
    var pretty = false

    /// The bytes to write for `message`, or an empty array when nothing is printed.
    func render(_ message: MQTTMessage) -> [UInt8] {
        var bytes: [UInt8] = []
        var warning: String?
        render(message, into: &bytes, warning: &warning)
        return bytes
    }

    /// Appends the bytes to write for `message` to `bytes` (nothing when nothing is printed).
    ///
    /// - Parameter warning: Set to the line to print on stderr after the message, if any (a
    ///   `%J` payload that is not JSON).
    func render(_ message: MQTTMessage, into bytes: inout [UInt8], warning: inout String?) {
        if json {
            JSONMessage.append(message, to: &bytes, pretty: pretty)
            if !noEndOfLine { bytes.append(UInt8(ascii: "\n")) }
            return
        }
        if let custom {
            bytes.append(contentsOf: custom.render(message, pretty: pretty, warning: &warning))
            if !noEndOfLine { bytes.append(UInt8(ascii: "\n")) }
            return
        }
        if message.payload.isEmpty {
            guard verbose, !noEndOfLine else { return }
            bytes.append(contentsOf: message.topic.utf8)
            bytes.append(contentsOf: " (null)\n".utf8)
            return
        }
        if verbose {
            bytes.append(contentsOf: message.topic.utf8)
            bytes.append(UInt8(ascii: " "))
        }
        bytes.append(contentsOf: message.payload)
        if !noEndOfLine {
            bytes.append(UInt8(ascii: "\n"))
        }
    }
}
