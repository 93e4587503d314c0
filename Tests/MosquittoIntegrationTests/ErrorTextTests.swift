import Mosquitto
import MosquittoTesting
import Testing

/// The error texts users see most, read as a user would: each names what went wrong and where,
/// says it once, and hints at the usual cause where there is one.
@Suite("Error texts", .timeLimit(.minutes(1)))
struct ErrorTextTests {
    @Test("a plain connection to a TLS port fails with a hint to configure TLS, naming host and port")
    func plainConnectionToATLSPortHintsAtTLS() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let client = try makeClient(broker)
            let error = try #require(await thrownError { try await client.connect() })
            let text = error.description
            #expect(text.contains("\(broker.host):\(broker.port)"), "\(text)")
            #expect(text.contains("TLS"), "\(text)")
            #expect(!client.isConnected)
        }
    }

    @Test("a refused TCP connection names host and port, once")
    func refusedConnectionNamesTheEndpoint() async throws {
        // Port 1 on loopback: nothing listens there (binding it needs root and no test does).
        let client = try makeClient(host: "127.0.0.1", port: 1)
        let error = try #require(await thrownError { try await client.connect() })
        #expect(error.code == .connectionFailed, "\(error)")
        #expect(error.description.contains("Connection refused"), "\(error)")
        #expect(error.description.contains("127.0.0.1:1"), "\(error)")
        #expect(error.description.components(separatedBy: "Connection refused").count == 2, "said once: \(error)")
    }

    @Test("a TLS failure says it once: OpenSSL's reason, without libmosquitto's generic sentence")
    func tlsFailureIsNotRepeated() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let certificates = try #require(broker.certificates)
            let client = try makeClient(broker) { configuration in
                configuration.host = "localhost"
                var tls = MQTTTLSConfiguration()
                tls.caFile = certificates.otherCAFile
                configuration.tls = tls
            }
            let error = try #require(await thrownError { try await client.connect() })
            let text = error.description
            #expect(error.code == .tlsFailure, "\(text)")
            #expect(text.contains("certificate verify failed"), "\(text)")
            #expect(!text.contains("A TLS error occurred"), "\(text)")
            #expect(text.components(separatedBy: "TLS").count <= 3, "TLS named at most twice: \(text)")
            #expect(text.contains("localhost:\(broker.port)"), "\(text)")
        }
    }
}
