import Foundation
import Synchronization
import Testing

/// The acknowledgement of a received QoS 1/2 message is on the wire before the message reaches
/// the application: a process that exits right after its first message (`mqtt-soak
/// exit-on-message`, which calls `exit(0)` in its loop over the messages) has sent PUBACK, or
/// PUBREC and then PUBCOMP. The thread driver used to queue it only when the message was handed
/// over, and lost it about half the time. Both drivers, whatever `MQTT_TEST_DRIVER` says.
@Suite("Acknowledgements before delivery, in a process that exits at once")
struct AcknowledgementOnExitTests {
    /// What the peer saw on one connection.
    enum Outcome: Equatable {
        /// The acknowledgement (QoS 1: PUBACK; QoS 2: PUBREC, then PUBCOMP after our PUBREL).
        case acknowledged
        /// The connection ended first; the packet types seen after our PUBLISH.
        case lost(afterPublish: [UInt8])
    }

    @Test("The acknowledgement is written before the message is handed over (25 exits per driver and QoS)", arguments: [false, true], [1, 2])
    func acknowledgementPrecedesDelivery(ownThread: Bool, qos: Int) async throws {
        let repetitions = 25
        let outcomes = Mutex<[Outcome]>([])
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect(), let subscribe = connection.read(until: 8) else { return }
            let id = subscribe.packetID
            connection.send([0x90, 0x03, UInt8(id >> 8), UInt8(id & 0xff), UInt8(qos)])
            // PUBLISH, QoS 1 or 2, packet id 1, topic "t", payload "x".
            connection.send([0x30 | UInt8(qos << 1), 0x06, 0x00, 0x01, 0x74, 0x00, 0x01, 0x78])
            var seen: [UInt8] = []
            var wanted: UInt8 = qos == 1 ? 4 : 5
            while let packet = connection.readPacket() {
                seen.append(packet.type)
                guard packet.type == wanted else { continue }
                if wanted == 4 || wanted == 7 {
                    outcomes.withLock { $0.append(.acknowledged) }
                    return
                }
                // PUBREC: release, and wait for PUBCOMP.
                connection.send([0x62, 0x02, 0x00, 0x01])
                wanted = 7
            }
            outcomes.withLock { $0.append(.lost(afterPublish: seen)) }
        }
        defer { peer.stop() }
        for repetition in 0..<repetitions {
            var arguments = ["exit-on-message", "--port", String(peer.port), "--topic", "t", "--qos", String(qos)]
            if ownThread { arguments.append("--thread") }
            let child = try startCommand(arguments, executable: builtExecutablePath("mqtt-soak"))
            let status = try await child.wait(timeout: .seconds(30))
            #expect(status == .exited(0), "repetition \(repetition): \(child.standardError)")
            #expect(child.outputLines == ["t"])
            // The peer sees the end of the stream once the process is gone.
            let deadline = ContinuousClock.now + .seconds(10)
            while outcomes.withLock({ $0.count }) <= repetition, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        let results = outcomes.withLock { $0 }
        #expect(results.count == repetitions)
        #expect(results.allSatisfy { $0 == .acknowledged }, "\(results)")
    }
}
