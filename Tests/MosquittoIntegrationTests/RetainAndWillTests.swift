import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

@Suite("Retain and will", .timeLimit(.minutes(1)))
struct RetainAndWillTests {
    @Test("a retained message reaches a late subscriber with the retain flag")
    func retainedMessageReachesLateSubscriber() async throws {
        try await withMosquittoBroker { broker in
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            try await publisher.publish(to: topic, payload: "kept", qos: .atLeastOnce, retain: true)
            let late = try await connectedClient(broker)
            let messages = try await collect(1, from: try await late.subscribe(to: topic, qos: .atLeastOnce))
            #expect(messages.map(\.payloadString) == ["kept"])
            #expect(messages.map(\.retain) == [true])
        }
    }

    @Test("an empty retained payload clears the retained message")
    func emptyRetainedPayloadClears() async throws {
        try await withMosquittoBroker { broker in
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            try await publisher.publish(to: topic, payload: "kept", qos: .atLeastOnce, retain: true)
            try await publisher.publish(to: topic, payload: [], qos: .atLeastOnce, retain: true)
            let late = try await connectedClient(broker)
            #expect(try await receivesNothing(on: try await late.subscribe(to: topic, qos: .atLeastOnce), within: .seconds(1)))
        }
    }

    @Test("the will is published when a client vanishes without DISCONNECT")
    func willIsPublishedWhenClientVanishes() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let wills = try await watcher.subscribe(to: topic, qos: .atLeastOnce)
            // A separate process using our client with a will, killed with SIGKILL: it cannot
            // send DISCONNECT, as when a device loses power.
            let clientID = uniqueClientID("will")
            let process = try ChildProcess(
                executable: mqttExecutablePath(),
                arguments: [
                    "sub", "-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-i", clientID,
                    "--will-topic", topic, "--will-payload", "gone", "--will-qos", "1",
                ],
                standardOutput: .null,
                standardError: .inherit
            )
            defer { process.kill() }
            // The will is only registered once the client is connected; give it time to connect.
            try await waitUntilConnected(clientID, to: broker)
            process.kill()
            let messages = try await collect(1, from: wills)
            #expect(messages.map(\.payloadString) == ["gone"])
            #expect(messages.map(\.qos) == [.atLeastOnce])
        }
    }

    @Test("the will is not published after a clean disconnect, nor when the client is dropped (the same will arrives when the connection is cut)")
    func willIsNotPublishedAfterCleanDisconnect() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .atLeastOnce))
            let will = MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .atLeastOnce)
            // The control: this will, on a client that vanishes, reaches the watcher.
            try await expectWillArrives(will, broker: broker, on: wills)
            let client = try await connectedClient(broker) { $0.will = will }
            try await client.disconnect()
            do {
                let dropped = try await connectedClient(broker) { $0.will = will }
                #expect(dropped.isConnected)
            }
            #expect(try await wills.arrivals(within: .seconds(2)).isEmpty)
        }
    }

    @Test("a retained will is kept by the broker: a subscriber that comes afterwards gets it with the retain flag")
    func retainedWillReachesLateSubscriber() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .atLeastOnce))
            let will = MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .atLeastOnce, retain: true)
            try await expectWillArrives(will, broker: broker, on: wills)
            let late = try await connectedClient(broker)
            let retained = try await collect(1, from: try await late.subscribe(to: topic, qos: .atLeastOnce))
            #expect(retained.map(\.payloadString) == ["gone"])
            #expect(retained.map(\.retain) == [true])
        }
    }

    @Test("a QoS 2 will arrives at QoS 2")
    func willAtQoS2() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .exactlyOnce))
            let will = MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .exactlyOnce)
            try await expectWillArrives(will, broker: broker, on: wills)
            #expect(wills.messages.map(\.qos) == [.exactlyOnce])
        }
    }

    /// The watchdog aborts a link on which nothing arrives (here: the broker's side of it is muted,
    /// while the client's bytes still reach the broker). The abort must look like a vanished
    /// client to the broker, without DISCONNECT, which would discard the will.
    @Test("after the dead-link watchdog aborts a link the broker still hears, the broker publishes the will: the abort sends no DISCONNECT")
    func willIsPublishedAfterDeadLinkAbort() async throws {
        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .atLeastOnce))
            let proxy = try TCPFaultProxy(forwardingTo: broker)
            defer { proxy.stop() }
            let client = try makeClient(host: proxy.host, port: proxy.port, clientID: uniqueClientID("abort")) {
                $0.keepAlive = .seconds(5)
                $0.will = MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .atLeastOnce)
            }
            let events = client.connectionEvents
            try await client.connect()
            proxy.muteUpstream()
            let error = await nextDisconnection(on: events, timeout: .seconds(20))
            #expect(error?.code == .connectionLost)
            #expect(error?.description.contains("dead link") == true, "\(String(describing: error))")
            // The broker heard the PINGREQs, so its own keepalive (1.5 x 5 s after the last) has
            // not run out: the will comes from the client's close.
            let arrived = try await wills.waitFor(1, timeout: .seconds(5))
            #expect(arrived.map(\.payloadString) == ["gone"])
            let closedWithoutDisconnect = broker.logContents().contains("Client \(client.clientID) closed its connection")
            #expect(closedWithoutDisconnect, "the broker log shows the client closing its connection")
        }
    }

    @Test("a will set through the library on MQTT 3.1.1 is in the CONNECT (flag, QoS 2, retain, topic, payload) and a 3.1.1 broker publishes it")
    func willOnMQTT311() async throws {
        let connect = ConnectRecord()
        let peer = try ScriptedPeer.recordingConnects(into: connect)
        defer { peer.stop() }
        let will = MQTTWill(topic: "will/311", payload: Array("gone".utf8), qos: .exactlyOnce, retain: true)
        let client = try makeClient(host: "127.0.0.1", port: peer.port, clientID: "will-311") {
            $0.protocolVersion = .v3_1_1
            $0.will = will
        }
        try await client.connect()
        try await client.disconnect()
        let body = try #require(connect.last)
        // Protocol name "MQTT", level 4, then the flags: clean session (bit 1), will (bit 2),
        // will QoS 2 (bits 3-4), will retain (bit 5); keepalive; then client ID, will topic, will message.
        #expect(Array(body.prefix(7)) == [0, 4] + Array("MQTT".utf8) + [4])
        #expect(body[7] == 0b0011_0110, "connect flags \(String(body[7], radix: 2))")
        let expectedPayload = PeerConnection.encode("will-311") + PeerConnection.encode("will/311") + PeerConnection.encode(UInt16(4)) + Array("gone".utf8)
        #expect(Array(body.dropFirst(10)) == expectedPayload)

        try await withMosquittoBroker { broker in
            let watcher = try await connectedClient(broker) { $0.protocolVersion = .v3_1_1 }
            let topic = uniqueTopic()
            let wills = MessageCollector(try await watcher.subscribe(to: topic, qos: .atLeastOnce))
            try await expectWillArrives(MQTTWill(topic: topic, payload: Array("gone".utf8), qos: .atLeastOnce), broker: broker, on: wills) {
                $0.protocolVersion = .v3_1_1
            }
            #expect(wills.messages.map(\.qos) == [.atLeastOnce])
        }
    }
}

/// The control run of a "no will was published" test: a client with `will` (and `configure`)
/// connects through a `TCPFaultProxy` that then cuts the connection, so that the broker sees it
/// vanish without DISCONNECT; its will must arrive on `wills` within 10 s. Proves that the will
/// the test sets would have been published, so that its absence later means something.
func expectWillArrives(
    _ will: MQTTWill,
    broker: MosquittoBroker,
    on wills: MessageCollector,
    _ configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws {
    let before = wills.messages.count
    let proxy = try TCPFaultProxy(forwardingTo: broker)
    defer { proxy.stop() }
    let vanishing = try makeClient(host: proxy.host, port: proxy.port) {
        configure(&$0)
        $0.will = will
    }
    try await vanishing.connect()
    proxy.cut()
    let arrived = Array(try await wills.waitFor(before + 1).dropFirst(before))
    #expect(arrived.map(\.payload) == [will.payload], "the control run's will did not arrive")
}

/// Waits until the broker's log shows `clientID` connected.
func waitUntilConnected(_ clientID: String, to broker: MosquittoBroker) async throws {
    try await waitForLog(broker, " as \(clientID) ")
}

/// Waits until the broker has added `filter` to `clientID`'s subscriptions: mosquitto logs
/// "<client id> <QoS> <filter>" once it has (log_type subscribe), before the SUBACK. For a
/// subscription made out of sight, as `respond(to:)`'s.
func waitForSubscription(_ broker: MosquittoBroker, clientID: String, filter: String) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        let subscribed = broker.logContents().split(separator: "\n").contains { line in
            line.hasSuffix(" \(filter)") && line.contains(": \(clientID) ")
        }
        if subscribed { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("the broker log did not show \(clientID) subscribed to \(filter) within 10 s")
}

/// Waits until the broker's log contains `text` (at most 10 s).
func waitForLog(_ broker: MosquittoBroker, _ text: String) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if broker.logContents().contains(text) { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("the broker log did not show \"\(text)\" within 10 s")
}
