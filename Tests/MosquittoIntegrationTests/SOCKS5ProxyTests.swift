import Foundation
import Mosquitto
import MosquittoTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("SOCKS5 proxy", .timeLimit(.minutes(1)))
struct SOCKS5ProxyTests {
    /// A client of `broker` through `proxy` (at 127.0.0.1), connecting to the broker as `host`.
    private func proxiedClient(
        _ broker: MosquittoBroker, through proxyPort: Int, host: String? = nil, username: String? = nil, password: String? = nil,
        _ configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) throws -> MQTTClient {
        try makeClient(broker) { configuration in
            configuration.host = host ?? broker.host
            configuration.socksProxy = MQTTSOCKS5Proxy(host: "127.0.0.1", port: proxyPort, username: username, password: password)
            configure(&configuration)
        }
    }

    /// Publishes one QoS 1 message to itself and expects it back.
    private func roundTrip(_ client: MQTTClient, _ payload: String) async throws {
        let topic = uniqueTopic()
        let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
        try await client.publish(to: topic, payload: payload, qos: .atLeastOnce)
        #expect(try await collect(1, from: subscription).map(\.payloadString) == [payload])
    }

    /// A loopback port nothing listens on (a listener's, closed again).
    private func deadPort() throws -> Int {
        try LoopbackNetwork.freePort()
    }

    @Test("a client reaches the broker through a SOCKS5 proxy without authentication: the proxy saw CONNECT for the broker's address and relayed the session")
    func connectsThroughProxy() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try SOCKS5Proxy()
            defer { proxy.stop() }
            let client = try proxiedClient(broker, through: proxy.port)
            try await client.connect()
            try await roundTrip(client, "through the proxy")
            try await client.disconnect()
            #expect(proxy.offeredMethods == [[0]])
            #expect(proxy.requests == [.init(command: 1, addressType: 1, host: broker.host, port: broker.port)], "\(proxy.requests)")
            #expect(proxy.relayedBytes > 0)
        }
    }

    @Test("with a username and password the client authenticates to the proxy (RFC 1929) and passes a host name to it to resolve")
    func connectsThroughProxyWithCredentials() async throws {
        try await withMosquittoBroker { broker in
            let password = "proxy-pw-\(UInt32.random(in: 0...UInt32.max))"
            let proxy = try SOCKS5Proxy(credentials: ("mqtt-user", password))
            defer { proxy.stop() }
            let client = try proxiedClient(broker, through: proxy.port, host: "localhost", username: "mqtt-user", password: password)
            try await client.connect()
            try await roundTrip(client, "authenticated proxy")
            #expect(proxy.offeredMethods == [[0, 2]])
            #expect(proxy.usernames == ["mqtt-user"])
            #expect(proxy.requests == [.init(command: 1, addressType: 3, host: "localhost", port: broker.port)], "\(proxy.requests)")
        }
    }

    @Test("after the broker crashes and restarts the client reconnects through the proxy again, and QoS 1 round-trips")
    func reconnectsThroughProxy() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try SOCKS5Proxy(credentials: ("mqtt-user", "proxy-pw"))
            defer { proxy.stop() }
            let client = try proxiedClient(broker, through: proxy.port, username: "mqtt-user", password: "proxy-pw") {
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(300))
            }
            let events = EventRecorder(client.connectionEvents)
            try await client.connect()
            broker.kill()
            try await broker.restart()
            let lost = await events.next(after: -1) { if case .disconnected = $0 { true } else { false } }
            #expect(lost != nil, "\(events.events)")
            let back = await events.next(after: lost?.index ?? 0, timeout: .seconds(15)) { if case .connected = $0 { true } else { false } }
            #expect(back != nil, "no reconnect: \(events.events)")
            try await roundTrip(client, "after the reconnect")
            let requests = proxy.requests
            #expect(requests.count >= 2, "\(requests)")
            #expect(Set(requests) == [.init(command: 1, addressType: 1, host: broker.host, port: broker.port)], "\(requests)")
            #expect(Set(proxy.usernames) == ["mqtt-user"])
        }
    }

    @Test("a username without a password authenticates with an empty password (libmosquitto 2.0 would dereference NULL)")
    func usernameWithoutPasswordSendsEmptyPassword() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try SOCKS5Proxy(credentials: ("only-a-name", ""))
            defer { proxy.stop() }
            let client = try proxiedClient(broker, through: proxy.port, username: "only-a-name")
            try await client.connect()
            try await roundTrip(client, "no password")
            #expect(proxy.usernames == ["only-a-name"])
        }
    }

    @Test("wrong proxy credentials, or none where the proxy requires them, fail the connect with proxyFailure; the password is in no text")
    func wrongProxyCredentialsFail() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try SOCKS5Proxy(credentials: ("mqtt-user", "the-right-one"))
            defer { proxy.stop() }
            let wrongPassword = "wrong-pw-\(UInt32.random(in: 0...UInt32.max))"
            let client = try proxiedClient(broker, through: proxy.port, username: "mqtt-user", password: wrongPassword)
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .proxyFailure, "\(String(describing: error))")
            #expect(error?.operation == .connect)
            #expect(error?.detail?.hasPrefix("SOCKS5 proxy 127.0.0.1:\(proxy.port) refused the username and password") == true, "\(String(describing: error))")
            let text = error.map { "\($0) \(String(reflecting: $0)) \(client.configuration)" } ?? ""
            #expect(!text.contains(wrongPassword), "\(text)")
            #expect(!client.isConnected)
            #expect(proxy.requests.isEmpty, "a request after failed authentication: \(proxy.requests)")

            let anonymous = try proxiedClient(broker, through: proxy.port)
            let refused = await thrownError { try await anonymous.connect() }
            #expect(refused?.code == .proxyFailure, "\(String(describing: refused))")
            #expect(refused?.detail?.contains("requires authentication") == true, "\(String(describing: refused))")
            #expect(proxy.offeredMethods.last == [0])
        }
    }

    @Test("a proxy port nobody listens on fails the connect with connectionFailed (ECONNREFUSED), naming the proxy")
    func deadProxyPortFails() async throws {
        try await withMosquittoBroker { broker in
            let port = try deadPort()
            let client = try proxiedClient(broker, through: port)
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .connectionFailed, "\(String(describing: error))")
            #expect(error?.errno == ECONNREFUSED)
            #expect(error?.detail?.contains("SOCKS5 proxy 127.0.0.1:\(port)") == true, "\(String(describing: error))")
        }
    }

    @Test("a proxy that cannot reach the broker fails the connect with proxyFailure saying so")
    func proxyThatCannotReachBrokerFails() async throws {
        let proxy = try SOCKS5Proxy()
        defer { proxy.stop() }
        let port = try deadPort()
        let client = try makeClient(host: "127.0.0.1", port: port) {
            $0.socksProxy = MQTTSOCKS5Proxy(host: "127.0.0.1", port: proxy.port)
        }
        let error = await thrownError { try await client.connect() }
        #expect(error?.code == .proxyFailure, "\(String(describing: error))")
        #expect(error?.detail?.contains("could not reach the broker") == true, "\(String(describing: error))")
        #expect(proxy.requests == [.init(command: 1, addressType: 1, host: "127.0.0.1", port: port)])
    }

    @Test("mutual TLS with in-memory credentials runs end to end through the proxy, verifying the broker's name")
    func mutualTLSThroughProxy() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let files = try #require(broker.certificates)
            func read(_ path: String) throws -> [UInt8] {
                let handle = try #require(fopen(path, "rb"))
                defer { fclose(handle) }
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096)
                while case let count = fread(&chunk, 1, chunk.count, handle), count > 0 { bytes += chunk[0..<count] }
                return bytes
            }
            let proxy = try SOCKS5Proxy()
            defer { proxy.stop() }
            let tls = MQTTTLSConfiguration(
                caCertificates: .pem(try read(files.caFile)), certificate: .pem(try read(files.clientCertificate)),
                privateKey: .pem(try read(files.encryptedClientKey)), keyPassword: files.clientKeyPassword
            )
            let client = try proxiedClient(broker, through: proxy.port, host: "localhost") { $0.tls = tls }
            try await client.connect()
            try await roundTrip(client, "TLS through SOCKS5")
            #expect(proxy.requests.map(\.host) == ["localhost"])
        }
    }

    @Test("the ALPN protocol is offered in the ClientHello, by libmosquitto for file credentials and by the client's own context for in-memory ones")
    func alpnIsOfferedInClientHello() async throws {
        try await withMosquittoBroker(.tls) { broker in
            let files = try #require(broker.certificates)
            let caPEM = Array(try String(contentsOfFile: files.caFile, encoding: .utf8).utf8)
            for (name, source) in [("file", MQTTTLSSource.file(files.caFile)), ("memory", .pem(caPEM))] {
                let proxy = try SOCKS5Proxy()
                defer { proxy.stop() }
                let protocolName = "x-test-alpn-\(name)"
                let client = try proxiedClient(broker, through: proxy.port, host: "localhost") { configuration in
                    var tls = MQTTTLSConfiguration(caCertificates: source)
                    tls.alpn = protocolName
                    configuration.tls = tls
                }
                try await client.connect()
                try await client.disconnect()
                // The extension carries the name with a one-byte length before it.
                let wire = [UInt8(protocolName.utf8.count)] + Array(protocolName.utf8)
                let hello = proxy.clientBytes
                #expect(hello.first == 0x16, "\(name): not a TLS handshake record")
                #expect(hello.indices.contains { hello[$0...].starts(with: wire) }, "\(name): ALPN \(protocolName) not in the ClientHello")
            }
        }
    }
}
