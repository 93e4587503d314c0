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

    @Test("packetsPerRead is 1...1024", arguments: [(0, false), (1, true), (1_024, true), (1_025, false)])
    func packetsPerReadBound(count: Int, valid: Bool) {
        var configuration = MQTTConfiguration()
        configuration.packetsPerRead = count
        let error = configurationError(configuration)
        #expect((error == nil) == valid)
        if !valid { #expect(error?.detail == "packetsPerRead must be 1...1024") }
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

    @Test("credentials keep a password's bytes; the text view reads and writes them as UTF-8")
    func passwordBytes() {
        var credentials = MQTTCredentials(username: "alice", passwordBytes: [0x61, 0xff])
        #expect(credentials.passwordBytes == [0x61, 0xff])
        #expect(credentials.password == "a\u{FFFD}")
        #expect(credentials != MQTTCredentials(username: "alice", password: "a\u{FFFD}"))
        credentials.password = "é"
        #expect(credentials.passwordBytes == [0xc3, 0xa9])
        #expect(credentials == MQTTCredentials(username: "alice", password: "é"))
        credentials.password = nil
        #expect(credentials.passwordBytes == nil)
        #expect("\(credentials)" == "alice")
        #expect("\(MQTTCredentials(username: "alice", passwordBytes: [0xff]))" == "alice (password redacted)")
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

    @Test("in-memory PEM data and the key passphrase never appear in descriptions or dumps; a file source shows its path")
    func inMemoryTLSSourcesAreRedacted() {
        let key = MQTTTLSSource.pem("-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n-----END PRIVATE KEY-----\n")
        let tls = MQTTTLSConfiguration(
            caCertificates: .pem(Array("CABYTES".utf8)), certificate: .file("/etc/mqtt/device.crt"), privateKey: key, keyPassword: "key-pass-secret"
        )
        var dumped = ""
        dump(MQTTConfiguration(tls: tls), to: &dumped)
        dump(key, to: &dumped)
        for text in [dumped, "\(tls)", String(reflecting: tls), "\(key)", String(reflecting: key)] {
            #expect(!text.contains("SECRETKEYBYTES"), "\(text)")
            #expect(!text.contains("CABYTES"), "\(text)")
            #expect(!text.contains("key-pass-secret"), "\(text)")
        }
        #expect("\(key)" == "in-memory PEM (69 bytes)")
        #expect("\(tls)".contains("caCertificates: in-memory PEM (7 bytes), certificateFile: /etc/mqtt/device.crt, privateKey: in-memory PEM (69 bytes)"), "\(tls)")
    }

    @Test("the file-path settings are the file form of the sources: caFile, certificateFile and keyFile read and replace them")
    func filePathsAreSourceViews() {
        var tls = MQTTTLSConfiguration(caFile: "/ca.pem", certificateFile: "/c.pem", keyFile: "/k.pem")
        #expect(tls.caCertificates == .file("/ca.pem"))
        #expect(tls.certificate == .file("/c.pem"))
        #expect(tls.privateKey == .file("/k.pem"))
        tls.privateKey = .pem([1, 2, 3])
        #expect(tls.keyFile == nil)
        #expect(tls.privateKey?.isInMemory == true)
        tls.keyFile = "/other.pem"
        #expect(tls.privateKey == .file("/other.pem"))
        #expect(tls == MQTTTLSConfiguration(caCertificates: .file("/ca.pem"), certificate: .file("/c.pem"), privateKey: .file("/other.pem")))
    }

    @Test("the documentation's in-memory TLS example compiles and builds a client (the data is checked when the client is created)")
    func inMemoryTLSExampleCompiles() {
        func secret(_ name: String) -> String? { nil }  // stands in for a secrets manager
        let run = {
            // The example in README.md and TLSAndAuthentication.md, verbatim:
            // `secret(_:)` stands for your secrets manager: (String) -> String?
            let caPEM = Array((secret("MQTT_CA_PEM") ?? "").utf8)
            var configuration = MQTTConfiguration(host: "broker.example.com", port: 8883, clientID: "sensor-1")
            configuration.tls = MQTTTLSConfiguration(
                caCertificates: .pem(caPEM),
                certificate: .pem(secret("MQTT_DEVICE_CERT") ?? ""),
                privateKey: .pem(secret("MQTT_DEVICE_KEY") ?? ""),
                keyPassword: secret("MQTT_DEVICE_KEY_PASSPHRASE")
            )
            let client = try MQTTClient(configuration: configuration)
            _ = client
        }
        #expect(throws: MQTTError.self) { try run() }
    }

    @Test("a SOCKS5 proxy's password never appears in descriptions or dumps")
    func socksProxyPasswordIsRedacted() {
        let proxy = MQTTSOCKS5Proxy(host: "127.0.0.1", port: 1080, username: "alice", password: "proxy-pass-secret")
        var configuration = MQTTConfiguration()
        configuration.socksProxy = proxy
        var dumped = ""
        dump(configuration, to: &dumped)
        dump(proxy, to: &dumped)
        for text in [dumped, "\(configuration)", String(reflecting: configuration), "\(proxy)", String(reflecting: proxy)] {
            #expect(!text.contains("proxy-pass-secret"), "\(text)")
        }
        #expect("\(proxy)" == "MQTTSOCKS5Proxy(socks5://alice:<redacted>@127.0.0.1:1080)")
        #expect(dumped.contains("alice"))
    }

    @Test("SOCKS5 proxy settings libmosquitto or the protocol cannot take are refused when the client is created, each with its reason")
    func invalidSOCKSProxySettingsAreRefused() {
        let cases: [(MQTTSOCKS5Proxy, port: Int, String)] = [
            (MQTTSOCKS5Proxy(host: ""), 1883, "socksProxy: the proxy host must be 1 to 256 bytes"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1", port: 0), 1883, "socksProxy: port 0 is out of range (1...65535)"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1", port: 70_000), 1883, "socksProxy: port 70000 is out of range (1...65535)"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1", password: "pw"), 1883, "socksProxy: a password needs a username"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1", username: ""), 1883, "socksProxy: the username must be 1 to 255 bytes"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1", username: "u", password: String(repeating: "p", count: 256)), 1883,
             "socksProxy: the password must be at most 255 bytes"),
            (MQTTSOCKS5Proxy(host: "127.0.0.1"), 0, "socksProxy: a Unix socket (port 0) cannot be reached through a proxy"),
        ]
        for (proxy, port, expected) in cases {
            var configuration = MQTTConfiguration(host: "127.0.0.1", port: port)
            configuration.socksProxy = proxy
            let error = configurationError(configuration)
            #expect(error?.code == .invalidConfiguration, "\(expected)")
            #expect(error?.detail == expected, "\(String(describing: error))")
            #expect(error.map { "\($0)" }?.contains(String(repeating: "p", count: 256)) != true)
        }
        var valid = MQTTConfiguration(host: "127.0.0.1")
        valid.socksProxy = MQTTSOCKS5Proxy(host: "127.0.0.1", username: "u", password: "p")
        #expect(configurationError(valid) == nil)
    }

    @Test("a libmosquitto built without SOCKS support (MOSQ_ERR_NOT_SUPPORTED) is notSupported, saying so; MOSQ_ERR_PROXY is proxyFailure")
    func socksNotSupportedIsTyped() {
        let unsupported = MosquittoHandle.proxyError(10)  // MOSQ_ERR_NOT_SUPPORTED
        #expect(unsupported.code == .notSupported)
        #expect(unsupported.operation == .configure)
        #expect(unsupported.detail?.contains("built without SOCKS5 support") == true, "\(unsupported)")
        #expect(MQTTError(mosquittoCode: 16, operation: .connect).code == .proxyFailure)  // MOSQ_ERR_PROXY
        #expect(MosquittoBridge.proxyRefusal(MosquittoStatus(16), withCredentials: true)?.contains("username and password") == true)
        #expect(MosquittoBridge.proxyRefusal(MosquittoStatus(14), withCredentials: true) == nil)  // MOSQ_ERR_ERRNO: not the proxy's reply
    }

    @Test("the documentation's SOCKS5 examples compile and build clients")
    func socksExamplesCompile() throws {
        // README.md, verbatim:
        var proxied = MQTTConfiguration(host: "broker.internal", port: 1883, clientID: "sensor-1")
        proxied.socksProxy = MQTTSOCKS5Proxy(host: "127.0.0.1", port: 1080, username: "sensor", password: "proxy secret")
        // TLSAndAuthentication.md, verbatim (but for the CA file, which must exist):
        var configuration = MQTTConfiguration(host: "broker.internal", port: 8883, clientID: "sensor-1")
        configuration.socksProxy = MQTTSOCKS5Proxy(host: "127.0.0.1", port: 1080, username: "sensor", password: "proxy secret")
        configuration.tls = MQTTTLSConfiguration(caFile: "/etc/ssl/certs/ca-certificates.crt")
        _ = try MQTTClient(configuration: proxied)
        _ = try MQTTClient(configuration: configuration)
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
