import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A connected MQTT 5 client.
func connectedV5Client(
    _ broker: MosquittoBroker,
    clientID: String = uniqueClientID("v5"),
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTClient {
    try await connectedClient(broker, clientID: clientID) { configuration in
        configuration.protocolVersion = .v5
        configure(&configuration)
    }
}

@Suite("MQTT 5 properties and reason codes", .timeLimit(.minutes(1)))
struct MQTT5PropertiesTests {
    @Test("PUBLISH properties arrive intact, user properties in order with repeats")
    func publishPropertiesArrive() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedV5Client(broker)
            let publisher = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            var properties = MQTTProperties()
            properties.payloadFormat = .utf8
            properties.contentType = "application/json"
            properties.responseTopic = "replies/x"
            properties.correlationData = [0, 1, 2, 254, 255]
            properties.messageExpiryInterval = 60
            properties.userProperties = [MQTTUserProperty("a", "1"), MQTTUserProperty("b", "2"), MQTTUserProperty("a", "3")]
            try await publisher.publish(to: topic, payload: "{}", qos: .atLeastOnce, properties: properties)
            let received = try #require(try await collect(1, from: subscription).first).properties
            #expect(received.payloadFormat == .utf8)
            #expect(received.contentType == "application/json")
            #expect(received.responseTopic == "replies/x")
            #expect(received.correlationData == [0, 1, 2, 254, 255])
            #expect((received.messageExpiryInterval ?? 0) > 55 && (received.messageExpiryInterval ?? 0) <= 60)
            #expect(received.userProperties == properties.userProperties)
        }
    }

    @Test("a property not allowed on a packet is refused before sending")
    func disallowedPropertyIsRefused() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedV5Client(broker)
            var onPublish = MQTTProperties()
            onPublish.sessionExpiryInterval = 10
            let onPublishError = await thrownError { try await client.publish(to: uniqueTopic(), payload: "x", properties: onPublish) }
            #expect(onPublishError?.code == .propertyNotAllowed)
            #expect(onPublishError?.detail?.contains("session-expiry-interval") == true, "\(String(describing: onPublishError))")
            var onSubscribe = MQTTProperties()
            onSubscribe.topicAlias = 1
            let onSubscribeError = await thrownError { _ = try await client.subscribe(to: uniqueTopic(), properties: onSubscribe) }
            #expect(onSubscribeError?.code == .propertyNotAllowed)
            #expect(client.isConnected)
        }
    }

    @Test("properties on an MQTT 3.1.1 connection are refused; 3.1.1 clients see no properties")
    func propertiesNeedMQTT5() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            var properties = MQTTProperties()
            properties.contentType = "text/plain"
            let error = await thrownError { try await client.publish(to: uniqueTopic(), payload: "x", properties: properties) }
            #expect(error?.code == .propertyNotAllowed)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            let v5 = try await connectedV5Client(broker)
            try await v5.publish(to: topic, payload: "x", qos: .atLeastOnce, properties: properties)
            #expect(try await collect(1, from: subscription).map(\.properties) == [MQTTProperties()])
            var connect = MQTTConfiguration(protocolVersion: .v3_1_1)
            connect.connectProperties.sessionExpiryInterval = 5
            let refused = #expect(throws: MQTTError.self) { try MQTTClient(configuration: connect) }
            #expect(refused?.code == .invalidConfiguration, "\(String(describing: refused))")
        }
    }

    @Test("CONNACK capabilities are readable and enforced before sending")
    func serverCapabilitiesAreEnforced() async throws {
        let limits = MosquittoBrokerConfiguration(extraConfigLines: [
            "max_qos 1", "retain_available false", "max_packet_size 2000", "max_inflight_messages 7", "max_keepalive 30",
        ])
        try await withMosquittoBroker(limits) { broker in
            let client = try await connectedV5Client(broker)
            let server = try #require(client.connectResult)
            #expect(server.maximumQoS == .atLeastOnce)
            #expect(server.retainAvailable == false)
            #expect(server.maximumPacketSize == 2000)
            #expect(server.receiveMaximum == 7)
            #expect(server.serverKeepAlive == .seconds(30))
            let topic = uniqueTopic()
            for (qos, retain, size, code) in [
                (MQTTQoS.exactlyOnce, false, 10, MQTTError.Code.qosNotSupported),
                (.atMostOnce, true, 10, .retainNotSupported),
                (.atMostOnce, false, 5_000, .payloadTooLarge),
            ] {
                let error = await thrownError {
                    try await client.publish(to: topic, payload: [UInt8](repeating: 1, count: size), qos: qos, retain: retain)
                }
                #expect(error?.code == code)
            }
            try await client.publish(to: topic, payload: "within limits", qos: .atLeastOnce)
            #expect(client.isConnected)
        }
    }

    @Test("PUBACK reason codes: no matching subscribers is a success, an ACL denial a typed error")
    func publishReasonCodes() async throws {
        var configuration = MosquittoBrokerConfiguration.password(users: ["alice": "s3cret"])
        configuration.aclRules = "user alice\ntopic readwrite open/#\ntopic read closed/#\n"
        try await withMosquittoBroker(configuration) { broker in
            let client = try await connectedV5Client(broker) { $0.credentials = MQTTCredentials(username: "alice", password: "s3cret") }
            let receipt = try await client.publish(to: "open/nobody", payload: "x", qos: .atLeastOnce)
            #expect(receipt.reasonCode == .noMatchingSubscribers)
            let error = await thrownError { try await client.publish(to: "closed/x", payload: "x", qos: .atLeastOnce) }
            #expect(error?.code == .publishRefused)
            #expect(error?.reasonCode == .notAuthorized)
        }
    }

    @Test("SUBACK reason codes come per filter on MQTT 5")
    func subackReasonCodes() async throws {
        try await withMosquittoBroker(.subscriptionACL(users: ["alice": "s3cret"], allowedSubscriptions: ["open/#"])) { broker in
            let client = try await connectedV5Client(broker) { $0.credentials = MQTTCredentials(username: "alice", password: "s3cret") }
            let granted = try await client.subscribe(to: [MQTTTopicFilter("open/a", qos: .exactlyOnce), MQTTTopicFilter("open/b")])
            #expect(granted.results.map(\.reasonCode) == [.grantedQoS2, .success])
            let error = await thrownError { _ = try await client.subscribe(to: "closed/a", qos: .atLeastOnce) }
            #expect(error?.code == .subscriptionRefused)
            #expect(error?.reasonCode == .notAuthorized)
        }
    }

    @Test("a server DISCONNECT is reported with its reason code")
    func serverDisconnectCarriesReason() async throws {
        // mosquitto 2.0.11 queues its DISCONNECT (session takeover, shutdown) and closes the socket
        // before writing it, so no real broker here can send one: a scripted peer on loopback
        // answers CONNECT with CONNACK, then sends DISCONNECT 0x8B "server shutting down".
        let peer = try ScriptedMQTT5Peer(replies: [
            [0x20, 0x03, 0x00, 0x00, 0x00],
            [0xE0, 0x02, 0x8B, 0x00],
        ])
        let client = try MQTTClient(configuration: {
            var configuration = MQTTConfiguration(host: "127.0.0.1", port: peer.port, protocolVersion: .v5)
            configuration.reconnect = .disabled
            return configuration
        }())
        let events = client.connectionEvents
        try await client.connect(timeout: .seconds(5))
        let error = await nextDisconnection(on: events)
        #expect(error?.code == .connectionLost)
        #expect(error?.reasonCode == .serverShuttingDown, "\(String(describing: error))")
        #expect(!client.isConnected)
    }

    @Test("a topic alias stands in for the topic")
    func topicAlias() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedV5Client(broker)
            let publisher = try await connectedV5Client(broker)
            #expect((publisher.connectResult?.topicAliasMaximum ?? 0) > 0)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            var alias = MQTTProperties()
            alias.topicAlias = 1
            try await publisher.publish(to: topic, payload: "with topic", qos: .atLeastOnce, properties: alias)
            try await publisher.publish(to: "", payload: "alias only", qos: .atLeastOnce, properties: alias)
            let messages = try await collect(2, from: subscription)
            #expect(messages.map(\.topic) == [topic, topic])
            #expect(messages.compactMap(\.payloadString) == ["with topic", "alias only"])
        }
    }

    /// Mosquitto shows neither what UNSUBSCRIBE carried nor lets one put properties on its
    /// UNSUBACK: a scripted peer reads the one and writes the other.
    @Test("unsubscribe sends its properties on the UNSUBSCRIBE and returns the UNSUBACK's properties")
    func unsubscribeProperties() async throws {
        let seen = Mutex<[UInt8]?>(nil)
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnectV5(), let subscribe = connection.read(until: 8) else { return }
            // SUBACK: granted QoS 1, no properties.
            connection.sendPacket(0x90, PeerConnection.encode(subscribe.packetID) + [0x00, 0x01])
            guard let unsubscribe = connection.read(until: 10) else { return }
            seen.withLock { $0 = unsubscribe.subscribeProperties }
            // UNSUBACK: a reason string and a user property, reason code success.
            let properties = [0x1F] + PeerConnection.encode("gone") + [0x26] + PeerConnection.encode("count") + PeerConnection.encode("1")
            connection.sendPacket(0xB0, PeerConnection.encode(unsubscribe.packetID) + PeerConnection.propertyBlock(properties) + [0x00])
            _ = connection.read(until: 14)
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.protocolVersion = .v5 }
        try await client.connect()
        let topic = uniqueTopic()
        _ = try await client.subscribe(to: topic, qos: .atLeastOnce)
        var properties = MQTTProperties()
        properties.userProperties = [MQTTUserProperty("why", "done")]
        let acknowledgement = try await client.unsubscribe(from: topic, properties: properties)
        // On the wire: exactly the one user property (0x26, key, value).
        #expect(seen.withLock { $0 } == [0x26] + PeerConnection.encode("why") + PeerConnection.encode("done"))
        #expect(acknowledgement.reasonString == "gone")
        #expect(acknowledgement.userProperties == [MQTTUserProperty("count", "1")])
        try await client.disconnect()
    }
}

// MARK: - A scripted peer

/// A loopback TCP peer that, for one connection, answers each packet it reads with the next
/// scripted reply. Used only where mosquitto 2.0.11 cannot produce the packet under test.
private final class ScriptedMQTT5Peer: Sendable {
    var port: Int { listener.port }
    private let listener: LoopbackListener

    init(replies: [[UInt8]]) throws {
        let listener = try LoopbackListener(backlog: 1)
        self.listener = listener
        // A thread of its own: a blocking wait on Dispatch's few worker threads delays the suite's other waits.
        Thread.detachNewThread {
            guard let connection = try? listener.accept(timeout: .seconds(30)) else { return }
            defer { close(connection) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            // Answer the CONNECT, then send the rest unprompted.
            _ = read(connection, &buffer, buffer.count)
            for reply in replies {
                _ = reply.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                usleep(100_000)
            }
            // Wait for the client to close.
            while read(connection, &buffer, buffer.count) > 0 {}
        }
    }

    deinit {
        listener.close()
    }
}
