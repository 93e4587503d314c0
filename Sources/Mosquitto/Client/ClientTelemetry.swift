import CoreMetrics
import Logging

// MARK: - ClientTelemetry

/// A client's logging (swift-log) and metrics (swift-metrics), fed by ``EventRouter``.
///
/// Both are off unless asked for: logging needs ``MQTTConfiguration/logger``; metrics need a
/// swift-metrics backend bootstrapped (`MetricsSystem.bootstrap`) before the client is created,
/// otherwise no metric object is even made. Nothing logged or recorded ever carries a secret:
/// metadata is the client ID, host and port; libmosquitto's own lines never contain passwords.
struct ClientTelemetry: Sendable {
    /// The logger with the client's metadata, or `nil` when logging is off.
    let logger: Logger?
    /// The metrics, or `nil` when no backend is bootstrapped.
    let metrics: ClientMetrics?

    /// - Parameter configuration: The client's configuration (client ID already generated).
    init(configuration: MQTTConfiguration) {
        if var logger = configuration.logger {
            logger[metadataKey: "mqtt.client_id"] = .string(configuration.clientID)
            logger[metadataKey: "mqtt.host"] = .string(configuration.host)
            logger[metadataKey: "mqtt.port"] = .stringConvertible(configuration.port)
            self.logger = logger
        } else {
            logger = nil
        }
        metrics = MetricsSystem.factory is NOOPMetricsHandler ? nil : ClientMetrics(dimensions: configuration.metricsDimensions)
    }

    /// Whether a libmosquitto line at `level` would be logged.
    func logs(_ level: MQTTLogLevel) -> Bool {
        guard let logger else { return false }
        return logger.logLevel <= level.loggerLevel
    }

    /// Logs a libmosquitto line.
    func log(_ level: MQTTLogLevel, _ message: String) {
        logger?.log(level: level.loggerLevel, "\(message)", metadata: ["mqtt.source": "libmosquitto"])
    }

    /// Logs a connection change at a level that fits it.
    func log(_ event: MQTTConnectionEvent) {
        guard let logger else { return }
        switch event {
        case .connecting:
            logger.debug("MQTT connecting", metadata: ["mqtt.libmosquitto": .stringConvertible(LibMosquitto.version)])
        case .connected(let sessionPresent):
            logger.info(
                "MQTT connected",
                metadata: ["mqtt.session_present": .stringConvertible(sessionPresent), "mqtt.libmosquitto": .stringConvertible(LibMosquitto.version)]
            )
        case .disconnected(nil):
            logger.info("MQTT disconnected")
        case .disconnected(let error?) where error.operation == .connect:
            logger.warning("MQTT connect failed", metadata: ["mqtt.error": .string(error.description)])
        case .disconnected(let error?):
            logger.warning("MQTT connection lost", metadata: ["mqtt.error": .string(error.description)])
        case .reconnecting(let attempt, let delay):
            logger.notice(
                "MQTT reconnecting",
                metadata: ["mqtt.attempt": .stringConvertible(attempt), "mqtt.delay": .stringConvertible(delay)]
            )
        case .resubscribed(let refused) where refused.isEmpty:
            logger.info("MQTT subscriptions restored after a session loss")
        case .resubscribed(let refused):
            logger.warning(
                "MQTT subscriptions not all restored after a session loss",
                metadata: ["mqtt.refused": .string(refused.map { "\($0.filter): \($0.reasonCode)" }.joined(separator: ", "))]
            )
        }
    }
}

// MARK: - ClientMetrics

/// The metrics of one client. Names follow swift-metrics' dotted style; every metric carries the
/// configured ``MQTTConfiguration/metricsDimensions`` and, where it applies, `qos`.
///
/// - `mqtt.messages.sent`, `mqtt.bytes.sent` (counters, by `qos`): messages handed to the broker.
/// - `mqtt.messages.received`, `mqtt.bytes.received` (counters, by `qos`).
/// - `mqtt.messages.unrouted` (counter, by `qos`): messages received (and acknowledged) while no
///   message sequence matched them and no delegate was set (held for a later sequence, up to
///   `messageBufferSize`; older ones dropped).
/// - `mqtt.reconnects` (counter): reconnection attempts.
/// - `mqtt.publishes.in_flight` (gauge): QoS 1/2 publishes awaiting acknowledgement.
/// - `mqtt.connect.duration` (timer): from the start of a connection attempt to its CONNACK.
final class ClientMetrics: Sendable {
    private let messagesSent: [Counter]
    private let bytesSent: [Counter]
    private let messagesReceived: [Counter]
    private let bytesReceived: [Counter]
    private let messagesUnrouted: [Counter]
    private let reconnects: Counter
    private let inFlight: Gauge
    private let connectDuration: Timer
    /// When the current connection attempt began (after any backoff delay), or `nil`.
    private let attemptStart = Locked<ContinuousClock.Instant?>(nil)

    /// Creates the metric objects with `dimensions` added to each.
    init(dimensions: [(String, String)]) {
        func byQoS(_ label: String) -> [Counter] {
            (0...2).map { Counter(label: label, dimensions: dimensions + [("qos", String($0))]) }
        }
        messagesSent = byQoS("mqtt.messages.sent")
        bytesSent = byQoS("mqtt.bytes.sent")
        messagesReceived = byQoS("mqtt.messages.received")
        bytesReceived = byQoS("mqtt.bytes.received")
        messagesUnrouted = byQoS("mqtt.messages.unrouted")
        reconnects = Counter(label: "mqtt.reconnects", dimensions: dimensions)
        inFlight = Gauge(label: "mqtt.publishes.in_flight", dimensions: dimensions)
        connectDuration = Timer(label: "mqtt.connect.duration", dimensions: dimensions, preferredDisplayUnit: .milliseconds)
    }

    /// A message was handed to libmosquitto.
    func sent(qos: MQTTQoS, bytes: Int) {
        messagesSent[qos.rawValue].increment()
        bytesSent[qos.rawValue].increment(by: bytes)
    }

    /// A message arrived.
    func received(qos: MQTTQoS, bytes: Int) {
        messagesReceived[qos.rawValue].increment()
        bytesReceived[qos.rawValue].increment(by: bytes)
    }

    /// A message arrived that no sequence and no delegate took.
    func unrouted(qos: MQTTQoS) {
        messagesUnrouted[qos.rawValue].increment()
    }

    /// The number of QoS 1/2 publishes awaiting acknowledgement changed.
    func inFlightChanged(to count: Int) {
        inFlight.record(count)
    }

    /// Times connection attempts and counts reconnections.
    func record(_ event: MQTTConnectionEvent) {
        let now = ContinuousClock.now
        switch event {
        case .connecting:
            attemptStart.withLock { $0 = now }
        case .reconnecting(_, let delay):
            reconnects.increment()
            attemptStart.withLock { $0 = now + delay }
        case .connected:
            let start = attemptStart.withLock { start in
                defer { start = nil }
                return start
            }
            if let start, now > start {
                let (seconds, attoseconds) = (now - start).components
                connectDuration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
            }
        case .disconnected, .resubscribed:
            break
        }
    }
}

// MARK: - Levels

extension MQTTLogLevel {
    /// The swift-log level: libmosquitto's packet traces are `trace`.
    var loggerLevel: Logger.Level {
        switch self {
        case .debug: .trace
        case .info: .info
        case .warning: .warning
        case .error: .error
        }
    }
}
