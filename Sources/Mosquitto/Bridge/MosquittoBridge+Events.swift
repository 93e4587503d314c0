#if canImport(Glibc)
import Glibc
#endif

// What the C thunks report (BridgeCallbacks), on the driver thread.

extension MosquittoBridge {
    // MARK: Events from the thunks (driver thread)

    func didConnect(returnCode: Int32, sessionPresent: Bool, properties: MQTTProperties) {
        guard returnCode == 0 else {
            var error = MQTTError.connectRefused(returnCode: returnCode, version: configuration.protocolVersion)
            error.detail = properties.reasonString
            // A refusal is final: retrying a bad password only hammers the broker.
            state.withLock { $0.session.connackRefused(error) }
            failConnectAttempt(with: error)
            return
        }
        let result = MQTTConnectResult(sessionPresent: sessionPresent, properties: properties)
        let (promise, report) = state.withLock { state in
            let report = state.session.connackAccepted(now: .now, sessionPresent: sessionPresent)
            state.connectResult = result
            state.publishLimits = result.publishLimits
            state.connectLog = []
            state.deadLinkDetail = nil
            defer { state.connectPromise = nil }
            return (state.connectPromise, report)
        }
        promise?.succeed(result)
        if report {
            sink.bridgeDidReport(.connection(.connected(sessionPresent: sessionPresent)))
        }
    }

    func didDisconnect(returnCode: Int32, properties: MQTTProperties) {
        // Read first: for MOSQ_ERR_ERRNO it says why (EPROTO: the TLS handshake failed).
        let failure = MosquittoStatus(returnCode)
        let deadLink: String? = state.withLock { state in
            defer { state.deadLinkDetail = nil }
            return state.deadLinkDetail
        }
        let error: MQTTError? =
            returnCode == 0 ? nil
            : deadLink != nil
                ? MQTTError(.connectionLost, operation: .connection, detail: deadLink)
            : returnCode >= 0x80
                ? MQTTError(
                    .connectionLost, operation: .connection, reasonCode: MQTTReasonCode(rawValue: UInt8(truncatingIfNeeded: returnCode)),
                    detail: "the broker sent DISCONNECT" + (properties.reasonString.map { ": \($0)" } ?? "")
                )
                : MQTTError(Self.lossCode(forMosquittoError: returnCode), operation: .connection, mosquittoErrorCode: returnCode)
        let (report, abandoned, abandonedError) = state.withLock { state in
            let (report, willReconnect, abandoned) = state.session.disconnected(now: .now)
            if !willReconnect, let error {
                // Before the first CONNACK, a drop is a failed connect: say why (TLS, reset, ...).
                state.session.recordEndError(
                    state.session.everConnected || returnCode >= 0x80
                        ? error
                        : connectFailure(failure, log: state.connectLog)
                )
            }
            return (report, abandoned, state.session.abandonedError(connectionError: error))
        }
        // With a reconnect to follow nothing is abandoned: QoS 1/2 PUBLISHes are sent again by
        // libmosquitto, SUBSCRIBE/UNSUBSCRIBE by us (resendCommandsIfNeeded), and their waits go on.
        abandoned.fail(with: abandonedError)
        if !abandoned.publishes.isEmpty { reportPendingPublishes() }
        if report {
            sink.bridgeDidReport(.connection(.disconnected(error)))
        }
    }

    /// What a lost connection is reported as: a protocol violation or a malformed packet from the
    /// broker keeps its own code (the broker misbehaved, and a reconnect may not help); any other
    /// cause is ``MQTTError/Code/connectionLost``.
    static func lossCode(forMosquittoError returnCode: Int32) -> MQTTError.Code {
        let code = MQTTError.code(forMosquittoError: returnCode, operation: .connection)
        return [.protocolError, .malformedPacket, .malformedUTF8].contains(code) ? code : .connectionLost
    }

    func didPublish(mid: Int32, reasonCode: MQTTReasonCode, properties: MQTTProperties) {
        let messageID = UInt16(truncatingIfNeeded: mid)
        let result: Result<MQTTPublishReceipt, MQTTError> =
            reasonCode.isFailure
            ? .failure(MQTTError(.publishRefused, operation: .publish, reasonCode: reasonCode, detail: properties.reasonString))
            : .success(MQTTPublishReceipt(messageID: messageID, qos: .atLeastOnce, reasonCode: reasonCode, properties: properties))
        let promise = state.withLock { $0.session.pending.publishes.resolve(mid, with: result) }
        if let promise {
            promise.complete(result)
            reportPendingPublishes()
        }
        sink.bridgeDidReport(.acknowledgement(.published(messageID: messageID, reasonCode: reasonCode)))
    }

    func didReceive(_ message: MQTTMessage) {
        sink.bridgeDidReceive(message)
    }

    func didSubscribe(mid: Int32, reasonCodes: [MQTTReasonCode], properties: MQTTProperties) {
        let acknowledgement = SubscribeAcknowledgement(reasonCodes: reasonCodes, properties: properties)
        let promise = state.withLock { state in
            // Recorded for re-subscription now, under the lock: a loss right after this SUBACK
            // (before the caller's task resumes) still restores what the broker granted.
            if case .subscribe(let request)? = state.session.pending.commands.acknowledged(mid) {
                state.session.subscriptions.remember(request.granted(by: reasonCodes), properties: request.properties)
            }
            return state.session.pending.subscribes.resolve(mid, with: .success(acknowledgement))
        }
        promise?.succeed(acknowledgement)
        sink.bridgeDidReport(.acknowledgement(.subscribed(messageID: UInt16(truncatingIfNeeded: mid), reasonCodes: reasonCodes)))
    }

    func didUnsubscribe(mid: Int32, properties: MQTTProperties) {
        let promise = state.withLock { state in
            state.session.pending.commands.acknowledged(mid)
            return state.session.pending.unsubscribes.resolve(mid, with: .success(properties))
        }
        promise?.succeed(properties)
        sink.bridgeDidReport(.acknowledgement(.unsubscribed(messageID: UInt16(truncatingIfNeeded: mid))))
    }

    func didLog(level logLevel: MQTTLogLevel, text: UnsafePointer<CChar>) {
        let capture = logLevel == .error && state.withLock { $0.session.phase == .connecting }
        let wanted = sink.wantsLog(logLevel)
        guard capture || wanted else { return }
        let line = String(cString: text)
        if capture {
            state.withLock { state in
                if state.connectLog.count < 8 { state.connectLog.append(line) }
            }
        }
        if wanted {
            sink.bridgeDidReport(.log(logLevel, line))
        }
    }
}
