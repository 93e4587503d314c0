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
    /// The libmosquitto side: the handle, the session and its driver.
    let bridge: MosquittoBridge
    /// Where received messages and events go: sequences, the delegate, telemetry.
    let router: EventRouter
    /// Request/response state (the response subscription and pending requests).
    let requests = RequestBroker()

    /// Creates a client. Nothing is sent until ``connect(timeout:)``.
    ///
    /// - Parameter configuration: Where and how to connect.
    /// - Throws: ``MQTTError`` with ``MQTTError/Code/invalidConfiguration`` for an invalid setting
    ///   (keepalive, client ID, will topic, unreadable TLS file, TLS and PSK together, ...);
    ///   ``MQTTError/Code/notSupported`` when the loaded libmosquitto is older than 2.0
    ///   (``MQTTClient/libraryVersion``).
    public init(configuration: MQTTConfiguration) throws(MQTTError) {
        var configuration = configuration
        try Self.validate(&configuration)
        self.configuration = configuration
        router = EventRouter(
            bufferSize: configuration.messageBufferSize,
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

    /// The client identifier sent to the broker; with
    /// ``MQTTConfiguration/brokerAssignsClientID``, the one an MQTT 5 broker assigned once
    /// connected (empty before, and under MQTT 3.1.1, where the broker does not say).
    public var clientID: String {
        configuration.clientID.isEmpty ? connectResult?.assignedClientIdentifier ?? "" : configuration.clientID
    }

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

    /// How many received messages arrived while no message sequence and no delegate could take
    /// them (for example a persistent session's queued messages, which arrive right after
    /// CONNACK, before the application has subscribed again). libmosquitto acknowledges a
    /// message before it reaches Swift, so these are never left to vanish: the latest
    /// ``MQTTConfiguration/messageBufferSize`` of them are held and handed, oldest first, to the
    /// first sequence made afterwards that matches them (``messages``, ``subscribe(to:qos:properties:timeout:)``)
    /// or to a delegate set afterwards; older ones are dropped once the hold is full. Each is
    /// counted here and in the `mqtt.messages.unrouted` metric, and logged (the first, the first
    /// drop, then every 1,000th). Create the sequences or set the delegate before
    /// ``connect(timeout:)`` to take them as they come.
    public var unroutedMessageCount: Int { router.unroutedMessageCount }

    /// A new sequence of connection changes: connecting, connected, disconnected, reconnecting,
    /// and resubscribed (the subscriptions restored after the broker lost the session).
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
    /// - Returns: The CONNACK: whether the broker had a session, and (MQTT 5) its properties and limits.
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
}
