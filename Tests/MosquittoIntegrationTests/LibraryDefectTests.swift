import Foundation
import Mosquitto
import Synchronization
import Testing

/// Defects of the libmosquitto releases users have, each shown on the versions that have it and
/// shown absent on the others (scripts/test.sh runs the suites on 2.0.11 and on 2.0.21).
@Suite("libmosquitto defects by version", .timeLimit(.minutes(1)))
struct LibraryDefectTests {
    /// An MQTT 5 PUBLISH whose property block holds an unknown identifier (0x7f), right after
    /// SUBACK: topic "t/v5", payload "payload".
    static let malformedPublish: [UInt8] = [0x30, 0x11, 0x00, 0x04, 0x74, 0x2f, 0x76, 0x35, 0x03, 0x7f, 0x00, 0x00, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64]

    /// A peer that accepts an MQTT 5 CONNECT and SUBSCRIBE, then sends the malformed PUBLISH.
    static func malformedPeer() throws -> ScriptedPeer {
        try ScriptedPeer { connection in
            guard connection.read(until: 1) != nil else { return }
            connection.send([0x20, 0x03, 0x00, 0x00, 0x00])  // CONNACK, MQTT 5, no properties
            guard let subscribe = connection.read(until: 8) else { return }
            let id = subscribe.packetID
            connection.send([0x90, 0x04, UInt8(id >> 8), UInt8(id & 0xff), 0x00, 0x00])  // SUBACK, QoS 0
            connection.send(malformedPublish)
            while connection.readPacket() != nil {}
        }
    }

    @Test(
        "before 2.0.16, one malformed MQTT 5 property block from the broker aborts the process (SIGABRT), as mosquitto_sub does",
        .enabled(if: MQTTClient.libraryVersion < .firstWithoutMalformedPropertyAbort, "only releases with the defect")
    )
    func malformedPropertyAbortsOldReleases() async throws {
        let peer = try Self.malformedPeer()
        defer { peer.stop() }
        // In a child process, so that this test survives the abort.
        let child = try StreamingCommand(["sub", "-h", "127.0.0.1", "-p", String(peer.port), "-V", "5", "-t", "t/v5"])
        _ = try await child.exitStatus(within: .seconds(20))
        #expect(child.terminationSignal == SIGABRT, "stderr: \(child.standardError)")
        #expect(child.standardError.contains("log__printf"), "libmosquitto's assertion: \(child.standardError)")
    }

    @Test(
        "from 2.0.16, a malformed MQTT 5 property block ends the connection with a typed error; the process goes on",
        .enabled(if: MQTTClient.libraryVersion >= .firstWithoutMalformedPropertyAbort, "only releases without the defect")
    )
    func malformedPropertyIsAnErrorOnNewReleases() async throws {
        let peer = try Self.malformedPeer()
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = .v5
            $0.reconnect = .disabled
        }
        let events = EventRecorder(client.connectionEvents)
        try await client.connect()
        let subscription = try await client.subscribe(to: "t/v5")
        let lost = await events.next(after: -1) { if case .disconnected = $0 { true } else { false } }
        guard case .disconnected(let error?) = lost?.event else {
            Issue.record("no disconnection with an error: \(events.events)")
            return
        }
        #expect(error.code == .malformedPacket, "\(error)")
        let ended = await thrownError { for try await _ in subscription {} }
        #expect(ended?.code == error.code)
    }
}
