import Glibc
import Synchronization

// MARK: - SOCKS5Proxy

/// A minimal SOCKS5 proxy on 127.0.0.1 for tests: RFC 1928 CONNECT, with "no authentication" or,
/// when `credentials` are given, only RFC 1929 username/password. It records what each client
/// asked for, then relays bytes both ways.
///
/// It connects only to loopback: a request for any destination other than `127.0.0.1`, `::1` or
/// `localhost` is refused (reply 0x02, not allowed by the ruleset) without opening a connection.
/// Connections are served one after another on the listener thread of a ``ScriptedPeer`` (no
/// listener of its own); every read is bounded by the peer's read timeout and the relay stops
/// within 100 ms of ``stop()``.
final class SOCKS5Proxy: Sendable {
    /// A CONNECT request as the proxy received it.
    struct Request: Sendable, Hashable, CustomStringConvertible {
        /// The SOCKS command (1: CONNECT).
        var command: UInt8
        /// The address type: 1 IPv4, 3 domain name, 4 IPv6.
        var addressType: UInt8
        /// The destination host, as text.
        var host: String
        /// The destination port.
        var port: Int

        var description: String { "CONNECT(\(command)) \(host):\(port) (type \(addressType))" }
    }

    /// What the proxy has seen, shared with its serving thread.
    private final class Record: Sendable {
        struct Seen: Sendable {
            var offeredMethods: [[UInt8]] = []
            var usernames: [String] = []
            var requests: [Request] = []
            var relayedBytes = 0
            var clientPrefix: [UInt8] = []
        }

        let seen = Mutex(Seen())
        let stopping = Atomic<Bool>(false)
    }

    /// The port clients connect to (on 127.0.0.1).
    let port: Int
    private let record: Record
    private let peer: ScriptedPeer

    /// Starts the proxy.
    ///
    /// - Parameter credentials: The username and password it requires, or `nil` for "no authentication".
    init(credentials: (username: String, password: String)? = nil) throws {
        let record = Record()
        self.record = record
        let required = credentials.map { [$0.username, $0.password] }
        peer = try ScriptedPeer(readTimeout: .seconds(5)) { client in
            Self.serve(client, credentials: required.map { (username: $0[0], password: $0[1]) }, record: record)
        }
        port = peer.port
    }

    /// The authentication methods each client offered, in order.
    var offeredMethods: [[UInt8]] { record.seen.withLock { $0.offeredMethods } }
    /// The usernames clients sent (RFC 1929).
    var usernames: [String] { record.seen.withLock { $0.usernames } }
    /// The requests clients made after authenticating.
    var requests: [Request] { record.seen.withLock { $0.requests } }
    /// How many bytes were relayed, both directions together.
    var relayedBytes: Int { record.seen.withLock { $0.relayedBytes } }
    /// The first 16 KiB clients sent through the tunnel (a TLS ClientHello is readable there).
    var clientBytes: [UInt8] { record.seen.withLock { $0.clientPrefix } }

    /// Stops relaying and accepting (idempotent).
    func stop() {
        record.stopping.store(true, ordering: .relaxed)
        peer.stop()
    }

    deinit { stop() }

    // MARK: Serving one client (the peer's thread)

    private static func serve(_ client: PeerConnection, credentials: (username: String, password: String)?, record: Record) {
        guard let greeting = client.read(exactly: 2), greeting[0] == 5, let methods = client.read(exactly: Int(greeting[1])) else { return }
        record.seen.withLock { $0.offeredMethods.append(methods) }
        if let credentials {
            guard methods.contains(2) else { return client.send([5, 0xff]) }
            client.send([5, 2])
            guard let header = client.read(exactly: 2), header[0] == 1,
                  let username = client.read(exactly: Int(header[1])),
                  let passwordLength = client.read(exactly: 1), let password = client.read(exactly: Int(passwordLength[0]))
            else { return }
            let name = String(decoding: username, as: UTF8.self)
            record.seen.withLock { $0.usernames.append(name) }
            let accepted = name == credentials.username && String(decoding: password, as: UTF8.self) == credentials.password
            // RFC 1929: any status but 0 is a failure, and the server then closes the connection.
            client.send([1, accepted ? 0 : 1])
            guard accepted else { return }
        } else {
            guard methods.contains(0) else { return client.send([5, 0xff]) }
            client.send([5, 0])
        }
        guard let head = client.read(exactly: 4), head[0] == 5, let request = readDestination(client, command: head[1], addressType: head[3]) else {
            return client.send(reply(8))
        }
        record.seen.withLock { $0.requests.append(request) }
        guard request.command == 1 else { return client.send(reply(7)) }
        guard let upstream = connectLoopback(request.host, port: request.port) else {
            // Not loopback: refused by the rules. Loopback that refuses: connection refused.
            return client.send(reply(["127.0.0.1", "::1", "localhost"].contains(request.host) ? 5 : 2))
        }
        defer { close(upstream) }
        client.send(reply(0))
        relay(client, upstream, record: record)
    }

    /// DST.ADDR and DST.PORT of a request whose first four bytes were read.
    private static func readDestination(_ client: PeerConnection, command: UInt8, addressType: UInt8) -> Request? {
        let host: String
        switch addressType {
        case 1:
            guard let address = client.read(exactly: 4) else { return nil }
            host = address.map(String.init).joined(separator: ".")
        case 3:
            guard let length = client.read(exactly: 1), let name = client.read(exactly: Int(length[0])) else { return nil }
            host = String(decoding: name, as: UTF8.self)
        case 4:
            guard let address = client.read(exactly: 16) else { return nil }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard address.withUnsafeBytes({ inet_ntop(AF_INET6, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else { return nil }
            host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        default:
            return nil
        }
        guard let port = client.read(exactly: 2) else { return nil }
        return Request(command: command, addressType: addressType, host: host, port: Int(port[0]) << 8 | Int(port[1]))
    }

    /// A reply with status `status` and a bound address of 127.0.0.1:0.
    private static func reply(_ status: UInt8) -> [UInt8] { [5, status, 0, 1, 127, 0, 0, 1, 0, 0] }

    /// A TCP connection to `host` (127.0.0.1, localhost or ::1 only), or `nil`.
    private static func connectLoopback(_ host: String, port: Int) -> Int32? {
        let isIPv6 = host == "::1"
        guard isIPv6 || host == "127.0.0.1" || host == "localhost", (1...65_535).contains(port) else { return nil }
        let descriptor = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        let connected: Bool
        if isIPv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(port).bigEndian
            address.sin6_addr = in6addr_loopback
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0 }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
        }
        guard connected else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    /// Copies bytes both ways until either side closes or the proxy stops.
    private static func relay(_ client: PeerConnection, _ upstream: Int32, record: Record) {
        let early = client.takeBuffered()
        guard early.isEmpty || sendAll(early[...], to: upstream) else { return }
        var descriptors = [pollfd(fd: client.descriptor, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while !record.stopping.load(ordering: .relaxed) {
            guard poll(&descriptors, 2, 100) >= 0 || errno == EINTR else { return }
            for (index, destination) in [(0, upstream), (1, client.descriptor)] where descriptors[index].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { recv(descriptors[index].fd, $0.baseAddress, $0.count, 0) }
                guard count > 0, sendAll(chunk[0..<count], to: destination) else { return }
                record.seen.withLock { seen in
                    seen.relayedBytes += count
                    if index == 0, seen.clientPrefix.count < 16_384 { seen.clientPrefix += chunk[0..<min(count, 16_384 - seen.clientPrefix.count)] }
                }
            }
        }
    }

    private static func sendAll(_ bytes: ArraySlice<UInt8>, to descriptor: Int32) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
