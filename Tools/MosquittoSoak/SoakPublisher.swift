import Mosquitto

// MARK: - SoakTopics

/// The topics of one soak run: `mqtt-soak/RUN/qos0`, `.../qos1`, `.../qos2`, and the filter
/// `mqtt-soak/RUN/#` that covers them. Payloads are the message's sequence number in decimal.
struct SoakTopics {
    /// The common prefix, unique per run.
    let base: String

    /// Creates the topics for a run identified by `runID`.
    init(runID: String) { base = "mqtt-soak/\(runID)" }

    /// The subscriber's filter.
    var filter: String { "\(base)/#" }

    /// The topic messages of `qos` are published to.
    func topic(for qos: MQTTQoS) -> String { "\(base)/qos\(qos.rawValue)" }

    /// The QoS a message was published with, read from its topic; `nil` for a foreign topic.
    func qos(ofTopic topic: String) -> MQTTQoS? {
        MQTTQoS.allCases.first { self.topic(for: $0) == topic }
    }

    /// The payload of message `sequence`.
    static func payload(sequence: Int) -> [UInt8] { Array(String(sequence).utf8) }

    /// The sequence number in a payload, or `nil` when it is not one.
    static func sequence(inPayload payload: [UInt8]) -> Int? {
        String(validating: payload, as: UTF8.self).flatMap { Int($0) }
    }
}

// MARK: - SoakPublisher

/// Publishes numbered messages at one QoS, at a steady rate, through a reconnecting client.
///
/// A publish the library refuses (`notConnected` for QoS 0 while the broker is down; `queueFull`
/// when ``MQTTConfiguration/maxPendingPublishes`` QoS 1/2 messages await acknowledgement) is
/// recorded as not sent and followed by a short back-off; it never ends the run.
struct SoakPublisher {
    /// The publishing client (connected, reconnecting on its own).
    let client: MQTTClient
    /// The QoS of every message.
    let qos: MQTTQoS
    /// Where the messages go.
    let topic: String
    /// The time between two publishes.
    let interval: Duration
    /// Where publishes and acknowledgements are recorded.
    let ledger: DeliveryLedger

    /// How long to pause after a refused publish.
    static let backOff: Duration = .milliseconds(100)

    /// Publishes until `deadline`.
    /// - Parameter deadline: When to stop publishing.
    /// - Returns: The QoS 1/2 publishes still awaiting acknowledgement (empty for QoS 0).
    func run(until deadline: ContinuousClock.Instant) async -> [MQTTPendingPublish] {
        let clock = ContinuousClock()
        var pending: [MQTTPendingPublish] = []
        var sequence = 0
        var next = clock.now
        while clock.now < deadline, !Task.isCancelled {
            do {
                let publish = try client.beginPublish(to: topic, payload: SoakTopics.payload(sequence: sequence), qos: qos)
                ledger.recordPublish(qos: qos, sequence: sequence, accepted: true, messageID: publish.messageID)
                if qos != .atMostOnce { pending.append(publish) }
            } catch {
                ledger.recordPublish(qos: qos, sequence: sequence, accepted: false)
                next = max(next, clock.now + Self.backOff)
            }
            sequence += 1
            if pending.count >= 256 { pending = await settleCompleted(pending) }
            next = max(next + interval, clock.now)
            try? await Task.sleep(until: min(next, deadline), clock: clock)
        }
        return pending
    }

    /// Records the acknowledgements that have arrived and returns the publishes still waiting.
    private func settleCompleted(_ pending: [MQTTPendingPublish]) async -> [MQTTPendingPublish] {
        var waiting: [MQTTPendingPublish] = []
        for publish in pending {
            if publish.isComplete {
                await awaitAcknowledgement(publish, timeout: .seconds(1))
            } else {
                waiting.append(publish)
            }
        }
        return waiting
    }

    /// Waits for every acknowledgement in `pending`, sharing one deadline, and records each.
    /// - Parameters:
    ///   - pending: The publishes returned by ``run(until:)``.
    ///   - deadline: When to stop waiting; later acknowledgements count as failures.
    func awaitAcknowledgements(_ pending: [MQTTPendingPublish], deadline: ContinuousClock.Instant) async {
        for publish in pending {
            let remaining = max(ContinuousClock.now.duration(to: deadline), .milliseconds(1))
            await awaitAcknowledgement(publish, timeout: remaining)
        }
    }

    /// Waits for one acknowledgement and records the outcome.
    private func awaitAcknowledgement(_ publish: MQTTPendingPublish, timeout: Duration) async {
        do {
            try await publish.acknowledgement(timeout: timeout)
            ledger.recordAcknowledgement(qos: qos, succeeded: true)
        } catch {
            ledger.recordAcknowledgement(qos: qos, succeeded: false)
        }
    }
}
