// MARK: - PendingTable

/// Message ID → promise for commands awaiting their acknowledgement (PUBACK/PUBCOMP, SUBACK,
/// UNSUBACK). Always used under ``MosquittoBridge``'s lock.
///
/// libmosquitto assigns the message ID inside the call that queues the packet, and the network
/// thread can receive the acknowledgement before that call has returned to us. Such early results
/// are parked and handed over when the caller registers. QoS 0 publishes also fire `on_publish`
/// (when written), but nobody waits for them: their IDs are marked ignored.
struct PendingTable<Value: Sendable> {
    private var waiting: [Int32: Promise<Value>] = [:]
    private var parked: [Int32: Result<Value, MQTTError>] = [:]
    private var ignored: Set<Int32> = []

    /// How many operations await their acknowledgement.
    var count: Int { waiting.count }

    /// Registers `promise` for `mid`, completing it at once if the result came early.
    ///
    /// - Returns: A parked result for the caller to complete `promise` with outside the lock.
    mutating func register(_ promise: Promise<Value>, for mid: Int32) -> Result<Value, MQTTError>? {
        if let early = parked.removeValue(forKey: mid) {
            return early
        }
        waiting[mid] = promise
        return nil
    }

    /// Marks `mid` as one nobody waits for (a QoS 0 publish).
    mutating func ignore(_ mid: Int32) {
        if parked.removeValue(forKey: mid) == nil {
            ignored.insert(mid)
        }
    }

    /// Takes the promise waiting for `mid`; parks `result` when nobody has registered yet.
    ///
    /// - Returns: The promise to complete outside the lock, or `nil`.
    mutating func resolve(_ mid: Int32, with result: Result<Value, MQTTError>) -> Promise<Value>? {
        if let promise = waiting.removeValue(forKey: mid) {
            return promise
        }
        if ignored.remove(mid) == nil {
            parked[mid] = result
        }
        return nil
    }

    /// Removes every waiting promise (to fail them outside the lock) and forgets ignored IDs.
    mutating func removeAll() -> [Promise<Value>] {
        let promises = Array(waiting.values)
        waiting.removeAll()
        ignored.removeAll()
        return promises
    }

    /// Forgets the IDs of QoS 0 publishes: libmosquitto drops unwritten QoS 0 packets when the
    /// connection goes, so their `on_publish` never comes.
    mutating func forgetIgnored() {
        ignored.removeAll()
    }

    /// Forgets parked results and ignored IDs: called when a new connection starts, because
    /// message IDs from before no longer mean anything.
    mutating func forgetStale() {
        parked.removeAll()
        ignored.removeAll()
    }
}
