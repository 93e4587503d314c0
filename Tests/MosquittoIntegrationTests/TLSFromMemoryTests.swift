import Foundation
import Mosquitto
import MosquittoTesting
import Testing

// MARK: - TLS credentials from memory

/// The fixture's certificate files, read into memory: what a secrets manager or an environment
/// variable would hand the client.
private struct InMemoryCertificates {
    let files: TestCertificates
    let ca: [UInt8]
    let otherCA: [UInt8]
    let clientCertificate: [UInt8]
    let clientKey: [UInt8]
    let encryptedClientKey: [UInt8]
    let otherCAClientKey: [UInt8]

    init(_ broker: MosquittoBroker) throws {
        let files = try #require(broker.certificates)
        func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
        self.files = files
        ca = try read(files.caFile)
        otherCA = try read(files.otherCAFile)
        clientCertificate = try read(files.clientCertificate)
        clientKey = try read(files.clientKey)
        encryptedClientKey = try read(files.encryptedClientKey)
        otherCAClientKey = try read(files.otherCAClientKey)
    }
}

extension TLSTests {
    /// A client of `broker` with `tls` built from the fixture's certificates, in memory.
    private func memoryClient(
        _ broker: MosquittoBroker,
        host: String = "localhost",
        logger: LogCapture? = nil,
        _ makeTLS: (InMemoryCertificates) throws -> MQTTTLSConfiguration
    ) throws -> MQTTClient {
        let certificates = try InMemoryCertificates(broker)
        let tls = try makeTLS(certificates)
        return try makeClient(broker) { configuration in
            configuration.host = host
            configuration.tls = tls
            configuration.logger = logger?.logger()
        }
    }

    /// Publishes one QoS 1 message to itself and expects it back.
    private func roundTrip(_ client: MQTTClient, _ payload: String) async throws {
        let topic = uniqueTopic()
        let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
        try await client.publish(to: topic, payload: payload, qos: .atLeastOnce)
        #expect(try await collect(1, from: subscription).map(\.payloadString) == [payload])
    }

    /// The error creating a client of `broker` with `makeTLS` throws (nil if none).
    private func creationError(
        _ broker: MosquittoBroker, _ makeTLS: (InMemoryCertificates) throws -> MQTTTLSConfiguration
    ) async -> MQTTError? {
        await thrownError { _ = try memoryClient(broker, makeTLS) }
    }

    @Test("TLS with in-memory CA certificates verifies the broker: one CA, a bundle of two, and by IP address")
    func tlsSucceedsWithInMemoryCA() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let client = try memoryClient(broker) { MQTTTLSConfiguration(caCertificates: .pem($0.ca)) }
            try await client.connect()
            try await roundTrip(client, "trusted from memory")

            // A bundle: an unrelated CA first, the broker's after it.
            let bundle = try memoryClient(broker, host: "127.0.0.1") { MQTTTLSConfiguration(caCertificates: .pem($0.otherCA + $0.ca)) }
            try await bundle.connect()
            #expect(bundle.isConnected)
        }
    }

    @Test("TLS with an in-memory CA that did not sign the broker's certificate fails with tlsFailure")
    func tlsFailsWithWrongInMemoryCA() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let client = try memoryClient(broker) { MQTTTLSConfiguration(caCertificates: .pem($0.otherCA)) }
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .tlsFailure, "\(String(describing: error))")
            #expect(error?.detail?.contains("certificate verify failed") == true, "\(String(describing: error))")
            #expect(!client.isConnected)
        }
    }

    @Test("with an in-memory CA the broker's host name is still verified, unless explicitly made insecure")
    func inMemoryCAStillVerifiesHostname() async throws {
        try await withMosquittoBroker(.init(tls: .serverAuthenticationWithMismatchedHostname)) { broker in
            let client = try memoryClient(broker) { MQTTTLSConfiguration(caCertificates: .pem($0.ca)) }
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .tlsFailure, "\(String(describing: error))")
            let insecure = try memoryClient(broker) { certificates in
                var tls = MQTTTLSConfiguration(caCertificates: .pem(certificates.ca))
                tls.insecureSkipHostnameVerification = true
                return tls
            }
            try await insecure.connect()
            #expect(insecure.isConnected)
        }
    }

    @Test("with an in-memory CA the client's own context keeps minimumVersion: TLS 1.3 required, a TLS 1.2 broker refuses it")
    func inMemoryCAKeepsMinimumVersion() async throws {
        try await withMosquittoBroker(.init(tls: .serverAuthentication, maximumTLSVersion: .v1_2)) { broker in
            let modern = try memoryClient(broker) { certificates in
                var tls = MQTTTLSConfiguration(caCertificates: .pem(certificates.ca))
                tls.minimumVersion = .v1_3
                return tls
            }
            let error = await thrownError { try await modern.connect() }
            #expect(error?.code == .tlsFailure, "\(String(describing: error))")
            #expect(error?.detail?.contains("protocol version") == true, "\(String(describing: error))")
            let compatible = try memoryClient(broker) { MQTTTLSConfiguration(caCertificates: .pem($0.ca)) }
            try await compatible.connect()
            #expect(compatible.isConnected)
        }
    }

    @Test("mutual TLS with an in-memory client certificate and key, also mixed with a CA file, round-trips QoS 1")
    func mutualTLSWithInMemoryCertificateAndKey() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let client = try memoryClient(broker) {
                MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem($0.clientKey))
            }
            try await client.connect()
            try await roundTrip(client, "mutual from memory")

            let mixed = try memoryClient(broker) { certificates in
                var tls = MQTTTLSConfiguration(caFile: certificates.files.caFile)
                tls.certificate = .pem(String(decoding: certificates.clientCertificate, as: UTF8.self))
                tls.privateKey = .pem(certificates.clientKey)
                return tls
            }
            try await mixed.connect()
            #expect(mixed.isConnected)
        }
    }

    @Test("an encrypted in-memory key works with its passphrase: PKCS#8 and traditional PEM encryption")
    func encryptedInMemoryKeyWithPassphrase() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let files = try #require(broker.certificates)
            let pkcs8 = try memoryClient(broker) {
                MQTTTLSConfiguration(
                    caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate),
                    privateKey: .pem($0.encryptedClientKey), keyPassword: files.clientKeyPassword
                )
            }
            try await pkcs8.connect()
            try await roundTrip(pkcs8, "encrypted key")

            // "Proc-Type: 4,ENCRYPTED" (OpenSSL's traditional format), made here with another passphrase.
            let passphrase = "trad-\(UInt32.random(in: 0...UInt32.max))"
            let traditional = try runOpenSSL(["ec", "-in", files.clientKey, "-aes256", "-passout", "pass:\(passphrase)"])
            #expect(String(decoding: traditional, as: UTF8.self).contains("Proc-Type: 4,ENCRYPTED"))
            let client = try memoryClient(broker) {
                MQTTTLSConfiguration(
                    caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem(traditional), keyPassword: passphrase
                )
            }
            try await client.connect()
            #expect(client.isConnected)
        }
    }

    @Test("in-memory data that is not PEM, or a malformed certificate, fails creating the client with invalidConfiguration naming the setting")
    func garbageInMemoryDataFails() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let garbage = Array("this is not a certificate".utf8)
            let cases: [(String, String, (InMemoryCertificates) -> MQTTTLSConfiguration)] = [
                ("caCertificates (in-memory PEM): no PEM certificate found", "garbage CA", { _ in MQTTTLSConfiguration(caCertificates: .pem(garbage)) }),
                ("caCertificates (in-memory PEM): a certificate is malformed", "truncated CA", {
                    MQTTTLSConfiguration(caCertificates: .pem(Array($0.ca.prefix(120))))
                }),
                ("caCertificates (in-memory PEM) is empty", "empty CA", { _ in MQTTTLSConfiguration(caCertificates: .pem([UInt8]())) }),
                ("certificate (in-memory PEM): no PEM certificate found", "garbage certificate", {
                    MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem(garbage), privateKey: .pem($0.clientKey))
                }),
                ("privateKey (in-memory PEM): no PEM private key found", "garbage key", {
                    MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem(garbage))
                }),
                ("privateKey (in-memory PEM): no PEM private key found", "a certificate as the key", {
                    MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem($0.clientCertificate))
                }),
                ("set both or neither", "a certificate without a key", {
                    MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate))
                }),
            ]
            for (expected, name, makeTLS) in cases {
                let error = await creationError(broker, makeTLS)
                #expect(error?.code == .invalidConfiguration, "\(name): \(String(describing: error))")
                #expect(error?.operation == .configure, "\(name)")
                #expect(error?.detail?.contains(expected) == true, "\(name): \(String(describing: error))")
            }
        }
    }

    @Test("an encrypted in-memory key without a passphrase, or with a wrong one, fails creating the client; no error text shows the passphrase or repeats OpenSSL's reason")
    func encryptedInMemoryKeyWithoutOrWithWrongPassphraseFails() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let files = try #require(broker.certificates)
            let missing = await creationError(broker) {
                MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem($0.encryptedClientKey))
            }
            #expect(missing?.code == .invalidConfiguration, "\(String(describing: missing))")
            #expect(missing?.detail == "privateKey (in-memory PEM) is encrypted and no keyPassword is set", "\(String(describing: missing))")

            let wrongPassword = "not-the-passphrase-\(UInt32.random(in: 0...UInt32.max))"
            let wrong = await creationError(broker) {
                MQTTTLSConfiguration(
                    caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate),
                    privateKey: .pem($0.encryptedClientKey), keyPassword: wrongPassword
                )
            }
            #expect(wrong?.code == .invalidConfiguration, "\(String(describing: wrong))")
            #expect(wrong?.operation == .configure)
            let detail = wrong?.detail ?? ""
            #expect(detail.hasPrefix("privateKey (in-memory PEM) cannot be decrypted: wrong keyPassword"), "\(detail)")
            // A wrong passphrase usually fails the CBC padding check ("bad decrypt"), which OpenSSL
            // queues twice (and more) for a PKCS#8 key. About one time in 256 (the key and its salt
            // are new in every run) the garbage happens to end in valid padding, and OpenSSL reports
            // the ASN.1 decoding failure instead (seen in CI: "asn1 encoding routines: wrong tag").
            // Either way each reason appears once.
            let reasons = try #require(detail.split(separator: "(OpenSSL: ").last).dropLast().split(separator: "; ").map(String.init)
            #expect(!reasons.isEmpty && reasons.count == Set(reasons).count, "\(reasons)")
            #expect(
                reasons.contains { $0.hasSuffix("bad decrypt") } || reasons.contains { $0.hasPrefix("asn1 encoding routines") },
                "\(detail)"
            )
            #expect(detail.components(separatedBy: "bad decrypt").count <= 2, "\(detail)")
            let text = wrong.map { "\($0) \(String(reflecting: $0))" } ?? ""
            #expect(!text.contains(wrongPassword), "\(text)")
            #expect(!text.contains(files.clientKeyPassword), "\(text)")
        }
    }

    @Test("an in-memory key that does not match the certificate fails creating the client, naming both")
    func mismatchedInMemoryKeyFails() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let error = await creationError(broker) {
                MQTTTLSConfiguration(caCertificates: .pem($0.ca), certificate: .pem($0.clientCertificate), privateKey: .pem($0.otherCAClientKey))
            }
            #expect(error?.code == .invalidConfiguration, "\(String(describing: error))")
            #expect(error?.detail?.hasPrefix("privateKey (in-memory PEM) does not match certificate (in-memory PEM)") == true, "\(String(describing: error))")
            // A key file with an in-memory certificate: the file is named by its path.
            let file = try #require(broker.certificates).otherCAClientKey
            let mixed = await creationError(broker) { certificates in
                var tls = MQTTTLSConfiguration(caCertificates: .pem(certificates.ca), certificate: .pem(certificates.clientCertificate))
                tls.keyFile = file
                return tls
            }
            #expect(mixed?.detail?.hasPrefix("keyFile \"\(file)\" does not match certificate (in-memory PEM)") == true, "\(String(describing: mixed))")
        }
    }

    @Test("no in-memory key byte or passphrase reaches a description, a dump, an error or a log line")
    func inMemorySecretsStayHidden() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let files = try #require(broker.certificates)
            let capture = LogCapture()
            let certificates = try InMemoryCertificates(broker)
            let tls = MQTTTLSConfiguration(
                caCertificates: .pem(certificates.ca), certificate: .pem(certificates.clientCertificate),
                privateKey: .pem(certificates.encryptedClientKey), keyPassword: files.clientKeyPassword
            )
            let client = try memoryClient(broker, logger: capture) { _ in tls }
            try await client.connect()
            try await client.disconnect()
            var wrongTLS = tls
            wrongTLS.keyPassword = files.clientKeyPassword + "x"
            let error = await thrownError { _ = try memoryClient(broker, logger: capture) { _ in wrongTLS } }
            #expect(error != nil)

            var configuration = client.configuration
            var dumped = ""
            dump(configuration, to: &dumped)
            dump(tls, to: &dumped)
            dump(tls.privateKey, to: &dumped)
            configuration.tls = wrongTLS
            let texts = [
                dumped, "\(configuration)", String(reflecting: configuration), "\(tls)", String(reflecting: tls),
                "\(tls.privateKey!)", String(reflecting: tls.privateKey!), error.map { "\($0) \(String(reflecting: $0))" } ?? "",
                capture.records.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n"),
            ]
            // The key's base64 body: any 16 characters of it would betray it.
            let keyLines = String(decoding: certificates.encryptedClientKey, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("-----") }
            for text in texts {
                #expect(!text.contains(files.clientKeyPassword), "\(text)")
                for line in keyLines { #expect(!text.contains(line.prefix(16)), "\(text)") }
            }
            #expect("\(tls)".contains("privateKey: in-memory PEM (\(certificates.encryptedClientKey.count) bytes)"), "\(tls)")
            #expect(capture.records.contains { $0.message == "MQTT connected" })
        }
    }
}

/// Runs `openssl arguments` and returns its standard output (the test fails on a non-zero exit).
private func runOpenSSL(_ arguments: [String]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl"] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "openssl \(arguments.first ?? "") failed")
    return Array(data)
}
