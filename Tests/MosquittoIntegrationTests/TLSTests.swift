import Foundation
import Mosquitto
import MosquittoTesting
import Testing

@Suite("TLS", .timeLimit(.minutes(1)))
struct TLSTests {
    private func tlsClient(
        _ broker: MosquittoBroker,
        host: String = "localhost",
        _ configure: (inout MQTTTLSConfiguration, TestCertificates) -> Void
    ) throws -> MQTTClient {
        let certificates = try #require(broker.certificates)
        return try makeClient(broker) { configuration in
            configuration.host = host
            var tls = MQTTTLSConfiguration()
            configure(&tls, certificates)
            configuration.tls = tls
        }
    }

    /// Whether the broker's log contains `text` within 5 s (it logs a client's TLS alert asynchronously).
    private func brokerLog(of broker: MosquittoBroker, contains text: String) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while !broker.logContents().contains(text), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return broker.logContents().contains(text)
    }

    @Test("TLS succeeds with the right CA, by file and by directory")
    func tlsSucceedsWithRightCA() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let byFile = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.caFile }
            try await byFile.connect()
            let topic = uniqueTopic()
            let subscription = try await byFile.subscribe(to: topic, qos: .atLeastOnce)
            try await byFile.publish(to: topic, payload: "over TLS", qos: .atLeastOnce)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["over TLS"])
            let byDirectory = try tlsClient(broker, host: "127.0.0.1") { tls, certificates in tls.caDirectory = certificates.caDirectory }
            try await byDirectory.connect()
            #expect(byDirectory.isConnected)
        }
    }

    @Test("TLS fails with a wrong CA, with OpenSSL's reason")
    func tlsFailsWithWrongCA() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let client = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.otherCAFile }
            do {
                try await client.connect()
                Issue.record("connected with a wrong CA")
            } catch let error as MQTTError {
                #expect(error.code == .tlsFailure)
                #expect(error.detail?.contains("certificate verify failed") == true, "\(error)")
            }
        }
    }

    @Test("TLS fails when the certificate does not name the host, unless explicitly made insecure")
    func tlsFailsOnHostnameMismatch() async throws {
        try await withMosquittoBroker(.init(tls: .serverAuthenticationWithMismatchedHostname)) { broker in
            let client = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.caFile }
            do {
                try await client.connect()
                Issue.record("connected despite a hostname mismatch")
            } catch let error as MQTTError {
                #expect(error.code == .tlsFailure)
            }
            let insecure = try tlsClient(broker) { tls, certificates in
                tls.caFile = certificates.caFile
                tls.insecureSkipHostnameVerification = true
            }
            try await insecure.connect()
            #expect(insecure.isConnected)
        }
    }

    @Test("TLS fails with an expired server certificate")
    func tlsFailsWithExpiredCertificate() async throws {
        try await withMosquittoBroker(.init(tls: .serverAuthenticationWithExpiredCertificate)) { broker in
            let client = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.caFile }
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .tlsFailure)
            // libmosquitto 2.0.11 logs only OpenSSL's error queue, which says "certificate verify failed"
            // for every verification failure; the reason ("certificate has expired") is in the
            // verify result, which it does not log. The alert our client sends names the reason, and
            // the broker logs it: that shows the handshake failed because of the expiry.
            #expect(error?.detail?.contains("certificate verify failed") == true, "\(String(describing: error))")
            #expect(await brokerLog(of: broker, contains: "alert certificate expired"), "\(broker.logContents())")
        }
    }

    @Test("TLS fails with OpenSSL's protocol-version alert when the broker refuses the client's TLS version")
    func tlsFailsWithRefusedVersion() async throws {
        // The broker speaks TLS 1.2 at most; a client requiring TLS 1.3 must be refused, also after a restart.
        try await withMosquittoBroker(.init(tls: .serverAuthentication, maximumTLSVersion: .v1_2)) { broker in
            for round in 1...2 {
                if round == 2 { try await broker.restart() }
                let modern = try tlsClient(broker) { tls, certificates in
                    tls.caFile = certificates.caFile
                    tls.minimumVersion = .v1_3
                }
                let error = await thrownError { try await modern.connect() }
                #expect(error?.code == .tlsFailure)
                #expect(error?.detail?.contains("protocol version") == true, "\(String(describing: error))")
                #expect(!modern.isConnected)

                let compatible = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.caFile }
                try await compatible.connect()
                #expect(compatible.isConnected)
                try await compatible.disconnect()
            }
        }
    }

    @Test("mqtt pub exits with status 8 and one error line when the broker refuses its TLS version")
    func cliFailsWithRefusedVersion() async throws {
        // The broker requires TLS 1.3; `OPENSSL_CONF` limits the command-line client to TLS 1.2.
        try await withMosquittoBroker(.init(tls: .serverAuthentication, minimumTLSVersion: .v1_3)) { broker in
            let certificates = try #require(broker.certificates)
            let limit = FileManager.default.temporaryDirectory.appendingPathComponent("openssl-tls12-\(UUID().uuidString).cnf")
            try MosquittoBrokerConfiguration.TLSVersion.v1_2.openSSLConfigLimitingMaximum.write(to: limit, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: limit) }
            let arguments = ["pub", "-h", "localhost", "-p", "\(broker.port)", "-t", uniqueTopic(), "-m", "x", "--cafile", certificates.caFile]

            let good = try await CLITests.mqtt(arguments)
            #expect(good.status == 0, "\(good.stderr)")
            let refused = try await CLITests.mqtt(arguments, environment: ["OPENSSL_CONF": limit.path])
            #expect(refused.status == 8)
            let lines = CLITests.lines(refused.stderr)
            #expect(lines.count == 1, "\(lines)")
            #expect(lines.first?.contains("protocol version") == true, "\(lines)")
        }
    }

    @Test("mutual TLS succeeds with a client certificate, also with an encrypted key")
    func mutualTLSSucceedsWithCertificate() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let plain = try tlsClient(broker) { tls, certificates in
                tls.caFile = certificates.caFile
                tls.certificateFile = certificates.clientCertificate
                tls.keyFile = certificates.clientKey
            }
            try await plain.connect()
            #expect(plain.isConnected)
            let encrypted = try tlsClient(broker) { tls, certificates in
                tls.caFile = certificates.caFile
                tls.certificateFile = certificates.clientCertificate
                tls.keyFile = certificates.encryptedClientKey
                tls.keyPassword = certificates.clientKeyPassword
            }
            try await encrypted.connect()
            #expect(encrypted.isConnected)
        }
    }

    @Test("TLS-PSK succeeds with the right key and fails with a wrong one")
    func preSharedKeyTLS() async throws {
        try await withMosquittoBroker(.init(tls: .preSharedKey(identity: "device-7", hexKey: "0123456789abcdef"))) { broker in
            let client = try makeClient(broker) { $0.psk = MQTTPreSharedKey(identity: "device-7", hexKey: "0123456789abcdef") }
            try await client.connect()
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            try await client.publish(to: topic, payload: "psk", qos: .atLeastOnce)
            #expect(try await collect(1, from: subscription).map(\.payloadString) == ["psk"])

            let wrong = try makeClient(broker) { $0.psk = MQTTPreSharedKey(identity: "device-7", hexKey: "fedcba9876543210") }
            do {
                try await wrong.connect()
                Issue.record("connected with a wrong pre-shared key")
            } catch let error as MQTTError {
                #expect(error.code == .tlsFailure || error.code == .connectionLost, "\(error)")
            }
        }
    }

    @Test("mutual TLS fails without a client certificate")
    func mutualTLSFailsWithoutCertificate() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let client = try tlsClient(broker) { tls, certificates in tls.caFile = certificates.caFile }
            do {
                try await client.connect()
                // TLS 1.3 lets the handshake finish before the server checks the certificate; the
                // broker then drops the connection before CONNACK.
                Issue.record("connected without a client certificate")
            } catch let error as MQTTError {
                #expect(error.code == .tlsFailure || error.code == .connectionLost || error.code == .connectionFailed, "\(error)")
            }
            #expect(!client.isConnected)
        }
    }
}

// MARK: - Typed errors end to end

extension TLSTests {
    @Test("a wrong key password for an encrypted client key fails the connect with tlsFailure, and no error text shows the password")
    func wrongKeyPasswordFails() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let wrongPassword = "not-the-key-password-\(UInt32.random(in: 0...UInt32.max))"
            // libmosquitto decrypts the key when it sets up TLS for the connect, not when the client is created.
            let client = try tlsClient(broker) { tls, certificates in
                tls.caFile = certificates.caFile
                tls.certificateFile = certificates.clientCertificate
                tls.keyFile = certificates.encryptedClientKey
                tls.keyPassword = wrongPassword
            }
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .tlsFailure, "\(String(describing: error))")
            #expect(error?.operation == .connect)
            #expect(error?.detail?.contains("bad decrypt") == true, "\(String(describing: error))")
            let text = error.map { "\($0) \(String(reflecting: $0))" } ?? ""
            #expect(!text.contains(wrongPassword), "\(text)")
            #expect(!text.contains(try #require(broker.certificates).clientKeyPassword), "\(text)")
            #expect(!client.isConnected)
        }
    }

    @Test("a certificate or key path that does not exist fails creating the client with invalidConfiguration naming the setting and the file")
    func missingCertificateOrKeyFileFails() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            for setting in ["certificateFile", "keyFile"] {
                let missing = "/tmp/missing-\(UUID().uuidString).pem"
                let error = await thrownError {
                    _ = try tlsClient(broker) { tls, certificates in
                        tls.caFile = certificates.caFile
                        tls.certificateFile = setting == "certificateFile" ? missing : certificates.clientCertificate
                        tls.keyFile = setting == "keyFile" ? missing : certificates.clientKey
                    }
                }
                #expect(error?.code == .invalidConfiguration, "\(setting): \(String(describing: error))")
                #expect(error?.operation == .configure)
                #expect(error?.detail?.contains("\(setting) \"\(missing)\"") == true, "\(String(describing: error))")
            }
        }
    }

    @Test("a certificate or key path naming a directory fails with invalidConfiguration naming the setting and the file")
    func directoryAsCertificateOrKeyFileFails() async throws {
        // Tests run as root, which reads a mode-000 file; a directory cannot be read as a PEM file by anyone.
        try await withMosquittoBroker(.mutualTLS) { broker in
            let certificates = try #require(broker.certificates)
            let directory = certificates.caDirectory
            for setting in ["certificateFile", "keyFile"] {
                let client: MQTTClient?
                var error: MQTTError?
                do {
                    client = try tlsClient(broker) { tls, certificates in
                        tls.caFile = certificates.caFile
                        tls.certificateFile = setting == "certificateFile" ? directory : certificates.clientCertificate
                        tls.keyFile = setting == "keyFile" ? directory : certificates.clientKey
                    }
                } catch let thrown as MQTTError {
                    client = nil
                    error = thrown
                }
                if let client {
                    error = await thrownError { try await client.connect() }
                }
                // Refused when the client is created, naming the setting (libmosquitto itself opens a
                // directory without complaint, and the connect used to fail in OpenSSL instead).
                #expect(error?.code == .invalidConfiguration, "\(setting): \(String(describing: error))")
                #expect(error?.operation == .configure)
                #expect(error?.detail?.contains("\(setting) \"\(directory)\"") == true, "\(String(describing: error))")
            }
        }
    }

    @Test("the broker refuses a client certificate signed by another CA: tlsFailure with TLS 1.2, the alert's reason with TLS 1.3")
    func clientCertificateFromOtherCAIsRefused() async throws {
        for version in [MosquittoBrokerConfiguration.TLSVersion.v1_2, .v1_3] {
            try await withMosquittoBroker(.init(tls: .mutual, maximumTLSVersion: version)) { broker in
                let client = try tlsClient(broker) { tls, certificates in
                    tls.caFile = certificates.caFile
                    tls.certificateFile = certificates.otherCAClientCertificate
                    tls.keyFile = certificates.otherCAClientKey
                }
                let error = await thrownError { try await client.connect() }
                if version == .v1_2 {
                    // The handshake itself fails (libmosquitto logs no OpenSSL reason here, so there is no detail).
                    #expect(error?.code == .tlsFailure, "\(String(describing: error))")
                } else {
                    // TLS 1.3: the client's side of the handshake is done before the broker checks the
                    // certificate; the broker's "unknown ca" alert arrives as the connection closes. Which read
                    // sees it first is a race: tlsFailure (EPROTO, no detail), or connectionLost (documented in
                    // "TLS errors") with the alert as the detail.
                    #expect(error?.code == .tlsFailure || error?.code == .connectionLost, "\(String(describing: error))")
                    if error?.code == .connectionLost {
                        #expect(error?.detail?.contains("unknown ca") == true, "\(String(describing: error))")
                    }
                }
                // Either way the broker refused the certificate: it logs the verification failure.
                #expect(!client.isConnected)
                #expect(await brokerLog(of: broker, contains: "certificate verify failed"), "\(broker.logContents())")
            }
        }
    }

    @Test("a client with a certificate and an encrypted key reconnects over TLS after a broker crash, and QoS 1 round-trips")
    func reconnectsOverTLSAfterBrokerCrash() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let certificates = try #require(broker.certificates)
            let client = try makeClient(broker) { configuration in
                configuration.host = "localhost"
                configuration.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(300))
                configuration.tls = MQTTTLSConfiguration(
                    caFile: certificates.caFile,
                    certificateFile: certificates.clientCertificate,
                    keyFile: certificates.encryptedClientKey,
                    keyPassword: certificates.clientKeyPassword
                )
            }
            let events = EventRecorder(client.connectionEvents)
            try await client.connect()
            broker.kill()
            try await broker.restart()
            let lost = await events.next(after: -1) { if case .disconnected = $0 { true } else { false } }
            #expect(lost != nil, "\(events.events)")
            let back = await events.next(after: lost?.index ?? 0, timeout: .seconds(15)) { if case .connected = $0 { true } else { false } }
            #expect(back != nil, "no reconnect: \(events.events)")
            #expect(client.isConnected)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            try await client.publish(to: topic, payload: "after the reconnect", qos: .atLeastOnce)
            let received = try await collect(1, from: subscription)
            #expect(received.map(\.payloadString) == ["after the reconnect"])
            #expect(received.map(\.qos) == [.atLeastOnce])
        }
    }
}
