import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - PayloadOptions

/// Where the payload of `pub` and of the request of `rr` comes from: exactly one of `-m`, `-f`,
/// `-n`, `-s`, and for `pub` also `-l`. Declared once, lifted into both commands' tables.
struct PayloadOptions {
    /// The payload source.
    enum Source {
        /// `-m`: the bytes as given.
        case message([UInt8])
        case file(String)
        case null
        case standardInput
        case standardInputLines
    }

    var source: Source?
    /// Set when a second source was given; reported after parsing, as mosquitto does.
    var conflicting = false

    /// Records a source, noting a conflict if one was already given.
    mutating func set(_ newSource: Source) {
        if source != nil { conflicting = true }
        source = newSource
    }

    /// The options; `-l` only when `lines` (mosquitto_rr has no `-l`).
    static func table(lines: Bool) -> [OptionSpec<PayloadOptions>] {
        var table: [OptionSpec<PayloadOptions>] = [
            .bytes(["-m", "--message"], "MESSAGE", noun: "message", "Message payload to send, byte for byte.") { $0.set(.message($1)) },
            .value(["-f", "--file"], "FILE", noun: "file", "Send the contents of a file as the message.") { $0.set(.file($1)) },
            .flag(["-n", "--null-message"], "Send a null (zero length) message.") { $0.set(.null) },
            .flag(["-s", "--stdin-file"], "Read stdin, sending the entire input as one message.") { $0.set(.standardInput) },
        ]
        if lines {
            table.append(.flag(["-l", "--stdin-line"], "Read stdin, sending a separate message for each line.") { $0.set(.standardInputLines) })
        }
        return table
    }

    /// The source, after mosquitto's check that only one was given; `nil` when none was.
    func validated() throws(CLIError) -> Source? {
        if conflicting {
            throw CLIError.usage("Only one type of message can be sent at once.", spaced: true)
        }
        return source
    }

    /// Reads the payload of `source` (before connecting, like mosquitto_pub); `nil` for `-l`,
    /// whose lines are read while publishing.
    static func load(_ source: Source) throws(CLIError) -> [UInt8]? {
        switch source {
        case .message(let bytes):
            return bytes
        case .file(let path):
            do throws(CLIError) {
                return try Input.readFile(path)
            } catch {
                throw error.followed(by: "Error loading input file \"\(path)\".")
            }
        case .null:
            return []
        case .standardInput:
            do throws(CLIError) {
                let bytes = try Input.readStandardInput()
                // pub_shared.c: an empty stdin is an error for -s (an empty -f file is not).
                guard !bytes.isEmpty else { throw CLIError.runtime("Error: Zero length input.") }
                return bytes
            } catch {
                throw error.followed(by: "Error loading input from stdin.")
            }
        case .standardInputLines:
            return nil
        }
    }
}

// MARK: - Input

/// Reading payloads for `pub` and `rr`: a whole file (`-f`), all of stdin (`-s`), or stdin line
/// by line (`-l`).
enum Input {
    /// The whole content of the file at `path`.
    ///
    /// - Throws: ``CLIError`` (run-time, status 1) when it cannot be opened or read.
    static func readFile(_ path: String) throws(CLIError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw CLIError.runtime("Error: Unable to open file \"\(path)\".")
        }
        defer { close(descriptor) }
        switch readAll(descriptor) {
        case .success(let bytes): return bytes
        case .failure(let error): throw CLIError.runtime("Error: Unable to read file \"\(path)\" (\(systemErrorText(error.number))).")
        }
    }

    /// The contents of the file at `path`, or `nil` when it cannot be opened or read (a defaults
    /// file that is not there).
    static func contentsIfReadable(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        return try? readAll(descriptor).get()
    }

    /// Everything on standard input, up to end of file.
    ///
    /// - Throws: ``CLIError`` (run-time, status 1) when reading fails.
    static func readStandardInput() throws(CLIError) -> [UInt8] {
        switch readAll(STDIN_FILENO) {
        case .success(let bytes): return bytes
        case .failure(let error): throw CLIError.runtime("Error: Unable to read standard input (\(systemErrorText(error.number))).")
        }
    }

    /// Reads `descriptor` to end of file; the failure carries `errno`.
    private static func readAll(_ descriptor: Int32) -> Result<[UInt8], ReadError> {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                return .success(bytes)
            } else if errno != EINTR {
                return .failure(ReadError(number: errno))
            }
        }
    }

    /// An `errno` from `read(2)`.
    struct ReadError: Error {
        let number: Int32
    }
}

// MARK: - StandardInputChunks

/// Standard input as an `AsyncSequence` of chunks, read on a dedicated thread so that a blocking
/// `read(2)` never holds a Swift concurrency thread. At most `window` chunks wait unconsumed:
/// the reader stops reading until the consumer catches up.
struct StandardInputChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]

    private let stream: AsyncThrowingStream<[UInt8], any Error>
    private let credits: DispatchSemaphore

    /// Starts reading at once.
    ///
    /// - Parameter window: How many chunks may be read ahead of the consumer.
    init(window: Int = 16) {
        let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        // Created at 0 and raised to `window`: libdispatch traps when a semaphore is released
        // with a value below the one it was created with, which a reader stopped mid-way leaves.
        let credits = DispatchSemaphore(value: 0)
        for _ in 0..<window { credits.signal() }
        self.stream = stream
        self.credits = credits
        DispatchQueue(label: "mqtt.stdin").async {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                credits.wait()
                let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count > 0 {
                    continuation.yield(Array(buffer[..<count]))
                } else if count == 0 {
                    continuation.finish()
                    return
                } else if errno == EINTR {
                    credits.signal()
                } else {
                    continuation.finish(throwing: Input.ReadError(number: errno))
                    return
                }
            }
        }
    }

    func makeAsyncIterator() -> Iterator {
        Iterator(base: stream.makeAsyncIterator(), credits: credits)
    }

    /// Hands out chunks and returns a read credit for each.
    struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        let credits: DispatchSemaphore

        mutating func next() async throws -> [UInt8]? {
            let chunk = try await base.next()
            if chunk != nil { credits.signal() }
            return chunk
        }
    }
}

// MARK: - LineSplitter

/// Splits a byte stream into lines the way mosquitto_pub `-l` does (checked against 2.0.11):
/// lines end at `\n` only (a `\r` stays in the payload), an empty line is a zero-length
/// message, and a last line without `\n` is still a message.
struct LineSplitter {
    private var pending: [UInt8] = []

    /// The complete lines in `chunk` (plus what was pending), without their `\n`.
    mutating func lines(in chunk: [UInt8]) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var start = chunk.startIndex
        while let newline = chunk[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if pending.isEmpty {
                lines.append(Array(chunk[start..<newline]))
            } else {
                pending.append(contentsOf: chunk[start..<newline])
                lines.append(pending)
                pending = []
            }
            start = newline + 1
        }
        pending.append(contentsOf: chunk[start...])
        return lines
    }

    /// The unterminated last line at end of input, if there is one.
    mutating func finish() -> [UInt8]? {
        defer { pending = [] }
        return pending.isEmpty ? nil : pending
    }
}
