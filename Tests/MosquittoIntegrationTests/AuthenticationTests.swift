import Mosquitto
import MosquittoTesting
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
