import Mosquitto
import MosquittoTesting

// MARK: - CycleRun

/// `mqtt-soak cycles`: one short-lived client after another against one local broker, each
/// going through connect, subscribe, a QoS 1 publish it receives itself, unsubscribe,
/// disconnect and release. The leak check runs it under LeakSanitizer: every allocation a cycle
/// makes must be freed once its client is released.
///
/// Even cycles speak MQTT 3.1.1; odd cycles speak MQTT 5 with properties on CONNECT, SUBSCRIBE,
/// PUBLISH, UNSUBSCRIBE and DISCONNECT, so that the property lists built for sending and the
/// properties copied out of received packets (CONNACK, SUBACK, PUBLISH, PUBACK) are covered too.
struct CycleRun {
    /// The run's settings.
    let options: CycleOptions

    /// The identifier that makes this run's client IDs and topics unique.
    let runID = String(UInt32.random(in: 0 ... .max), radix: 16)

    /// How long a cycle waits for its own message.
    static let receiveTimeout: Duration = .seconds(10)

    /// Runs the cycles.
    /// - Returns: The summary line.
    /// - Throws: `MosquittoTestingError` when the broker cannot be started; `MQTTError` or
    ///   ``SoakFailure`` when a cycle fails (the message names the cycle).
    func run() async throws -> String {
        let broker = try await MosquittoBroker.start()
        defer { broker.stop() }
        let clock = ContinuousClock()
        let started = clock.now
        for index in 0 ..< options.count {
            do {
                try await runCycle(index, broker: broker)
            } catch {
                throw SoakFailure("cycle \(index + 1) of \(options.count) failed: \(error)")
            }
        }
        let elapsed = started.duration(to: clock.now)
        let perCycle = elapsed / options.count
        let perCycleMilliseconds = perCycle.components.seconds * 1000 + perCycle.components.attoseconds / 1_000_000_000_000_000
        var summary = "cycles: \(options.count) of \(options.count) completed in \(elapsed.secondsText) s (\(perCycleMilliseconds) ms each), \(options.count) messages received"
        if options.leaksOnPurpose { summary += "; \(options.count) clients leaked on purpose (--leak-on-purpose)" }
        return summary
    }

    /// One cycle; the client is released when this returns (unless leaking on purpose).
    private func runCycle(_ index: Int, broker: MosquittoBroker) async throws {
        let usesMQTT5 = index % 2 == 1
        var configuration = MQTTConfiguration(host: broker.host, port: broker.port, clientID: "mqtt-soak-cycle-\(runID)-\(index)")
        if usesMQTT5 {
            configuration.protocolVersion = .v5
            configuration.connectProperties = Self.userProperties(index)
            configuration.connectProperties.receiveMaximum = 100
        }
        let client = try MQTTClient(configuration: configuration)
        if options.leaksOnPurpose {
            // The deliberate leak: one extra retain that is never released, so the client, its
            // bridge and its libmosquitto handle are never freed.
            _ = Unmanaged.passRetained(client)
        }
        let properties = usesMQTT5 ? Self.userProperties(index) : MQTTProperties()
        var publishProperties = properties
        if usesMQTT5 {
            publishProperties.contentType = "text/plain"
            publishProperties.correlationData = SoakTopics.payload(sequence: index)
        }

        try await client.connect()
        let topic = "mqtt-soak/\(runID)/cycle/\(index)"
        let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce, properties: properties)
        let payload = SoakTopics.payload(sequence: index)
        try await client.publish(to: topic, payload: payload, qos: .atLeastOnce, properties: publishProperties)
        let message = try await Self.firstMessage(of: subscription, within: Self.receiveTimeout)
        guard message.payload == payload else { throw SoakFailure("received a different payload on \(topic)") }
        if usesMQTT5, message.properties.contentType != "text/plain" || message.properties.userProperties != properties.userProperties {
            throw SoakFailure("the MQTT 5 properties of the message on \(topic) did not survive the round trip")
        }
        try await client.unsubscribe(from: topic, properties: properties)
        try await client.disconnect(properties: properties)
    }

    /// One user property naming the cycle, for the MQTT 5 cycles' packets.
    private static func userProperties(_ index: Int) -> MQTTProperties {
        var properties = MQTTProperties()
        properties.userProperties = [MQTTUserProperty("mqtt-soak-cycle", "\(index)")]
        return properties
    }

    /// The first message of `subscription`.
    /// - Throws: ``SoakFailure`` when none arrives within `timeout` or the sequence ends;
    ///   the sequence's error when it fails.
    static func firstMessage(of subscription: MQTTSubscription, within timeout: Duration) async throws -> MQTTMessage {
        try await withThrowingTaskGroup(of: MQTTMessage?.self) { group in
            group.addTask {
                var iterator = subscription.makeAsyncIterator()
                guard let message = try await iterator.next() else { throw SoakFailure("the subscription ended without a message") }
                return message
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let message = first else {
                throw SoakFailure("no message within \(timeout)")
            }
            return message
        }
    }
}

// MARK: - SoakFailure

/// A failure of the tool itself (not of a library call), with a message for the user.
struct SoakFailure: Error, CustomStringConvertible {
    /// What went wrong.
    let description: String

    /// Creates a failure described by `description`.
    init(_ description: String) { self.description = description }
}
