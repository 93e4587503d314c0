import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

/// Typed errors end to end: each failure reaches the caller as its own ``MQTTError`` code, with
/// the CONNACK code or reason the broker sent.
@Suite("Typed errors end to end", .timeLimit(.minutes(1)))
struct TypedErrorTests {
    /// `.invalid` never resolves (RFC 6761): no connection is attempted anywhere.
    @Test("a host name that does not resolve fails with hostLookupFailed")
    func unresolvableHostFailsWithHostLookupFailed() async throws {
        let client = try makeClient(host: "no-such-broker.invalid", port: 1883)
        let error = await thrownError { try await client.connect() }
        #expect(error?.code == .hostLookupFailed, "\(String(describing: error))")
        #expect(error?.operation == .connect)
        #expect(!client.isConnected)
    }

    @Test("a publish awaiting its PUBACK when the last reference to the client is dropped fails with clientClosed")
    func pendingPublishFailsWithClientClosedWhenTheClientIsDropped() async throws {
        // A peer that accepts the connection and never acknowledges anything.
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        weak var weakClient: MQTTClient?
        let pending: MQTTPendingPublish
        do {
            let client = try makeClient(host: "127.0.0.1", port: peer.port)
            try await client.connect()
            pending = try client.beginPublish(to: "closed/pending", payload: "x", qos: .atLeastOnce)
            #expect(client.pendingPublishCount == 1)
            weakClient = client
        }
        #expect(weakClient == nil)
        let error = await thrownError { _ = try await pending.acknowledgement(timeout: .seconds(10)) }
        #expect(error != nil, "the publish failed")
        #expect(error?.code != .timeout, "it failed when the client closed, not for want of an answer")
        // The close drains first (DISCONNECT after waiting for acknowledgements); the waits
        // libmosquitto's on_disconnect then abandons fail with clientClosed, not notConnected.
        #expect(error?.code == .clientClosed, "\(String(describing: error))")
    }

    @Test(
        "a refused CONNACK other than for credentials is connectionRefused with the exact code: identifier rejected, server unavailable",
        arguments: [(MQTTProtocolVersion.v3_1_1, UInt8(2)), (.v3_1_1, 3), (.v5, 0x85), (.v5, 0x88)]
    )
    func refusedConnackCarriesItsCode(version: MQTTProtocolVersion, code: UInt8) async throws {
        let peer = try ScriptedPeer { connection in
            guard connection.read(until: 1) != nil else { return }
            connection.send(version == .v5 ? [0x20, 0x03, 0x00, code, 0x00] : [0x20, 0x02, 0x00, code])
            _ = connection.readPacket()
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.protocolVersion = version }
        let error = await thrownError { try await client.connect() }
        #expect(error?.code == .connectionRefused, "\(String(describing: error))")
        #expect(error?.operation == .connect)
        if version == .v5 {
            #expect(error?.reasonCode == MQTTReasonCode(rawValue: code))
            #expect(error?.connectReturnCode == nil)
        } else {
            #expect(error?.connectReturnCode == code)
            #expect(error?.reasonCode == nil)
        }
        #expect(!client.isConnected)
    }
}
