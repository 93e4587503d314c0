
// MARK: - Requests

extension MQTTClient {
    /// Sends a request and waits for its response (MQTT 5 request/response).
    ///
    /// The request carries a response topic private to this client (`responses/CLIENT-ID`, or
    /// under the broker's response information when it sends one) and fresh correlation data;
    /// the first response published there with the same correlation data is returned. Any
    /// number of requests may be in flight at once; each gets its own response.
    ///
    /// - Parameters:
    ///   - topic: The topic a responder listens on.
    ///   - payload: The request payload.
    ///   - qos: The QoS of the request (and of the response subscription). Defaults to QoS 1.
    ///   - properties: Further PUBLISH properties (content type, user properties, ...); the
    ///     response topic and correlation data are set by this method.
    ///   - timeout: How long to wait for the response; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Returns: The response message.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/timeout`` when no response arrives in time,
    ///   ``MQTTError/Code/notSupported`` on MQTT 3.1/3.1.1, and the errors of publish and subscribe.
    public func request(
        topic: String,
        payload: [UInt8],
        qos: MQTTQoS = .atLeastOnce,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTMessage {
        guard configuration.protocolVersion == .v5 else {
            throw MQTTError(.notSupported, operation: .publish, detail: "request/response needs MQTT 5")
        }
        let timeout = timeout ?? configuration.operationTimeout
        let responseTopic = try await requests.responseTopic(for: self, qos: qos, timeout: timeout)
        let correlation = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let response = requests.expectResponse(correlation)
        var properties = properties
        properties.responseTopic = responseTopic
        properties.correlationData = correlation
        do throws(MQTTError) {
            try await publish(to: topic, payload: payload, qos: qos, properties: properties, timeout: timeout)
            return try await response.wait(timeout: timeout, operation: .receive)
        } catch {
            requests.forget(correlation)
            throw error
        }
    }

    /// Answers requests: subscribes to `filter` and, for every message carrying a response
    /// topic, publishes `handler`'s answer there with the request's correlation data.
    ///
    /// Runs until the subscription ends (``unsubscribe(from:properties:timeout:)-(String,_,_)``, disconnect)
    /// or the calling task is cancelled; run it in a task of its own. A request without a
    /// response topic is ignored; a `nil` answer sends nothing.
    ///
    /// - Parameters:
    ///   - filter: The request topic filter.
    ///   - qos: The QoS of the subscription and of the responses. Defaults to QoS 1.
    ///   - handler: Computes the response payload for a request.
    /// - Throws: ``MQTTError`` from subscribing or when the session ends with an error.
    public func respond(
        to filter: String,
        qos: MQTTQoS = .atLeastOnce,
        handler: @escaping @Sendable (MQTTMessage) async -> [UInt8]?
    ) async throws(MQTTError) {
        let subscription = try await subscribe(to: filter, qos: qos)
        do {
            for try await request in subscription {
                guard let responseTopic = request.properties.responseTopic, let answer = await handler(request) else { continue }
                var properties = MQTTProperties()
                properties.correlationData = request.properties.correlationData
                try await publish(to: responseTopic, payload: answer, qos: qos, properties: properties)
            }
        } catch let error as MQTTError {
            if error.code != .cancelled { throw error }
        } catch {
            if !(error is CancellationError) { throw MQTTError(.unknown, operation: .receive, detail: "\(error)") }
        }
    }
}

// MARK: - RequestBroker

/// The requester's side of request/response for one client: its response subscription and the
/// requests awaiting a response, keyed by correlation data. One per client, state behind a lock.
final class RequestBroker: Sendable {
    private struct State {
        /// Set once the response subscription is being (or has been) made.
        var ready: Promise<String>?
        var waiting: [[UInt8]: Promise<MQTTMessage>] = [:]
    }

    private let state = Locked(State())

    /// The response topic, subscribing to it on first use (concurrent first callers share it).
    func responseTopic(for client: MQTTClient, qos: MQTTQoS, timeout: Duration) async throws(MQTTError) -> String {
        let (ready, isFirst) = state.withLock { state in
            if let ready = state.ready { return (ready, false) }
            let ready = Promise<String>()
            state.ready = ready
            return (ready, true)
        }
        if isFirst {
            do throws(MQTTError) {
                let base = client.connectResult?.properties.responseInformation ?? "responses"
                // A client ID the broker assigned but did not say (MQTT 3.1.1) is empty.
                let topic = "\(base)/\(client.clientID.isEmpty ? MQTTClient.generateClientID() : client.clientID)"
                let subscription = try await client.subscribe(to: topic, qos: qos, timeout: timeout)
                Task { [weak self] in
                    await self?.deliver(subscription)
                }
                ready.succeed(topic)
            } catch {
                state.withLock { $0.ready = nil }
                ready.fail(error)
            }
        }
        return try await ready.wait(timeout: timeout, operation: .subscribe)
    }

    /// Registers a request's correlation data; the promise completes with its response.
    func expectResponse(_ correlation: [UInt8]) -> Promise<MQTTMessage> {
        let promise = Promise<MQTTMessage>()
        state.withLock { $0.waiting[correlation] = promise }
        return promise
    }

    /// Drops a request that timed out or failed.
    func forget(_ correlation: [UInt8]) {
        _ = state.withLock { $0.waiting.removeValue(forKey: correlation) }
    }

    /// Hands responses to their requests until the response subscription ends, then fails the
    /// requests still waiting and lets the next request subscribe again.
    private func deliver(_ subscription: MQTTSubscription) async {
        var ending = MQTTError(.connectionLost, operation: .receive, detail: "the response subscription ended")
        do {
            for try await response in subscription {
                guard let correlation = response.properties.correlationData else { continue }
                let promise = state.withLock { $0.waiting.removeValue(forKey: correlation) }
                promise?.succeed(response)
            }
        } catch let error as MQTTError {
            ending = error
        } catch {}
        let orphans = state.withLock { state in
            state.ready = nil
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        orphans.forEach { $0.fail(ending) }
    }
}
