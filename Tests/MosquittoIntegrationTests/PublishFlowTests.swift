import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

/// The publish window under load, against a scripted peer that holds back its PUBACKs: at most
/// `maxInflightMessages` are on the wire unacknowledged, `pendingPublishCount` counts every
/// publish not yet acknowledged, and `flush(timeout:)` says whether they all were.
@Suite("Publishing under load", .timeLimit(.minutes(1)))
struct PublishFlowTests {
    /// What the peer saw: PUBLISHes received, acknowledged, and the most outstanding at once.
    private final class PeerLog: Sendable {
        let received = Atomic<Int>(0)
        let acknowledged = Atomic<Int>(0)
        let mostOutstanding = Atomic<Int>(0)
        let release = Atomic<Bool>(false)
    }

    @Test("500 QoS 1 publishes with maxInflightMessages 5: 5 on the wire until acknowledged, all pending, flush false; once acknowledged, flush true and none pending, the window never exceeded")
    func inflightWindowPendingCountAndFlush() async throws {
        let log = PeerLog()
        let peer = try ScriptedPeer(readTimeout: .milliseconds(50)) { connection in
            guard connection.acceptConnect() else { return }
            var withheld: [UInt16] = []
            func acknowledge(_ packetID: UInt16) {
                connection.send([0x40, 0x02] + PeerConnection.encode(packetID))
                log.acknowledged.add(1, ordering: .relaxed)
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while !connection.endOfStream, ContinuousClock.now < deadline {
                if let packet = connection.readPacket() {
                    if packet.type == 14 { break }
                    guard packet.type == 3 else { continue }
                    let received = log.received.add(1, ordering: .relaxed).newValue
                    let outstanding = received - log.acknowledged.load(ordering: .relaxed)
                    if outstanding > log.mostOutstanding.load(ordering: .relaxed) { log.mostOutstanding.store(outstanding, ordering: .relaxed) }
                    withheld.append(packet.packetID)
                }
                if log.release.load(ordering: .relaxed) {
                    withheld.forEach(acknowledge)
                    withheld.removeAll()
                }
            }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.maxInflightMessages = 5 }
        try await client.connect()
        let count = 500
        let pending = try (0..<count).map { try client.beginPublish(to: "load/window", payload: Array("\($0)".utf8), qos: .atLeastOnce) }
        #expect(client.pendingPublishCount == count)

        // The window fills, and stays full: nothing more is sent until an acknowledgement.
        let filled = ContinuousClock.now + .seconds(10)
        while log.received.load(ordering: .relaxed) < 5, ContinuousClock.now < filled {
            try await Task.sleep(for: .milliseconds(10))
        }
        let flushedWhileWithheld = await client.flush(timeout: .milliseconds(500))
        #expect(!flushedWhileWithheld, "flush reports the publishes still unacknowledged")
        #expect(log.received.load(ordering: .relaxed) == 5)
        #expect(client.pendingPublishCount == count)

        log.release.store(true, ordering: .relaxed)
        let flushed = await client.flush(timeout: .seconds(20))
        #expect(flushed)
        #expect(client.pendingPublishCount == 0)
        #expect(log.received.load(ordering: .relaxed) == count)
        #expect(log.acknowledged.load(ordering: .relaxed) == count)
        #expect(log.mostOutstanding.load(ordering: .relaxed) == 5)
        for publish in pending {
            #expect(publish.isComplete)
        }
        try await client.disconnect()
    }
}
