import Mosquitto
import MosquittoTesting

// MARK: - SoakClients

/// The clients of a soak run and the tasks that watch them: one subscriber and one publisher
/// per QoS, each with a ``ConnectionTally``.
///
/// The subscriber (`cleanSession` false, fixed client ID, subscribed to the run's filter at
/// QoS 2) and the QoS 1 and QoS 2 publishers keep persistent sessions, so the broker remembers
/// their in-flight QoS 1/2 state across restarts. (A clean-session QoS 2 publisher can lose a
/// message for real: if the broker restarts between its PUBREC and the PUBREL, the new broker
/// does not know the message, answers the PUBREL with PUBCOMP and never forwards it.) The QoS 0
/// publisher uses a clean session. Every client reconnects on its own after 100 ms to 1 s.
struct SoakClients {
    /// The subscriber.
    let subscriber: MQTTClient
    /// The task recording the subscriber's messages; its value is the error that ended them early.
    let consumer: Task<(any Error)?, Never>
    /// The subscriber's connection counts.
    let subscriberTally: ConnectionTally
    /// One publisher per QoS, in order 0, 1, 2.
    let publishers: [SoakPublisher]
    /// The publishers' connection counts, in QoS order.
    let publisherTallies: [ConnectionTally]
    /// The tasks counting connection events (cancelled at shutdown).
    let watchers: [Task<Void, Never>]

    /// Connects the subscriber, subscribes it, starts recording its messages, then connects the publishers.
    /// - Parameters:
    ///   - broker: The run's broker.
    ///   - runID: Makes the client IDs unique.
    ///   - topics: The run's topics.
    ///   - messagesPerSecond: Each publisher's rate.
    ///   - ledger: Where publishes and deliveries are recorded.
    /// - Throws: `MQTTError` when a client cannot connect or the subscription fails.
    static func start(
        broker: MosquittoBroker, runID: String, topics: SoakTopics, messagesPerSecond: Int, ledger: DeliveryLedger
    ) async throws -> SoakClients {
        let subscriber = try MQTTClient(configuration: configuration(broker, clientID: "mqtt-soak-\(runID)-subscriber", persistent: true))
        let subscriberTally = ConnectionTally()
        // Each event sequence is made before connect() so that the first connection is counted.
        let subscriberEvents = subscriber.connectionEvents
        var watchers = [Task { await subscriberTally.observe(subscriberEvents) }]
        try await subscriber.connect()
        let subscription = try await subscriber.subscribe(to: topics.filter, qos: .exactlyOnce)
        let consumer = Task { await SoakSubscriber.consume(subscription, topics: topics, ledger: ledger) }

        var publishers: [SoakPublisher] = []
        var publisherTallies: [ConnectionTally] = []
        for qos in MQTTQoS.allCases {
            let client = try MQTTClient(
                configuration: configuration(broker, clientID: "mqtt-soak-\(runID)-publisher-qos\(qos.rawValue)", persistent: qos != .atMostOnce)
            )
            let tally = ConnectionTally()
            let events = client.connectionEvents
            watchers.append(Task { await tally.observe(events) })
            try await client.connect()
            publisherTallies.append(tally)
            publishers.append(
                SoakPublisher(client: client, qos: qos, topic: topics.topic(for: qos), interval: .seconds(1) / messagesPerSecond, ledger: ledger)
            )
        }
        return SoakClients(
            subscriber: subscriber, consumer: consumer, subscriberTally: subscriberTally,
            publishers: publishers, publisherTallies: publisherTallies, watchers: watchers
        )
    }

    /// Disconnects the publishers, stops recording messages, disconnects the subscriber and
    /// stops the watchers.
    /// - Returns: What went wrong: the subscriber's sequence ending early with an error.
    func shutDown() async -> [String] {
        var problems: [String] = []
        for publisher in publishers { try? await publisher.client.disconnect(timeout: .seconds(5)) }
        consumer.cancel()
        if let error = await consumer.value {
            problems.append("the subscriber's message sequence ended early: \(error)")
        }
        try? await subscriber.disconnect(timeout: .seconds(5))
        watchers.forEach { $0.cancel() }
        return problems
    }

    /// A client of the run: fixed client ID, reconnecting after 100 ms to 1 s.
    /// - Parameters:
    ///   - broker: The broker to connect to.
    ///   - clientID: The client's ID.
    ///   - persistent: Whether the broker keeps the client's session across connections.
    private static func configuration(_ broker: MosquittoBroker, clientID: String, persistent: Bool) -> MQTTConfiguration {
        var configuration = MQTTConfiguration(host: broker.host, port: broker.port, clientID: clientID, cleanSession: !persistent)
        configuration.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .seconds(1))
        configuration.maxPendingPublishes = 2_000
        return configuration
    }
}
