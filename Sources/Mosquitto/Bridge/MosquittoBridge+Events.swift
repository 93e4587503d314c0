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
            let resubscribe = !sessionPresent && configuration.resubscribeOnSessionLoss && !state.subscriptions.isEmpty
            let report = state.session.connackAccepted(now: .now, resubscribe: resubscribe)
            state.connectResult = result
            state.publishLimits = result.publishLimits
            state.connectLog = []
            state.deadLinkDetail = nil
            defer { state.connectPromise = nil }
            return (state.connectPromise, report)
        }
        promise?.succeed(result)
        if report {
            sink.bridgeConnectionDidChange(.connected(sessionPresent: sessionPresent))
        }
    }

    func didDisconnect(returnCode: Int32, properties: MQTTProperties) {
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
                : MQTTError(.connectionLost, operation: .connection, mosquittoErrorCode: returnCode)
        struct Outcome: ~Copyable {
            var failed: [Promise<SubscribeAcknowledgement>]
            var failedUnsubscribes: [Promise<MQTTProperties>]
            var failedPublishes: [Promise<MQTTPublishReceipt>]
            var report: Bool
        }
        let outcome = state.withLock { state in
            let (report, willReconnect) = state.session.disconnected(now: .now)
            if !willReconnect, let error {
                // Before the first CONNACK, a drop is a failed connect: say why (TLS, reset, ...).
                state.session.recordEndError(
                    state.session.everConnected || returnCode >= 0x80
                        ? error
                        : MQTTError(mosquittoCode: returnCode, operation: .connect, detail: Self.failureDetail(state.connectLog, fallback: nil))
                )
            }
            // QoS 1/2 PUBLISHes are sent again by libmosquitto, SUBSCRIBE/UNSUBSCRIBE by us
            // (resendCommandsIfNeeded), with new packet IDs: their waits go on.
            state.publishes.forgetIgnored()
            let subscribes = state.subscribes.removeAll()
            let unsubscribes = state.unsubscribes.removeAll()
            if willReconnect {
                state.commands.connectionLost()
            } else {
                _ = state.commands.removeAll()
            }
            return Outcome(
                failed: willReconnect ? [] : subscribes,
                failedUnsubscribes: willReconnect ? [] : unsubscribes,
                failedPublishes: willReconnect ? [] : state.publishes.removeAll(),
                report: report
            )
        }
        let pendingError = error ?? MQTTError(.notConnected, operation: .connection, detail: "disconnected before the acknowledgement arrived")
        outcome.failed.forEach { $0.fail(pendingError) }
        outcome.failedUnsubscribes.forEach { $0.fail(pendingError) }
        outcome.failedPublishes.forEach { $0.fail(pendingError) }
        if !outcome.failedPublishes.isEmpty { reportPendingPublishes() }
        if outcome.report {
            sink.bridgeConnectionDidChange(.disconnected(error))
        }
    }

    func didPublish(mid: Int32, reasonCode: MQTTReasonCode, properties: MQTTProperties) {
        let messageID = UInt16(truncatingIfNeeded: mid)
        let result: Result<MQTTPublishReceipt, MQTTError> =
            reasonCode.isFailure
            ? .failure(MQTTError(.publishRefused, operation: .publish, reasonCode: reasonCode, detail: properties.reasonString))
            : .success(MQTTPublishReceipt(messageID: messageID, qos: .atLeastOnce, reasonCode: reasonCode, properties: properties))
        let promise = state.withLock { $0.publishes.resolve(mid, with: result) }
        if let promise {
            promise.complete(result)
            reportPendingPublishes()
        }
        sink.bridgeDidAcknowledge(.published(messageID: messageID, reasonCode: reasonCode))
    }

    func didReceive(_ message: MQTTMessage) {
        sink.bridgeDidReceive(message)
    }

    func didSubscribe(mid: Int32, reasonCodes: [MQTTReasonCode], properties: MQTTProperties) {
        let acknowledgement = SubscribeAcknowledgement(reasonCodes: reasonCodes, properties: properties)
        let promise = state.withLock { state in
            state.commands.acknowledged(mid)
            return state.subscribes.resolve(mid, with: .success(acknowledgement))
        }
        promise?.succeed(acknowledgement)
        sink.bridgeDidAcknowledge(.subscribed(messageID: UInt16(truncatingIfNeeded: mid), reasonCodes: reasonCodes))
    }

    func didUnsubscribe(mid: Int32, properties: MQTTProperties) {
        let promise = state.withLock { state in
            state.commands.acknowledged(mid)
            return state.unsubscribes.resolve(mid, with: .success(properties))
        }
        promise?.succeed(properties)
        sink.bridgeDidAcknowledge(.unsubscribed(messageID: UInt16(truncatingIfNeeded: mid)))
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
            sink.bridgeDidLog(level: logLevel, message: line)
        }
    }
}
