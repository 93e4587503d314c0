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
