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
