import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// The `mqtt` executable, run as a separate process against a real broker.
@Suite("mqtt command-line client", .timeLimit(.minutes(1)))
struct CLITests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `mqtt` with `arguments` and `input` on stdin; kills it after `timeout`.
    static func mqtt(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(20)) async throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mqttExecutablePath())
        process.arguments = arguments
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        // Blocking reads belong on threads of their own, not on the (2-thread) cooperative pool.
        let output = Task { await Self.readToEnd(stdout.fileHandleForReading) }
        let errors = Task { await Self.readToEnd(stderr.fileHandleForReading) }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            process.terminate()
            Issue.record("mqtt \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus,
            stdout: String(decoding: await output.value, as: UTF8.self),
            stderr: String(decoding: await errors.value, as: UTF8.self)
        )
    }

    /// Reads `handle` to its end on a Dispatch thread.
    static func readToEnd(_ handle: FileHandle) async -> Data {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: handle.readDataToEndOfFile()) }
        }
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
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

    @Test("a wrong password exits with the CONNACK code and one error line without the password")
    func wrongPasswordExitsWithConnackCode() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let run = try await Self.mqtt([
                "pub", "-h", broker.host, "-p", "\(broker.port)", "-t", "x", "-m", "x", "-u", "alice", "-P", "not-the-password", "-d",
            ])
            #expect(run.status == 5)
            #expect(Self.lines(run.stderr).count == 1)
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

    @Test("bad flags exit non-zero with exactly one error line",
          arguments: [["pub", "-t", "x"], ["pub", "-m", "x"], ["pub", "-t", "x", "-m", "x", "-q", "3"], ["sub", "-t", "x", "-p"],
                      ["sub", "--no-such-flag"], ["pub", "-t", "a/#", "-m", "x"], ["sub", "-t", "a/#/b"], ["pub", "-t", "x", "-m", "x", "-V", "7"],
                      ["bogus"], [],
                      // The bad-input matrix: empty topics, misplaced wildcards, oversized topics,
                      // QoS out of range, a client ID MQTT 3.1 refuses.
                      ["pub", "-t", "", "-m", "x"], ["sub", "-t", ""], ["pub", "-t", "a/+", "-m", "x"], ["sub", "-t", "a/b+"],
                      ["sub", "-t", "a/#b"], ["pub", "-t", String(repeating: "t", count: 65_536), "-m", "x"],
                      ["sub", "-t", String(repeating: "t", count: 65_536)], ["pub", "-t", "x", "-m", "x", "-q", "-1"], ["sub", "-t", "x", "-q", "9"],
                      ["pub", "-t", "x", "-m", "x", "-V", "31", "-i", "a-client-id-of-24-bytes!"]])
    func badFlagsFail(arguments: [String]) async throws {
        let run = try await Self.mqtt(arguments)
        #expect(run.status != 0)
        #expect(Self.lines(run.stderr).count == 1, "\(run.stderr)")
        #expect(Self.lines(run.stderr).first?.hasPrefix("Error") == true, "\(run.stderr)")
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
            try await Task.sleep(for: .milliseconds(200))
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
        #expect(Self.lines(run.stderr) == ["Error: topic-alias property not allowed for subscribe in --property argument."])
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
}
