import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Output

/// Unbuffered writes to standard output and standard error.
///
/// Every call is one `write(2)` of a complete unit (a message, a log line), so nothing waits in
/// a buffer: a test reading the stdout of a running `mqtt sub` sees each message as soon as it
/// arrived, and lines written by the debug log and the message loop never interleave mid-line.
enum Output {
    /// Writes `bytes` to standard output.
    ///
    /// - Returns: `0`, or the `errno` of a failed write (e.g. `EPIPE` when the reader went away;
    ///   libmosquitto ignores `SIGPIPE`, so the process is not killed by it).
    @discardableResult
    static func standardOutput(_ bytes: [UInt8]) -> Int32 {
        writeAll(bytes, to: STDOUT_FILENO)
    }

    /// Writes `line` and a newline to standard output.
    @discardableResult
    static func printLine(_ line: String) -> Int32 {
        standardOutput(Array((line + "\n").utf8))
    }

    /// Writes `line` and a newline to standard error.
    static func printError(_ line: String) {
        writeAll(Array((line + "\n").utf8), to: STDERR_FILENO)
    }

    /// Writes everything, retrying after partial writes and `EINTR`.
    @discardableResult
    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Int32 {
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
}

// MARK: - MessageFormat

/// How `mqtt sub` and `mqtt rr` print a received message: mosquitto_sub's output, with `-v`, `-N`
/// and `-F`.
///
/// Verified against mosquitto_sub 2.0.11:
/// - `payload\n`; `-N` drops the newline.
/// - `-v`: `topic payload\n`; a zero-length payload prints `topic (null)\n`.
/// - A zero-length payload without `-v`, or with `-v -N`, prints nothing at all.
/// - `-F`: the format (see ``FormatString``) replaces `-v`; a newline still follows unless `-N`.
/// The payload is written as raw bytes, not decoded.
struct MessageFormat: Sendable {
    /// `-v`: prefix the topic.
    var verbose = false
    /// `-N`: no end-of-line after each message.
    var noEndOfLine = false
    /// `-F`: mosquitto's format string.
    var custom: FormatString?

    /// The bytes to write for `message`, or an empty array when nothing is printed.
    func render(_ message: MQTTMessage) -> [UInt8] {
        if let custom {
            var bytes = custom.render(message)
            if !noEndOfLine { bytes.append(UInt8(ascii: "\n")) }
            return bytes
        }
        var bytes: [UInt8] = []
        if message.payload.isEmpty {
            guard verbose, !noEndOfLine else { return [] }
            bytes.append(contentsOf: message.topic.utf8)
            bytes.append(contentsOf: " (null)\n".utf8)
            return bytes
        }
        bytes.reserveCapacity(message.payload.count + message.topic.utf8.count + 2)
        if verbose {
            bytes.append(contentsOf: message.topic.utf8)
            bytes.append(UInt8(ascii: " "))
        }
        bytes.append(contentsOf: message.payload)
        if !noEndOfLine {
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }
}
