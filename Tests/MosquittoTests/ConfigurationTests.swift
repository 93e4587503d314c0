import Testing
@testable import Mosquitto

@Suite("Configuration", .timeLimit(.minutes(1)))
struct ConfigurationTests {
    private func configurationError(_ configuration: MQTTConfiguration) -> MQTTError? {
        do {
            _ = try MQTTClient(configuration: configuration)
            return nil
        } catch {
            return error
        }
    }

    @Test("a will takes any byte collection or a string as its payload, as publish does")
    func willPayloadKinds() {
        let bytes: [UInt8] = [0x00, 0xff, 0x41]
        #expect(MQTTWill(topic: "w", payload: bytes).payload == bytes)
        #expect(MQTTWill(topic: "w", payload: bytes[1...]).payload == [0xff, 0x41])
        #expect(MQTTWill(topic: "w", payload: "gone").payload == Array("gone".utf8))
        #expect(MQTTWill(topic: "w", payload: "é").payload == [0xc3, 0xa9])
        #expect(MQTTWill(topic: "w", payload: []).payload.isEmpty)
    }

    @Test("an empty client ID is replaced by a generated one that fits MQTT 3.1")
    func emptyClientIDIsGenerated() throws {
        let client = try MQTTClient(configuration: .init(protocolVersion: .v3_1))
        #expect(client.clientID.hasPrefix("swift-mqtt-"))
        #expect(client.clientID.utf8.count == 23)
        let other = try MQTTClient(configuration: .init())
        #expect(other.clientID != client.clientID)
    }

    @Test("a persistent session without a client ID is rejected")
    func persistentSessionNeedsClientID() {
        #expect(configurationError(.init(cleanSession: false))?.code == .invalidConfiguration)
        #expect(configurationError(.init(clientID: "fixed", cleanSession: false)) == nil)
    }

    @Test("keepalive must be 0 or 5...65535 seconds", arguments: [(0, true), (4, false), (5, true), (65_535, true), (65_536, false)])
    func keepAliveRange(seconds: Int, valid: Bool) {
        let error = configurationError(.init(keepAlive: .seconds(seconds)))
        #expect((error == nil) == valid)
        if !valid { #expect(error?.code == .invalidConfiguration) }
    }

    @Test("maxPendingPublishes must fit the 16-bit packet identifiers", arguments: [(0, false), (1, true), (65_535, true), (65_536, false)])
    func pendingPublishBound(count: Int, valid: Bool) {
        var configuration = MQTTConfiguration()
        configuration.maxPendingPublishes = count
        let error = configurationError(configuration)
        #expect((error == nil) == valid)
        if !valid { #expect(error?.code == .invalidConfiguration) }
    }

    @Test("MQTT 3.1 client IDs are limited to 23 bytes")
    func mqtt31ClientIDLength() {
        #expect(configurationError(.init(clientID: String(repeating: "x", count: 24), protocolVersion: .v3_1))?.code == .invalidConfiguration)
        #expect(configurationError(.init(clientID: String(repeating: "x", count: 24), protocolVersion: .v3_1_1)) == nil)
    }

    @Test("an invalid will topic is rejected")
    func invalidWillTopicIsRejected() {
        let error = configurationError(.init(will: MQTTWill(topic: "a/#", payload: [])))
        #expect(error?.code == .invalidConfiguration)
    }

    @Test("TLS and PSK together are rejected")
    func tlsAndPSKAreExclusive() {
        var configuration = MQTTConfiguration(tls: MQTTTLSConfiguration(caFile: "/etc/ssl/certs/ca-certificates.crt"))
        configuration.psk = MQTTPreSharedKey(identity: "id", hexKey: "abcd")
        #expect(configurationError(configuration)?.code == .invalidConfiguration)
    }

    @Test("a missing CA file is reported when the client is created")
    func missingCAFileIsReported() {
        let error = configurationError(.init(tls: MQTTTLSConfiguration(caFile: "/nonexistent/ca.pem")))
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.detail == "cannot read caFile \"/nonexistent/ca.pem\": No such file or directory")
    }

    @Test("secrets never appear in descriptions or dumps")
    func secretsAreRedacted() {
        let credentials = MQTTCredentials(username: "alice", password: "hunter2-secret")
        let tls = MQTTTLSConfiguration(keyFile: "/k.pem", keyPassword: "key-pass-secret")
        let psk = MQTTPreSharedKey(identity: "id", hexKey: "deadbeefsecret")
        var configuration = MQTTConfiguration(credentials: credentials, tls: tls)
        configuration.psk = psk
        var dumped = ""
        dump(configuration, to: &dumped)
        let texts = [dumped, "\(configuration)", String(reflecting: configuration), "\(credentials)", "\(tls)", "\(psk)"]
        for text in texts {
            #expect(!text.contains("hunter2-secret"))
            #expect(!text.contains("key-pass-secret"))
            #expect(!text.contains("deadbeefsecret"))
        }
        #expect(dumped.contains("alice"))
    }

    @Test("a client and its configuration can be dumped: the event-loop group shows its thread counts, locked state stays hidden")
    func dumpsWithoutReflectingLockedState() throws {
        let client = try MQTTClient(configuration: MQTTConfiguration(clientID: "dump-test"))
        var dumped = ""
        dump(client, to: &dumped)
        dump(client.configuration, to: &dumped)
        #expect(dumped.contains("numberOfThreads"))
        #expect("\(MQTTEventLoopGroup.shared)".hasPrefix("MQTTEventLoopGroup(threads: "))
    }

    /// A maximum that is no power of two times the minimum, so that doubling, capping and
    /// stopping at the first delay over the maximum all give different sequences.
    @Test("reconnect delays double from the minimum and are capped at the maximum (1, 2, 4, then 5 s)")
    func reconnectDelaysGrow() {
        let policy = MQTTReconnectPolicy.exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(5), jitter: false)
        #expect((1...7).map { policy.delay(forAttempt: $0) } == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5), .seconds(5), .seconds(5)])
        #expect(policy.delay(forAttempt: 1_000) == .seconds(5), "no overflow on a long outage")
        #expect(!MQTTReconnectPolicy.disabled.isEnabled)
    }

    @Test("jitter adds up to a quarter to the doubled or capped delay, never less")
    func reconnectJitter() {
        let jittered = MQTTReconnectPolicy.exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(5))
        // attempt: the delay without jitter.
        for (attempt, base) in [(1, Duration.seconds(1)), (3, .seconds(4)), (4, .seconds(5)), (9, .seconds(5))] {
            let delays = (0..<50).map { _ in jittered.delay(forAttempt: attempt) }
            #expect(delays.allSatisfy { $0 >= base && $0 < base * 1.25 }, "attempt \(attempt): \(delays)")
            #expect(Set(delays).count > 1, "attempt \(attempt): jitter varies")
        }
    }

    @Test("dropping an unconnected client frees it")
    func droppingUnconnectedClientFreesIt() throws {
        weak var weakClient: MQTTClient?
        do {
            let client = try MQTTClient(configuration: .init())
            weakClient = client
            #expect(!client.isConnected)
        }
        #expect(weakClient == nil)
    }

    @Test("operations before connect fail with notConnected")
    func operationsBeforeConnectFail() async throws {
        let client = try MQTTClient(configuration: .init())
        do {
            try await client.publish(to: "a", payload: "x")
            Issue.record("publish succeeded")
        } catch {
            #expect(error.code == .notConnected)
        }
        do {
            _ = try await client.subscribe(to: "a")
            Issue.record("subscribe succeeded")
        } catch {
            #expect(error.code == .notConnected)
        }
        try await client.disconnect()
    }

    @Test("connecting to a closed port fails with connectionFailed and ECONNREFUSED")
    func connectingToClosedPortFails() async throws {
        let client = try MQTTClient(configuration: .init(host: "127.0.0.1", port: 1))
        do {
            try await client.connect(timeout: .seconds(5))
            Issue.record("connected")
        } catch {
            #expect(error.code == .connectionFailed)
            #expect(error.errno == 111)
        }
        #expect(!client.isConnected)
    }
}
