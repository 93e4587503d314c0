// MARK: - PendingOperations

/// Everything of a session that awaits the broker's answer: QoS 1/2 publishes (and the ones
/// being handed to libmosquitto), SUBSCRIBEs and UNSUBSCRIBEs, and the commands to send again
/// after a reconnect. Owned by ``SessionStateMachine``, which applies the lifecycle's rules to
/// it (what survives a lost connection, what fails when the session ends); the bridge records
/// and resolves single operations through it. No I/O and no locks: the promises it hands out
/// are completed by the bridge, outside its lock.
struct PendingOperations: Sendable {
    /// QoS 1/2 publishes awaiting PUBACK or PUBCOMP (and QoS 0 IDs whose `on_publish` is ignored).
    var publishes = PendingTable<MQTTPublishReceipt>()
    /// Publishes counted against ``MQTTConfiguration/maxPendingPublishes`` while libmosquitto queues them.
    var reservedPublishes = 0
    /// SUBSCRIBEs awaiting SUBACK.
    var subscribes = PendingTable<SubscribeAcknowledgement>()
    /// UNSUBSCRIBEs awaiting UNSUBACK.
    var unsubscribes = PendingTable<MQTTProperties>()
    /// What the SUBSCRIBEs and UNSUBSCRIBEs in flight asked for, to send them again after a reconnect.
    var commands = PendingCommands()

    /// QoS 1/2 publishes awaiting acknowledgement or being handed over.
    var publishCount: Int { publishes.count + reservedPublishes }

    /// Waits taken out of the tables, for the bridge to fail outside its lock.
    struct Abandoned: Sendable {
        var publishes: [Promise<MQTTPublishReceipt>] = []
        var subscribes: [Promise<SubscribeAcknowledgement>] = []
        var unsubscribes: [Promise<MQTTProperties>] = []

        /// Whether nothing was abandoned.
        var isEmpty: Bool { publishes.isEmpty && subscribes.isEmpty && unsubscribes.isEmpty }

        /// Fails every wait with `error`.
        func fail(with error: MQTTError) {
            publishes.forEach { $0.fail(error) }
            subscribes.forEach { $0.fail(error) }
            unsubscribes.forEach { $0.fail(error) }
        }
    }

    /// A new session starts: results parked under message IDs of an earlier one mean nothing now.
    mutating func sessionStarted() {
        publishes.forgetStale()
    }

    /// The connection was lost. QoS 0 IDs are forgotten (libmosquitto drops their packets). With
    /// a reconnect to follow, QoS 1/2 publishes stay (libmosquitto sends them again) and the
    /// SUBSCRIBEs and UNSUBSCRIBEs in flight wait to be sent again, their callers still waiting:
    /// nothing is abandoned. Without one, everything is.
    mutating func connectionLost(willReconnect: Bool) -> Abandoned {
        publishes.forgetIgnored()
        let subscribes = self.subscribes.removeAll()
        let unsubscribes = self.unsubscribes.removeAll()
        guard !willReconnect else {
            commands.connectionLost()
            return Abandoned()
        }
        _ = commands.removeAll()
        return Abandoned(publishes: publishes.removeAll(), subscribes: subscribes, unsubscribes: unsubscribes)
    }

    /// The session ended: every wait is abandoned, including commands waiting to be sent again.
    mutating func removeAll() -> Abandoned {
        var abandoned = Abandoned(publishes: publishes.removeAll(), subscribes: subscribes.removeAll(), unsubscribes: unsubscribes.removeAll())
        for command in commands.removeAll() {
            switch command {
            case .subscribe(let request): abandoned.subscribes.append(request.promise)
            case .unsubscribe(let request): abandoned.unsubscribes.append(request.promise)
            }
        }
        return abandoned
    }
}

// MARK: - SubscriptionRegistry

/// What the broker accepted, by filter, to subscribe again when a connection comes up without
/// the broker's session (``MQTTConfiguration/resubscribeOnSessionLoss``). Owned by
/// ``SessionStateMachine``, which keeps it across the end of a session only when the broker
/// keeps the session too (a requested disconnect with ``MQTTConfiguration/sessionOutlivesConnection``).
struct SubscriptionRegistry: Sendable {
    /// One accepted filter, with the SUBSCRIBE properties it was made with.
    struct Entry: Sendable {
        let filter: MQTTTopicFilter
        let properties: MQTTProperties
    }

    private var entries: [String: Entry] = [:]

    /// Whether nothing is recorded.
    var isEmpty: Bool { entries.isEmpty }

    /// Every recorded filter, in filter order.
    var all: [Entry] { entries.values.sorted { $0.filter.filter < $1.filter.filter } }

    /// Records accepted filters (a filter subscribed again replaces its entry).
    mutating func remember(_ filters: [MQTTTopicFilter], properties: MQTTProperties) {
        for filter in filters { entries[filter.filter] = Entry(filter: filter, properties: properties) }
    }

    /// Forgets filters (unsubscribed, or refused on re-subscription).
    mutating func forget(_ filters: [String]) {
        for filter in filters { entries.removeValue(forKey: filter) }
    }

    /// Forgets everything.
    mutating func removeAll() {
        entries.removeAll()
    }
}
