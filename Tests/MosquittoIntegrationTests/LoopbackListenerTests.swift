import Foundation
import MosquittoTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Whether this host has `::1` on its loopback interface (containers may run with IPv6 disabled).
private let ipv6LoopbackConfigured: Bool = {
    guard let table = try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8) else { return false }
    return table.split(separator: "\n").contains { $0.hasPrefix("00000000000000000000000000000001") }
}()

/// The fixture's loopback listener and connection helpers on their own (no broker).
@Suite("Loopback listener", .timeLimit(.minutes(1)))
struct LoopbackListenerTests {
    /// Sends `text` on `from` and reads it on `to` (at most 2 s).
    private func pass(_ text: String, from: Int32, to: Int32) -> String? {
        _ = Array(text.utf8).withUnsafeBytes { send(from, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var ready = pollfd(fd: to, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 2_000) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = recv(to, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }

    @Test("accept waits out its timeout and returns nil when no client comes")
    func acceptTimesOut() throws {
        let listener = try LoopbackListener()
        let started = ContinuousClock.now
        #expect(try listener.accept(timeout: .milliseconds(300)) == nil)
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(300))
        #expect(waited < .seconds(5))
        #expect(try listener.accept(timeout: .zero) == nil)
    }

    @Test("a client's connection is accepted on 127.0.0.1 and carries bytes both ways")
    func acceptsAConnection() throws {
        let listener = try LoopbackListener()
        #expect(listener.host == "127.0.0.1")
        #expect(listener.port > 0)
        let client = try LoopbackNetwork.connect(port: listener.port)
        defer { close(client) }
        let server = try #require(try listener.accept(timeout: .seconds(5)))
        defer { close(server) }
        #expect(pass("ping", from: client, to: server) == "ping")
        #expect(pass("pong", from: server, to: client) == "pong")
        #expect(fcntl(server, F_GETFD) & FD_CLOEXEC != 0, "the accepted socket is close-on-exec")
        #expect(fcntl(server, F_GETFL) & O_NONBLOCK == 0, "the accepted socket is blocking")
    }

    @Test("::1 works like 127.0.0.1", .enabled(if: ipv6LoopbackConfigured))
    func ipv6() throws {
        let listener = try LoopbackListener(address: .ipv6)
        #expect(listener.host == "::1")
        let client = try LoopbackNetwork.connect(port: listener.port, address: .ipv6)
        defer { close(client) }
        let server = try #require(try listener.accept(timeout: .seconds(5)))
        defer { close(server) }
        #expect(pass("six", from: client, to: server) == "six")
    }

    @Test("a given port is bound; a second listener on it fails")
    func givenPort() throws {
        let port = try LoopbackNetwork.freePort()
        let listener = try LoopbackListener(port: port)
        #expect(listener.port == port)
        #expect(LoopbackNetwork.acceptsConnections(port: port))
        #expect(throws: MosquittoTestingError.self) { try LoopbackListener(port: port) }
    }

    @Test("close() ends a concurrent accept early and refuses later ones")
    func closeEndsAccept() async throws {
        let listener = try LoopbackListener()
        let started = ContinuousClock.now
        let accepting = Task.detached { try listener.accept(timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(100))
        listener.close()
        #expect(try await accepting.value == nil)
        // Well before the accept's own 20 s timeout (a loaded machine has resumed this task 5 s late).
        #expect(ContinuousClock.now - started < .seconds(15), "the accept saw the close")
        #expect(listener.isClosed)
        #expect(throws: MosquittoTestingError.self) { try listener.accept(timeout: .zero) }
        listener.close()  // Idempotent.
    }

    @Test("connect fails when nothing listens; acceptsConnections says so")
    func connectRefused() throws {
        let listener = try LoopbackListener()
        let port = listener.port
        listener.close()
        // The port may be taken by a parallel test meanwhile: only check a refusal agrees with the probe.
        let probe = LoopbackNetwork.acceptsConnections(port: port)
        if !probe {
            #expect(throws: MosquittoTestingError.self) { try LoopbackNetwork.connect(port: port) }
        }
        #expect(throws: MosquittoTestingError.self) { try LoopbackListener(port: 70_000) }
    }
}
