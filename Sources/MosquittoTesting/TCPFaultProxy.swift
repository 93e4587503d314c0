import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Proxy

/// A loopback TCP proxy between a client and a broker that can cut or black-hole its connections, for
/// network-fault tests.
///
/// It listens on a free port on 127.0.0.1 (a ``LoopbackListener``) and forwards every accepted connection to an upstream on the
/// loopback network (it never connects anywhere else). Point a client at ``host``:``port`` instead of the
/// broker, then inject a fault:
/// - ``cut()`` closes every current connection on both sides, as a broker or NAT reset would: the client
///   sees the connection drop at once.
/// - ``blackHole(includingNewConnections:)`` keeps the current connections open but silently stops
///   forwarding, as a pulled cable or a dead NAT entry would: whatever arrives is read and discarded,
///   nothing is written, no FIN or RST is sent. Only a keepalive notices.
/// - ``muteUpstream()`` drops only what the upstream sends: the client hears nothing any more, while its
///   own bytes, and its close, still reach the upstream (a broker that froze its sending side, or a route
///   lost one way). A client that gives up on the silent link and closes is seen closing by the upstream.
///
/// One thread of its own runs a `poll` loop over non-blocking sockets, with at most 64 KiB buffered per
/// direction and connection. The fault methods are synchronous: when they return, the loop has applied
/// them. ``stop()`` (also run on deinit) closes everything and ends the thread.
///
/// ```swift
/// let proxy = try TCPFaultProxy(forwardingTo: broker)
/// defer { proxy.stop() }
/// let client = try MQTTClient(configuration: .init(host: proxy.host, port: proxy.port, clientID: "c1"))
/// try await client.connect()
/// proxy.cut()
/// ```
public final class TCPFaultProxy: Sendable {
    // MARK: Properties

    /// The address clients connect to: always `127.0.0.1`.
    public let host: String

    /// The TCP port the proxy listens on, chosen by the kernel.
    public let port: Int

    /// The loopback address connections are forwarded to.
    public let upstreamHost: String

    /// The TCP port connections are forwarded to.
    public let upstreamPort: Int

    /// The state shared with the loop thread (the thread holds its own reference, never one to `self`).
    private let shared: ProxyShared

    // MARK: Initialization

    /// Starts a proxy listening on a free 127.0.0.1 port that forwards to `upstreamHost`:`upstreamPort`.
    /// - Parameters:
    ///   - upstreamHost: An IPv4 loopback address (`127.0.0.0/8`) or `localhost`; defaults to `127.0.0.1`.
    ///   - upstreamPort: The upstream TCP port, e.g. a ``MosquittoBroker``'s ``MosquittoBroker/port``.
    /// - Throws: `MosquittoTestingError` if the upstream is not a loopback address or the port is out of
    ///   range, or the listening socket, wake-up pipe or thread cannot be created.
    public init(upstreamHost: String = "127.0.0.1", upstreamPort: Int) throws {
        let upstream = try Self.loopbackAddress(host: upstreamHost, port: upstreamPort)
        let listener = try LoopbackListener(backlog: 64)
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            let reason = FileSystem.lastErrorDescription()
            listener.close()
            throw MosquittoTestingError("could not create the proxy's wake-up pipe: \(reason)")
        }
        for descriptor in pipeEnds {
            Socket.configure(descriptor)
        }
        let shared = ProxyShared(wakeWrite: pipeEnds[1])
        let loop = ProxyLoop(listener: listener, wakeRead: pipeEnds[0], upstream: upstream, shared: shared)
        guard ProxyLoop.startThread(loop) else {
            listener.close()
            close(pipeEnds[0])
            close(pipeEnds[1])
            throw MosquittoTestingError("could not start the proxy's thread")
        }
        self.host = listener.host
        self.port = listener.port
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.shared = shared
    }

    /// Starts a proxy in front of `broker`; see ``init(upstreamHost:upstreamPort:)``.
    /// - Parameters:
    ///   - broker: The broker to forward to. An external broker must be on the loopback network.
    /// - Throws: `MosquittoTestingError` if the broker is not on a loopback address or the proxy cannot start.
    public convenience init(forwardingTo broker: MosquittoBroker) throws {
        try self.init(upstreamHost: broker.host, upstreamPort: broker.port)
    }

    deinit {
        stop()
    }

    // MARK: Faults

    /// Closes every current connection on both sides; connections accepted afterwards forward normally.
    ///
    /// The client and the upstream each see their end closed (FIN, or RST when unread data was pending).
    /// Black-holed connections are closed too. Returns once done; does nothing after ``stop()``.
    public func cut() {
        shared.perform(.cut)
    }

    /// Makes every current connection silently stop forwarding, in both directions.
    ///
    /// The sockets stay open: data that arrives is read and discarded, nothing is written, and neither side
    /// gets a FIN or RST, like a pulled cable or a dead NAT entry (TCP itself keeps acknowledging, so only an
    /// application-level keepalive can notice). A side that closes its end is closed here too, without
    /// telling the other side. A black-holed connection never forwards again: bytes were lost mid-stream.
    /// Returns once done; does nothing after ``stop()``.
    /// - Parameters:
    ///   - includingNewConnections: When `false` (the default), connections accepted afterwards forward
    ///     normally, so a client can reconnect. When `true`, they are accepted and black-holed as well
    ///     (never connected upstream) until ``heal()``.
    public func blackHole(includingNewConnections: Bool = false) {
        shared.perform(.blackHole(includingNewConnections: includingNewConnections))
    }

    /// Makes every current connection stop forwarding what the upstream sends, in that direction only.
    ///
    /// What the upstream sends is read and discarded; what the client sends still reaches the upstream,
    /// and so does its close (FIN), so the upstream sees exactly what the client does once the link has
    /// gone silent for it: e.g. whether a client that aborts a dead link sends DISCONNECT first. If the
    /// upstream closes, both sides are closed. Connections accepted afterwards forward normally.
    /// Returns once done; does nothing after ``stop()``.
    public func muteUpstream() {
        shared.perform(.muteUpstream)
    }

    /// Makes connections accepted from now on forward normally again, ending
    /// ``blackHole(includingNewConnections:)`` with `true`. Connections already black-holed stay so.
    /// Returns once done; does nothing after ``stop()``.
    public func heal() {
        shared.perform(.heal)
    }

    // MARK: Observing

    /// The number of connections currently open through the proxy, forwarding or black-holed.
    public var connectionCount: Int {
        shared.state.withLock { $0.connectionCount }
    }

    /// The number of client connections accepted since the proxy started (a reconnect adds one).
    public var acceptedConnectionCount: Int {
        shared.state.withLock { $0.acceptedCount }
    }

    // MARK: Stopping

    /// Closes the listening socket and every connection, and ends the proxy's thread.
    ///
    /// Idempotent and synchronous (usable from `defer`); waits at most 5 s for the thread.
    public func stop() {
        shared.stop()
    }

    // MARK: Private

    /// Resolves `host` to an IPv4 loopback socket address, refusing anything else.
    private static func loopbackAddress(host: String, port: Int) throws -> sockaddr_in {
        guard (1...65_535).contains(port) else {
            throw MosquittoTestingError("upstream port \(port) is out of range")
        }
        var address = sockaddr_in()
        #if canImport(Darwin)
        address.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        let numeric = host == "localhost" ? LoopbackNetwork.host : host
        guard inet_pton(AF_INET, numeric, &address.sin_addr) == 1,
            UInt32(bigEndian: address.sin_addr.s_addr) >> 24 == 127
        else {
            throw MosquittoTestingError("the proxy forwards only to IPv4 loopback addresses (127.0.0.0/8), not \(host)")
        }
        return address
    }
}

// MARK: - Shared state

/// A request from the public API to the loop thread.
private enum ProxyCommand: Sendable {
    case cut
    case blackHole(includingNewConnections: Bool)
    case muteUpstream
    case heal
    case stop
}

/// What the public object and the loop thread share: a command queue, counters, and the wake-up pipe's
/// write end. Every write to the pipe and its closing happen under the lock, so no write can reach a
/// descriptor number that was closed and reused.
private final class ProxyShared: Sendable {
    struct State: Sendable {
        var commands: [(ticket: UInt64, command: ProxyCommand)] = []
        var lastTicket: UInt64 = 0
        var appliedTicket: UInt64 = 0
        var isStopping = false
        var isWakeWriteClosed = false
        var loopEnded = false
        var connectionCount = 0
        var acceptedCount = 0
    }

    let state = Mutex(State())
    private let wakeWrite: Int32

    /// The longest a caller waits for the loop thread to apply a command or to end.
    private static let timeout = 5.0

    init(wakeWrite: Int32) {
        self.wakeWrite = wakeWrite
    }

    /// Queues `command`, wakes the loop, and waits (bounded) until the loop has applied it.
    func perform(_ command: ProxyCommand) {
        let ticket: UInt64? = state.withLock { state in
            guard !state.isStopping else { return nil }
            if case .stop = command { state.isStopping = true }
            state.lastTicket += 1
            state.commands.append((state.lastTicket, command))
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)  // EAGAIN: the pipe is full, so a wake-up is pending anyway.
            return state.lastTicket
        }
        guard let ticket else { return }
        waitUntil { $0.appliedTicket >= ticket || $0.loopEnded }
    }

    /// Asks the loop to close everything and end, waits (bounded) until it has, then closes the pipe's
    /// write end. Idempotent; concurrent callers all wait.
    func stop() {
        perform(.stop)
        waitUntil { $0.loopEnded }
        state.withLock { state in
            guard !state.isWakeWriteClosed else { return }
            state.isWakeWriteClosed = true
            close(wakeWrite)
        }
    }

    /// Polls the state every 0.5 ms until `condition` holds, for at most ``timeout``.
    private func waitUntil(_ condition: (State) -> Bool) {
        let deadline = MonotonicClock.now + Self.timeout
        while MonotonicClock.now < deadline {
            if state.withLock({ condition($0) }) { return }
            usleep(500)
        }
    }

    /// Takes the queued commands (called by the loop thread).
    func takeCommands() -> [(ticket: UInt64, command: ProxyCommand)] {
        state.withLock { state in
            defer { state.commands.removeAll() }
            return state.commands
        }
    }

    /// Publishes the loop's progress (called by the loop thread after each iteration, and once at its end).
    func report(appliedTicket: UInt64, connectionCount: Int, acceptedCount: Int, ended: Bool = false) {
        state.withLock { state in
            state.appliedTicket = max(state.appliedTicket, appliedTicket)
            state.connectionCount = connectionCount
            state.acceptedCount = acceptedCount
            if ended { state.loopEnded = true }
        }
    }
}

// MARK: - Loop

/// The loop thread's world: the listener, the connections and their buffers. Only that thread touches it.
private final class ProxyLoop {
    private let listener: LoopbackListener
    private let wakeRead: Int32
    private let upstream: sockaddr_in
    private let shared: ProxyShared
    private var connections: [ProxyConnection] = []
    private var blackHoleNewConnections = false
    private var acceptedCount = 0
    private var appliedTicket: UInt64 = 0
    /// Where black-holed data goes.
    private let discard = UnsafeMutableRawBufferPointer.allocate(byteCount: ProxyBuffer.capacity, alignment: 1)

    init(listener: LoopbackListener, wakeRead: Int32, upstream: sockaddr_in, shared: ProxyShared) {
        self.listener = listener
        self.wakeRead = wakeRead
        self.upstream = upstream
        self.shared = shared
    }

    deinit {
        discard.deallocate()
    }

    /// Runs `loop` on a new detached thread that owns it.
    static func startThread(_ loop: ProxyLoop) -> Bool {
        startDetachedThread { loop.run() }
    }

    // MARK: Running

    private func run() {
        defer {
            connections.forEach { $0.closeAll() }
            connections.removeAll()
            listener.close()
            close(wakeRead)
            shared.report(appliedTicket: appliedTicket, connectionCount: 0, acceptedCount: acceptedCount, ended: true)
        }
        while true {
            let polled = connections
            var descriptors = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0), pollfd(fd: listener.descriptor, events: Int16(POLLIN), revents: 0)]
            for connection in polled {
                descriptors.append(connection.clientPollDescriptor())
                descriptors.append(connection.upstreamPollDescriptor())
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            // Commands first: a cut must not forward what arrived with it.
            if descriptors[0].revents != 0 {
                drainWakeUps()
                for (ticket, command) in shared.takeCommands() {
                    if case .stop = command {
                        appliedTicket = ticket
                        return
                    }
                    apply(command)
                    appliedTicket = ticket
                }
            }
            // Connections polled in this round, skipping those a command closed (their descriptors are -1).
            for (index, connection) in polled.enumerated() where !connection.isFinished {
                let clientEvents = descriptors[2 + 2 * index].revents
                let upstreamEvents = descriptors[3 + 2 * index].revents
                connection.service(clientEvents: clientEvents, upstreamEvents: upstreamEvents, discard: discard)
            }
            connections.removeAll { $0.isFinished }
            if descriptors[1].revents != 0 {
                acceptPending()
            }
            shared.report(appliedTicket: appliedTicket, connectionCount: connections.count, acceptedCount: acceptedCount)
        }
    }

    private func drainWakeUps() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &bytes, bytes.count) > 0 {}
    }

    private func apply(_ command: ProxyCommand) {
        switch command {
        case .cut:
            connections.forEach { $0.closeAll() }
            connections.removeAll()
        case .blackHole(let includingNewConnections):
            connections.forEach { $0.blackHole() }
            if includingNewConnections { blackHoleNewConnections = true }
        case .muteUpstream:
            connections.forEach { $0.muteUpstream() }
        case .heal:
            blackHoleNewConnections = false
        case .stop:
            break
        }
    }

    // MARK: Accepting

    private func acceptPending() {
        // Until none is waiting (or accept fails, e.g. out of descriptors: the next round retries).
        while let client = try? listener.accept(timeout: .zero) {
            acceptedCount += 1
            Socket.configure(client)
            Socket.disableNagle(client)
            if blackHoleNewConnections {
                connections.append(ProxyConnection(client: client, upstream: -1, upstreamConnecting: false, blackHoled: true))
                continue
            }
            guard let upstreamDescriptor = Socket.make() else {
                close(client)
                continue
            }
            Socket.disableNagle(upstreamDescriptor)
            var address = upstream
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstreamDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 || errno == EINPROGRESS else {
                Socket.closeWithReset(client)  // The upstream refused: refuse the client too.
                close(upstreamDescriptor)
                continue
            }
            connections.append(
                ProxyConnection(client: client, upstream: upstreamDescriptor, upstreamConnecting: connected != 0, blackHoled: false)
            )
        }
    }
}

// MARK: - Connection

/// One client connection and its upstream, with a bounded buffer per direction.
private final class ProxyConnection {
    private var client: Int32
    private var upstream: Int32
    private var upstreamConnecting: Bool
    private var isBlackHoled: Bool
    /// What the upstream sends is discarded; the client's bytes and close are still forwarded.
    private var isUpstreamMuted = false
    private let toUpstream = ProxyDirection()
    private let toClient = ProxyDirection()

    init(client: Int32, upstream: Int32, upstreamConnecting: Bool, blackHoled: Bool) {
        self.client = client
        self.upstream = upstream
        self.upstreamConnecting = upstreamConnecting
        self.isBlackHoled = blackHoled
    }

    deinit {
        closeAll()
    }

    /// Whether both sockets are closed and the connection can be dropped.
    var isFinished: Bool { client < 0 && upstream < 0 }

    // MARK: Polling

    /// What to poll the client socket for (a closed socket, -1, is ignored by `poll`).
    func clientPollDescriptor() -> pollfd {
        if isBlackHoled {
            return pollfd(fd: client, events: Int16(POLLIN), revents: 0)
        }
        var events: Int32 = 0
        if toUpstream.wantsInput { events |= Int32(POLLIN) }
        if !toClient.buffer.isEmpty, !isUpstreamMuted { events |= Int32(POLLOUT) }
        return pollfd(fd: client, events: Int16(events), revents: 0)
    }

    /// What to poll the upstream socket for: writability while connecting, then like the client's.
    func upstreamPollDescriptor() -> pollfd {
        if isBlackHoled {
            return pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)
        }
        if upstreamConnecting {
            return pollfd(fd: upstream, events: Int16(POLLOUT), revents: 0)
        }
        var events: Int32 = 0
        if toClient.wantsInput || isUpstreamMuted { events |= Int32(POLLIN) }
        if !toUpstream.buffer.isEmpty { events |= Int32(POLLOUT) }
        return pollfd(fd: upstream, events: Int16(events), revents: 0)
    }

    // MARK: Servicing

    /// Handles one round of `poll` results for this connection.
    func service(clientEvents: Int16, upstreamEvents: Int16, discard: UnsafeMutableRawBufferPointer) {
        let broken = Int16(POLLERR | POLLHUP)
        if isBlackHoled {
            swallow(&client, events: clientEvents, discard: discard)
            swallow(&upstream, events: upstreamEvents, discard: discard)
            return
        }
        if upstreamConnecting {
            guard upstreamEvents != 0 else {
                // Not connected yet: take what the client sends meanwhile, up to the buffer's size.
                if clientEvents & broken != 0 || (clientEvents & Int16(POLLIN) != 0 && !toUpstream.receive(from: client)) {
                    closeAll()
                }
                return
            }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(upstream, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == 0 else {
                Socket.closeWithReset(client)  // The upstream refused: refuse the client too.
                client = -1
                closeAll()
                return
            }
            upstreamConnecting = false
        }
        if isUpstreamMuted {
            serviceMuted(clientEvents: clientEvents, upstreamEvents: upstreamEvents, discard: discard)
            return
        }
        guard clientEvents & Int16(POLLERR) == 0, upstreamEvents & Int16(POLLERR) == 0,
            toUpstream.transfer(from: client, sourceEvents: clientEvents, to: upstream),
            toClient.transfer(from: upstream, sourceEvents: upstreamEvents, to: client)
        else {
            closeAll()
            return
        }
        // Done both ways; or a side hung up completely (it can neither send nor receive any more):
        // what could be passed on was, in the transfers above.
        if (toUpstream.isComplete && toClient.isComplete) || (clientEvents | upstreamEvents) & Int16(POLLHUP) != 0 {
            closeAll()
        }
    }

    /// A round for a connection whose upstream is muted: the client's bytes and FIN go upstream as usual;
    /// the upstream's are discarded, and its close (or an error on either side) closes both.
    private func serviceMuted(clientEvents: Int16, upstreamEvents: Int16, discard: UnsafeMutableRawBufferPointer) {
        guard clientEvents & Int16(POLLERR) == 0, upstreamEvents & Int16(POLLERR) == 0,
            upstreamEvents == 0 || Self.discardAvailable(upstream, into: discard),
            toUpstream.transfer(from: client, sourceEvents: clientEvents, to: upstream)
        else {
            closeAll()
            return
        }
        if clientEvents & Int16(POLLHUP) != 0, toUpstream.buffer.isEmpty {
            closeAll()
        }
    }

    /// Reads and discards from a black-holed side; closes it (and only it) when its peer closes.
    private func swallow(_ descriptor: inout Int32, events: Int16, discard: UnsafeMutableRawBufferPointer) {
        guard descriptor >= 0, events != 0 else { return }
        if !Self.discardAvailable(descriptor, into: discard) {
            close(descriptor)  // EOF or an error: this side is gone; the other side is told nothing.
            descriptor = -1
        }
    }

    /// Reads and discards everything available on `descriptor`; `false` at EOF or on an error.
    private static func discardAvailable(_ descriptor: Int32, into discard: UnsafeMutableRawBufferPointer) -> Bool {
        while true {
            let count = recv(descriptor, discard.baseAddress, discard.count, 0)
            if count > 0 { continue }
            if count < 0, errno == EINTR { continue }
            return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }

    // MARK: Faults

    /// Stops forwarding: drops the buffered bytes and from now on swallows whatever arrives.
    func blackHole() {
        isBlackHoled = true
        toUpstream.buffer.removeAll()
        toClient.buffer.removeAll()
        if upstreamConnecting {
            close(upstream)  // It never reached the upstream: nothing to keep open there.
            upstream = -1
            upstreamConnecting = false
        }
    }

    /// Stops forwarding what the upstream sends (dropping what is buffered for the client); the client's
    /// direction keeps forwarding.
    func muteUpstream() {
        isUpstreamMuted = true
        toClient.buffer.removeAll()
    }

    /// Closes both sockets.
    func closeAll() {
        if client >= 0 { close(client) }
        if upstream >= 0 { close(upstream) }
        client = -1
        upstream = -1
    }
}

/// One direction of a connection: the bytes in flight and how far the close has got.
private final class ProxyDirection {
    let buffer = ProxyBuffer()
    /// The source sent FIN.
    private(set) var sourceEnded = false
    /// The FIN was passed on to the destination.
    private(set) var destinationShut = false

    /// Whether this direction is closed end to end.
    var isComplete: Bool { sourceEnded && destinationShut }

    /// Whether to read from the source: it is open and there is room.
    var wantsInput: Bool { !sourceEnded && buffer.hasRoom }

    /// Reads once from `source` into the buffer; returns `false` on a read error.
    func receive(from source: Int32) -> Bool {
        switch buffer.read(from: source) {
        case .progress, .wouldBlock: return true
        case .ended:
            sourceEnded = true
            return true
        case .failed: return false
        }
    }

    /// Reads what `poll` reported, writes what is buffered, and passes a FIN on once everything before
    /// it is written. Returns `false` when the connection failed and must be closed.
    func transfer(from source: Int32, sourceEvents: Int16, to destination: Int32) -> Bool {
        if sourceEvents & Int16(POLLIN | POLLHUP) != 0, wantsInput, !receive(from: source) {
            return false
        }
        if !buffer.isEmpty {
            switch buffer.write(to: destination) {
            case .progress, .wouldBlock: break
            case .ended, .failed: return false
            }
        }
        if sourceEnded, buffer.isEmpty, !destinationShut {
            _ = shutdown(destination, Int32(SHUT_WR))  // Half-close, as the source did.
            destinationShut = true
        }
        return true
    }
}

// MARK: - Buffer

/// A fixed-size byte buffer: bytes are read in at the end and written out from the start.
private final class ProxyBuffer {
    /// Bytes buffered per direction at most.
    static let capacity = 64 * 1024

    /// The result of one `recv` or `send`.
    enum Outcome { case progress, wouldBlock, ended, failed }

    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 1)
    private var start = 0
    private var end = 0

    deinit {
        storage.deallocate()
    }

    var isEmpty: Bool { start == end }
    var hasRoom: Bool { end - start < Self.capacity }

    func removeAll() {
        start = 0
        end = 0
    }

    /// One `recv` into the free space (moving the buffered bytes to the front first if needed).
    func read(from descriptor: Int32) -> Outcome {
        if end == Self.capacity, start > 0 {
            storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: end - start)
            end -= start
            start = 0
        }
        while true {
            let count = recv(descriptor, storage.baseAddress! + end, Self.capacity - end, 0)
            if count > 0 {
                end += count
                return .progress
            }
            if count == 0 { return .ended }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    /// One `send` of the buffered bytes.
    func write(to descriptor: Int32) -> Outcome {
        while true {
            let count = send(descriptor, storage.baseAddress! + start, end - start, Socket.sendFlags)
            if count >= 0 {
                start += count
                if start == end { removeAll() }
                return .progress
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            return errno == EPIPE || errno == ECONNRESET ? .ended : .failed
        }
    }
}

// MARK: - Sockets

/// Socket creation and options for the proxy.
private enum Socket {
    /// `send` flags: no SIGPIPE when the peer is gone (Linux; Darwin sets `SO_NOSIGPIPE` instead).
    #if os(Linux)
    static let sendFlags = Int32(MSG_NOSIGNAL)
    #else
    static let sendFlags: Int32 = 0
    #endif

    /// A non-blocking, close-on-exec IPv4 TCP socket, or `nil`.
    static func make() -> Int32? {
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        let descriptor = socket(AF_INET, type, 0)
        guard descriptor >= 0 else { return nil }
        configure(descriptor)
        return descriptor
    }

    /// Turns off Nagle's algorithm, so that small MQTT packets pass through without delay.
    static func disableNagle(_ descriptor: Int32) {
        var on: Int32 = 1
        _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Makes a descriptor non-blocking and close-on-exec (and, on Darwin, free of SIGPIPE).
    static func configure(_ descriptor: Int32) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        #if canImport(Darwin)
        var on: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_NOSIGPIPE, &on, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    /// Closes with an RST (linger 0), as a refused connection looks.
    static func closeWithReset(_ descriptor: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(descriptor)
    }
}
