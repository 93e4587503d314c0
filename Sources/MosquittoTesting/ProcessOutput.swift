import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Captured output

/// What a child printed on its captured streams: filled by its ``OutputPump`` thread, read by anyone.
///
/// The one owner of the bytes is the `Mutex`; the pump holds its own reference, never one to the
/// ``ChildProcess``, so releasing the process object can end the pump (``abandon()``).
final class CapturedOutput: Sendable {
    /// Standard output (0) or standard error (1).
    enum Stream: Int, Sendable {
        case standardOutput = 0
        case standardError = 1
    }

    /// One stream's bytes, the offsets of its newlines, and whether it reached end of file.
    private struct Buffer: Sendable {
        var bytes: [UInt8] = []
        var newlines: [Int] = []
        var ended: Bool
    }

    private let buffers: Mutex<[Buffer]>
    private let abandoned = Atomic<Bool>(false)

    /// A capture in which the streams that are not captured count as ended (and empty) from the start.
    init(capturesOutput: Bool, capturesError: Bool) {
        buffers = Mutex([Buffer(ended: !capturesOutput), Buffer(ended: !capturesError)])
    }

    // MARK: Filling (the pump's thread)

    /// Appends bytes read from `stream`.
    func append(_ chunk: UnsafeRawBufferPointer, to stream: Stream) {
        buffers.withLock { buffers in
            let start = buffers[stream.rawValue].bytes.count
            buffers[stream.rawValue].bytes.append(contentsOf: chunk)
            for (offset, byte) in chunk.enumerated() where byte == UInt8(ascii: "\n") {
                buffers[stream.rawValue].newlines.append(start + offset)
            }
        }
    }

    /// Records that `stream` reached end of file (or failed, or was given up).
    func end(_ stream: Stream) {
        buffers.withLock { $0[stream.rawValue].ended = true }
    }

    // MARK: Reading

    /// Everything `stream` delivered so far.
    func bytes(_ stream: Stream) -> [UInt8] {
        buffers.withLock { $0[stream.rawValue].bytes }
    }

    /// Whether `stream` has reached end of file (always `true` for a stream that is not captured).
    func hasEnded(_ stream: Stream) -> Bool {
        buffers.withLock { $0[stream.rawValue].ended }
    }

    /// Whether every captured stream has reached end of file.
    var hasEnded: Bool {
        buffers.withLock { $0.allSatisfy(\.ended) }
    }

    /// Line `index` (0-based, empty lines counted, without its newline) of `stream`, if it is complete;
    /// an unterminated last line counts once the stream has ended.
    func line(_ index: Int, of stream: Stream) -> String? {
        buffers.withLock { buffers in
            let buffer = buffers[stream.rawValue]
            let start = index == 0 ? 0 : (index - 1 < buffer.newlines.count ? buffer.newlines[index - 1] + 1 : Int.max)
            if index < buffer.newlines.count {
                return String(decoding: buffer.bytes[start..<buffer.newlines[index]], as: UTF8.self)
            }
            guard buffer.ended, index == buffer.newlines.count, start < buffer.bytes.count else { return nil }
            return String(decoding: buffer.bytes[start...], as: UTF8.self)
        }
    }

    // MARK: Ending

    /// Tells the pump to close its pipes and end (the process object was released).
    func abandon() {
        abandoned.store(true, ordering: .relaxed)
    }

    /// Whether ``abandon()`` was called.
    var isAbandoned: Bool {
        abandoned.load(ordering: .relaxed)
    }
}

// MARK: - Pump

/// The thread that moves a child's bytes: it reads the captured output pipes into a ``CapturedOutput``
/// and writes ``ChildProcess/Input/bytes(_:)`` to the child's standard input, in one `poll` loop,
/// until every pipe is done or the process object is released.
///
/// DESIGN: a thread of its own per child, not Dispatch: blocking pipe readers on
/// `DispatchQueue.global()` held Dispatch's few worker threads on this 2-core machine, and every
/// wait in the suite became seconds late. One loop for all the pipes means a child that writes a lot
/// while it is being fed never deadlocks against us. Only this thread touches the pump and its
/// descriptors; it blocks every signal (a write to a child that closed its standard input fails with
/// `EPIPE` instead of raising SIGPIPE in the process).
final class OutputPump {
    private var readers: [(descriptor: Int32, stream: CapturedOutput.Stream)]
    private var writer: Int32
    private let input: [UInt8]
    private var written = 0
    private let output: CapturedOutput
    private let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 1)

    /// How long one `poll` waits before the loop looks at ``CapturedOutput/isAbandoned`` again.
    private static let pollMilliseconds: Int32 = 100

    private init(spawned: SpawnedProcess, input: [UInt8], output: CapturedOutput) {
        readers = []
        if let reader = spawned.outputReader { readers.append((reader, .standardOutput)) }
        if let reader = spawned.errorReader { readers.append((reader, .standardError)) }
        writer = spawned.inputWriter ?? -1
        self.input = input
        self.output = output
    }

    deinit {
        chunk.deallocate()
    }

    /// Starts a pump thread for the pipes of `spawned`, if it has any.
    /// - Returns: `false` if the thread could not be created (the pipes are then closed).
    static func start(for spawned: SpawnedProcess, input: [UInt8], output: CapturedOutput) -> Bool {
        let pump = OutputPump(spawned: spawned, input: input, output: output)
        guard !pump.readers.isEmpty || pump.writer >= 0 else { return true }
        guard startDetachedThread({ pump.run() }) else {
            pump.closeAll()
            return false
        }
        return true
    }

    // MARK: Running

    private func run() {
        var signals = sigset_t()
        sigfillset(&signals)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        defer { closeAll() }
        if input.isEmpty { closeWriter() }
        while !readers.isEmpty || writer >= 0 {
            if output.isAbandoned { return }
            var descriptors = readers.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            if writer >= 0 {
                descriptors.append(pollfd(fd: writer, events: Int16(POLLOUT), revents: 0))
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), Self.pollMilliseconds)
            if ready < 0, errno != EINTR { return }
            guard ready > 0 else { continue }
            if writer >= 0, descriptors[readers.count].revents != 0 {
                feed()
            }
            for index in readers.indices.reversed() where descriptors[index].revents != 0 {
                if !drain(readers[index].descriptor, into: readers[index].stream) {
                    close(readers[index].descriptor)
                    output.end(readers[index].stream)
                    readers.remove(at: index)
                }
            }
        }
    }

    /// Reads everything available on `descriptor`; `false` at end of file or on an error.
    private func drain(_ descriptor: Int32, into stream: CapturedOutput.Stream) -> Bool {
        while true {
            let count = read(descriptor, chunk.baseAddress, chunk.count)
            if count > 0 {
                output.append(UnsafeRawBufferPointer(rebasing: chunk[..<count]), to: stream)
                continue
            }
            if count < 0, errno == EINTR { continue }
            return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }

    /// Writes as much of the input as the pipe takes; closes it when all is written or the child
    /// stopped reading.
    private func feed() {
        while written < input.count {
            let count = input.withUnsafeBytes { bytes in
                write(writer, bytes.baseAddress! + written, bytes.count - written)
            }
            if count > 0 {
                written += count
                continue
            }
            if count < 0, errno == EINTR { continue }
            if count < 0, errno == EAGAIN || errno == EWOULDBLOCK { return }
            break  // EPIPE: the child closed its standard input.
        }
        closeWriter()
    }

    private func closeWriter() {
        if writer >= 0 { close(writer) }
        writer = -1
    }

    /// Closes every pipe still open and marks the streams ended.
    private func closeAll() {
        closeWriter()
        for reader in readers {
            close(reader.descriptor)
            output.end(reader.stream)
        }
        readers.removeAll()
    }
}
