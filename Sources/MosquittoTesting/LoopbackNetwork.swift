import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Loopback network

/// The loopback addresses the testing tools bind and connect to, and the small helpers over them: a
/// free port, a client connection, a probe. Nothing here reaches beyond the loopback interface.
public enum LoopbackNetwork {
    /// A loopback address.
    public enum Address: Sendable, Hashable, CaseIterable {
        /// `127.0.0.1`.
        case ipv4
        /// `::1`.
        case ipv6

        /// The address in numeric form: `127.0.0.1` or `::1`.
        public var host: String {
            switch self {
            case .ipv4: return "127.0.0.1"
            case .ipv6: return "::1"
            }
        }
    }

    /// The address fixture brokers listen on: `127.0.0.1`.
    public static let host = Address.ipv4.host

    /// Asks the kernel for a free TCP port by binding port 0, reading the port, and closing the socket.
    /// - Parameters:
    ///   - address: The loopback address to bind; `127.0.0.1` by default.
    /// - Throws: `MosquittoTestingError` if no socket can be bound.
    /// - Returns: A port that was free a moment ago (another process may take it meanwhile).
    public static func freePort(on address: Address = .ipv4) throws -> Int {
        let listener = try LoopbackListener(address: address)
        defer { listener.close() }
        return listener.port
    }

    /// Opens a blocking TCP connection to `address`:`port`.
    /// - Parameters:
    ///   - port: The port to connect to.
    ///   - address: The loopback address; `127.0.0.1` by default.
    ///   - timeout: The longest the connect may take (it is normally instantaneous on loopback, but
    ///     waits when the listener's accept backlog is full).
    /// - Throws: `MosquittoTestingError` when the connection is refused, times out or fails.
    /// - Returns: The connected descriptor (close-on-exec); the caller owns it and closes it.
    public static func connect(port: Int, address: Address = .ipv4, timeout: Duration = .seconds(1)) throws -> Int32 {
        let descriptor = try SocketAddress.makeSocket(address)
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let target = SocketAddress(address, port: port)
        let result = target.withSocketAddress { posixConnect(descriptor, $0, $1) }
        guard result == 0 else {
            let reason = FileSystem.lastErrorDescription()
            close(descriptor)
            throw MosquittoTestingError("could not connect to \(address.host) port \(port): \(reason)")
        }
        return descriptor
    }

    /// Whether a TCP connection to `address`:`port` succeeds right now (the connection is closed at once).
    /// - Parameters:
    ///   - port: The port to probe.
    ///   - address: The loopback address; `127.0.0.1` by default.
    public static func acceptsConnections(port: Int, address: Address = .ipv4) -> Bool {
        guard let descriptor = try? connect(port: port, address: address) else { return false }
        close(descriptor)
        return true
    }
}

// MARK: - Listener

/// A TCP socket listening on a loopback address, for a test's own peer: a scripted broker, a proxy, a
/// server that never answers.
///
/// It binds `127.0.0.1` or `::1`, on a port the kernel picks (port 0) or a given one, with
/// `SO_REUSEADDR`, and listens at once. ``accept(timeout:)`` waits at most its timeout; ``close()``
/// (also run on deinit) is idempotent and safe while another thread accepts: the socket is closed
/// once that accept returns, within 50 ms.
///
/// ```swift
/// let listener = try LoopbackListener()
/// let client = try MQTTClient(configuration: .init(host: listener.host, port: listener.port, clientID: "c1"))
/// // ... start connecting, then:
/// let connection = try #require(try listener.accept(timeout: .seconds(5)))
/// defer { close(connection) }
/// ```
public final class LoopbackListener: Sendable {
    // MARK: Properties

    /// The address it listens on.
    public let address: LoopbackNetwork.Address

    /// The address in numeric form, for a client's configuration: `127.0.0.1` or `::1`.
    public var host: String { address.host }

    /// The TCP port it listens on.
    public let port: Int

    /// The listening descriptor (non-blocking, close-on-exec), for the module's own `poll` loops; valid
    /// until ``close()``.
    let descriptor: Int32

    private let state = Mutex(State())

    /// Whether ``close()`` was called, whether the descriptor is closed, and how many accepts are under way.
    private struct State: Sendable {
        var isClosed = false
        var isDescriptorClosed = false
        var accepting = 0
    }

    /// The longest single `poll` in ``accept(timeout:)``, so that a concurrent ``close()`` is seen soon.
    private static let pollSlice = 0.05

    // MARK: Initialization

    /// Binds and listens.
    /// - Parameters:
    ///   - address: `127.0.0.1` (the default) or `::1`.
    ///   - port: The port; 0 (the default) lets the kernel pick a free one.
    ///   - backlog: How many connections may wait for ``accept(timeout:)``; beyond it a client's connect
    ///     waits (a listener that never accepts leaves every client's handshake to the backlog).
    /// - Throws: `MosquittoTestingError` when the socket cannot be created, bound (the port is taken,
    ///   `::1` is not configured) or put to listening.
    public init(address: LoopbackNetwork.Address = .ipv4, port: Int = 0, backlog: Int32 = 16) throws {
        guard (0...65_535).contains(port) else {
            throw MosquittoTestingError("port \(port) is out of range")
        }
        let descriptor = try SocketAddress.makeSocket(address)
        var reuse: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        var bound = SocketAddress(address, port: port)
        let listening = bound.withSocketAddress { bind(descriptor, $0, $1) } == 0
            && bound.readName(of: descriptor)
            && listen(descriptor, backlog) == 0
        guard listening else {
            let reason = FileSystem.lastErrorDescription()
            posixClose(descriptor)
            throw MosquittoTestingError("could not listen on \(address.host) port \(port): \(reason)")
        }
        self.address = address
        self.port = bound.port
        self.descriptor = descriptor
    }

    deinit {
        close()
    }

    // MARK: Accepting

    /// Accepts the next connection, waiting at most `timeout`.
    /// - Parameters:
    ///   - timeout: The longest wait; `.zero` only takes a connection already waiting.
    /// - Throws: `MosquittoTestingError` when the listener was closed before the call, or `accept` fails
    ///   otherwise than for want of a connection (e.g. out of descriptors).
    /// - Returns: The connection's descriptor (blocking, close-on-exec), which the caller owns and
    ///   closes; `nil` when the timeout passed, or the listener was closed meanwhile.
    public func accept(timeout: Duration) throws -> Int32? {
        let entered = state.withLock { state -> Bool in
            guard !state.isClosed else { return false }
            state.accepting += 1
            return true
        }
        guard entered else {
            throw MosquittoTestingError("the listener on \(host) port \(port) is closed")
        }
        defer {
            state.withLock { state in
                state.accepting -= 1
                closeDescriptorIfDone(&state)
            }
        }
        let deadline = MonotonicClock.now + timeout.seconds
        while true {
            if let connection = try acceptWaiting() { return connection }
            let left = deadline - MonotonicClock.now
            guard left > 0, !state.withLock({ $0.isClosed }) else { return nil }
            var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, Int32((min(left, Self.pollSlice) * 1000).rounded(.up)))
        }
    }

    /// One non-blocking `accept`: a connection, or `nil` when none is waiting.
    private func acceptWaiting() throws -> Int32? {
        while true {
            let connection = posixAccept(descriptor)
            if connection >= 0 {
                _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                // BSDs pass the listener's O_NONBLOCK on; Linux does not. Either way: blocking.
                _ = fcntl(connection, F_SETFL, fcntl(connection, F_GETFL) & ~O_NONBLOCK)
                return connection
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default:
                throw MosquittoTestingError("accept on \(host) port \(port) failed: \(FileSystem.lastErrorDescription())")
            }
        }
    }

    // MARK: Closing

    /// Whether ``close()`` was called.
    public var isClosed: Bool {
        state.withLock { $0.isClosed }
    }

    /// Stops listening: clients are refused from then on. Idempotent; connections already accepted stay open.
    public func close() {
        state.withLock { state in
            state.isClosed = true
            closeDescriptorIfDone(&state)
        }
    }

    /// Closes the descriptor once ``close()`` was called and no accept uses it any more.
    private func closeDescriptorIfDone(_ state: inout State) {
        guard state.isClosed, state.accepting == 0, !state.isDescriptorClosed else { return }
        state.isDescriptorClosed = true
        posixClose(descriptor)
    }
}

// MARK: - System calls

/// `connect(2)`, out of reach of ``LoopbackNetwork/connect(port:address:timeout:)``'s name.
private func posixConnect(_ descriptor: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    connect(descriptor, address, length)
}

/// `accept(2)` without the peer's address, out of reach of ``LoopbackListener/accept(timeout:)``'s name.
private func posixAccept(_ descriptor: Int32) -> Int32 {
    accept(descriptor, nil, nil)
}

/// `close(2)`, out of reach of ``LoopbackListener/close()``'s name.
private func posixClose(_ descriptor: Int32) {
    _ = close(descriptor)
}

// MARK: - Socket addresses

/// A loopback socket address of either family, for `bind`, `connect` and `getsockname`.
struct SocketAddress {
    private var storage = sockaddr_storage()
    private let family: LoopbackNetwork.Address

    /// `address`:`port`.
    init(_ address: LoopbackNetwork.Address, port: Int) {
        family = address
        withUnsafeMutableBytes(of: &storage) { raw in
            switch address {
            case .ipv4:
                let pointer = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                pointer.pointee.sin_family = sa_family_t(AF_INET)
                pointer.pointee.sin_port = UInt16(port).bigEndian
                _ = inet_pton(AF_INET, address.host, &pointer.pointee.sin_addr)
            case .ipv6:
                let pointer = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                pointer.pointee.sin6_family = sa_family_t(AF_INET6)
                pointer.pointee.sin6_port = UInt16(port).bigEndian
                _ = inet_pton(AF_INET6, address.host, &pointer.pointee.sin6_addr)
            }
        }
    }

    /// The structure's length for its family.
    private var length: socklen_t {
        socklen_t(family == .ipv4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
    }

    /// The port, in host byte order.
    var port: Int {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case .ipv4: return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
            case .ipv6: return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
        }
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    func withSocketAddress<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// Replaces the address by the name `descriptor` is bound to (`getsockname`); `false` on failure.
    mutating func readName(of descriptor: Int32) -> Bool {
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutableBytes(of: &storage) { raw in
            getsockname(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &size) == 0
        }
    }

    /// A blocking, close-on-exec TCP socket of `address`'s family.
    static func makeSocket(_ address: LoopbackNetwork.Address) throws -> Int32 {
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #elseif canImport(Musl)
        let type = SOCK_STREAM | SOCK_CLOEXEC
        #else
        let type = SOCK_STREAM
        #endif
        let descriptor = socket(address == .ipv4 ? AF_INET : AF_INET6, type, 0)
        guard descriptor >= 0 else {
            throw MosquittoTestingError("could not create a socket: \(FileSystem.lastErrorDescription())")
        }
        #if canImport(Darwin)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        #endif
        return descriptor
    }
}
