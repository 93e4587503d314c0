import Mosquitto
import Synchronization

// MARK: - ConnectionTally

/// Counts one client's connections and lost connections from its ``MQTTClient/connectionEvents``.
final class ConnectionTally: Sendable {
    /// The counts so far.
    struct Counts: Equatable {
        /// CONNACKs accepted: the first connection and every reconnection.
        var connections = 0
        /// Connections that ended with an error (lost, not requested).
        var losses = 0

        /// Successful reconnections: every connection after the first.
        var reconnections: Int { max(0, connections - 1) }
    }

    private let counts = Mutex(Counts())

    /// Creates a tally with zero counts.
    init() {}

    /// The counts so far.
    var current: Counts { counts.withLock { $0 } }

    /// Counts the events of `events` until the sequence ends or the task is cancelled.
    /// Make `events` before ``MQTTClient/connect(timeout:)`` so that the first connection is seen.
    func observe(_ events: MQTTConnectionEvents) async {
        for await event in events {
            switch event {
            case .connected: counts.withLock { $0.connections += 1 }
            case .disconnected(.some): counts.withLock { $0.losses += 1 }
            case .disconnected(nil), .connecting, .reconnecting, .resubscribed: break
            }
        }
    }
}

// MARK: - SoakSubscriber

/// Reads the subscriber's messages and records each delivery in the ledger.
enum SoakSubscriber {
    /// Records every message of `subscription` until it ends or the task is cancelled.
    /// - Parameters:
    ///   - subscription: The subscriber's sequence for the load's filter.
    ///   - topics: The run's topics, to tell the QoS of each message.
    ///   - ledger: Where deliveries are recorded.
    /// - Returns: The error that ended the sequence (buffer overflow, session ended), or `nil`
    ///   when it finished normally or the task was cancelled.
    static func consume(_ subscription: MQTTSubscription, topics: SoakTopics, ledger: DeliveryLedger) async -> (any Error)? {
        do {
            for try await message in subscription {
                if let qos = topics.qos(ofTopic: message.topic), let sequence = SoakTopics.sequence(inPayload: message.payload) {
                    ledger.recordDelivery(qos: qos, sequence: sequence, messageID: message.messageID)
                } else {
                    ledger.recordForeignMessage()
                }
            }
            return nil
        } catch {
            return Task.isCancelled ? nil : error
        }
    }
}
