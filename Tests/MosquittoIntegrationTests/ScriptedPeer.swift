import Foundation
import Glibc
import Mosquitto
import MosquittoTesting
import Synchronization

// MARK: - ScriptedPeer

/// A scripted MQTT peer on 127.0.0.1: a broker stand-in that answers exactly as its script says
/// and sees every byte the client sends, for lifecycle cases a real broker will not produce on
/// demand (an acknowledgement at an exact moment, CONNACK then close, a slow reader).
///
/// Connections are served one after another on a thread of the peer's own; every read is bounded
/// by a receive timeout, so a script never hangs a test.
final class ScriptedPeer: Sendable {
    /// The port the client connects to.
    var port: Int { listener.port }
    private let listener: LoopbackListener
    private let stopping = Atomic<Bool>(false)
    private let accepted = Atomic<Int>(0)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts listening; `script` runs once per accepted connection (then the connection closes).
    init(readTimeout: Duration = .seconds(10), script: @escaping @Sendable (PeerConnection) -> Void) throws {
        listener = try LoopbackListener(backlog: 16)
        Thread.detachNewThread { [self] in
            defer { finished.signal() }
            while !stopping.load(ordering: .relaxed) {
                guard let connection = try? listener.accept(timeout: .milliseconds(50)) else { continue }
                accepted.add(1, ordering: .relaxed)
                let peer = PeerConnection(descriptor: connection, readTimeout: readTimeout)
                script(peer)
                peer.close()
            }
        }
    }

    /// How many connections the peer has accepted.
    var connectionCount: Int { accepted.load(ordering: .relaxed) }

    /// Stops accepting and waits for the current script to end.
    func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        finished.wait()
        listener.close()
    }

    deinit { stop() }
}

// MARK: - PeerConnection

/// One accepted connection, used only on the peer's thread.
final class PeerConnection {
    /// A control packet: the first byte (type and flags) and what follows the remaining length.
    struct Packet {
        let header: UInt8
        let body: [UInt8]
        /// The packet type (the header's high nibble: 1 CONNECT, 3 PUBLISH, 14 DISCONNECT, ...).
        var type: UInt8 { header >> 4 }
        /// A PUBLISH's QoS.
        var qos: UInt8 { (header >> 1) & 3 }
        /// The MQTT 5 properties of a SUBSCRIBE or UNSUBSCRIBE (after the packet identifier; one length byte).
        var subscribeProperties: [UInt8] {
            let length = Int(body[2])
            precondition(length < 128, "one length byte")
            return Array(body[3..<3 + length])
        }
        /// The payload of an MQTT 5 QoS 1/2 PUBLISH (after topic, packet identifier and a property
        /// block with a one-byte length).
        var publishPayloadV5: [UInt8] {
            let topicEnd = 2 + Int(body[0]) << 8 + Int(body[1])
            let propertiesLength = Int(body[topicEnd + 2])
            precondition(propertiesLength < 128, "one length byte")
            return Array(body[(topicEnd + 3 + propertiesLength)...])
        }
        /// The packet identifier of a PUBLISH (QoS 1/2, MQTT 3.1.1: after the topic), SUBSCRIBE or UNSUBSCRIBE.
        var packetID: UInt16 {
            var offset = 0
            if type == 3 {
                offset = 2 + Int(body[0]) << 8 + Int(body[1])
            }
            return UInt16(body[offset]) << 8 | UInt16(body[offset + 1])
        }
    }

    private(set) var descriptor: Int32
    /// Whether the client has closed its end (a read returned end of stream), as opposed to a
    /// read that merely timed out.
    private(set) var endOfStream = false
    private var buffer = [UInt8]()
    private var position = 0

    init(descriptor: Int32, readTimeout: Duration) {
        self.descriptor = descriptor
        var timeout = timeval(tv_sec: Int(readTimeout.components.seconds), tv_usec: Int(readTimeout.components.attoseconds / 1_000_000_000_000))
        _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next packet, or `nil` at end of stream, on a timeout or on an error.
    func readPacket() -> Packet? {
        guard let header = readByte() else { return nil }
        var length = 0
        var shift = 0
        repeat {
            guard let byte = readByte() else { return nil }
            length |= Int(byte & 0x7f) << shift
            shift += 7
            if byte & 0x80 == 0 { break }
        } while shift < 28
        var body = [UInt8]()
        body.reserveCapacity(length)
        while body.count < length {
            guard fill() else { return nil }
            let take = min(length - body.count, buffer.count - position)
            body.append(contentsOf: buffer[position..<position + take])
            position += take
        }
        return Packet(header: header, body: body)
    }

    /// The next `count` bytes, or `nil` at end of stream, on a timeout or on an error.
    func read(exactly count: Int) -> [UInt8]? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(count)
        while bytes.count < count {
            guard fill() else { return nil }
            let take = min(count - bytes.count, buffer.count - position)
            bytes.append(contentsOf: buffer[position..<position + take])
            position += take
        }
        return bytes
    }

    /// The bytes already read from the socket but not consumed (for a relay to pass on first).
    func takeBuffered() -> [UInt8] {
        defer { buffer = []; position = 0 }
        return Array(buffer[position...])
    }

    /// Reads packets until one of `type` arrives (returned), or the stream ends (`nil`).
    func read(until type: UInt8) -> Packet? {
        while let packet = readPacket() {
            if packet.type == type { return packet }
        }
        return nil
    }

    /// Writes `bytes` (all of them, or until the client is gone).
    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { return }
            offset += written
        }
    }

    /// Reads CONNECT and accepts it (CONNACK, no session present, MQTT 3.1.1 form).
    @discardableResult
    func acceptConnect() -> Bool {
        guard read(until: 1) != nil else { return false }
        send([0x20, 0x02, 0x00, 0x00])
        return true
    }

    /// Reads CONNECT and accepts it with an MQTT 5 CONNACK (no session present, no properties).
    @discardableResult
    func acceptConnectV5() -> Bool {
        guard read(until: 1) != nil else { return false }
        send([0x20, 0x03, 0x00, 0x00, 0x00])
        return true
    }

    /// Writes one packet: `header`, the remaining length, `body`.
    func sendPacket(_ header: UInt8, _ body: [UInt8]) {
        send(Self.packet(header, body))
    }

    /// One packet's bytes: `header`, the remaining length, `body`.
    static func packet(_ header: UInt8, _ body: [UInt8]) -> [UInt8] {
        [header] + encodeLength(body.count) + body
    }

    /// A variable byte integer (a remaining length, an MQTT 5 property block's length).
    static func encodeLength(_ value: Int) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7f)
            value >>= 7
            if value > 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value > 0
        return bytes
    }

    /// A packet identifier's two bytes.
    static func encode(_ packetID: UInt16) -> [UInt8] { [UInt8(packetID >> 8), UInt8(packetID & 0xff)] }

    /// An MQTT UTF-8 string: two length bytes, then the bytes.
    static func encode(_ string: String) -> [UInt8] {
        let utf8 = Array(string.utf8)
        return encode(UInt16(utf8.count)) + utf8
    }

    /// An MQTT 5 property block: its variable-byte length, then `properties`.
    static func propertyBlock(_ properties: [UInt8]) -> [UInt8] {
        encodeLength(properties.count) + properties
    }

    /// Closes the connection (idempotent).
    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }

    private func readByte() -> UInt8? {
        guard fill() else { return nil }
        defer { position += 1 }
        return buffer[position]
    }

    /// Makes sure at least one unread byte is buffered.
    private func fill() -> Bool {
        if position < buffer.count { return true }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count == 0 { endOfStream = true }
        guard count > 0 else { return false }
        buffer = Array(chunk[0..<count])
        position = 0
        return true
    }
}

// MARK: - Recording CONNECTs

/// The CONNECT bodies a ``ScriptedPeer/recordingConnects(into:)`` peer has read.
final class ConnectRecord: Sendable {
    private let bodies = Mutex<[[UInt8]]>([])

    /// Records one.
    func append(_ body: [UInt8]) { bodies.withLock { $0.append(body) } }

    /// The last CONNECT's body (what follows the remaining length), if one arrived.
    var last: [UInt8]? { bodies.withLock { $0.last } }
}

extension ScriptedPeer {
    /// A peer that accepts each connection with an MQTT 3.1.1 CONNACK, records its CONNECT in
    /// `record`, then waits for the DISCONNECT.
    static func recordingConnects(into record: ConnectRecord) throws -> ScriptedPeer {
        try ScriptedPeer { connection in
            guard let packet = connection.read(until: 1) else { return }
            record.append(packet.body)
            connection.send([0x20, 0x02, 0x00, 0x00])
            _ = connection.read(until: 14)
        }
    }
}
