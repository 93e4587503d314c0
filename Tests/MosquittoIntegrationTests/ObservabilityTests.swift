import Logging
import MetricsTestKit
import CoreMetrics
import Mosquitto
import MosquittoTesting
import ServiceLifecycle
import Synchronization
import Testing

// MARK: - A capturing log handler

/// Keeps every record logged through it, for assertions.
final class LogCapture: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let storage = Mutex<[Record]>([])

    var records: [Record] { storage.withLock { $0 } }

    /// A logger writing into this capture, at `level`.
    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ record: Record) { storage.withLock { $0.append(record) } }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            all.merge(event.metadata ?? [:]) { $1 }
            capture.append(Record(level: event.level, message: event.message.description, metadata: all))
        }
    }
}

// MARK: - Metrics, bootstrapped once per process

enum SharedTestMetrics {
    /// The process's metrics backend: bootstrapped on first use. Clients created earlier (by
    /// other tests) record nothing; each test tells its own client apart by a dimension.
    static let factory: TestMetrics = {
        let factory = TestMetrics()
        MetricsSystem.bootstrap(factory)
        return factory
    }()
}

@Suite("Logging, metrics and service lifecycle", .timeLimit(.minutes(1)))
struct ObservabilityTests {
    @Test("the logger gets libmosquitto's packet traces and connection changes with metadata, and never the password")
    func logging() async throws {
        let password = "obs-pw-\(UInt32.random(in: 0...UInt32.max))"
        try await withMosquittoBroker(.password(users: ["obs": password])) { broker in
            let capture = LogCapture()
            let client = try makeClient(broker) {
                $0.credentials = MQTTCredentials(username: "obs", password: password)
                $0.logger = capture.logger()
            }
            try await client.connect()
            try await client.publish(to: uniqueTopic(), payload: "logged", qos: .atLeastOnce)
            try await client.disconnect()
            let wrong = try makeClient(broker) {
                $0.credentials = MQTTCredentials(username: "obs", password: password + "x")
                $0.logger = capture.logger()
            }
            _ = await thrownError { try await wrong.connect() }

            let records = capture.records
            let connected = try #require(records.first { $0.message == "MQTT connected" })
            #expect(connected.level == .info)
            #expect(connected.metadata["mqtt.client_id"] == .string(client.clientID))
            #expect(connected.metadata["mqtt.host"] == .string(broker.host))
            #expect(records.contains { $0.level == .trace && $0.message.contains("sending CONNECT") })
            #expect(records.contains { $0.level == .trace && $0.message.contains("received PUBACK") })
            #expect(records.contains { $0.message == "MQTT disconnected" && $0.level == .info })
            let everything = records.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
            #expect(!everything.contains(password), "a log record contains the password")
        }
    }

    @Test("a logger at info gets connection changes but no packet traces")
    func loggingLevel() async throws {
        try await withMosquittoBroker { broker in
            let capture = LogCapture()
            let client = try makeClient(broker) { $0.logger = capture.logger(level: .info) }
            try await client.connect()
            try await client.publish(to: uniqueTopic(), payload: "x", qos: .atLeastOnce)
            try await client.disconnect()
            #expect(capture.records.contains { $0.message == "MQTT connected" })
            #expect(!capture.records.contains { $0.level < .info })
        }
    }

    @Test("metrics count messages and bytes per QoS, in-flight publishes, reconnects and connect time")
    func metrics() async throws {
        let metrics = SharedTestMetrics.factory
        let tag = [("test", "metrics-\(UInt32.random(in: 0...UInt32.max))")]
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker) {
                $0.metricsDimensions = tag
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(50), maximumDelay: .milliseconds(100))
            }
            let events = client.connectionEvents
            try await client.connect()
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            for index in 0..<3 {
                try await client.publish(to: topic, payload: "msg-\(index)", qos: .atLeastOnce)
            }
            try await client.publish(to: topic, payload: "q0", qos: .atMostOnce)
            _ = try await collect(4, from: subscription)

            #expect(try metrics.expectCounter("mqtt.messages.sent", tag + [("qos", "1")]).totalValue == 3)
            #expect(try metrics.expectCounter("mqtt.bytes.sent", tag + [("qos", "1")]).totalValue == 15)
            #expect(try metrics.expectCounter("mqtt.messages.sent", tag + [("qos", "0")]).totalValue == 1)
            #expect(try metrics.expectCounter("mqtt.messages.received", tag + [("qos", "1")]).totalValue == 3)
            #expect(try metrics.expectCounter("mqtt.bytes.received", tag + [("qos", "0")]).totalValue == 2)
            #expect(try metrics.expectGauge("mqtt.publishes.in_flight", tag).lastValue == 0)
            #expect(try metrics.expectGauge("mqtt.publishes.in_flight", tag).values.contains { $0 >= 1 })
            #expect(try metrics.expectTimer("mqtt.connect.duration", tag).values.count == 1)

            broker.kill()
            try await broker.restart()
            await waitForEvents(2, on: events)
            #expect(try metrics.expectCounter("mqtt.reconnects", tag).totalValue >= 1)
            #expect(try metrics.expectTimer("mqtt.connect.duration", tag).values.count == 2)
            try await client.disconnect()
        }
    }

    @Test("in a ServiceGroup the client connects, and a graceful shutdown drains QoS 1 publishes and disconnects cleanly (no will)")
    func serviceGroup() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let willTopic = uniqueTopic("will")
            let observer = try await connectedClient(broker)
            let received = MessageCollector(try await observer.subscribe(to: topic, qos: .atLeastOnce))
            let wills = MessageCollector(try await observer.subscribe(to: willTopic, qos: .atLeastOnce))

            let will = MQTTWill(topic: willTopic, payload: Array("gone".utf8), qos: .atLeastOnce)
            try await expectWillArrives(will, broker: broker, on: wills)

            let capture = LogCapture()
            let client = try makeClient(broker) {
                $0.will = will
                $0.logger = capture.logger(level: .info)
            }
            let events = client.connectionEvents
            let group = ServiceGroup(
                configuration: .init(services: [MQTTClientService(client: client)], logger: capture.logger(level: .info))
            )
            let running = Task { try await group.run() }
            await waitForEvents(on: events)
            let count = 500
            let pending = try (0..<count).map { try client.beginPublish(to: topic, payload: Array("\($0)".utf8), qos: .atLeastOnce) }
            await group.triggerGracefulShutdown()
            try await running.value

            #expect(!client.isConnected)
            #expect(client.pendingPublishCount == 0)
            for publish in pending { _ = try await publish.acknowledgement(timeout: .seconds(1)) }
            #expect(try await received.waitFor(count).count == count)
            #expect(try await wills.arrivals(within: .milliseconds(500)).isEmpty, "a clean DISCONNECT discards the will")
            #expect(capture.records.contains { $0.message == "MQTT disconnected" })
        }
    }

    @Test("the service's DISCONNECT can carry a reason code and properties: disconnect-with-will makes the broker publish the will on shutdown")
    func serviceDisconnectReason() async throws {
        try await withMosquittoBroker { broker in
            let willTopic = uniqueTopic("will")
            let observer = try await connectedClient(broker)
            let wills = MessageCollector(try await observer.subscribe(to: willTopic, qos: .atLeastOnce))
            let client = try makeClient(broker) {
                $0.protocolVersion = .v5
                $0.will = MQTTWill(topic: willTopic, payload: Array("offline".utf8), qos: .atLeastOnce)
            }
            var properties = MQTTProperties()
            properties.reasonString = "deploy"
            let service = MQTTClientService(client: client, disconnectReasonCode: .disconnectWithWillMessage, disconnectProperties: properties)
            let events = client.connectionEvents
            let group = ServiceGroup(configuration: .init(services: [service], logger: Logger(label: "test")))
            let running = Task { try await group.run() }
            await waitForEvents(on: events)
            await group.triggerGracefulShutdown()
            try await running.value
            #expect(!client.isConnected)
            #expect(try await wills.waitFor(1).map(\.payloadString) == ["offline"])
        }
    }

    @Test("cancelling the service's task also drains and disconnects cleanly")
    func serviceCancellation() async throws {
        try await withMosquittoBroker { broker in
            let willTopic = uniqueTopic("will")
            let observer = try await connectedClient(broker)
            let wills = MessageCollector(try await observer.subscribe(to: willTopic, qos: .atLeastOnce))
            let will = MQTTWill(topic: willTopic, payload: Array("gone".utf8), qos: .atLeastOnce)
            try await expectWillArrives(will, broker: broker, on: wills)
            let client = try makeClient(broker) { $0.will = will }
            let events = client.connectionEvents
            let running = Task { try await MQTTClientService(client: client).run() }
            await waitForEvents(on: events)
            running.cancel()
            try await running.value
            #expect(!client.isConnected)
            #expect(try await wills.arrivals(within: .milliseconds(500)).isEmpty)
        }
    }
}
