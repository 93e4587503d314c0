#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Output

/// Unbuffered writes to standard output and standard error (no Foundation).
enum Output {
    /// Writes `text` and a newline to standard output.
    static func line(_ text: String) {
        send(text + "\n", to: STDOUT_FILENO)
    }

    /// Writes `text` and a newline to standard error.
    static func error(_ text: String) {
        send(text + "\n", to: STDERR_FILENO)
    }

    /// Writes all of `text` to `descriptor`, retrying short writes.
    private static func send(_ text: String, to descriptor: Int32) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 {
                    if written < 0, errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
