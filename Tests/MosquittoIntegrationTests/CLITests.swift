import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// The `mqtt` executable, run as a separate process against a real broker.
@Suite("mqtt command-line client", .timeLimit(.minutes(1)))
struct CLITests {
    struct Run {
        /// The exit code, or 128 + the signal that ended the process (as a shell reports it).
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `mqtt` with `arguments`, `input` on stdin and `environment` added to ours; kills it
    /// after `timeout` (recording an issue).
    static func mqtt(
        _ arguments: [String], input: String? = nil, environment: [String: String] = [:], timeout: Duration = .seconds(20)
    ) async throws -> Run {
        let command = try startCommand(arguments, input: input, environment: environment)
        guard let status = try await command.wait(timeout: timeout) else {
            command.kill()
            Issue.record("mqtt \(arguments.joined(separator: " ")) did not finish within \(timeout)")
            return Run(status: -1, stdout: command.standardOutput, stderr: command.standardError)
        }
        return Run(status: status.code ?? 128 + (status.signal ?? 0), stdout: command.standardOutput, stderr: command.standardError)
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
    }

    /// Each line of `text` parsed as a JSON object.
    static func jsonObjects(_ text: String) throws -> [[String: Any]] {
        try lines(text).map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    /// Leaves `payloads` (QoS 1) in a persistent session of `clientID` subscribed to `topic` at
    /// QoS 1, for `mqtt sub -c -i clientID` to receive in a burst; returns that command line.
    static func persistentSession(
        _ broker: MosquittoBroker, clientID: String, topic: String, payloads: [String]
    ) async throws -> [String] {
        let arguments = ["sub", "-h", broker.host, "-p", "\(broker.port)", "-c", "-i", clientID, "-t", topic, "-q", "1"]
        let first = try await mqtt(arguments + ["-W", "1"])
        #expect(first.status == 27, "\(first.stderr)")
        let publisher = try await connectedClient(broker)
        let pending = try payloads.map { try publisher.beginPublish(to: topic, payload: Array($0.utf8), qos: .atLeastOnce) }
        for publish in pending { try await publish.acknowledgement() }
        try await publisher.disconnect()
        return arguments
    }

    @Test("mqtt pub publishes a QoS 1 message that a library subscriber receives")
    func pubPublishes() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            let run = try await Self.mqtt(["pub", "-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-q", "1", "-m", "hello"])
            #expect(run.status == 0)
            #expect(run.stderr.isEmpty)
            let messages = try await collect(1, from: subscription)
            #expect(messages.map(\.payloadString) == ["hello"])
            #expect(messages.map(\.qos) == [.atLeastOnce])
        }
    }

    @Test("mqtt pub -l sends one message per stdin line, all 1,000 at QoS 1")
    func pubSendsLines() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            let input = (1...1_000).map { "\($0)\n" }.joined()
            let run = try await Self.mqtt(["pub", "-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-q", "1", "-l"], input: input)
            #expect(run.status == 0)
            let messages = try await collect(1_000, from: subscription, timeout: .seconds(30))
            #expect(messages.compactMap(\.payloadString) == (1...1_000).map { "\($0)" })
        }
    }

    @Test("mqtt sub -v -C 2 prints 'topic payload' for two messages and exits 0")
    func subPrintsMessages() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic + "/a", payload: "first", qos: .atLeastOnce, retain: true)
            let clientID = uniqueClientID("sub")
            let run = Task {
                try await Self.mqtt(["sub", "-h", broker.host, "-p", "\(broker.port)", "-i", clientID, "-t", topic + "/#", "-v", "-C", "2", "-W", "15"])
            }
            // Until the subprocess has subscribed the message goes nowhere; `-C 2` makes it exit
            // after exactly one copy.
            let repeater = Task {
                while !Task.isCancelled {
                    try await publisher.publish(to: topic + "/b", payload: "second", qos: .atLeastOnce)
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            let result = try await run.value
            repeater.cancel()
            #expect(result.status == 0)
            #expect(Self.lines(result.stdout) == ["\(topic)/a first", "\(topic)/b second"])
        }
    }

    @Test("mqtt sub -W ends with mosquitto_sub's timeout status 27 and one line")
    func subTimesOut() async throws {
        try await withMosquittoBroker { broker in
            let run = try await Self.mqtt(["sub", "-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-W", "1"])
            #expect(run.status == 27)
            #expect(Self.lines(run.stderr) == ["Timed out"])
        }
    }

    @Test("a wrong password exits with the CONNACK code and mosquitto_pub's two error lines, without the password")
    func wrongPasswordExitsWithConnackCode() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let run = try await Self.mqtt([
                "pub", "-h", broker.host, "-p", "\(broker.port)", "-t", "x", "-m", "x", "-u", "alice", "-P", "not-the-password", "-d",
            ])
            #expect(run.status == 5)
            #expect(Self.lines(run.stderr) == ["Connection error: Connection Refused: not authorised.", "Error: The connection was refused."])
            #expect(!run.stderr.contains("not-the-password"))
            #expect(!run.stdout.contains("not-the-password"))
            #expect(run.stdout.contains("sending CONNECT"))
        }
    }

    @Test("a closed port exits 1 with 'Error: Connection refused'")
    func closedPortFails() async throws {
        let run = try await Self.mqtt(["pub", "-h", "127.0.0.1", "-p", "1", "-t", "x", "-m", "x"])
        #expect(run.status == 1)
        #expect(Self.lines(run.stderr) == ["Error: Connection refused"])
    }

    @Test("bad flags exit non-zero with exactly one error line (then, for a bad command line, mosquitto's pointer to --help)",
          arguments: [["pub", "-t", "x"], ["pub", "-m", "x"], ["pub", "-t", "x", "-m", "x", "-q", "3"], ["sub", "-t", "x", "-p"],
                      ["sub", "--no-such-flag"], ["pub", "-t", "a/#", "-m", "x"], ["sub", "-t", "a/#/b"], ["pub", "-t", "x", "-m", "x", "-V", "7"],
                      ["bogus"], [],
                      // The bad-input matrix: empty topics, misplaced wildcards, oversized topics,
                      // QoS out of range, a client ID MQTT 3.1 refuses.
                      ["pub", "-t", "", "-m", "x"], ["sub", "-t", ""], ["pub", "-t", "a/+", "-m", "x"], ["sub", "-t", "a/b+"],
                      ["sub", "-t", "a/#b"], ["pub", "-t", String(repeating: "t", count: 65_536), "-m", "x"],
                      ["sub", "-t", String(repeating: "t", count: 65_536)], ["pub", "-t", "x", "-m", "x", "-q", "-1"], ["sub", "-t", "x", "-q", "9"],
                      ["pub", "-t", "x", "-m", "x", "-V", "31", "-i", "a-client-id-of-24-bytes!"],
                      ["sub", "-t", "x", "--json", "-F", "%t"], ["pub", "-t", "x", "-m", "x", "--stats", "0"]])
    func badFlagsFail(arguments: [String]) async throws {
        let run = try await Self.mqtt(arguments)
        #expect(run.status != 0)
        let lines = Self.lines(run.stderr)
        let pointer = "Use 'mqtt \(arguments.first ?? "") --help' to see usage."
        #expect(lines.count == 1 || (lines.count == 2 && lines[1] == pointer), "\(run.stderr)")
        #expect(lines.first?.hasPrefix("Error") == true, "\(run.stderr)")
        // Refused before any connection attempt (nothing listens on the default port here).
        #expect(!run.stderr.contains("Connection refused"), "\(run.stderr)")
    }

    // MARK: MQTT 5

    @Test("mqtt pub -D sends MQTT 5 properties that a library subscriber receives")
    func pubSendsProperties() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedV5Client(broker)
            let topic = uniqueTopic()
            let subscription = try await subscriber.subscribe(to: topic, qos: .atLeastOnce)
            let run = try await Self.mqtt([
                "pub", "-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", topic, "-q", "1", "-m", "x",
                "-D", "publish", "user-property", "a", "b", "-D", "publish", "content-type", "text/plain",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            let properties = try #require(try await collect(1, from: subscription).first).properties
            #expect(properties.userProperties == [MQTTUserProperty("a", "b")])
            #expect(properties.contentType == "text/plain")
        }
    }

    @Test("mqtt sub -F prints topic, payload, QoS, retain and MQTT 5 properties as asked")
    func subFormatsMessages() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedV5Client(broker)
            var properties = MQTTProperties()
            properties.userProperties = [MQTTUserProperty("k", "v")]
            properties.contentType = "text/plain"
            properties.responseTopic = "reply/here"
            properties.correlationData = Array("abc".utf8)
            try await publisher.publish(to: topic, payload: "hello", qos: .atLeastOnce, retain: true, properties: properties)
            let run = try await Self.mqtt([
                "sub", "-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", topic, "-q", "1", "-C", "1", "-W", "10",
                "-F", "%t|%p|%q|%r|%P|%C|%R|%D",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "\(topic)|hello|1|1|k:v|text/plain|reply/here|abc\n")
        }
    }

    @Test("mqtt rr publishes a request with a response topic and prints the response of a library responder")
    func requestResponseCommand() async throws {
        try await withMosquittoBroker { broker in
            let responder = try await connectedV5Client(broker)
            let service = uniqueTopic()
            let serving = Task {
                try await responder.respond(to: service) { request in Array("echo:\(request.payloadString ?? "")".utf8) }
            }
            defer { serving.cancel() }
            try await waitForSubscription(broker, clientID: responder.clientID, filter: service)
            let run = try await Self.mqtt([
                "rr", "-h", broker.host, "-p", "\(broker.port)", "-t", service, "-e", uniqueTopic(), "-m", "ping", "-W", "10",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "echo:ping\n")
            let lonely = try await Self.mqtt([
                "rr", "-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-e", uniqueTopic(), "-m", "ping", "-W", "1",
            ])
            #expect(lonely.status == 27)
            #expect(Self.lines(lonely.stderr) == ["Timed out"])
        }
    }

    @Test("mqtt sub -x keeps an MQTT 5 session: a QoS 1 message sent while away arrives on the next run")
    func sessionExpiryFlag() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let clientID = uniqueClientID("x")
            let base = ["sub", "-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-x", "60", "-c", "-i", clientID, "-t", topic, "-q", "1"]
            let first = try await Self.mqtt(base + ["-W", "1"])
            #expect(first.status == 27)
            let publisher = try await connectedV5Client(broker)
            try await publisher.publish(to: topic, payload: "queued", qos: .atLeastOnce)
            let second = try await Self.mqtt(base + ["-C", "1", "-W", "10"])
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout == "queued\n")
        }
    }

    @Test("a property not allowed on its packet is one error line, as in mosquitto")
    func disallowedPropertyFlag() async throws {
        let run = try await Self.mqtt(["sub", "-t", "x", "-D", "subscribe", "topic-alias", "1"])
        #expect(run.status == 1)
        #expect(Self.lines(run.stderr) == ["Error: topic-alias property not allowed for subscribe in --property argument.", "Use 'mqtt sub --help' to see usage."])
    }

    @Test("mqtt pub over TLS succeeds with --cafile and fails with the wrong CA (status 8)")
    func pubOverTLS() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let certificates = try #require(broker.certificates)
            let base = ["pub", "-h", "localhost", "-p", "\(broker.port)", "-t", uniqueTopic(), "-m", "x"]
            let good = try await Self.mqtt(base + ["--cafile", certificates.caFile])
            #expect(good.status == 0, "\(good.stderr)")
            let bad = try await Self.mqtt(base + ["--cafile", certificates.otherCAFile])
            #expect(bad.status == 8)
            #expect(Self.lines(bad.stderr).count == 1)
        }
    }

    // MARK: Output: JSON, statistics, buffering, help

    @Test("mqtt sub --json prints one JSON object per message: UTF-8 text as a string, escaped; binary as base64")
    func subPrintsJSON() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let text = "h\u{E9}llo \"quoted\" \\ tab\t line\n\u{1}"
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic + "/text", payload: text, qos: .atLeastOnce, retain: true)
            try await publisher.publish(to: topic + "/binary", payload: [0x00, 0xFF, 0xFE, 0x41], qos: .atMostOnce, retain: true)
            let run = try await Self.mqtt([
                "sub", "-h", broker.host, "-p", "\(broker.port)", "-t", topic + "/#", "-q", "1", "--json", "-C", "2", "-W", "10",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(Self.lines(run.stdout).count == 2, "one line per message: \(run.stdout)")
            let objects = try Self.jsonObjects(run.stdout).sorted { "\($0["topic"] ?? "")" < "\($1["topic"] ?? "")" }
            try #require(objects.count == 2)
            let (binary, plain) = (objects[0], objects[1])
            #expect(plain["topic"] as? String == topic + "/text")
            #expect(plain["payload"] as? String == text)
            #expect(plain["payloadEncoding"] == nil)
            #expect(plain["payloadlen"] as? Int == text.utf8.count)
            #expect(plain["qos"] as? Int == 1)
            #expect(plain["mid"] as? Int != nil)
            #expect(plain["retain"] as? Bool == true)
            #expect(plain["properties"] == nil)
            #expect(binary["topic"] as? String == topic + "/binary")
            #expect(binary["payload"] as? String == "AP/+QQ==")
            #expect(binary["payloadEncoding"] as? String == "base64")
            #expect(binary["payloadlen"] as? Int == 4)
            #expect(binary["qos"] as? Int == 0)
            #expect(binary["mid"] == nil)
        }
    }

    @Test("mqtt sub --json prints MQTT 5 properties, user properties as ordered [name, value] pairs")
    func subPrintsJSONProperties() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedV5Client(broker)
            var properties = MQTTProperties()
            properties.userProperties = [MQTTUserProperty("site", "berlin"), MQTTUserProperty("a", "1"), MQTTUserProperty("site", "paris")]
            properties.contentType = "application/json"
            properties.responseTopic = "reply/here"
            properties.correlationData = [0xCA, 0xFE]
            properties.payloadFormat = .utf8
            try await publisher.publish(to: topic, payload: "{}", qos: .atLeastOnce, retain: true, properties: properties)
            let run = try await Self.mqtt([
                "sub", "-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", topic, "-q", "1", "--json", "-C", "1", "-W", "10",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            let object = try #require(try Self.jsonObjects(run.stdout).first)
            #expect(object["payload"] as? String == "{}")
            let received = try #require(object["properties"] as? [String: Any], "\(run.stdout)")
            #expect(received["userProperties"] as? [[String]] == [["site", "berlin"], ["a", "1"], ["site", "paris"]])
            #expect(received["contentType"] as? String == "application/json")
            #expect(received["responseTopic"] as? String == "reply/here")
            #expect(received["correlationData"] as? String == "yv4=")
            #expect(received["correlationDataEncoding"] as? String == "base64")
            #expect(received["payloadFormatIndicator"] as? Int == 1)
        }
    }

    @Test("mqtt pub -d prints the debug log only, as mosquitto_pub; with --stats it ends with a statistics line; --stats prints one every interval")
    func statisticsLines() async throws {
        try await withMosquittoBroker { broker in
            let endpoint = ["-h", broker.host, "-p", "\(broker.port)"]
            let input = (1...100).map { "\($0)\n" }.joined()
            let debugOnly = try await Self.mqtt(["pub"] + endpoint + ["-t", uniqueTopic(), "-q", "1", "-l", "-d"], input: input)
            #expect(debugOnly.status == 0, "\(debugOnly.stderr)")
            #expect(debugOnly.stdout.contains("sending PUBLISH"))
            #expect(!debugOnly.stdout.contains("Statistics"), "no statistics line without --stats")
            #expect(Self.lines(debugOnly.stdout).last?.hasSuffix("sending DISCONNECT") == true, "\(Self.lines(debugOnly.stdout).suffix(2))")
            let pub = try await Self.mqtt(["pub"] + endpoint + ["-t", uniqueTopic(), "-q", "1", "-l", "-d", "--stats", "3600"], input: input)
            #expect(pub.status == 0, "\(pub.stderr)")
            #expect(pub.stdout.contains("sending PUBLISH"))
            let last = Self.lines(pub.stdout).last ?? ""
            #expect(last.hasPrefix("Statistics (end): "), "\(last)")
            #expect(last.contains(": sent 100 ("), "\(last)")
            #expect(last.contains("acknowledged 100, pending 0, received 0 (0/s), reconnects 0"), "\(last)")
            let sub = try await Self.mqtt(["sub"] + endpoint + ["-t", uniqueTopic(), "--stats", "1", "-W", "2"])
            #expect(sub.status == 27)
            #expect(Self.lines(sub.stderr) == ["Timed out"])
            #expect(Self.lines(sub.stdout).contains { $0.hasPrefix("Statistics: ") && $0.contains("received 0 (0/s)") }, "\(sub.stdout)")
            #expect(!sub.stdout.contains("sending"), "--stats prints no debug log")
        }
    }

    @Test("-i '' is refused as mosquitto refuses it; -I PREFIX connects as PREFIX and the process id; -i with -I is an error")
    func clientIDOptions() async throws {
        let empty = try await Self.mqtt(["pub", "-p", "1", "-t", "x", "-m", "y", "-i", ""])
        #expect(empty.status == 1)
        #expect(Self.lines(empty.stderr) == ["Error: Invalid id."])
        let both = try await Self.mqtt(["pub", "-p", "1", "-t", "x", "-m", "y", "-i", "a", "-I", "b"])
        #expect(both.status == 1)
        #expect(Self.lines(both.stderr).first == "Error: -i and -I argument cannot be used together.", "\(both.stderr)")
        try await withMosquittoBroker { broker in
            let run = try await Self.mqtt(["pub", "-h", broker.host, "-p", "\(broker.port)", "-t", "x", "-m", "y", "-I", "prefix-", "-d"])
            #expect(run.status == 0, "\(run.stderr)")
            let line = Self.lines(run.stdout).first ?? ""
            #expect(line.hasPrefix("Client prefix-") && line.hasSuffix(" sending CONNECT"), "\(line)")
            let digits = line.dropFirst("Client prefix-".count).prefix { $0.isNumber }
            #expect(!digits.isEmpty && Int(digits) != nil, "\(line)")
        }
    }

    @Test("mqtt sub -C prints every message, in order, through the stdout buffer (more than one buffer's worth)")
    func subBufferedOutputKeepsEveryLine() async throws {
        try await withMosquittoBroker { broker in
            let payloads = (1...1_000).map { "\($0) " + String(repeating: "x", count: 100) }
            let arguments = try await Self.persistentSession(broker, clientID: uniqueClientID("buf"), topic: uniqueTopic(), payloads: payloads)
            let run = try await Self.mqtt(arguments + ["-C", "1000", "-W", "20"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(Self.lines(run.stdout) == payloads)
        }
    }

    @Test("mqtt sub stopped by SIGTERM mid-stream has printed every message it received, in order, then its last line")
    func subFlushesOnSIGTERM() async throws {
        try await withMosquittoBroker { broker in
            let arguments = try await Self.persistentSession(
                broker, clientID: uniqueClientID("term"), topic: uniqueTopic(), payloads: (1...2_000).map { "\($0)" }
            )
            let subscriber = try startCommand(arguments + ["--stats", "3600"])
            let deadline = ContinuousClock.now + .seconds(10)
            while subscriber.standardOutput.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
            subscriber.signal(SIGTERM)
            #expect(try await subscriber.wait(timeout: .seconds(10)) == .exited(0))
            var lines = Self.lines(subscriber.standardOutput)
            // Printed after the signal; it counts the messages received, and each must be printed.
            let statistics = lines.popLast() ?? ""
            #expect(statistics.hasPrefix("Statistics (end): "), "\(statistics)")
            #expect(statistics.contains("received \(lines.count) ("), "\(statistics)")
            #expect(!lines.isEmpty && lines == (1...lines.count).map { "\($0)" })
        }
    }

    @Test("--help shows examples and the exit statuses", arguments: [["pub"], ["sub"], ["rr"], []])
    func helpShowsExamples(command: [String]) async throws {
        let run = try await Self.mqtt(command + ["--help"])
        #expect(run.status == 0)
        #expect(run.stdout.contains("\nExamples:\n  mqtt "), "\(run.stdout)")
        #expect(run.stdout.contains("\nExit status"))
        #expect(run.stdout.contains("  27       -W expired"))
    }
}
