import Synchronization

// MARK: - EventRouter

/// Fans the bridge's events out to message sequences, connection-event sequences and the
/// delegate. The single ``BridgeEventSink`` of a client, so every consumer is fed by one bridge.
///
/// Called on the driver thread: it only appends to message buffers and yields into streams
/// (non-blocking) and never runs user code there. Received messages are appended without waking
/// their consumers; ``bridgeDidFinishLoopPass()`` wakes each consumer that got something, once
/// per pass of the network loop (see ``MessageBuffer``). The delegate is served by one task of
/// ours that drains an ordered event stream.
final class EventRouter: BridgeEventSink {
    private struct MessageListener {
        /// `nil` receives every message; otherwise filters as subscribed (`$share/` prefixes kept).
        let filters: [String]?
        /// The MQTT 5 subscription identifier the subscription was made with, if any.
        let subscriptionIdentifier: UInt32?
        let buffer: MessageBuffer
        /// `filters`, prepared for matching every message.
        let matchers: [TopicMatcher]

        init(filters: [String]?, subscriptionIdentifier: UInt32?, buffer: MessageBuffer) {
            self.filters = filters
            self.subscriptionIdentifier = subscriptionIdentifier
            self.buffer = buffer
            self.matchers = (filters ?? []).map(TopicMatcher.init(filter:))
        }

        /// The same listener without `removed` among its filters.
        func without(_ removed: Set<String>) -> MessageListener {
            MessageListener(filters: filters?.filter { !removed.contains($0) }, subscriptionIdentifier: subscriptionIdentifier, buffer: buffer)
        }

        /// Whether `message` belongs to this listener. A message carrying subscription identifiers
        /// goes to the subscriptions with those identifiers (the broker sends one copy per
        /// overlapping subscription); otherwise the topic is matched against the filters.
        func accepts(_ message: MQTTMessage) -> Bool {
            guard filters != nil else { return true }
            if let subscriptionIdentifier, !message.properties.subscriptionIdentifiers.isEmpty {
                return message.properties.subscriptionIdentifiers.contains(subscriptionIdentifier)
            }
            return matchers.contains(where: { $0.matches(message.topic) })
        }
    }

    private struct State {
        var nextID: UInt64 = 0
        var listeners: [UInt64: MessageListener] = [:]
        /// The buffers that received messages since the last loop pass ended: each is flushed
        /// once by ``bridgeDidFinishLoopPass()`` (a buffer reports only its first unflushed message).
        var unflushed: [MessageBuffer] = []
        var eventListeners: [UInt64: AsyncStream<MQTTConnectionEvent>.Continuation] = [:]
        /// The last connection event: a new event sequence starts with it (the current state).
        var lastEvent: MQTTConnectionEvent?
        /// Completed by the next `.connected` (or failed when the session ends): what
        /// ``MQTTClient/waitUntilConnected(timeout:)`` awaits. One for all waiters, so bounded.
        var nextConnection: Promise<Void>?
        weak var client: MQTTClient?
        weak var delegate: (any MQTTClientDelegate)?
        var delegateEvents: AsyncStream<DelegateEvent>.Continuation?
        /// Messages that arrived while nothing consumed them (``MQTTClient/unroutedMessageCount``).
        var unrouted = 0
        /// The latest of those (at most `bufferSize`), kept for the first sequence that matches
        /// them or the delegate, in arrival order.
        var held: [MQTTMessage] = []
        /// How many held messages were dropped because the hold was full.
        var droppedUnrouted = 0
    }

    enum DelegateEvent: Sendable {
        case connection(MQTTConnectionEvent)
        case message(MQTTMessage)
        case acknowledgement(BridgeAcknowledgement)
        case log(MQTTLogLevel, String)
    }

    private let state = Locked(State())
    private let bufferSize: Int
    /// Whether a delegate is set (it receives every log line).
    private let delegateFlag = Atomic<Bool>(false)
    /// Logging and metrics.
    let telemetry: ClientTelemetry

    /// - Parameters:
    ///   - bufferSize: The buffer of each message sequence.
    ///   - telemetry: Where log lines, connection changes and message counts go besides the consumers.
    init(bufferSize: Int, telemetry: ClientTelemetry) {
        self.bufferSize = bufferSize
        self.telemetry = telemetry
    }

    // MARK: Consumers

    /// Attaches the client handed to delegate methods (held weakly).
    func attach(client: MQTTClient) {
        state.withLock { $0.client = client }
    }

    /// A new message sequence receiving messages that match `filters` (all when `nil`), or that
    /// carry `subscriptionIdentifier`.
    func makeMessageSequence(filters: [String]?, subscriptionIdentifier: UInt32? = nil) -> (id: UInt64, sequence: MQTTMessageSequence) {
        let (id, buffer) = state.withLock { state in
            state.nextID += 1
            let id = state.nextID
            // Runs when the consumer cancels or drops the sequence (never under our lock).
            let buffer = MessageBuffer(capacity: bufferSize) { [weak self] in
                self?.removeListener(id)
            }
            let listener = MessageListener(filters: filters, subscriptionIdentifier: subscriptionIdentifier, buffer: buffer)
            state.listeners[id] = listener
            // Messages that came before any consumer (a persistent session's queue, right after
            // CONNACK) go to the first sequence that matches them, oldest first. At most
            // `bufferSize` are held, so they fit.
            if !state.held.isEmpty {
                var kept: [MQTTMessage] = []
                for message in state.held {
                    guard listener.accepts(message), case .appended = buffer.append(message) else {
                        kept.append(message)
                        continue
                    }
                }
                if kept.count != state.held.count { buffer.flush() }
                state.held = kept
            }
            return (id, buffer)
        }
        return (id, MQTTMessageSequence(reader: MessageBuffer.Reader(buffer)))
    }

    /// Ends and removes one message sequence.
    func finishListener(_ id: UInt64, error: MQTTError? = nil) {
        let buffer = state.withLock { $0.listeners.removeValue(forKey: id)?.buffer }
        buffer?.finish(throwing: error)
    }

    /// The broker no longer sends `filters` to this client (an UNSUBACK, or a re-subscription it
    /// refused): they leave every sequence's filters, and a sequence left with none ends (with
    /// `error`, if one is given). A sequence of several filters keeps receiving the others.
    func removeFilters(_ filters: Set<String>, endingWith error: MQTTError? = nil) {
        let finished = state.withLock { state -> [MessageBuffer] in
            var finished: [MessageBuffer] = []
            for (id, listener) in state.listeners {
                guard let own = listener.filters, own.contains(where: filters.contains) else { continue }
                let remaining = listener.without(filters)
                if remaining.filters?.isEmpty == true {
                    state.listeners.removeValue(forKey: id)
                    finished.append(listener.buffer)
                } else {
                    state.listeners[id] = remaining
                }
            }
            return finished
        }
        finished.forEach { $0.finish(throwing: error) }
    }

    private func removeListener(_ id: UInt64) {
        _ = state.withLock { $0.listeners.removeValue(forKey: id) }
    }

    /// A new sequence of connection events.
    func makeConnectionEvents() -> MQTTConnectionEvents {
        let (stream, continuation) = AsyncStream<MQTTConnectionEvent>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let id = state.withLock { state in
            state.nextID += 1
            state.eventListeners[state.nextID] = continuation
            // Under the lock that also orders the events: the current state first, then every
            // change after it, none twice.
            if let current = state.lastEvent { continuation.yield(current) }
            return state.nextID
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.eventListeners.removeValue(forKey: id) }
        }
        return MQTTConnectionEvents(stream: stream)
    }

    // MARK: Delegate

    /// The delegate, held weakly.
    var delegate: (any MQTTClientDelegate)? {
        get { state.withLock { $0.delegate } }
        set {
            let stream: AsyncStream<DelegateEvent>? = state.withLock { state in
                state.delegate = newValue
                guard newValue != nil else { return nil }
                var stream: AsyncStream<DelegateEvent>?
                if state.delegateEvents == nil {
                    let (made, continuation) = AsyncStream<DelegateEvent>.makeStream()
                    state.delegateEvents = continuation
                    stream = made
                }
                // The delegate takes every message: the held ones first.
                for message in state.held { state.delegateEvents?.yield(.message(message)) }
                state.held.removeAll()
                return stream
            }
            delegateFlag.store(newValue != nil, ordering: .relaxed)
            if let stream {
                Task { [weak self] in
                    for await event in stream {
                        guard let (client, delegate) = self?.delegateTargets() else { continue }
                        await Self.deliver(event, to: delegate, client: client)
                    }
                }
            }
        }
    }

    private func delegateTargets() -> (MQTTClient, any MQTTClientDelegate)? {
        state.withLock { state in
            guard let client = state.client, let delegate = state.delegate else { return nil }
            return (client, delegate)
        }
    }

    private static func deliver(_ event: DelegateEvent, to delegate: any MQTTClientDelegate, client: MQTTClient) async {
        switch event {
        case .connection(.connected(let sessionPresent)):
            await delegate.mqttClient(client, didConnect: client.connectResult ?? MQTTConnectResult(sessionPresent: sessionPresent))
        case .connection(.disconnected(let error)):
            await delegate.mqttClient(client, didDisconnect: error)
        case .connection:
            break
        case .message(let message):
            await delegate.mqttClient(client, didReceive: message)
        case .acknowledgement(.published(let messageID, let reasonCode)):
            await delegate.mqttClient(client, didPublish: messageID, reasonCode: reasonCode)
        case .acknowledgement(.subscribed(let messageID, let reasonCodes)):
            await delegate.mqttClient(client, didSubscribe: messageID, reasonCodes: reasonCodes)
        case .acknowledgement(.unsubscribed(let messageID)):
            await delegate.mqttClient(client, didUnsubscribe: messageID)
        case .log(let level, let message):
            await delegate.mqttClient(client, didLog: message, level: level)
        }
    }

    private func toDelegate(_ event: DelegateEvent) {
        guard delegateFlag.load(ordering: .relaxed) else { return }
        let continuation = state.withLock { $0.delegate == nil ? nil : $0.delegateEvents }
        continuation?.yield(event)
    }

    /// Ends every sequence and the delegate task; called when the client is released.
    func close() {
        let (listeners, events, delegateEvents) = state.withLock { state in
            defer {
                state.listeners.removeAll()
                state.eventListeners.removeAll()
                state.delegateEvents = nil
            }
            return (Array(state.listeners.values), Array(state.eventListeners.values), state.delegateEvents)
        }
        listeners.forEach { $0.buffer.finish() }
        events.forEach { $0.finish() }
        delegateEvents?.finish()
    }

    // MARK: BridgeEventSink

    func bridgeDidReceive(_ message: MQTTMessage) {
        telemetry.metrics?.received(qos: message.qos, bytes: message.payload.count)
        // The hot path: one lock for the matching sequences and the delegate queue together.
        // Appending never blocks, wakes nobody (bridgeDidFinishLoopPass does, once per pass)
        // and never calls back into the router, so it happens under the lock; only the rare
        // overflow (the buffer has already ended its sequence with the error) is handled after
        // it, which saves building an array of targets for every message.
        let (overflowed, delegateEvents, unrouted, dropped) = state.withLock { state in
            var overflowed: [UInt64] = []
            var taken = false
            for (id, listener) in state.listeners where listener.accepts(message) {
                switch listener.buffer.append(message) {
                case .appended(needsFlush: true): state.unflushed.append(listener.buffer); taken = true
                case .appended(needsFlush: false): taken = true
                case .closed: break
                case .overflowed: overflowed.append(id)
                }
            }
            let delegateEvents = state.delegate == nil ? nil : state.delegateEvents
            guard !taken, delegateEvents == nil, overflowed.isEmpty else { return (overflowed, delegateEvents, 0, 0) }
            state.unrouted += 1
            // Held for a consumer that comes later; when the hold is full, the oldest goes.
            if state.held.count >= bufferSize {
                state.held.removeFirst()
                state.droppedUnrouted += 1
            }
            state.held.append(message)
            return (overflowed, delegateEvents, state.unrouted, state.droppedUnrouted)
        }
        for id in overflowed {
            removeListener(id)
        }
        if unrouted > 0 {
            // libmosquitto has acknowledged it already: never silently.
            telemetry.metrics?.unrouted(qos: message.qos)
            if unrouted == 1 || dropped == 1 || unrouted % 1_000 == 0, telemetry.logs(.warning) {
                telemetry.log(
                    .warning,
                    "a message on \"\(message.topic)\" arrived with no message sequence or delegate to take it "
                        + "(\(unrouted) so far): "
                        + (dropped == 0
                            ? "it is held for the first sequence that matches it"
                            : "the latest \(bufferSize) (messageBufferSize) are held for the first sequence that matches them, \(dropped) older ones were dropped")
                        + "; create the sequence (client.messages, subscribe) or set the delegate before connect() to take a persistent session's queued messages as they come"
                )
            }
        }
        delegateEvents?.yield(.message(message))
    }

    /// How many messages arrived while nothing consumed them.
    var unroutedMessageCount: Int { state.withLock { $0.unrouted } }

    func bridgeDidFinishLoopPass() {
        // Flushing only resumes a continuation (never blocks, never calls back into the router),
        // so it happens under the lock too, and the list keeps its storage from pass to pass.
        state.withLock { state in
            guard !state.unflushed.isEmpty else { return }
            for buffer in state.unflushed { buffer.flush() }
            state.unflushed.removeAll(keepingCapacity: true)
        }
    }

    func bridgeDidReport(_ event: BridgeEvent) {
        switch event {
        case .connection(let change): connectionDidChange(change)
        case .acknowledgement(let acknowledgement): toDelegate(.acknowledgement(acknowledgement))
        case .sessionEnded(let error, let keepsSubscriptions): sessionDidEnd(error: error, keepsSubscriptions: keepsSubscriptions)
        case .pendingPublishes(let count): telemetry.metrics?.inFlightChanged(to: count)
        case .log(let level, let message):
            if telemetry.logs(level) { telemetry.log(level, message) }
            toDelegate(.log(level, message))
        }
    }

    private func connectionDidChange(_ event: MQTTConnectionEvent) {
        telemetry.log(event)
        telemetry.metrics?.record(event)
        let connected: Promise<Void>? = state.withLock { state in
            // `.resubscribed` is news, not a state: a new sequence still starts with `.connected`.
            if case .resubscribed = event {} else { state.lastEvent = event }
            // Yielding never blocks (a bounded buffer); under the lock a new sequence cannot
            // miss this event or see it twice.
            for listener in state.eventListeners.values { listener.yield(event) }
            guard case .connected = event else { return nil }
            defer { state.nextConnection = nil }
            return state.nextConnection
        }
        connected?.succeed(())
        if case .resubscribed(let refused) = event, !refused.isEmpty {
            let detail = "re-subscribing after the broker lost the session: " + refused.map { "\"\($0.filter)\": \($0.reasonCode)" }.joined(separator: ", ")
            removeFilters(
                Set(refused.map(\.filter)),
                endingWith: MQTTError(.subscriptionRefused, operation: .subscribe, reasonCode: refused[0].reasonCode, detail: detail)
            )
        }
        toDelegate(.connection(event))
    }

    /// The promise the next `.connected` completes (shared by every waiter).
    func nextConnection() -> Promise<Void> {
        state.withLock { state in
            if let promise = state.nextConnection { return promise }
            let promise = Promise<Void>()
            state.nextConnection = promise
            return promise
        }
    }

    private func sessionDidEnd(error: MQTTError?, keepsSubscriptions: Bool) {
        let waiting: Promise<Void>? = state.withLock { state in
            defer { state.nextConnection = nil }
            return state.nextConnection
        }
        waiting?.fail(error ?? MQTTError(.notConnected, operation: .connect, detail: "the session ended before a connection was made"))
        // The broker keeps a persistent session's subscriptions (and queues their messages) across
        // a clean disconnect, so their sequences stay open for the next connect().
        if keepsSubscriptions { return }
        let listeners = state.withLock { state in
            defer { state.listeners.removeAll() }
            return Array(state.listeners.values)
        }
        for listener in listeners {
            listener.buffer.finish(throwing: error)
        }
    }

    func wantsLog(_ level: MQTTLogLevel) -> Bool {
        delegateFlag.load(ordering: .relaxed) || telemetry.logs(level)
    }

    var tracksPendingPublishes: Bool { telemetry.metrics != nil }
}
