import MosquittoTesting
import Synchronization
import Testing

/// A broker that breaks the protocol ends the `mqtt` commands with libmosquitto's error, as it
/// ends the mosquitto tools, instead of a reconnect that would send the same messages into the
/// same failure for ever. A lost connection still reconnects.
@Suite("CLI protocol errors", .timeLimit(.minutes(2)))
struct CLIProtocolErrorTests {
    static let protocolErrorLine = "Error: A network protocol error occurred when communicating with the broker."

    /// Counts the PUBLISH packets a scripted peer received, over all its connections.
    final class Count: Sendable {
        private let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    @Test(
        "mqtt pub exits 2 when the broker answers with the wrong acknowledgement (PUBACK for QoS 2, PUBREC for QoS 1), and sends the message once",
        arguments: [("2", UInt8(0x40)), ("1", UInt8(0x50))]
    )
    func wrongAcknowledgement(qos: String, answer: UInt8) async throws {
        let publishes = Count()
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            while let packet = connection.readPacket() {
                guard packet.type == 3 else { continue }
                publishes.add()
                let topicLength = Int(packet.body[0]) << 8 | Int(packet.body[1])
                let id = Array(packet.body[(2 + topicLength)..<(4 + topicLength)])
                connection.send([answer, 0x02] + id)
            }
        }
        defer { peer.stop() }
        let run = try await CLITests.mqtt(["pub", "-p", "\(peer.port)", "-t", "t", "-m", "x", "-q", qos], timeout: .seconds(20))
        #expect(run.status == 2, "\(run.stderr)")
        #expect(CLITests.lines(run.stderr) == [Self.protocolErrorLine])
        try await Task.sleep(for: .milliseconds(500))
        #expect(publishes.count == 1, "sent again after the protocol error")
        #expect(peer.connectionCount == 1)
    }

    @Test("mqtt pub -l exits 2 when a QoS 2 line is answered with PUBACK")
    func wrongAcknowledgementForLines() async throws {
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            while let packet = connection.readPacket() {
                guard packet.type == 3 else { continue }
                let topicLength = Int(packet.body[0]) << 8 | Int(packet.body[1])
                connection.send([0x40, 0x02] + Array(packet.body[(2 + topicLength)..<(4 + topicLength)]))
            }
        }
        defer { peer.stop() }
        let run = try await CLITests.mqtt(["pub", "-p", "\(peer.port)", "-t", "t", "-l", "-q", "2"], input: "a\nb\n", timeout: .seconds(20))
        #expect(run.status == 2, "\(run.stderr)")
        #expect(CLITests.lines(run.stderr) == [Self.protocolErrorLine])
        #expect(peer.connectionCount == 1)
    }

    @Test("mqtt sub exits 2 when the broker sends a packet identifier of 0")
    func subscriberProtocolError() async throws {
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            guard let subscribe = connection.read(until: 8) else { return }
            connection.send([0x90, 0x03, subscribe.body[0], subscribe.body[1], 0x00])
            // A QoS 1 PUBLISH with packet identifier 0: a protocol violation.
            connection.send([0x32, 0x06, 0x00, 0x01, 0x74, 0x00, 0x00, 0x78])
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        let run = try await CLITests.mqtt(["sub", "-p", "\(peer.port)", "-t", "t", "-q", "1"], timeout: .seconds(20))
        #expect(run.status == 2, "\(run.stderr)")
        #expect(CLITests.lines(run.stderr) == [Self.protocolErrorLine])
        #expect(peer.connectionCount == 1)
    }

    @Test("mqtt sub still reconnects after a plain connection loss")
    func subscriberReconnectsAfterALoss() async throws {
        let connections = Count()
        let peer = try ScriptedPeer { connection in
            connections.add()
            let number = connections.count
            guard connection.acceptConnect() else { return }
            guard let subscribe = connection.read(until: 8) else { return }
            connection.send([0x90, 0x03, subscribe.body[0], subscribe.body[1], 0x00])
            // The first connection closes; the second delivers one message.
            guard number >= 2 else { return }
            connection.send([0x30, 0x04, 0x00, 0x01, 0x74, 0x78])
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        let run = try await CLITests.mqtt(["sub", "-p", "\(peer.port)", "-t", "t", "-C", "1"], timeout: .seconds(20))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(CLITests.lines(run.stdout) == ["x"])
        #expect(peer.connectionCount == 2)
    }
}
