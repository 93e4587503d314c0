import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// Our client and CLI against independent implementations: the amqtt broker (Python, MQTT 3.1.1),
/// paho-mqtt clients (Python) through mosquitto, and mosquitto's own command-line clients.
/// amqtt and paho-mqtt come from `.build-python/venv` (scripts/python-env.sh, run by the tests
/// when needed); a missing tool fails the test.
@Suite("Interoperability", .timeLimit(.minutes(2)))
struct InteroperabilityTests {
    // MARK: amqtt broker

    @Test("amqtt: our client publishes and receives at QoS 0, 1 and 2, downgraded to the subscription's QoS")
    func amqttDeliversEachQoS() async throws {
        try await withAmqttBroker { broker in
            let topic = uniqueTopic()
            let subscriber = try await connectedAmqttClient(broker)
            let atQoS2 = try await subscriber.subscribe(to: topic + "/#", qos: .exactlyOnce)
            #expect(atQoS2.results.map(\.reasonCode) == [.grantedQoS2])
            let downgrader = try await connectedAmqttClient(broker)
            let atQoS1 = try await downgrader.subscribe(to: topic + "/#", qos: .atLeastOnce)
            #expect(atQoS1.results.map(\.reasonCode) == [.grantedQoS1])
            let publisher = try await connectedAmqttClient(broker)
            for qos in MQTTQoS.allCases {
                // QoS 1 and 2 return on amqtt's PUBACK / PUBCOMP.
                try await publisher.publish(to: "\(topic)/\(qos.rawValue)", payload: "qos \(qos.rawValue)", qos: qos)
            }
            let received = try await collect(3, from: atQoS2)
            #expect(received.map(\.topic) == ["\(topic)/0", "\(topic)/1", "\(topic)/2"])
            #expect(received.map(\.payloadString) == ["qos 0", "qos 1", "qos 2"])
            #expect(received.map(\.retain) == [false, false, false])
            let downgraded = try await collect(3, from: atQoS1)
            #expect(downgraded.map(\.payloadString) == ["qos 0", "qos 1", "qos 2"])
            #expect(downgraded.map(\.retain) == [false, false, false])
            // Never above the granted QoS.
            #expect(downgraded.allSatisfy { $0.qos <= .atLeastOnce })
            // A GAP IN AMQTT 0.12.1: MQTT-3.8.4-6 asks for min(published QoS, granted QoS); amqtt
            // delivers a client's publish at the subscription's QoS (broker.py: the publish is
            // broadcast without its QoS, and `_run_broadcast` falls back to the subscription's),
            // so QoS 0 and 1 arrive as QoS 2 on the QoS 2 subscription (mosquitto_sub sees the
            // same). Known, so the run stays green; if amqtt fixes it, this reports it.
            withKnownIssue("amqtt 0.12.1 delivers at the subscription's QoS instead of min(published, granted)") {
                #expect(received.map(\.qos) == [.atMostOnce, .atLeastOnce, .exactlyOnce])
                #expect(downgraded.map(\.qos) == [.atMostOnce, .atLeastOnce, .atLeastOnce])
            }
        }
    }

    @Test("amqtt: a retained message reaches a later subscriber with the retain flag, and an empty one clears it")
    func amqttRetainsMessages() async throws {
        try await withAmqttBroker { broker in
            let publisher = try await connectedAmqttClient(broker)
            // A subscriber that is already there gets a retained publish as a live message:
            // retain 0 (MQTT-3.3.1-9).
            let liveTopic = uniqueTopic()
            let live = try await connectedAmqttClient(broker)
            let liveMessages = try await live.subscribe(to: liveTopic, qos: .atLeastOnce)
            try await publisher.publish(to: liveTopic, payload: "live", qos: .atLeastOnce, retain: true)
            let forwarded = try await collect(1, from: liveMessages)
            #expect(forwarded.map(\.payloadString) == ["live"])
            #expect(forwarded.map(\.retain) == [false])

            // A topic nobody subscribed to before (see amqttPushesOthersRetainedMessagesOnConnect).
            let topic = uniqueTopic()
            try await publisher.publish(to: topic, payload: "kept", qos: .atLeastOnce, retain: true)
            let late = try await connectedAmqttClient(broker)
            let lateMessages = MessageCollector(try await late.subscribe(to: topic, qos: .atLeastOnce))
            let retained = try await lateMessages.waitFor(1)
            #expect(retained.map(\.payloadString) == ["kept"])
            #expect(retained.map(\.retain) == [true])
            #expect(retained.map(\.qos) == [.atLeastOnce])
            #expect(try await lateMessages.arrivals(within: .milliseconds(500)).isEmpty)

            try await publisher.publish(to: topic, payload: [], qos: .atLeastOnce, retain: true)
            let later = try await connectedAmqttClient(broker)
            #expect(try await receivesNothing(on: try await later.subscribe(to: topic, qos: .atLeastOnce), within: .seconds(1)))
        }
    }

    @Test("amqtt sends a newly connected client the retained messages of every filter anyone subscribed (known gap)")
    func amqttPushesOthersRetainedMessagesOnConnect() async throws {
        try await withAmqttBroker { broker in
            let topic = uniqueTopic()
            let watcher = try await connectedAmqttClient(broker)
            _ = try await watcher.subscribe(to: topic, qos: .atLeastOnce)
            let publisher = try await connectedAmqttClient(broker)
            try await publisher.publish(to: topic, payload: "not yours", qos: .atLeastOnce, retain: true)
            // A client that subscribes to nothing must receive nothing (MQTT-3.3.1-6 sends retained
            // messages only in answer to a SUBSCRIBE). amqtt 0.12.1, on every CONNECT, walks the
            // filters in its subscription table (every client's, and filters whose subscribers have
            // left) and publishes their matching retained messages to the new client at QoS 0
            // (broker.py, after "Publish retained messages to a pre-existing session's
            // subscriptions."). A client subscribing to such a topic can so get it twice, first at QoS 0.
            let bystander = try makeAmqttClient(broker)
            let everything = bystander.messages
            try await bystander.connect()
            let unsolicited = try await collectAll(from: everything, within: .seconds(1))
                .map { "\($0.payloadString ?? "") QoS \($0.qos.rawValue) retain \($0.retain)" }
            withKnownIssue("amqtt 0.12.1 pushes retained messages of other clients' filters to every new connection") {
                #expect(unsolicited == [])
            }
        }
    }

    @Test("amqtt: the will of an mqtt process killed with SIGKILL is published")
    func amqttPublishesWill() async throws {
        try await withAmqttBroker { broker in
            let topic = uniqueTopic()
            let watcher = try await connectedAmqttClient(broker)
            let wills = try await watcher.subscribe(to: topic, qos: .atLeastOnce)
            // Our CLI with a will, in a process of its own that cannot send DISCONNECT when killed.
            let dying = try ChildProcess(executable: mqttExecutablePath(), arguments: [
                "sub", "-h", broker.host, "-p", "\(broker.port)", "-V", "311", "-i", uniqueClientID("will"), "-t", uniqueTopic(), "-d",
                "--will-topic", topic, "--will-payload", "gone", "--will-qos", "1",
            ])
            defer { dying.kill() }
            // `-d` prints mosquitto_sub's "Subscribed (mid: 1): 0" after the SUBACK: connected, will registered.
            try await dying.waitForLine("the SUBACK") { $0.hasPrefix("Subscribed (mid:") }
            dying.kill()
            let messages = try await collect(1, from: wills)
            #expect(messages.map(\.payloadString) == ["gone"])
            #expect(messages.map(\.qos) == [.atLeastOnce])
            #expect(messages.map(\.retain) == [false])
        }
    }

    @Test("amqtt: TLS with the fixture's CA works, and an unrelated CA fails the handshake")
    func amqttOverTLS() async throws {
        // A TLS mosquitto only to obtain certificates generated as for every TLS test (CA, server
        // certificate for localhost/127.0.0.1, an unrelated CA); they live as long as it runs.
        try await withMosquittoBroker(.tls) { mosquitto in
            let certificates = try #require(mosquitto.certificates)
            try await withAmqttBroker(certificates: certificates) { broker in
                let tlsPort = try #require(broker.tlsPort)
                func tlsClient(_ caFile: String) throws -> MQTTClient {
                    try makeAmqttClient(broker) { configuration in
                        configuration.host = "localhost"
                        configuration.port = tlsPort
                        configuration.tls = MQTTTLSConfiguration(caFile: caFile)
                    }
                }
                let subscriber = try tlsClient(certificates.caFile)
                try await subscriber.connect()
                let topic = uniqueTopic()
                let subscription = try await subscriber.subscribe(to: topic, qos: .exactlyOnce)
                let publisher = try tlsClient(certificates.caFile)
                try await publisher.connect()
                try await publisher.publish(to: topic, payload: "secret", qos: .exactlyOnce)
                let messages = try await collect(1, from: subscription)
                #expect(messages.map(\.payloadString) == ["secret"])
                #expect(messages.map(\.qos) == [.exactlyOnce])

                let stranger = try tlsClient(certificates.otherCAFile)
                let error = await thrownError { try await stranger.connect() }
                #expect(error?.code == .tlsFailure)
            }
        }
    }

    @Test("amqtt never answers an MQTT 5 CONNECT: our connect ends at its timeout, and 3.1.1 still works")
    func amqttIgnoresMQTT5Connect() async throws {
        try await withAmqttBroker { broker in
            // A GAP IN AMQTT 0.12.1, not in us: MQTT-3.1.2-2 asks a 3.1.1 server to answer an
            // unsupported protocol level with CONNACK 0x01 and close. amqtt parses the CONNECT
            // payload straight from the socket before checking the level (mqtt/connect.py,
            // ConnectPayload.from_stream), so the MQTT 5 properties libmosquitto always sends
            // (Receive Maximum: 0x03 0x21 0x00 0x14) are read as an 801-byte client identifier,
            // and it waits for bytes that never come: no CONNACK, no close. mosquitto_pub -V 5 hangs
            // the same way. What matters on our side: the wait is bounded by `connectTimeout`.
            let client = try makeAmqttClient(broker) { configuration in
                configuration.protocolVersion = .v5
                configuration.connectTimeout = .seconds(2)
            }
            let started = ContinuousClock.now
            let error = await thrownError { try await client.connect() }
            let elapsed = ContinuousClock.now - started
            #expect(error?.code == .timeout)
            // Not before the timeout; after it, only scheduling slack on a loaded 2-core machine.
            #expect(elapsed >= .seconds(2) && elapsed < .seconds(6), "\(elapsed)")
            #expect(!client.isConnected)
            let fallback = try await connectedAmqttClient(broker)
            #expect(fallback.isConnected)
        }
    }

    // MARK: paho-mqtt through mosquitto

    @Test("paho publishes QoS 0/1/2 and retained messages to our subscriber",
          arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func pahoPublisherToOurSubscriber(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let subscriber = try await connectedClient(broker) { $0.protocolVersion = version }
            let live = try await subscriber.subscribe(to: topic + "/live/#", qos: .exactlyOnce)
            // Names repeat and are not sorted: the order must survive (MQTT 5 only).
            let userProperties = version == .v5 ? [["site", "berlin"], ["b", "2"], ["site", "bonn"]] : []
            try await Paho.publish(
                (0...2).map { PahoPublish(topic: "\(topic)/live/\($0)", payload: "paho qos \($0)", qos: $0, userProperties: userProperties) }
                    + [PahoPublish(topic: "\(topic)/kept", payload: "paho kept", qos: 1, retain: true, userProperties: userProperties)],
                port: broker.port, version: version
            )
            let expectedProperties = userProperties.map { MQTTUserProperty($0[0], $0[1]) }
            let received = try await collect(3, from: live)
            #expect(received.map(\.topic) == (0...2).map { "\(topic)/live/\($0)" })
            #expect(received.map(\.payloadString) == ["paho qos 0", "paho qos 1", "paho qos 2"])
            #expect(received.map(\.qos) == [.atMostOnce, .atLeastOnce, .exactlyOnce])
            #expect(received.map(\.retain) == [false, false, false])
            #expect(received.map(\.properties.userProperties) == Array(repeating: expectedProperties, count: 3))

            let retained = try await collect(1, from: try await subscriber.subscribe(to: topic + "/kept", qos: .exactlyOnce))
            #expect(retained.map(\.payloadString) == ["paho kept"])
            #expect(retained.map(\.qos) == [.atLeastOnce])
            #expect(retained.map(\.retain) == [true])
            #expect(retained.map(\.properties.userProperties) == [expectedProperties])
        }
    }

    @Test("our publisher's QoS 0/1/2 and retained messages reach a paho subscriber",
          arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func ourPublisherToPahoSubscriber(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedClient(broker) { $0.protocolVersion = version }
            var properties = MQTTProperties()
            let pairs = version == .v5 ? [["site", "berlin"], ["b", "2"], ["site", "bonn"]] : []
            properties.userProperties = pairs.map { MQTTUserProperty($0[0], $0[1]) }
            try await publisher.publish(to: topic + "/kept", payload: "ours kept", qos: .atLeastOnce, retain: true, properties: properties)

            let paho = try await Paho.subscriber(port: broker.port, version: version, topic: topic + "/#", qos: 2, count: 4)
            defer { paho.kill() }
            for qos in MQTTQoS.allCases {
                try await publisher.publish(
                    to: "\(topic)/live/\(qos.rawValue)", payload: "ours qos \(qos.rawValue)", qos: qos, properties: properties
                )
            }
            let messages = try await Paho.messages(from: paho)
            #expect(messages == [PahoMessage(topic: topic + "/kept", payload: "ours kept", qos: 1, retain: true, userProperties: pairs)]
                + (0...2).map { PahoMessage(topic: "\(topic)/live/\($0)", payload: "ours qos \($0)", qos: $0, retain: false, userProperties: pairs) })
        }
    }

    // MARK: mosquitto's command-line clients

    @Test("mqtt pub -l → mosquitto_sub -C 3, and mosquitto_pub -l → mqtt sub -C 3: the same output",
          arguments: ["311", "5"])
    func commandLineClientsBothWays(version: String) async throws {
        let mosquittoSub = try Interop.requireExecutable("mosquitto_sub", package: "mosquitto-clients")
        let mosquittoPub = try Interop.requireExecutable("mosquitto_pub", package: "mosquitto-clients")
        let mqtt = mqttExecutablePath()
        try await withMosquittoBroker { broker in
            let connection = ["-h", broker.host, "-p", "\(broker.port)", "-V", version, "-q", "1"]
            // MQTT 5: a user property travels too, printed by %P.
            let publishProperties = version == "5" ? ["-D", "publish", "user-property", "site", "berlin"] : []
            let format = version == "5" ? ["-F", "%t|%p|%q|%P"] : ["-v"]
            let lines = ["one", "two", "three"]

            for (subscriber, publisher) in [(mosquittoSub, mqtt), (mqtt, mosquittoPub)] {
                let topic = uniqueTopic()
                let clientID = uniqueClientID("cli")
                let subscribing = try ChildProcess(
                    executable: subscriber,
                    arguments: (subscriber == mqtt ? ["sub"] : []) + connection + ["-i", clientID, "-t", topic, "-C", "3", "-W", "20"] + format
                )
                defer { subscribing.kill() }
                try await waitForLog(broker, "Sending SUBACK to \(clientID)")
                let publishing = try ChildProcess(
                    executable: publisher,
                    arguments: (publisher == mqtt ? ["pub"] : []) + connection + ["-t", topic, "-l"] + publishProperties,
                    standardInput: .text(lines.map { $0 + "\n" }.joined())
                )
                let published = try await publishing.wait(timeout: .seconds(20))
                #expect(published == .exited(0), "\(publisher): \(publishing.standardError)")
                let status = try await subscribing.wait(timeout: .seconds(20))
                #expect(status == .exited(0), "\(subscriber): \(subscribing.standardError)")
                let expected = version == "5"
                    ? lines.map { "\(topic)|\($0)|1|site:berlin\n" }.joined()
                    : lines.map { "\(topic) \($0)\n" }.joined()
                #expect(subscribing.standardOutput == expected, "\(subscriber) after \(publisher)")
                #expect(subscribing.standardError.isEmpty)
            }
        }
    }
}
