import CMosquitto
import Testing
@testable import Mosquitto

@Suite("Error mapping", .timeLimit(.minutes(1)))
struct ErrorTests {
    @Test("every MOSQ_ERR value maps to a code and has a description")
    func everyMosquittoErrorMaps() {
        let expected: [(mosq_err_t, MQTTError.Code)] = [
            (MOSQ_ERR_NOMEM, .outOfMemory), (MOSQ_ERR_PROTOCOL, .protocolError), (MOSQ_ERR_INVAL, .invalidArgument),
            (MOSQ_ERR_NO_CONN, .notConnected), (MOSQ_ERR_CONN_REFUSED, .connectionRefused), (MOSQ_ERR_NOT_FOUND, .unknown),
            (MOSQ_ERR_CONN_LOST, .connectionLost), (MOSQ_ERR_TLS, .tlsFailure), (MOSQ_ERR_PAYLOAD_SIZE, .payloadTooLarge),
            (MOSQ_ERR_NOT_SUPPORTED, .notSupported), (MOSQ_ERR_AUTH, .notAuthorized), (MOSQ_ERR_ACL_DENIED, .notAuthorized),
            (MOSQ_ERR_UNKNOWN, .unknown), (MOSQ_ERR_ERRNO, .connectionFailed), (MOSQ_ERR_EAI, .hostLookupFailed),
            (MOSQ_ERR_PROXY, .proxyFailure), (MOSQ_ERR_PLUGIN_DEFER, .unknown), (MOSQ_ERR_MALFORMED_UTF8, .malformedUTF8),
            (MOSQ_ERR_KEEPALIVE, .connectionLost), (MOSQ_ERR_LOOKUP, .hostLookupFailed), (MOSQ_ERR_MALFORMED_PACKET, .malformedPacket),
            (MOSQ_ERR_DUPLICATE_PROPERTY, .protocolError), (MOSQ_ERR_TLS_HANDSHAKE, .tlsFailure),
            (MOSQ_ERR_QOS_NOT_SUPPORTED, .qosNotSupported), (MOSQ_ERR_OVERSIZE_PACKET, .payloadTooLarge), (MOSQ_ERR_OCSP, .tlsFailure),
            (MOSQ_ERR_TIMEOUT, .timeout), (MOSQ_ERR_RETAIN_NOT_SUPPORTED, .retainNotSupported),
            (MOSQ_ERR_TOPIC_ALIAS_INVALID, .protocolError), (MOSQ_ERR_ADMINISTRATIVE_ACTION, .unknown), (MOSQ_ERR_ALREADY_EXISTS, .unknown),
        ]
        for (value, code) in expected {
            let error = MQTTError(mosquittoCode: Int32(value.rawValue), operation: .publish)
            #expect(error.code == code, "MOSQ_ERR \(value.rawValue)")
            #expect(error.mosquittoErrorCode == Int32(value.rawValue))
            #expect(error.description.hasPrefix("publish failed: \(code.summary) ("))
        }
    }

    @Test("MOSQ_ERR_INVAL while configuring is an invalid configuration")
    func invalWhileConfiguringIsInvalidConfiguration() {
        #expect(MQTTError(mosquittoCode: Int32(MOSQ_ERR_INVAL.rawValue), operation: .configure).code == .invalidConfiguration)
    }

    @Test("MOSQ_ERR_ERRNO keeps errno and describes it with strerror")
    func errnoIsKeptAndDescribed() {
        let error = MQTTError(mosquittoCode: Int32(MOSQ_ERR_ERRNO.rawValue), operation: .connect, errno: 111)
        #expect(error.errno == 111)
        #expect(error.description == "connect failed: could not connect (Connection refused)")
    }

    @Test("MQTT 3.1.1 CONNACK codes map to typed errors with libmosquitto's text")
    func connackCodesMap() {
        let badPassword = MQTTError.connectRefused(returnCode: 4, version: .v3_1_1)
        #expect(badPassword.code == .badUsernameOrPassword)
        #expect(badPassword.connectReturnCode == 4)
        #expect(badPassword.reasonCode == nil)
        #expect(badPassword.description == "connect failed: bad username or password (Connection Refused: bad user name or password.)")
        #expect(MQTTError.connectRefused(returnCode: 5, version: .v3_1_1).code == .notAuthorized)
        #expect(MQTTError.connectRefused(returnCode: 2, version: .v3_1_1).code == .connectionRefused)
        #expect(MQTTError.connectRefused(returnCode: 1, version: .v3_1).connectReturnCode == 1)
    }

    @Test("MQTT 5 CONNACK reason codes map to typed errors")
    func reasonCodesMap() {
        let badPassword = MQTTError.connectRefused(returnCode: 0x86, version: .v5)
        #expect(badPassword.code == .badUsernameOrPassword)
        #expect(badPassword.reasonCode == .badUsernameOrPassword)
        #expect(MQTTError.connectRefused(returnCode: 0x87, version: .v5).code == .notAuthorized)
        let banned = MQTTError.connectRefused(returnCode: 0x8A, version: .v5)
        #expect(banned.code == .connectionRefused)
        #expect(banned.description == "connect failed: connection refused by the broker (Banned (0x8A))")
    }

    @Test("reason codes describe themselves with mosquitto_reason_string")
    func reasonCodesDescribeThemselves() {
        #expect(MQTTReasonCode.notAuthorized.description == "Not authorized (0x87)")
        #expect(MQTTReasonCode.noMatchingSubscribers.description == "No matching subscribers (0x10)")
        #expect(!MQTTReasonCode.noMatchingSubscribers.isFailure)
        #expect(MQTTReasonCode.unspecifiedError.isFailure)
    }

    @Test("codes match in catch patterns")
    func codesMatchInPatterns() {
        do {
            throw MQTTError(.timeout, operation: .publish)
        } catch MQTTError.Code.timeout {
            // expected
        } catch {
            Issue.record("the timeout pattern did not match \(error)")
        }
    }

    @Test("a payload over 268,435,455 bytes is rejected before anything is sent")
    func oversizedPayloadIsRejected() {
        #expect(throws: Never.self) { try MQTTClient.validatePayloadSize(268_435_455) }
        do {
            try MQTTClient.validatePayloadSize(268_435_456)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .payloadTooLarge)
        }
    }

    @Test("an established connection's errors read as what happened, not as a failed operation")
    func connectionErrorsReadPlainly() {
        #expect(MQTTError(.connectionLost, operation: .connection).description == "connection lost")
        #expect(MQTTError(.protocolError, operation: .connection).description == "connection: protocol error")
        #expect(MQTTError(.connectionLost, operation: .connect).description == "connect failed: connection lost")
    }

    @Test("MOSQ_ERR_ERRNO with an errno of 0 says so, rather than strerror(0)'s \"Success\"")
    func zeroErrnoIsNotSuccess() {
        let error = MQTTError(mosquittoCode: Int32(MOSQ_ERR_ERRNO.rawValue), operation: .connect, errno: 0)
        #expect(error.errno == 0)
        #expect(!error.description.contains("Success"), "\(error.description)")
        #expect(error.description.contains("no error number set"), "\(error.description)")
    }
}
