import Mosquitto
import Synchronization
import Testing

/// The broker's Maximum Packet Size, enforced before sending with the exact size: a scripted
/// MQTT 5 peer announces 30 bytes and measures every packet the client writes.
@Suite("Maximum Packet Size at its boundaries", .timeLimit(.minutes(1)))
struct PacketSizeLimitTests {
    /// A v5 peer with Maximum Packet Size 30 that acknowledges everything and records the size of
    /// every PUBLISH, SUBSCRIBE and UNSUBSCRIBE it receives.
    final class Peer: Sendable {
        final class Recorder: Sendable {
            let sizes = Mutex<[(type: UInt8, size: Int)]>([])
        }

        let recorder = Recorder()
        let peer: ScriptedPeer

        init() throws {
            let recorder = self.recorder
            peer = try ScriptedPeer { connection in
                guard connection.read(until: 1) != nil else { return }
                // CONNACK: no session, success, properties: Maximum Packet Size (0x27) = 30.
                connection.send([0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x1e])
                while let packet = connection.readPacket() {
                    let size = 1 + (packet.body.count < 128 ? 1 : 2) + packet.body.count
                    recorder.sizes.withLock { $0.append((packet.type, size)) }
                    var id: [UInt8] { [UInt8(packet.packetID >> 8), UInt8(packet.packetID & 0xff)] }
                    switch packet.type {
                    case 3 where packet.qos == 1: connection.send([0x40, 0x02] + id)
                    case 8: connection.send([0x90, 0x04] + id + [0x00, 0x00])
                    case 10: connection.send([0xb0, 0x04] + id + [0x00, 0x00])
                    case 14: return
                    default: break
                    }
                }
            }
        }

        /// Waits (bounded) until the peer has read the client's DISCONNECT: everything before it is recorded.
        func waitForDisconnect() async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while recorded(14).isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        func recorded(_ type: UInt8) -> [Int] {
            recorder.sizes.withLock { $0.filter { $0.type == type }.map(\.size) }
        }
    }

    func connectedClient(_ peer: Peer) async throws -> MQTTClient {
        let client = try makeClient(host: "127.0.0.1", port: peer.peer.port) { $0.protocolVersion = .v5 }
        try await client.connect()
        #expect(client.connectResult?.maximumPacketSize == 30)
        return client
    }

    @Test(
        "PUBLISH of the maximum minus one and the maximum are sent (measured on the wire); one byte more is refused before sending",
        arguments: [
            // (QoS, properties, payload length that makes exactly 30 bytes)
            (MQTTQoS.atMostOnce, false, 17),  // 30 1c 0008 "pub/test" 00 + 17
            (.atLeastOnce, false, 15),        // + packet ID
            (.atMostOnce, true, 11),          // + content type "a/b" (6 bytes)
            (.atLeastOnce, true, 9),
        ]
    )
    func publishBoundaries(qos: MQTTQoS, withProperties: Bool, exact: Int) async throws {
        let peer = try Peer()
        defer { peer.peer.stop() }
        let client = try await connectedClient(peer)
        var properties = MQTTProperties()
        if withProperties { properties.contentType = "a/b" }
        for length in [exact - 1, exact] {
            try await client.publish(to: "pub/test", payload: [UInt8](repeating: 0x78, count: length), qos: qos, properties: properties)
        }
        let error = await thrownError {
            try await client.publish(to: "pub/test", payload: [UInt8](repeating: 0x78, count: exact + 1), qos: qos, properties: properties)
        }
        #expect(error?.code == .payloadTooLarge)
        #expect(client.isConnected)
        try await client.disconnect()
        try await peer.waitForDisconnect()
        #expect(peer.recorded(3) == [29, 30])
    }

    @Test("SUBSCRIBE and UNSUBSCRIBE of the maximum minus one and the maximum are sent; one byte more is packetTooLarge")
    func subscribeAndUnsubscribeBoundaries() async throws {
        let peer = try Peer()
        defer { peer.peer.stop() }
        let client = try await connectedClient(peer)
        // SUBSCRIBE: 82 len id id 00 | 00 nn filter | options = 8 + filter bytes.
        for length in [21, 22] {
            _ = try await client.subscribe(to: String(repeating: "s", count: length), qos: .atMostOnce)
        }
        let subscribeError = await thrownError { _ = try await client.subscribe(to: String(repeating: "s", count: 23), qos: .atMostOnce) }
        #expect(subscribeError?.code == .packetTooLarge)
        #expect(subscribeError?.operation == .subscribe)
        // UNSUBSCRIBE: a2 len id id 00 | 00 nn filter = 7 + filter bytes.
        for length in [22, 23] {
            try await client.unsubscribe(from: String(repeating: "u", count: length))
        }
        let unsubscribeError = await thrownError { try await client.unsubscribe(from: String(repeating: "u", count: 24)) }
        #expect(unsubscribeError?.code == .packetTooLarge)
        #expect(client.isConnected)
        try await client.disconnect()
        try await peer.waitForDisconnect()
        #expect(peer.recorded(8) == [29, 30])
        #expect(peer.recorded(10) == [29, 30])
    }
}
