#if canImport(Glibc)
import Glibc
#endif

// Publish, subscribe and unsubscribe (any task), and the subscription registry.

extension MosquittoBridge {
    // MARK: Publish, subscribe, unsubscribe

    /// Queues a PUBLISH. The payload is copied by libmosquitto before this returns.
    func publish(
        topic: String, payload: UnsafeRawBufferPointer, qos: MQTTQoS, retain: Bool, properties: MQTTProperties
    ) throws(MQTTError) -> MQTTPendingPublish {
        let list = try propertyList(properties, for: .publish, operation: .publish)
        try state.withLock { (state) throws(MQTTError) in
            guard !state.session.closed else { throw MQTTError(.clientClosed, operation: .publish) }
            guard state.session.acceptsCommands else { throw MQTTError(.notConnected, operation: .publish) }
            if let limits = state.publishLimits {
                let size = limits.maximumPacketSize == nil ? 0 : PacketSize.publish(
                    topicLength: topic.utf8.count, payloadLength: payload.count, qos: qos, properties: properties, version: configuration.protocolVersion
                )
                try limits.check(qos: qos, retain: retain, packetSize: size)
            }
            if qos != .atMostOnce {
                guard state.session.pending.publishCount < configuration.maxPendingPublishes else {
                    throw MQTTError(.queueFull, operation: .publish, detail: "\(configuration.maxPendingPublishes) publishes await acknowledgement")
                }
                state.session.pending.reservedPublishes += 1
            }
        }
        if qos != .atMostOnce { reportPendingPublishes() }
        var (status, mid) = handle.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: list)
        let messageID = UInt16(truncatingIfNeeded: mid)
        if qos == .atMostOnce {
            // The hot path of QoS 0: nothing to wait for, so no promise. `on_publish` still fires
            // for the ID once the packet is written; mark it ignored.
            guard status.isSuccess else {
                throw MQTTError(status, operation: .publish, detail: "topic \"\(topic)\"")
            }
            state.withLock { $0.session.pending.publishes.ignore(mid) }
            requestWrite()
            return MQTTPendingPublish(completed: MQTTPublishReceipt(messageID: messageID, qos: qos))
        }
        let promise = Promise<MQTTPublishReceipt>()
        let early: Result<MQTTPublishReceipt, MQTTError>? = state.withLock { state in
            state.session.pending.reservedPublishes -= 1
            // Without a socket libmosquitto 2.0.11 answers a QoS 1/2 publish with NO_CONN but
            // keeps the message and sends it after the (re)connect: it is queued, not failed.
            // That holds in any phase while the session lives, including the moment between a
            // lost socket and our `.reconnecting` (a session that ends fails it with the rest).
            if status == .noConnection, mid != 0, state.session.isRunning {
                status = .success
            }
            guard status.isSuccess else { return nil }
            return state.session.pending.publishes.register(promise, for: mid)
        }
        guard status.isSuccess else {
            reportPendingPublishes()
            throw MQTTError(status, operation: .publish, detail: "topic \"\(topic)\"")
        }
        if early != nil { reportPendingPublishes() }
        requestWrite()
        if let early {
            promise.complete(early)
        }
        return MQTTPendingPublish(messageID: messageID, qos: qos, promise: promise, defaultTimeout: configuration.operationTimeout)
    }

    /// Queues one SUBSCRIBE for `filters`, which share one QoS and one set of options. The
    /// filters the SUBACK grants are recorded for re-subscription after a session loss when it
    /// arrives (before the caller's task resumes: a loss right after it cannot miss them).
    ///
    /// - Returns: The SUBACK's reason codes, one per filter, once it arrives (sent again after a
    ///   reconnect if the connection is lost first).
    func subscribe(_ filters: [MQTTTopicFilter], properties: MQTTProperties) throws(MQTTError) -> Promise<SubscribeAcknowledgement> {
        let request = PendingCommands.Subscribe(topicFilters: filters, properties: properties, promise: Promise())
        try send(.subscribe(request))
        return request.promise
    }

    /// Queues one UNSUBSCRIBE for `filters`.
    ///
    /// - Returns: A promise completed by the UNSUBACK (sent again after a reconnect if the
    ///   connection is lost first).
    func unsubscribe(filters: [String], properties: MQTTProperties) throws(MQTTError) -> Promise<MQTTProperties> {
        let request = PendingCommands.Unsubscribe(filters: filters, properties: properties, promise: Promise())
        try send(.unsubscribe(request))
        return request.promise
    }

    /// Queues a SUBSCRIBE or UNSUBSCRIBE and registers its caller's promise (recording the
    /// command, so that a reconnect can send it again).
    func send(_ command: PendingCommands.Command) throws(MQTTError) {
        let operation = command.operation
        let list = try propertyList(command.properties, for: command.packet, operation: operation)
        try requireConnected(for: operation)?.check(packetSize: command.packetSize(version: configuration.protocolVersion), operation: operation)
        let (status, mid) = switch command {
        case .subscribe(let request):
            handle.subscribe(filters: request.filters, qos: request.qos, options: request.options, properties: list)
        case .unsubscribe(let request):
            handle.unsubscribe(filters: request.filters, properties: list)
        }
        guard status.isSuccess else { throw MQTTError(status, operation: operation) }
        requestWrite()
        // The acknowledgement may have come already (parked by the table): complete at once.
        switch command {
        case .subscribe(let request):
            let early = state.withLock { state in
                let early = state.session.pending.subscribes.register(request.promise, for: mid)
                if early == nil {
                    state.session.pending.commands.sent(command, mid: mid)
                } else if case .success(let acknowledgement)? = early {
                    state.session.subscriptions.remember(request.granted(by: acknowledgement.reasonCodes), properties: request.properties)
                }
                return early
            }
            if let early { request.promise.complete(early) }
        case .unsubscribe(let request):
            let early = state.withLock { state in
                let early = state.session.pending.unsubscribes.register(request.promise, for: mid)
                if early == nil { state.session.pending.commands.sent(command, mid: mid) }
                return early
            }
            if let early { request.promise.complete(early) }
        }
    }

    /// Sends again, in their order, the SUBSCRIBEs and UNSUBSCRIBEs a lost connection took with
    /// it (on the driver thread, once the broker accepted the new connection). One that cannot be
    /// sent fails its caller.
    func resendCommandsIfNeeded() {
        let commands = state.withLock { state in
            state.session.isConnected && state.session.pending.commands.hasCommandsToResend ? state.session.pending.commands.takeCommandsToResend() : []
        }
        for command in commands {
            do { try send(command) } catch { command.fail(error) }
        }
    }

    // MARK: Subscription registry

    /// Forgets unsubscribed filters.
    func forget(_ filters: [String]) {
        state.withLock { $0.session.subscriptions.forget(filters) }
    }

    /// Subscribes again to everything recorded, each filter with its own QoS, options and
    /// properties (on the driver thread, outside any callback). The driver does not wait: a task
    /// collects the SUBACKs and reports ``MQTTConnectionEvent/resubscribed(refused:)`` once all
    /// are in; a refused filter is logged and forgotten (its sequences end with the refusal).
    func resubscribeIfNeeded() {
        let records = state.withLock { $0.session.takeResubscriptions() }
        guard !records.isEmpty else { return }
        var refused: [MQTTSubscribeResult] = []
        var answers: [(filter: String, acknowledgement: Promise<SubscribeAcknowledgement>)] = []
        for record in records {
            do {
                let promise = try subscribe([record.filter], properties: record.properties)
                answers.append((record.filter.filter, promise))
            } catch {
                refused.append(MQTTSubscribeResult(filter: record.filter.filter, reasonCode: error.reasonCode ?? .unspecifiedError))
            }
        }
        Task { [self, refused, answers] in
            var refused = refused
            for answer in answers {
                do {
                    let acknowledgement = try await answer.acknowledgement.wait(timeout: nil, operation: .subscribe)
                    if let code = acknowledgement.reasonCodes.first(where: \.isFailure) {
                        refused.append(MQTTSubscribeResult(filter: answer.filter, reasonCode: code))
                    }
                } catch {
                    // The session ended first; `.disconnected` has said so.
                    return
                }
            }
            if !refused.isEmpty {
                forget(refused.map(\.filter))
                if sink.wantsLog(.error) {
                    let list = refused.map { "\($0.filter) (\($0.reasonCode))" }.joined(separator: ", ")
                    sink.bridgeDidReport(.log(.error, "\(clientID): re-subscribing after a session loss was refused for \(list)"))
                }
            }
            sink.bridgeDidReport(.connection(.resubscribed(refused: refused)))
        }
    }

    /// - Returns: The broker's limits, when it sent a Maximum Packet Size.
    func requireConnected(for operation: MQTTError.Operation) throws(MQTTError) -> PublishLimits? {
        try state.withLock { (state) throws(MQTTError) in
            guard !state.session.closed else { throw MQTTError(.clientClosed, operation: operation) }
            guard state.session.isConnected else { throw MQTTError(.notConnected, operation: operation) }
            return state.publishLimits?.maximumPacketSize == nil ? nil : state.publishLimits
        }
    }
}
