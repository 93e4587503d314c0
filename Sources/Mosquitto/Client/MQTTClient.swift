// MARK: - MQTTClient

/// An MQTT client backed by libmosquitto.
///
/// ```swift
/// let client = try MQTTClient(configuration: .init(host: "localhost", clientID: "sensor-1"))
/// try await client.connect()
/// try await client.publish(to: "home/livingroom/sensor", payload: Array(json.utf8), qos: .atLeastOnce)
/// for try await message in try await client.subscribe(to: "home/+/sensor", qos: .atLeastOnce) {
///     print(message.topic, message.payloadString ?? "")
/// }
/// ```
///
/// All methods may be called from any task or thread. The connection is driven by the network
/// threads of an ``MQTTEventLoopGroup`` (by default ``MQTTEventLoopGroup/shared``), or by a thread
/// of the client's own; callbacks from libmosquitto never run user code there. Dropping the last
/// reference disconnects cleanly (so no will is published) and frees everything; pending
/// operations then fail with ``MQTTError/Code/clientClosed``.
///
/// Note: creating the first client makes libmosquitto set `SIGPIPE` to ignored for the whole
/// process (`mosquitto_new` does this so that a closed socket cannot kill the process).
///
/// QoS 1 and 2: libmosquitto acknowledges a received message to the broker before the message
/// is handed to Swift; there is no acknowledgement after processing.
public final class MQTTClient: Sendable {
    /// The configuration the client was created with (with the generated client ID filled in).
    public let configuration: MQTTConfiguration
    private let bridge: MosquittoBridge
    private let router: EventRouter
    /// Request/response state (the response subscription and pending requests).
    let requests = RequestBroker()

    /// Creates a client. Nothing is sent until ``connect(timeout:)``.
    ///
    /// - Parameter configuration: Where and how to connect.
    /// - Throws: ``MQTTError`` with ``MQTTError/Code/invalidConfiguration`` for an invalid setting
    ///   (keepalive, client ID, will topic, unreadable TLS file, TLS and PSK together, ...).
    public init(configuration: MQTTConfiguration) throws(MQTTError) {
        var configuration = configuration
        try Self.validate(&configuration)
        self.configuration = configuration
        router = EventRouter(
            bufferSize: configuration.messageBufferSize,
            keepsSequencesAcrossDisconnect: configuration.sessionOutlivesConnection,
            telemetry: ClientTelemetry(configuration: configuration)
        )
        bridge = try MosquittoBridge(configuration: configuration, clientID: configuration.clientID, sink: router)
        router.attach(client: self)
    }

    deinit {
        bridge.close()
        router.close()
    }

    // MARK: State

    /// The client identifier sent to the broker.
    public var clientID: String { configuration.clientID }

    /// Whether the broker has accepted the current connection.
    public var isConnected: Bool { bridge.isConnected }

    /// The CONNACK of the current (or last) connection: session present and, on MQTT 5, the
    /// server's capabilities (receive maximum, maximum QoS, retain available, maximum packet
    /// size, assigned client ID, server keepalive, topic alias maximum, ...). `nil` before the
    /// first connection.
    public var connectResult: MQTTConnectResult? { bridge.connectResult }

    /// The event-loop thread that drives this client, as an executor for tasks; `nil` when the
    /// client has a network thread of its own (``MQTTConfiguration/eventLoopGroup`` `nil`).
    ///
    /// A task that prefers it runs on the thread that reads and writes the client's socket, as
    /// code on a SwiftNIO event loop does: a received message, an acknowledgement or a response
    /// resumes it without waking another thread, and what it publishes is written from that
    /// thread. The benchmark measures a round trip at about half the default's cost this way.
    ///
    /// ```swift
    /// let consumer = Task(executorPreference: client.taskExecutor) {
    ///     for try await message in subscription {
    ///         handle(message)  // short and non-blocking: the loop drives other clients too
    ///     }
    /// }
    /// ```
    ///
    /// Such code must not block or compute for long: while it runs, the loop reads and writes
    /// for none of its clients (keepalive and the dead-link watchdog included). Awaiting is
    /// fine. Tasks can keep using the executor after the group is released: once its thread has
    /// ended, their jobs run on the global concurrent executor.
    public var taskExecutor: (any TaskExecutor)? { bridge.taskExecutor }

    /// The delegate for callback-style events, held weakly. See ``MQTTClientDelegate``.
    public var delegate: (any MQTTClientDelegate)? {
        get { router.delegate }
        set { router.delegate = newValue }
    }

    /// A new sequence of every message this client receives, whatever subscription it matches.
    /// Each access creates an independent sequence with its own buffer.
    public var messages: MQTTMessageSequence {
        router.makeMessageSequence(filters: nil).sequence
    }

    /// How many received messages no message sequence and no delegate took (for example a
    /// persistent session's queued messages, which arrive right after CONNACK, before any sequence
    /// exists). libmosquitto acknowledges a message before it reaches Swift, so these were
    /// acknowledged and dropped; each is also counted in the `mqtt.messages.unrouted` metric and
    /// logged (the first, then every 1,000th). Create `messages` or the subscription's sequence,
    /// or set the delegate, before ``connect(timeout:)`` to receive them.
    public var unroutedMessageCount: Int { router.unroutedMessageCount }

    /// A new sequence of connection changes: connecting, connected, disconnected, reconnecting.
    ///
    /// It starts with the current state (the last event, if there was one), so a sequence made
    /// after the client connected still sees `.connected` first; every later change follows once.
    public var connectionEvents: MQTTConnectionEvents {
        router.makeConnectionEvents()
    }

    // MARK: Connecting

    /// Waits until the broker has accepted a connection: returns at once when connected, else
    /// when the connect or reconnect under way succeeds (for a task that must not publish before,
    /// such as a service started next to ``MQTTClientService``).
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as the session runs.
    /// - Throws: ``MQTTError/Code/notConnected`` when no session runs (``connect(timeout:)`` was
    ///   not called, or the client disconnected), the error that ended the session if it ends
    ///   first, ``MQTTError/Code/timeout`` or ``MQTTError/Code/cancelled``.
    public func waitUntilConnected(timeout: Duration? = nil) async throws(MQTTError) {
        // Taken before the checks: a `.connected` between them completes it.
        let connection = router.nextConnection()
        if bridge.isConnected { return }
        guard bridge.isSessionRunning else {
            throw MQTTError(.notConnected, operation: .connect, detail: "no connection is being made: call connect() first")
        }
        try await connection.wait(timeout: timeout, operation: .connect)
    }

    /// Connects and waits for the broker's CONNACK.
    ///
    /// DNS, TCP and the TLS handshake run on a network thread (the event-loop group's connect
    /// threads, or the client's own), never on a task's.
    ///
    /// - Parameter timeout: How long to wait; `nil` uses ``MQTTConfiguration/connectTimeout``.
    ///   On timeout or cancellation the attempt is abandoned.
    /// - Returns: The CONNACK's session-present flag.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/badUsernameOrPassword``, ``MQTTError/Code/notAuthorized``,
    ///   ``MQTTError/Code/connectionRefused`` (with the CONNACK code), ``MQTTError/Code/connectionFailed``
    ///   (with `errno`), ``MQTTError/Code/hostLookupFailed``, ``MQTTError/Code/tlsFailure`` (with
    ///   OpenSSL's reason), ``MQTTError/Code/timeout``, ``MQTTError/Code/cancelled``,
    ///   ``MQTTError/Code/alreadyConnected``.
    @discardableResult
    public func connect(timeout: Duration? = nil) async throws(MQTTError) -> MQTTConnectResult {
        try await bridge.connect(timeout: timeout ?? configuration.connectTimeout)
    }

    /// Sends DISCONNECT and waits until the connection is closed; abandons a connection attempt
    /// in progress. Does nothing when not connected. The broker discards the will, unless an
    /// MQTT 5 client sends ``MQTTReasonCode/disconnectWithWillMessage``.
    ///
    /// Everything published before this call is written first (QoS 0 too), and for up to half
    /// of `timeout` the acknowledgements of QoS 1/2 publishes in flight are awaited; only then is
    /// DISCONNECT sent. If the queue and DISCONNECT cannot be written within `timeout`, the
    /// connection is closed without DISCONNECT (the broker publishes the will) and this throws
    /// ``MQTTError/Code/timeout``.
    ///
    /// - Parameters:
    ///   - reasonCode: The MQTT 5 reason code to send. Defaults to normal disconnection.
    ///   - properties: MQTT 5 DISCONNECT properties (session expiry interval, reason string, user
    ///     properties).
    ///   - timeout: How long to wait; `nil` uses ``MQTTConfiguration/operationTimeout``.
    /// - Throws: ``MQTTError/Code/timeout``, ``MQTTError/Code/cancelled``, ``MQTTError/Code/propertyNotAllowed``.
    public func disconnect(
        reasonCode: MQTTReasonCode = .success,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) {
        try await bridge.disconnect(timeout: timeout ?? configuration.operationTimeout, reasonCode: reasonCode, properties: properties)
    }

    // MARK: Publishing

    /// Publishes a message and, for QoS 1 and 2, waits for the broker's acknowledgement
    /// (PUBACK / PUBCOMP). QoS 0 returns once libmosquitto has queued the message.
    ///
    /// - Parameters:
    ///   - topic: The topic; validated before anything is sent.
    ///   - payload: The payload bytes (up to 268,435,455): any collection of bytes, such as `[UInt8]`,
    ///     `Data` or a slice; contiguous ones are passed to libmosquitto without a copy of ours.
    ///   - qos: The QoS. Defaults to QoS 0.
    ///   - retain: Whether the broker keeps the message for future subscribers. An empty retained
    ///     payload clears the topic's retained message.
    ///   - properties: MQTT 5 PUBLISH properties (content type, response topic, correlation data,
    ///     message expiry, payload format, topic alias, user properties).
    ///   - timeout: How long to wait for the acknowledgement; `nil` uses
    ///     ``MQTTConfiguration/operationTimeout``. The message stays queued after a timeout.
    /// - Returns: The receipt with the message ID, reason code and acknowledgement properties.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/invalidTopic``, ``MQTTError/Code/payloadTooLarge``,
    ///   ``MQTTError/Code/notConnected``, ``MQTTError/Code/queueFull``, ``MQTTError/Code/publishRefused``,
    ///   ``MQTTError/Code/connectionLost``, ``MQTTError/Code/timeout``, ``MQTTError/Code/cancelled``,
    ///   ``MQTTError/Code/qosNotSupported``, ``MQTTError/Code/retainNotSupported``,
    ///   ``MQTTError/Code/propertyNotAllowed``.
    @discardableResult
    @inlinable
    public func publish(
        to topic: String,
        payload: some Collection<UInt8>,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTPublishReceipt {
        let pending = try beginPublish(to: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        return try await pending.acknowledgement(timeout: timeout)
    }

    /// Publishes a UTF-8 string payload; see ``publish(to:payload:qos:retain:properties:timeout:)``.
    @discardableResult
    public func publish(
        to topic: String,
        payload: String,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties(),
        timeout: Duration? = nil
    ) async throws(MQTTError) -> MQTTPublishReceipt {
        let pending = try beginPublish(to: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        return try await pending.acknowledgement(timeout: timeout)
    }

    /// Hands a message to libmosquitto without waiting for its acknowledgement.
    ///
    /// Use it to publish many messages without a round trip each, then await the returned
    /// values. QoS 1/2 messages are accepted while a connection or reconnection is in progress
    /// (libmosquitto sends them once connected), up to ``MQTTConfiguration/maxPendingPublishes``;
    /// QoS 0 messages are not queued: without a connection they fail with
    /// ``MQTTError/Code/notConnected`` (at most once means never late).
    ///
    /// - Parameters:
    ///   - topic: The topic; validated before anything is sent.
    ///   - payload: The payload bytes, any collection of them (`[UInt8]`, `Data`, a slice, ...);
    ///     libmosquitto copies them before this returns.
    ///   - qos: The QoS. Defaults to QoS 0.
    ///   - retain: Whether the broker retains the message.
    ///   - properties: MQTT 5 PUBLISH properties. With a ``MQTTProperties/topicAlias`` the topic
    ///     may be empty, to publish through an alias set up by an earlier publish.
    /// - Returns: A handle whose ``MQTTPendingPublish/acknowledgement(timeout:)`` awaits the ack.
    /// - Throws: ``MQTTError``: ``MQTTError/Code/invalidTopic``, ``MQTTError/Code/payloadTooLarge``,
    ///   ``MQTTError/Code/notConnected``, ``MQTTError/Code/queueFull``, ``MQTTError/Code/qosNotSupported``,
    ///   ``MQTTError/Code/retainNotSupported``, ``MQTTError/Code/propertyNotAllowed``.
    @inlinable  // specialized in the caller's module: no generic dispatch per message
    public func beginPublish(
        to topic: String,
        payload: some Collection<UInt8>,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties()
    ) throws(MQTTError) -> MQTTPendingPublish {
        // DESIGN: libmosquitto copies the payload into its packet buffer (the one copy a publish
        // needs: the packet outlives this call). Contiguous collections ([UInt8], ArraySlice,
        // Data, String.UTF8View of a native string, raw buffers) hand their storage to it
        // directly; anything else is gathered into an array first.
        let result = payload.withContiguousStorageIfAvailable { bytes in
            Result { () throws(MQTTError) in try beginPublish(to: topic, bytes: UnsafeRawBufferPointer(bytes), qos: qos, retain: retain, properties: properties) }
        } ?? Array(payload).withUnsafeBytes { bytes in
            Result { () throws(MQTTError) in try beginPublish(to: topic, bytes: bytes, qos: qos, retain: retain, properties: properties) }
        }
        return try result.get()
    }

    /// Hands a message with a UTF-8 string payload to libmosquitto without waiting for its
    /// acknowledgement, like the variant taking bytes. The string's bytes are passed without a
    /// copy of ours.
    public func beginPublish(
        to topic: String,
        payload: String,
        qos: MQTTQoS = .atMostOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties()
    ) throws(MQTTError) -> MQTTPendingPublish {
        var payload = payload
        let result = payload.withUTF8 { bytes in
            Result { () throws(MQTTError) in try beginPublish(to: topic, bytes: UnsafeRawBufferPointer(bytes), qos: qos, retain: retain, properties: properties) }
        }
        return try result.get()
    }

    /// The non-generic part of every publish: validation, then the bridge.
    @usableFromInline
    func beginPublish(
        to topic: String, bytes: UnsafeRawBufferPointer, qos: MQTTQoS, retain: Bool, properties: MQTTProperties
    ) throws(MQTTError) -> MQTTPendingPublish {
        if !(topic.isEmpty && properties.topicAlias != nil) {
            try MQTTTopic.validatePublishTopic(topic, operation: .publish)
        }
        try Self.validatePayloadSize(bytes.count)
        let pending = try bridge.publish(topic: topic, payload: bytes, qos: qos, retain: retain, properties: properties)
        router.telemetry.metrics?.sent(qos: qos, bytes: bytes.count)
        return pending
    }

    /// How many QoS 1/2 publishes await the broker's acknowledgement.
    public var pendingPublishCount: Int { bridge.pendingPublishCount }

    /// Waits until every QoS 1/2 publish handed to the client so far was acknowledged (or
    /// failed), at most `timeout`; used before a graceful shutdown.
    ///
    /// - Parameter timeout: The longest wait.
    /// - Returns: `true` if nothing is pending any more, `false` after the timeout or on
    ///   cancellation.
    @discardableResult
    public func flush(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while bridge.pendingPublishCount > 0 {
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(5))) != nil else {
                return bridge.pendingPublishCount == 0
            }
        }
        return true
    }

    /// The largest payload MQTT can carry: 268,435,455 bytes (less the topic and header).
    public static let maximumPayloadSize = 268_435_455

    static func validatePayloadSize(_ count: Int) throws(MQTTError) {
        guard count <= maximumPayloadSize else {
            throw MQTTError(.payloadTooLarge, operation: .publish, detail: "\(count) bytes, more than \(maximumPayloadSize)")
        }
    }

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
    /// call throws ``MQTTError/Code/subscriptionRefused`` naming the refused filters; the ones it
    /// granted stay subscribed at the broker (unsubscribe them if they are not wanted).
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
                throw MQTTError(
                    .subscriptionRefused, operation: .subscribe,
                    reasonCode: refused[0].reasonCode,
                    detail: refused.map { "\"\($0.filter)\": \($0.reasonCode)" }.joined(separator: ", ")
                        + (acknowledgementProperties.reasonString.map { " (\($0))" } ?? "")
                )
            }
            bridge.remember(filters, properties: properties)
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
            let promise = try bridge.subscribe(
                filters: group.indices.map { filters[$0].filter }, qos: group.qos, options: group.options, properties: properties
            )
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

    /// Unsubscribes from filters and finishes the subscriptions made for exactly those filters.
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
        router.finishListeners(subscribedTo: Set(filters))
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

// MARK: - Configuration checks

extension MQTTClient {
    /// Generates a client ID: `swift-mqtt-` and 12 random hex digits (23 bytes, valid for 3.1).
    static func generateClientID() -> String {
        let digits = (0..<12).map { _ in String(UInt8.random(in: 0..<16), radix: 16) }
        return "swift-mqtt-" + digits.joined()
    }

    static func validate(_ configuration: inout MQTTConfiguration) throws(MQTTError) {
        func invalid(_ detail: String) -> MQTTError {
            MQTTError(.invalidConfiguration, operation: .configure, detail: detail)
        }
        let keepAlive = configuration.keepAlive
        guard keepAlive == .zero || (keepAlive >= .seconds(5) && keepAlive <= .seconds(65_535)) else {
            throw invalid("keepalive must be 0 or 5...65535 seconds")
        }
        guard (0...65_535).contains(configuration.port) else { throw invalid("port \(configuration.port) is out of range") }
        guard !configuration.host.isEmpty else { throw invalid("empty host") }
        if configuration.clientID.isEmpty {
            guard configuration.cleanSession else {
                throw invalid("a persistent session (cleanSession false) needs a client ID")
            }
            configuration.clientID = generateClientID()
        }
        if configuration.clientID.utf8.contains(0) { throw invalid("client ID contains NUL") }
        if configuration.clientID.utf8.count > 65_535 { throw invalid("client ID longer than 65535 bytes") }
        if configuration.protocolVersion == .v3_1, configuration.clientID.utf8.count > 23 {
            throw invalid("MQTT 3.1 allows client IDs of 1 to 23 bytes")
        }
        if configuration.tls != nil, configuration.psk != nil { throw invalid("TLS certificates and TLS-PSK are mutually exclusive") }
        if configuration.protocolVersion != .v5, !configuration.connectProperties.isEmpty || !(configuration.will?.properties.isEmpty ?? true) {
            throw invalid("MQTT 5 properties need protocolVersion .v5")
        }
        // Packet identifiers are 16 bits: more pending publishes than IDs would reuse one.
        guard (1...65_535).contains(configuration.maxPendingPublishes) else { throw invalid("maxPendingPublishes must be 1...65535") }
        guard configuration.messageBufferSize >= 1 else { throw invalid("messageBufferSize must be at least 1") }
        guard configuration.maxInflightMessages >= 0 else { throw invalid("maxInflightMessages must not be negative") }
        if let will = configuration.will {
            do {
                try MQTTTopic.validatePublishTopic(will.topic)
            } catch {
                throw invalid("will topic: \(error.detail ?? "invalid")")
            }
            guard will.payload.count <= maximumPayloadSize else { throw invalid("will payload too large") }
        }
    }
}
