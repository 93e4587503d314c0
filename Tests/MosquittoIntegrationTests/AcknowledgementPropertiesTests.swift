import Foundation
import Mosquitto
import Synchronization
import Testing

/// MQTT 5 properties on what the broker sends back (CONNACK, SUBACK, PUBACK) and on what the
/// client sends (its limits in CONNECT, its DISCONNECT), checked byte for byte against a scripted
/// MQTT 5 peer. (The server keepalive override of the watchdog is timed: it is with the network
/// fault tests, which run alone.)
@Suite("MQTT 5 properties on acknowledgements and on the client's own packets", .timeLimit(.minutes(1)))
struct AcknowledgementPropertiesTests {
    // MARK: Encoding

    /// A UTF-8 string with its two-byte length.
    static func string(_ text: String) -> [UInt8] { PeerConnection.encode(text) }

    /// A property block: its length, then the properties.
    static func properties(_ bytes: [UInt8]) -> [UInt8] { PeerConnection.propertyBlock(bytes) }

    /// A packet: `header`, the remaining length, `body`.
    static func packet(_ header: UInt8, _ body: [UInt8]) -> [UInt8] { PeerConnection.packet(header, body) }

    /// Reason string (0x1F) and one user property (0x26).
    static func reasonAndUser(_ reason: String, _ name: String, _ value: String) -> [UInt8] {
        [0x1f] + string(reason) + [0x26] + string(name) + string(value)
    }

    // MARK: Decoding

    /// The properties of a property block starting at `offset` in `body`, by identifier (the raw
    /// value bytes; repeated identifiers keep the last), and the offset after the block.
    static func decodeProperties(_ body: [UInt8], at offset: Int) -> (values: [UInt8: [UInt8]], end: Int) {
        var length = 0, shift = 0, position = offset
        while true {
            let byte = body[position]
            position += 1
            length |= Int(byte & 0x7f) << shift
            shift += 7
            if byte & 0x80 == 0 { break }
        }
        let end = position + length
        var values: [UInt8: [UInt8]] = [:]
        while position < end {
            let identifier = body[position]
            position += 1
            func stringLength(at index: Int) -> Int { 2 + (Int(body[index]) << 8 | Int(body[index + 1])) }
            let size: Int
            switch identifier {
            case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a: size = 1
            case 0x13, 0x21, 0x22, 0x23: size = 2
            case 0x02, 0x11, 0x18, 0x27: size = 4
            case 0x26: size = stringLength(at: position) + stringLength(at: position + stringLength(at: position))
            default: size = stringLength(at: position)
            }
            values[identifier] = Array(body[position..<position + size])
            position += size
        }
        return (values, end)
    }

    static func uint(_ bytes: [UInt8]?) -> Int? {
        bytes.map { $0.reduce(0) { $0 << 8 | Int($1) } }
    }

    // MARK: Tests

    @Test("CONNACK, SUBACK and PUBACK properties reach the caller; the client's limits and its DISCONNECT's properties reach the wire")
    func propertiesBothWays() async throws {
        let connect = Mutex<[UInt8: [UInt8]]>([:])
        let disconnect = Mutex<(reason: UInt8, properties: [UInt8: [UInt8]])?>(nil)
        let peer = try ScriptedPeer { connection in
            guard let packet = connection.read(until: 1) else { return }
            // Protocol name (6 bytes), level, flags, keepalive, then the properties.
            connect.withLock { $0 = Self.decodeProperties(packet.body, at: 10).values }
            // (No assigned client identifier: the client sent one, and libmosquitto rightly treats
            // an assigned one as a protocol error then.)
            let connackProperties: [UInt8] = [0x22, 0x00, 0x04, 0x13, 0x00, 0x3c]
                + Self.reasonAndUser("welcome", "node", "n1")
            connection.send(Self.packet(0x20, [0x00, 0x00] + Self.properties(connackProperties)))
            guard let subscribe = connection.read(until: 8) else { return }
            let subscribeID = subscribe.packetID
            connection.send(Self.packet(0x90, [UInt8(subscribeID >> 8), UInt8(subscribeID & 0xff)]
                + Self.properties(Self.reasonAndUser("granted", "tier", "gold")) + [0x01]))
            guard let publish = connection.read(until: 3) else { return }
            // PUBLISH (MQTT 5, QoS 1): topic, packet ID, properties, payload.
            let topicLength = Int(publish.body[0]) << 8 | Int(publish.body[1])
            let publishID = UInt16(publish.body[2 + topicLength]) << 8 | UInt16(publish.body[3 + topicLength])
            connection.send(Self.packet(0x40, [UInt8(publishID >> 8), UInt8(publishID & 0xff), 0x10]
                + Self.properties(Self.reasonAndUser("stored, nobody listening", "queue", "q7"))))
            guard let end = connection.read(until: 14) else { return }
            let decoded = Self.decodeProperties(end.body, at: 1)
            disconnect.withLock { $0 = (end.body[0], decoded.values) }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = .v5
            $0.keepAlive = .seconds(60)
            $0.connectProperties.receiveMaximum = 7
            $0.connectProperties.maximumPacketSize = 65_000
            $0.connectProperties.topicAliasMaximum = 9
            $0.connectProperties.sessionExpiryInterval = 120
        }
        let connected = try await client.connect()
        #expect(connected.properties.topicAliasMaximum == 4)
        #expect(connected.serverKeepAlive == .seconds(60))
        #expect(connected.properties.reasonString == "welcome")
        #expect(connected.properties.userProperties == [MQTTUserProperty("node", "n1")])
        let limits = connect.withLock { $0 }
        #expect(Self.uint(limits[0x21]) == 7, "receive maximum")
        #expect(Self.uint(limits[0x27]) == 65_000, "maximum packet size")
        #expect(Self.uint(limits[0x22]) == 9, "topic alias maximum")
        #expect(Self.uint(limits[0x11]) == 120, "session expiry interval")

        let subscription = try await client.subscribe(to: "props/t", qos: .atLeastOnce)
        #expect(subscription.properties.reasonString == "granted")
        #expect(subscription.properties.userProperties == [MQTTUserProperty("tier", "gold")])
        #expect(subscription.results.map(\.grantedQoS) == [.atLeastOnce])

        let receipt = try await client.publish(to: "props/t", payload: "x", qos: .atLeastOnce)
        #expect(receipt.reasonCode == .noMatchingSubscribers)
        #expect(receipt.properties.reasonString == "stored, nobody listening")
        #expect(receipt.properties.userProperties == [MQTTUserProperty("queue", "q7")])

        var goodbye = MQTTProperties()
        goodbye.reasonString = "maintenance"
        goodbye.userProperties = [MQTTUserProperty("shift", "night")]
        goodbye.sessionExpiryInterval = 30
        try await client.disconnect(reasonCode: .disconnectWithWillMessage, properties: goodbye)
        let deadline = ContinuousClock.now + .seconds(5)
        while disconnect.withLock({ $0 == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let sent = try #require(disconnect.withLock { $0 })
        #expect(sent.reason == MQTTReasonCode.disconnectWithWillMessage.rawValue)
        #expect(sent.properties[0x1f] == Self.string("maintenance"))
        #expect(sent.properties[0x26] == Self.string("shift") + Self.string("night"))
        #expect(Self.uint(sent.properties[0x11]) == 30)
    }
}

extension NetworkFaultTests {
    @Test("a server keepalive shorter than the client's is the one the dead-link watchdog uses")
    func serverKeepAliveDrivesTheWatchdog() async throws {
        let peer = try ScriptedPeer(readTimeout: .seconds(30)) { connection in
            guard connection.read(until: 1) != nil else { return }
            // Server keepalive 5 s (the client asked for 60), then silence: PINGREQs go unanswered.
            connection.send(AcknowledgementPropertiesTests.packet(0x20, [0x00, 0x00] + AcknowledgementPropertiesTests.properties([0x13, 0x00, 0x05])))
            while connection.readPacket() != nil {}
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = .v5
            $0.keepAlive = .seconds(60)
            $0.reconnect = .disabled
        }
        let events = EventRecorder(client.connectionEvents)
        let connected = try await client.connect()
        let start = ContinuousClock.now
        #expect(connected.serverKeepAlive == .seconds(5))
        let lost = await events.next(after: -1, timeout: .seconds(20)) { if case .disconnected = $0 { true } else { false } }
        let detected = try #require(lost, "no disconnection within 20 s: the watchdog ignored the server keepalive")
        // 1.5 × 5 s, with the 60 s the client asked for this would take 90 s.
        #expect(detected.at - start <= .milliseconds(7_500) + .milliseconds(500), "detected after \(detected.at - start)")
        guard case .disconnected(let error?) = detected.event else {
            Issue.record("\(detected.event)")
            return
        }
        #expect(error.code == .connectionLost, "\(error)")
    }
}
