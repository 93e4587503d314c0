public import ServiceLifecycle

// MARK: - MQTTClientService

/// Runs an ``MQTTClient`` as a swift-service-lifecycle `Service`, e.g. in a `ServiceGroup`.
///
/// ```swift
/// let client = try MQTTClient(configuration: configuration)
/// let group = ServiceGroup(services: [MQTTClientService(client: client), ingest], logger: logger)
/// try await group.run()
/// ```
///
/// ``run()`` connects and stays until the group shuts down gracefully (or the task is
/// cancelled). Then it shuts down in order: it waits up to ``drainTimeout`` for every QoS 1/2
/// publish to be acknowledged, then sends DISCONNECT (a clean one, so the broker discards the
/// will, unless ``disconnectReasonCode`` is ``MQTTReasonCode/disconnectWithWillMessage``) and
/// waits for the connection to close. While the service runs, the client reconnects by its own
/// ``MQTTConfiguration/reconnect`` policy; other services use `client` directly.
///
/// Order in the group matters: a `ServiceGroup` shuts its services down in reverse order, so list
/// this service **before** the services that publish through `client`. Their last messages (an
/// "offline" status, a final reading) are then sent while the connection is still up, and this
/// service drains them before its DISCONNECT.
public struct MQTTClientService: Service {
    /// The client this service connects and disconnects.
    public let client: MQTTClient
    /// How long a graceful shutdown waits for outstanding QoS 1/2 acknowledgements.
    public var drainTimeout: Duration
    /// How long a graceful shutdown waits for the DISCONNECT to be written and the connection closed.
    public var disconnectTimeout: Duration
    /// The reason code of the shutdown's DISCONNECT (MQTT 5): ``MQTTReasonCode/disconnectWithWillMessage``
    /// makes the broker publish the will even though the shutdown is clean.
    public var disconnectReasonCode: MQTTReasonCode
    /// MQTT 5 properties of the shutdown's DISCONNECT (a reason string, user properties, a
    /// session expiry interval).
    public var disconnectProperties: MQTTProperties

    /// Creates the service.
    ///
    /// - Parameters:
    ///   - client: The client to run.
    ///   - drainTimeout: The bound on waiting for outstanding QoS 1/2 acknowledgements. Defaults to 10 s.
    ///   - disconnectTimeout: The bound on the clean disconnect. Defaults to 5 s.
    ///   - disconnectReasonCode: The DISCONNECT's reason code. Defaults to ``MQTTReasonCode/success``.
    ///   - disconnectProperties: The DISCONNECT's MQTT 5 properties. Defaults to none.
    public init(
        client: MQTTClient,
        drainTimeout: Duration = .seconds(10),
        disconnectTimeout: Duration = .seconds(5),
        disconnectReasonCode: MQTTReasonCode = .success,
        disconnectProperties: MQTTProperties = MQTTProperties()
    ) {
        self.client = client
        self.drainTimeout = drainTimeout
        self.disconnectTimeout = disconnectTimeout
        self.disconnectReasonCode = disconnectReasonCode
        self.disconnectProperties = disconnectProperties
    }

    /// Connects, runs until graceful shutdown or cancellation, then drains and disconnects.
    ///
    /// - Throws: The ``MQTTError`` of a failed first connect (the group then shuts down, as for
    ///   any failing service). The shutdown itself does not throw: what it could not do in time is
    ///   logged through ``MQTTConfiguration/logger``.
    public func run() async throws {
        try await client.connect()
        // Returns on graceful shutdown; throws CancellationError when the task is cancelled.
        try? await gracefulShutdown()
        // The shutdown must complete even when this task was cancelled: run it in a task of its
        // own, which does not inherit the cancellation, and wait for it.
        let client = client
        let drainTimeout = drainTimeout
        let disconnectTimeout = disconnectTimeout
        let reasonCode = disconnectReasonCode
        let properties = disconnectProperties
        let shutdown = Task {
            let drained = await client.flush(timeout: drainTimeout)
            let logger = client.configuration.logger
            if !drained {
                logger?.warning(
                    "MQTT shutdown: QoS 1/2 publishes still unacknowledged after the drain timeout",
                    metadata: ["mqtt.pending": .stringConvertible(client.pendingPublishCount)]
                )
            }
            do {
                try await client.disconnect(reasonCode: reasonCode, properties: properties, timeout: disconnectTimeout)
            } catch {
                logger?.warning("MQTT shutdown: disconnect failed", metadata: ["mqtt.error": "\(error)"])
            }
        }
        await shutdown.value
    }
}
