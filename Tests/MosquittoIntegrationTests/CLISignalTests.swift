import Glibc
import MosquittoTesting
import Synchronization
import Testing

/// SIGINT and SIGTERM end the `mqtt` commands as they end the mosquitto tools 2.0.11:
/// `mosquitto_pub` and `mosquitto_rr` die of them at once (no DISCONNECT, status 130 / 143);
/// `mosquitto_sub` sends DISCONNECT with reason 0x04 (disconnect with will) once connected and
/// exits 0, or exits 255 before the CONNACK; `-W` also disconnects with reason 0x04.
@Suite("CLI signals", .timeLimit(.minutes(2)))
struct CLISignalTests {
    /// What a scripted peer saw of one connection: the packet types, in order, and the
    /// DISCONNECT's reason byte (0 when it had none).
    final class Seen: Sendable {
        private let state = Mutex<(types: [UInt8], disconnectReason: UInt8?, closed: Bool)>(([], nil, false))
        func record(_ packet: PeerConnection.Packet) {
            state.withLock { state in
                state.types.append(packet.type)
                if packet.type == 14 { state.disconnectReason = packet.body.first ?? 0 }
            }
        }
        func close() { state.withLock { $0.closed = true } }
        var types: [UInt8] { state.withLock { $0.types } }
        var disconnectReason: UInt8? { state.withLock { $0.disconnectReason } }
        var closed: Bool { state.withLock { $0.closed } }
    }

    /// A peer that reads every packet until the client closes; `answer` says what to send back.
    static func peer(_ seen: Seen, answer: @escaping @Sendable (PeerConnection, PeerConnection.Packet) -> Void) throws -> ScriptedPeer {
        try ScriptedPeer(readTimeout: .seconds(60)) { connection in
            while let packet = connection.readPacket() {
                seen.record(packet)
                answer(connection, packet)
            }
            seen.close()
        }
    }

    /// An MQTT 5 peer that accepts the connection and grants every subscription.
    static func subscribingPeerV5(_ seen: Seen) throws -> ScriptedPeer {
        try peer(seen) { connection, packet in
            switch packet.type {
            case 1: connection.send([0x20, 0x03, 0x00, 0x00, 0x00])
            case 8: connection.send([0x90, 0x04, packet.body[0], packet.body[1], 0x00, 0x00])
            default: break
            }
        }
    }

    /// Waits until `condition` holds (bounded).
    static func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    /// Sends `signal` and returns how the process ended: the signal it died of, or its status.
    static func interrupt(_ command: ChildProcess, with signal: Int32) async throws -> (signal: Int32?, status: Int32?) {
        command.signal(signal)
        guard let end = try await command.wait(timeout: .seconds(10)) else {
            command.kill()
            return (nil, nil)
        }
        return (end.signal, end.code)
    }

    @Test("mqtt pub dies of SIGINT/SIGTERM while waiting for the CONNACK", arguments: [SIGINT, SIGTERM])
    func pubWaitingForConnack(signal: Int32) async throws {
        let seen = Seen()
        let peer = try Self.peer(seen) { _, _ in }
        defer { peer.stop() }
        let command = try startCommand(["pub", "-p", "\(peer.port)", "-t", "x", "-m", "y"])
        try await Self.eventually { seen.types.contains(1) }
        let end = try await Self.interrupt(command, with: signal)
        #expect(end.signal == signal, "ended by \(String(describing: end)); stderr: \(command.standardError)")
    }

    @Test("mqtt pub dies of SIGINT/SIGTERM while waiting for a PUBACK, without DISCONNECT", arguments: [SIGINT, SIGTERM])
    func pubWaitingForAcknowledgement(signal: Int32) async throws {
        let seen = Seen()
        let peer = try Self.peer(seen) { connection, packet in
            if packet.type == 1 { connection.send([0x20, 0x02, 0x00, 0x00]) }
        }
        defer { peer.stop() }
        let command = try startCommand(["pub", "-p", "\(peer.port)", "-t", "x", "-m", "y", "-q", "1"])
        try await Self.eventually { seen.types.contains(3) }
        let end = try await Self.interrupt(command, with: signal)
        #expect(end.signal == signal, "ended by \(String(describing: end)); stderr: \(command.standardError)")
        try await Self.eventually { seen.closed }
        #expect(seen.closed)
        #expect(!seen.types.contains(14), "no DISCONNECT, as for a killed mosquitto_pub: \(seen.types)")
    }

    @Test("mqtt pub -l dies of SIGINT/SIGTERM while waiting for its next line", arguments: [SIGINT, SIGTERM])
    func pubWaitingForTheNextLine(signal: Int32) async throws {
        let seen = Seen()
        let peer = try Self.peer(seen) { connection, packet in
            if packet.type == 1 { connection.send([0x20, 0x02, 0x00, 0x00]) }
        }
        defer { peer.stop() }
        // Standard input: a pipe that stays open after the first line.
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        defer { close(ends[1]) }
        _ = write(ends[1], "first\n", 6)
        let command = try ChildProcess(
            executable: mqttExecutablePath(), arguments: ["pub", "-p", "\(peer.port)", "-t", "x", "-l"], standardInput: .descriptor(ends[0])
        )
        close(ends[0])
        try await Self.eventually { seen.types.contains(3) }
        let end = try await Self.interrupt(command, with: signal)
        #expect(end.signal == signal, "ended by \(String(describing: end)); stderr: \(command.standardError)")
    }

    @Test(
        "mqtt sub, connected, sends DISCONNECT with reason 0x04 on SIGINT/SIGTERM (MQTT 5; plain DISCONNECT on 3.1.1) and exits 0",
        arguments: [(SIGINT, "5"), (SIGTERM, "5"), (SIGINT, "311")]
    )
    func subDisconnectsWithWill(signal: Int32, version: String) async throws {
        let seen = Seen()
        let peer = try Self.peer(seen) { connection, packet in
            switch packet.type {
            case 1: connection.send(version == "5" ? [0x20, 0x03, 0x00, 0x00, 0x00] : [0x20, 0x02, 0x00, 0x00])
            case 8: connection.send(version == "5" ? [0x90, 0x04, packet.body[0], packet.body[1], 0x00, 0x00] : [0x90, 0x03, packet.body[0], packet.body[1], 0x00])
            default: break
            }
        }
        defer { peer.stop() }
        let command = try startCommand(["sub", "-p", "\(peer.port)", "-t", "x", "-V", version])
        try await Self.eventually { seen.types.contains(8) }
        try await Task.sleep(for: .milliseconds(200))
        let end = try await Self.interrupt(command, with: signal)
        #expect(end.signal == nil && end.status == 0, "ended by \(String(describing: end)); stderr: \(command.standardError)")
        #expect(seen.types.last == 14, "\(seen.types)")
        #expect(seen.disconnectReason == (version == "5" ? 0x04 : 0x00), "\(String(describing: seen.disconnectReason))")
    }

    @Test("mqtt sub exits 255 on SIGINT before the CONNACK, as mosquitto_sub's exit(-1)")
    func subSignalledBeforeConnack() async throws {
        let seen = Seen()
        let peer = try Self.peer(seen) { _, _ in }
        defer { peer.stop() }
        let command = try startCommand(["sub", "-p", "\(peer.port)", "-t", "x"])
        try await Self.eventually { seen.types.contains(1) }
        let end = try await Self.interrupt(command, with: SIGINT)
        #expect(end.signal == nil && end.status == 255, "ended by \(String(describing: end)); stderr: \(command.standardError)")
    }

    @Test("mqtt sub -W and mqtt rr -W disconnect with reason 0x04 (MQTT 5) and exit 27", arguments: ["sub", "rr"])
    func timeoutDisconnectsWithWill(command name: String) async throws {
        let seen = Seen()
        let peer = try Self.subscribingPeerV5(seen)
        defer { peer.stop() }
        let arguments = name == "sub"
            ? ["sub", "-p", "\(peer.port)", "-t", "x", "-V", "5", "-W", "1"]
            : ["rr", "-p", "\(peer.port)", "-t", "x", "-e", "replies", "-m", "ping", "-V", "5", "-W", "1"]
        let run = try await CLITests.mqtt(arguments)
        #expect(run.status == 27, "\(run.stderr)")
        #expect(CLITests.lines(run.stderr) == ["Timed out"])
        #expect(seen.types.last == 14, "\(seen.types)")
        #expect(seen.disconnectReason == 0x04, "\(String(describing: seen.disconnectReason))")
    }

    @Test("mqtt rr dies of SIGINT once connected, closing without DISCONNECT (the broker publishes the will), status 130")
    func requestSignalled() async throws {
        let seen = Seen()
        let peer = try Self.subscribingPeerV5(seen)
        defer { peer.stop() }
        let command = try startCommand(["rr", "-p", "\(peer.port)", "-t", "x", "-e", "replies", "-m", "ping", "-V", "5"])
        try await Self.eventually { seen.types.contains(3) }
        let end = try await Self.interrupt(command, with: SIGINT)
        #expect(end.signal == SIGINT || end.status == 130, "ended by \(String(describing: end)); stderr: \(command.standardError)")
        try await Self.eventually { seen.closed }
        #expect(!seen.types.contains(14), "\(seen.types)")
    }
}
