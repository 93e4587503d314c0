// Subscribing and unsubscribing.

extension MQTTClient {
    // MARK: Subscribing

    /// Subscribes to one filter and returns its messages.
    ///
    /// The message sequence is in place before SUBSCRIBE is sent, so retained messages that
    /// arrive right after the SUBACK are not missed.
    ///
    /// - Parameters:
    ///   - filter: The topic filter (`+` and `#` wildcards, `$share/GROUP/...`).
    ///   - qos: The maximum QoS wanted. Defaults to QoS 0.
    ///   - properties: MQTT 5 SUBSCRIBE properties (a subscription identifier, user properties).
    ///   - timeout: How long to wait for the SUBACK; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Returns: The subscription: granted QoS and an `AsyncSequence` of matching messages.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/invalidTopicFilter``, ``MQTTError/Code/notConnected``,
    ///   ``MQTTError/Code/subscriptionRefused`` (with the SUBACK code), ``MQTTError/Code/timeout``.
    public func subscribe(
        to filter: String,
        qos: MQTTQoS = .atMostOnce,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTSubscription {
        try await subscribe(to: [MQTTTopicFilter(filter, qos: qos)], properties: properties, timeout: timeout)
    }

    /// Subscribes to several filters and returns the messages matching any of them.
    ///
    /// Filters sharing a QoS and options go in one SUBSCRIBE packet. If the broker refuses any filter the
    /// call throws ``MQTTError/Code/subscriptionRefused`` naming the refused filters, with every
    /// filter's result in ``MQTTError/subscribeResults``; the ones it granted stay subscribed at
    /// the broker (unsubscribe them if they are not wanted).
    ///
    /// - Parameters:
    ///   - filters: The filters, each with its maximum QoS and MQTT 5 options.
    ///   - properties: MQTT 5 SUBSCRIBE properties, sent with every SUBSCRIBE packet.
    ///   - timeout: How long to wait for the SUBACKs; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Returns: The subscription: one result per filter and the matching messages.
    /// - Throws: ``MQTTError``, as for ``subscribe(to:qos:properties:timeout:)``.
    public func subscribe(
        to filters: [MQTTTopicFilter],
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTSubscription {
        guard !filters.isEmpty else { throw MQTTError(.invalidArgument, operation: .subscribe, detail: "no filters") }
        for filter in filters {
            try MQTTTopic.validateFilter(filter.filter, operation: .subscribe)
        }
        let (listenerID, messages) = router.makeMessageSequence(
            filters: filters.map(\.filter), subscriptionIdentifier: properties.subscriptionIdentifiers.first
        )
        do throws(MQTTError) {
            let (results, acknowledgementProperties) = try await sendSubscribe(
                filters, properties: properties, timeout: timeout ?? configuration.operationTimeout
            )
            let refused = results.filter { $0.reasonCode.isFailure }
            if !refused.isEmpty {
                var error = MQTTError(
                    .subscriptionRefused, operation: .subscribe,
                    reasonCode: refused[0].reasonCode,
                    detail: refused.map { "\"\($0.filter)\": \($0.reasonCode)" }.joined(separator: ", ")
                        + (acknowledgementProperties.reasonString.map { " (\($0))" } ?? "")
                )
                error.subscribeResults = results
                throw error
            }
            return MQTTSubscription(results: results, properties: acknowledgementProperties, messages: messages)
        } catch {
            router.finishListener(listenerID)
            throw error
        }
    }

    private func sendSubscribe(
        _ filters: [MQTTTopicFilter], properties: MQTTProperties, timeout: Duration
    ) async throws(MQTTError) -> ([MQTTSubscribeResult], MQTTProperties) {
        // One SUBSCRIBE per (QoS, options) group: libmosquitto's subscribe_multiple takes one of each.
        var groups: [(qos: MQTTQoS, options: Int32, indices: [Int])] = []
        for (index, filter) in filters.enumerated() {
            if let group = groups.firstIndex(where: { $0.qos == filter.qos && $0.options == filter.optionBits }) {
                groups[group].indices.append(index)
            } else {
                groups.append((filter.qos, filter.optionBits, [index]))
            }
        }
        var sent: [(indices: [Int], promise: Promise<SubscribeAcknowledgement>)] = []
        for group in groups {
            let promise = try bridge.subscribe(group.indices.map { filters[$0] }, properties: properties)
            sent.append((group.indices, promise))
        }
        var results = filters.map { MQTTSubscribeResult(filter: $0.filter, reasonCode: .unspecifiedError) }
        var acknowledgementProperties: MQTTProperties?
        for (indices, promise) in sent {
            let acknowledgement = try await promise.wait(timeout: timeout, operation: .subscribe)
            acknowledgementProperties = acknowledgementProperties ?? acknowledgement.properties
            for (position, index) in indices.enumerated() {
                results[index].reasonCode = position < acknowledgement.reasonCodes.count ? acknowledgement.reasonCodes[position] : .unspecifiedError
            }
        }
        return (results, acknowledgementProperties ?? MQTTProperties())
    }

    /// Unsubscribes from filters. They leave every subscription's sequence: a sequence made for
    /// several filters keeps receiving the others, and one left with none ends.
    ///
    /// libmosquitto 2.0.11 does not pass UNSUBACK reason codes on, so a per-filter MQTT 5 refusal
    /// cannot be reported; the UNSUBACK's properties (reason string, user properties) are returned.
    ///
    /// - Parameters:
    ///   - filters: The filters, spelled as they were subscribed.
    ///   - properties: MQTT 5 UNSUBSCRIBE properties (user properties).
    ///   - timeout: How long to wait for the UNSUBACK; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Returns: The UNSUBACK's MQTT 5 properties.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/invalidTopicFilter``, ``MQTTError/Code/notConnected``,
    ///   ``MQTTError/Code/timeout``.
    @discardableResult
    public func unsubscribe(
        from filters: [String],
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTProperties {
        guard !filters.isEmpty else { throw MQTTError(.invalidArgument, operation: .unsubscribe, detail: "no filters") }
        for filter in filters {
            try MQTTTopic.validateFilter(filter, operation: .unsubscribe)
        }
        let promise = try bridge.unsubscribe(filters: filters, properties: properties)
        let acknowledgement = try await promise.wait(timeout: timeout ?? configuration.operationTimeout, operation: .unsubscribe)
        bridge.forget(filters)
        router.removeFilters(Set(filters))
        return acknowledgement
    }

    /// Unsubscribes from one filter; see ``unsubscribe(from:properties:timeout:)``.
    @discardableResult
    public func unsubscribe(
        from filter: String,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTProperties {
        try await unsubscribe(from: [filter], properties: properties, timeout: timeout)
    }
}
