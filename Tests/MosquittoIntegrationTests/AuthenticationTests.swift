import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

@Suite("Authentication and authorization", .timeLimit(.minutes(1)))
struct AuthenticationTests {
    @Test("the right username and password are accepted", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func rightPasswordIsAccepted(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let client = try await connectedClient(broker) {
                $0.credentials = MQTTCredentials(username: "alice", password: "s3cret")
                $0.protocolVersion = version
            }
            #expect(client.isConnected)
        }
    }

    @Test("a password of bytes that are not UTF-8 goes into the CONNECT as given; one with a NUL is refused when the client is created")
    func binaryPasswordGoesOutAsGiven() async throws {
        let password: [UInt8] = [0x70, 0xff, 0xfe, 0x0a, 0xc0, 0x80]
        let connect = ConnectRecord()
        let peer = try ScriptedPeer.recordingConnects(into: connect)
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port, clientID: "binary-password") {
            $0.protocolVersion = .v3_1_1
            $0.credentials = MQTTCredentials(username: "bob", passwordBytes: password)
        }
        try await client.connect()
        try await client.disconnect()
        let body = try #require(connect.last)
        // Flags: username (bit 7), password (bit 6), clean session (bit 1); then the payload.
        #expect(body[7] == 0b1100_0010, "connect flags \(String(body[7], radix: 2))")
        let expected = PeerConnection.encode("binary-password") + PeerConnection.encode("bob") + PeerConnection.encode(UInt16(password.count)) + password
        #expect(Array(body.dropFirst(10)) == expected, "\(body)")

        let error = await thrownError {
            _ = try makeClient(host: "127.0.0.1", port: peer.port) { $0.credentials = MQTTCredentials(username: "bob", passwordBytes: [0x61, 0x00, 0x62]) }
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.detail == "the password contains a NUL byte", "\(String(describing: error))")
    }

    @Test("a wrong password fails with badUsernameOrPassword or notAuthorized, and nothing leaks it",
          arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func wrongPasswordFails(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let client = try makeClient(broker) {
                $0.credentials = MQTTCredentials(username: "alice", password: "wrong-password-xyz")
                $0.protocolVersion = version
            }
            do {
                try await client.connect()
                Issue.record("connected with a wrong password")
            } catch let error as MQTTError {
                // Mosquitto 2.0 answers a wrong password with "not authorized" (CONNACK 5 / 0x87)
                // and a missing user the same way; both are typed refusals.
                #expect(error.code == .notAuthorized || error.code == .badUsernameOrPassword)
                #expect(error.operation == .connect)
                if version == .v5 {
                    #expect(error.reasonCode == .notAuthorized || error.reasonCode == .badUsernameOrPassword)
                } else {
                    #expect(error.connectReturnCode == 5 || error.connectReturnCode == 4)
                }
                #expect(!error.description.contains("wrong-password-xyz"))
                #expect(!"\(error)".contains("wrong-password-xyz"))
            }
            #expect(!client.isConnected)
        }
    }

    @Test("an anonymous client is refused by a broker that requires a password, with notAuthorized (CONNACK 5)")
    func anonymousClientIsRefused() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let client = try makeClient(broker)
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .notAuthorized, "\(String(describing: error))")
            #expect(error?.connectReturnCode == 5)
            #expect(!client.isConnected)
        }
    }

    @Test("with reconnection on, a refused first connect is final: one connection in 2 s, not retried")
    func refusedConnectIsNotRetried() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let client = try makeClient(broker, clientID: uniqueClientID("refused")) {
                $0.credentials = MQTTCredentials(username: "alice", password: "wrong")
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(200), jitter: false)
            }
            let events = EventRecorder(client.connectionEvents)
            let error = await thrownError { try await client.connect() }
            #expect(error?.code == .notAuthorized, "\(String(describing: error))")
            // At 100-200 ms apart, a retry would have made about ten more connections by now.
            try await Task.sleep(for: .seconds(2))
            // (The fixture's readiness probe is a connection too, without CONNECT: count CONNACKs.)
            let connections = broker.logContents().split(separator: "\n").filter { $0.contains("Sending CONNACK") }.count
            #expect(connections == 1)
            #expect(!events.events.contains { if case .reconnecting = $0 { true } else { false } }, "\(events.events)")
            #expect(!client.isConnected)
        }
    }

    /// The refusal of a reconnect (the credentials were revoked while the client was away) is as
    /// final as that of a first connect: reported as the session's end, with its code, not retried.
    @Test("with reconnection on, a reconnect the broker refuses (CONNACK 5 / reason 0x87) ends the session with notAuthorized and is not retried",
          arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func refusedReconnectIsFinal(version: MQTTProtocolVersion) async throws {
        let accepted = Atomic<Bool>(false)
        let peer = try ScriptedPeer { connection in
            guard connection.read(until: 1) != nil else { return }
            if !accepted.exchange(true, ordering: .relaxed) {
                // The first connection is accepted, then dropped.
                connection.send(version == .v5 ? [0x20, 0x03, 0x00, 0x00, 0x00] : [0x20, 0x02, 0x00, 0x00])
                Thread.sleep(forTimeInterval: 0.2)
                return
            }
            connection.send(version == .v5 ? [0x20, 0x03, 0x00, 0x87, 0x00] : [0x20, 0x02, 0x00, 0x05])
            _ = connection.readPacket()  // until the client closes
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) {
            $0.protocolVersion = version
            $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(200), jitter: false)
        }
        let events = EventRecorder(client.connectionEvents)
        try await client.connect()
        let lost = try #require(await events.next(after: 0) { if case .disconnected = $0 { true } else { false } })
        let deadline = ContinuousClock.now + .seconds(10)
        while peer.connectionCount < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        // At 100-200 ms apart, a retry would have made about ten more connections by now.
        try await Task.sleep(for: .seconds(2))
        #expect(peer.connectionCount == 2)
        let after = Array(events.events.dropFirst(lost.index + 1))
        #expect(after.filter { if case .reconnecting = $0 { true } else { false } }.count == 1, "\(after)")
        #expect(!after.contains { if case .connected = $0 { true } else { false } }, "\(after)")
        #expect(!client.isConnected)
        // The refusal ends the session, and the application hears why: a last `.disconnected`
        // with the refusal, after the one for the lost connection (it used to end silently, the
        // last event staying `.reconnecting`).
        guard case .disconnected(let error)? = after.last else {
            Issue.record("the last event is \(String(describing: after.last)), not the refusal")
            return
        }
        #expect(error?.code == .notAuthorized, "\(String(describing: error))")
        if version == .v5 {
            #expect(error?.reasonCode == .notAuthorized)
        } else {
            #expect(error?.connectReturnCode == 5)
        }
    }

    @Test("an ACL-denied subscription is reported as refused", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func aclDeniedSubscriptionIsReported(version: MQTTProtocolVersion) async throws {
        try await withMosquittoBroker(.subscriptionACL(users: ["alice": "s3cret"], allowedSubscriptions: ["allowed/#"])) { broker in
            let client = try await connectedClient(broker) {
                $0.credentials = MQTTCredentials(username: "alice", password: "s3cret")
                $0.protocolVersion = version
            }
            let allowed = try await client.subscribe(to: "allowed/x", qos: .atLeastOnce)
            #expect(allowed.results.map(\.grantedQoS) == [.atLeastOnce])
            do {
                _ = try await client.subscribe(to: [MQTTTopicFilter("allowed/y", qos: .atLeastOnce), MQTTTopicFilter("secret/x", qos: .atLeastOnce)])
                Issue.record("the denied subscription was accepted")
            } catch let error as MQTTError {
                #expect(error.code == .subscriptionRefused)
                #expect(error.reasonCode?.isFailure == true)
                #expect(error.detail?.contains("secret/x") == true)
                #expect(error.detail?.contains("allowed/y") == false)
            }
        }
    }
}
