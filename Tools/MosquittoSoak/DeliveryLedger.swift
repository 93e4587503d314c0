import Mosquitto
import Synchronization

// MARK: - DeliveryLedger

/// Records, per QoS, which numbered messages were published and how often each was received.
///
/// Publishers number their messages 0, 1, 2, ... per QoS and record whether the library accepted
/// each one; the subscriber records every delivery. Both run on tasks of their own, so the
/// records live behind one `Mutex`.
final class DeliveryLedger: Sendable {
    private let records = Mutex<[QoSRecord]>(MQTTQoS.allCases.map { _ in QoSRecord() })

    /// Creates an empty ledger.
    init() {}

    // MARK: Recording

    /// Records the outcome of publishing message `sequence` at `qos`.
    /// - Parameters:
    ///   - qos: The QoS it was published with.
    ///   - sequence: Its number (0, 1, 2, ... per QoS).
    ///   - accepted: Whether `beginPublish` accepted it (sent or queued) rather than throwing.
    ///   - messageID: The packet identifier libmosquitto assigned (0 when refused or QoS 0).
    func recordPublish(qos: MQTTQoS, sequence: Int, accepted: Bool, messageID: UInt16 = 0) {
        records.withLock { $0[qos.rawValue].recordPublish(sequence: sequence, accepted: accepted, messageID: messageID) }
    }

    /// Records the outcome of waiting for a QoS 1/2 acknowledgement (PUBACK / PUBCOMP).
    /// - Parameters:
    ///   - qos: The QoS of the message.
    ///   - succeeded: Whether the acknowledgement arrived.
    func recordAcknowledgement(qos: MQTTQoS, succeeded: Bool) {
        records.withLock { records in
            if succeeded { records[qos.rawValue].acknowledged += 1 } else { records[qos.rawValue].acknowledgementFailures += 1 }
        }
    }

    /// Records one delivery of message `sequence` published at `qos`.
    /// - Parameters:
    ///   - qos: The QoS it was published with.
    ///   - sequence: Its number.
    ///   - messageID: The packet identifier the broker delivered it with.
    func recordDelivery(qos: MQTTQoS, sequence: Int, messageID: UInt16) {
        records.withLock { $0[qos.rawValue].recordDelivery(sequence: sequence, messageID: messageID) }
    }

    /// Records a message that does not belong to the load (unknown topic or unreadable payload);
    /// it is counted as unexpected under QoS 0.
    func recordForeignMessage() {
        records.withLock { $0[MQTTQoS.atMostOnce.rawValue].unexpected += 1 }
    }

    // MARK: Reading

    /// Whether every accepted message of each of `levels` has been received at least once.
    func allDelivered(_ levels: [MQTTQoS]) -> Bool {
        records.withLock { records in levels.allSatisfy { records[$0.rawValue].missingCount == 0 } }
    }

    /// The totals for one QoS.
    func tally(for qos: MQTTQoS) -> QoSTally {
        records.withLock { $0[qos.rawValue].tally(qos: qos) }
    }

    /// Up to `limit` lost or duplicated messages of `qos`, for diagnosis: e.g.
    /// `lost 1234 (published as mid 1235)`, `2 x 890 (published as mid 891, delivered as 1781, 1781)`.
    /// The packet identifiers help to find the messages in the broker log.
    func anomalies(for qos: MQTTQoS, limit: Int = 10) -> [String] {
        records.withLock { $0[qos.rawValue].anomalies(limit: limit) }
    }
}

// MARK: - QoSTally

/// The totals for one QoS at the end of a soak.
struct QoSTally: Equatable {
    /// The QoS.
    var qos: MQTTQoS
    /// Messages the library accepted (`beginPublish` returned).
    var sent: Int
    /// Publish attempts the library refused (`notConnected`, `queueFull`, ...): not sent.
    var refused: Int
    /// Distinct sent messages received at least once.
    var received: Int
    /// Deliveries beyond the first of a message.
    var duplicated: Int
    /// Sent messages never received.
    var lost: Int
    /// Deliveries of messages that were never accepted (a publish that threw but was delivered
    /// anyway), plus messages that do not belong to the load.
    var unexpected: Int
    /// QoS 1/2 acknowledgements that arrived.
    var acknowledged: Int
    /// QoS 1/2 acknowledgement waits that failed or timed out.
    var acknowledgementFailures: Int
}

// MARK: - QoSRecord

/// The raw records for one QoS: one slot per sequence number.
struct QoSRecord {
    /// What is known about one numbered message.
    private struct Slot {
        /// Whether the library accepted the publish.
        var accepted = false
        /// The packet identifier it was published with.
        var publishID: UInt16 = 0
        /// The packet identifiers it was delivered with, in order (empty: never received).
        var deliveryIDs: [UInt16] = []
    }

    /// The messages; index = sequence number.
    private var slots: [Slot] = []
    /// Accepted messages not yet received (kept up to date for ``DeliveryLedger/allDelivered(_:)``).
    private(set) var missingCount = 0
    /// Publish attempts refused by the library.
    var refused = 0
    /// Deliveries that match no accepted message.
    var unexpected = 0
    /// Acknowledgements received.
    var acknowledged = 0
    /// Acknowledgement waits that failed.
    var acknowledgementFailures = 0

    /// Records a publish attempt.
    mutating func recordPublish(sequence: Int, accepted: Bool, messageID: UInt16) {
        grow(to: sequence)
        slots[sequence].accepted = accepted
        slots[sequence].publishID = messageID
        if accepted {
            // A delivery can overtake the publisher's bookkeeping: it was counted as unexpected then.
            let early = slots[sequence].deliveryIDs.count
            if early > 0 { unexpected -= early } else { missingCount += 1 }
        } else {
            refused += 1
        }
    }

    /// Records a delivery. A sequence number far beyond anything published (or negative) is
    /// counted as unexpected without making room for it.
    mutating func recordDelivery(sequence: Int, messageID: UInt16) {
        guard sequence >= 0, sequence < slots.count + 1_000_000 else {
            unexpected += 1
            return
        }
        grow(to: sequence)
        slots[sequence].deliveryIDs.append(messageID)
        if !slots[sequence].accepted {
            unexpected += 1
        } else if slots[sequence].deliveryIDs.count == 1 {
            missingCount -= 1
        }
    }

    /// Makes room for `sequence`.
    private mutating func grow(to sequence: Int) {
        if sequence >= slots.count {
            slots.append(contentsOf: repeatElement(Slot(), count: sequence + 1 - slots.count))
        }
    }

    /// Lost and duplicated messages, at most `limit`, in sequence order.
    func anomalies(limit: Int) -> [String] {
        var found: [String] = []
        for (sequence, slot) in slots.enumerated() where slot.accepted && slot.deliveryIDs.count != 1 {
            guard found.count < limit else { break }
            if slot.deliveryIDs.isEmpty {
                found.append("lost \(sequence) (published as mid \(slot.publishID))")
            } else {
                let delivered = slot.deliveryIDs.map(String.init).joined(separator: ", ")
                found.append("\(slot.deliveryIDs.count) x \(sequence) (published as mid \(slot.publishID), delivered as \(delivered))")
            }
        }
        return found
    }

    /// The totals.
    func tally(qos: MQTTQoS) -> QoSTally {
        var tally = QoSTally(
            qos: qos, sent: 0, refused: refused, received: 0, duplicated: 0, lost: 0, unexpected: unexpected,
            acknowledged: acknowledged, acknowledgementFailures: acknowledgementFailures
        )
        for slot in slots where slot.accepted {
            tally.sent += 1
            if slot.deliveryIDs.isEmpty { tally.lost += 1 } else { tally.received += 1 }
            tally.duplicated += max(0, slot.deliveryIDs.count - 1)
        }
        return tally
    }
}
