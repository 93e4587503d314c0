import Mosquitto
import MosquittoTesting
import Testing

/// `-d` and the default client ID, side by side with Debian's mosquitto 2.0.11 tools: without
/// `-i` both send an empty client ID (libmosquitto logs it as `(null)`), so their debug output can
/// be compared line for line.
@Suite("CLI debug output and the default client ID", .timeLimit(.minutes(2)))
struct CLIDebugOutputTests {
    /// How libmosquitto's log names a client whose ID is NULL: `(null)` (glibc's printf, 2.0.11)
    /// or `null` (2.0.21). The mosquitto tool run beside ours uses the same libmosquitto.
    static let nullClientNames = ["Client (null)", "Client null"]

    @Test("mqtt sub -d prints exactly mosquitto_sub -d's lines for QoS 0, 1 and 2 messages sent back to back: each log line before the payload it leads to, the acknowledgements in between")
    func subscribeDebugOutputIsMosquittos() async throws {
        let tool = try Interop.requireExecutable("mosquitto_sub", package: "mosquitto-clients")
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let arguments = ["-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-q", "2", "-d", "-C", "3", "-W", "30"]
            let ours = try startCommand(["sub"] + arguments)
            let theirs = try ChildProcess(executable: tool, arguments: arguments)
            // mosquitto_sub's stdout is block-buffered in a pipe: the broker's log tells when both
            // have subscribed (a line "<client> <qos> <filter>" each).
            let deadline = ContinuousClock.now + .seconds(10)
            while broker.logContents().split(separator: "\n").filter({ $0.hasSuffix(" 2 \(topic)") }).count < 2 {
                try #require(ContinuousClock.now < deadline, "both subscriptions in the broker log within 10 s")
                try await Task.sleep(for: .milliseconds(20))
            }
            let publisher = try await connectedClient(broker)
            // Back to back, so that several packets arrive in one read: with -d, `mqtt` reads one
            // packet per pass (packetsPerRead 1), so each payload still follows its own log lines.
            for (payload, qos) in [("zero", MQTTQoS.atMostOnce), ("one", .atLeastOnce), ("two", .exactlyOnce)] {
                _ = try publisher.beginPublish(to: topic, payload: payload, qos: qos)
            }
            for child in [ours, theirs] {
                let status = try await child.wait(timeout: .seconds(30))
                #expect(status?.code == 0, "\(child.standardError)")
            }
            #expect(ours.standardOutput == theirs.standardOutput, "ours:\n\(ours.standardOutput)\nmosquitto_sub:\n\(theirs.standardOutput)")
            let lines = ours.outputLines
            // libmosquitto names a client without an ID "(null)" (2.0.11) or "null" (2.0.21).
            let client = try #require(Self.nullClientNames.first { lines.first == "\($0) sending CONNECT" }, "\(lines.first ?? "")")
            // The QoS 2 message: its payload after the whole PUBREC/PUBREL/PUBCOMP exchange.
            let publish = try #require(lines.firstIndex { $0.contains("received PUBLISH (d0, q2") })
            #expect(Array(lines[(publish + 1)...].prefix(4)) == [
                "\(client) sending PUBREC (m2, rc0)", "\(client) received PUBREL (Mid: 2)", "\(client) sending PUBCOMP (m2)", "two",
            ])
        }
    }

    @Test("without -i the client ID is empty and the broker assigns one (MQTT 3.1.1 and 5); MQTT 3.1 gets libmosquitto's mosq- ID, as with mosquitto_pub")
    func defaultClientID() async throws {
        let tool = try Interop.requireExecutable("mosquitto_pub", package: "mosquitto-clients")
        try await withMosquittoBroker { broker in
            for version in ["31", "311", "5"] {
                let arguments = ["-h", broker.host, "-p", "\(broker.port)", "-V", version, "-t", uniqueTopic(), "-m", "x", "-d"]
                let ours = try await CLITests.mqtt(["pub"] + arguments)
                let theirs = try ChildProcess(executable: tool, arguments: arguments)
                _ = try await theirs.wait(timeout: .seconds(30))
                #expect(ours.status == 0, "\(ours.stderr)")
                let ourFirst = ours.stdout.split(separator: "\n").first.map(String.init) ?? ""
                let theirFirst = theirs.outputLines.first ?? ""
                if version == "31" {
                    // "Client mosq-" and 18 random characters "sending CONNECT", on both.
                    for line in [ourFirst, theirFirst] {
                        #expect(line.hasPrefix("Client mosq-") && line.hasSuffix(" sending CONNECT") && line.count == "Client  sending CONNECT".count + 23, "\(line)")
                    }
                } else {
                    #expect(Self.nullClientNames.map { "\($0) sending CONNECT" }.contains(ourFirst), "\(ourFirst)")
                    #expect(ourFirst == theirFirst)
                }
            }
            // -I '': the client ID is the process ID alone, as with mosquitto_pub.
            let prefixed = try await CLITests.mqtt(["pub", "-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-m", "x", "-I", "", "-d"])
            #expect(prefixed.status == 0, "\(prefixed.stderr)")
            #expect(prefixed.stdout.split(separator: "\n").first?.wholeMatch(of: #/Client \d+ sending CONNECT/#) != nil, "\(prefixed.stdout)")
            // The broker named each of ours "auto-..." (two of ours, two of theirs).
            let assigned = broker.logContents().split(separator: "\n").filter { $0.contains("New client connected") && $0.contains(" as auto-") }
            #expect(assigned.count == 4, "\(assigned)")
        }
    }

    @Test("a library client with brokerAssignsClientID sends an empty ID; on MQTT 5, clientID is then the one the broker assigned; a persistent session still needs an ID")
    func libraryBrokerAssignedID() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker, clientID: "") {
                $0.brokerAssignsClientID = true
                $0.protocolVersion = .v5
            }
            #expect(client.clientID == "")
            try await client.connect()
            #expect(client.clientID.hasPrefix("auto-"), "\(client.clientID)")
            #expect(client.clientID == client.connectResult?.assignedClientIdentifier)
            try await client.disconnect()
            let error = await thrownError {
                _ = try makeClient(broker, clientID: "") {
                    $0.brokerAssignsClientID = true
                    $0.cleanSession = false
                }
            }
            #expect(error?.code == .invalidConfiguration)
        }
    }
}
