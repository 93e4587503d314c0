#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Loopback sockets

/// TCP helpers restricted to 127.0.0.1: picking a free port and probing whether a port accepts connections.
enum LoopbackNetwork {
    /// The only address the fixture listens on or connects to.
    static let host = "127.0.0.1"

    /// Asks the kernel for a free TCP port on 127.0.0.1 by binding port 0, reading the port, and closing the socket.
    /// - Throws: `MosquittoTestingError` if no socket can be bound.
    /// - Returns: A port that was free a moment ago.
    static func freePort() throws -> Int {
        let descriptor = try makeSocket()
        defer { close(descriptor) }
        var address = loopbackAddress(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            throw MosquittoTestingError("could not bind 127.0.0.1:0: \(FileSystem.lastErrorDescription())")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else {
            throw MosquittoTestingError("getsockname failed: \(FileSystem.lastErrorDescription())")
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether a TCP connection to 127.0.0.1:`port` succeeds right now (the connection is closed at once).
    /// - Parameters:
    ///   - port: The port to probe.
    static func acceptsConnections(port: Int) -> Bool {
        guard let descriptor = try? makeSocket() else { return false }
        defer { close(descriptor) }
        // Bound the (normally instantaneous) loopback connect in case the accept backlog is full.
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopbackAddress(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }

    // MARK: Private

    private static func makeSocket() throws -> Int32 {
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #elseif canImport(Musl)
        let type = SOCK_STREAM | SOCK_CLOEXEC
        #else
        let type = SOCK_STREAM
        #endif
        let descriptor = socket(AF_INET, type, 0)
        guard descriptor >= 0 else {
            throw MosquittoTestingError("could not create a socket: \(FileSystem.lastErrorDescription())")
        }
        return descriptor
    }

    private static func loopbackAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        #if canImport(Darwin)
        address.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }
}
