// MARK: - PendingCommands

/// The SUBSCRIBEs and UNSUBSCRIBEs awaiting their acknowledgement, with what they asked for, so
/// that a reconnect sends them again: libmosquitto re-sends unacknowledged QoS 1/2 PUBLISHes
/// itself, but not these. Always used under ``MosquittoBridge``'s lock.
///
/// A command lost with its connection (while reconnect is on) waits here and is sent again,
/// under a new packet ID and in its original order, once the broker has accepted the next
/// connection; its caller's wait simply goes on. Only when the session ends do they fail.
struct PendingCommands {
    /// What a SUBSCRIBE asked for: filters sharing one QoS and one set of options (libmosquitto's
    /// `subscribe_multiple` takes one of each).
    struct Subscribe: Sendable {
        let topicFilters: [MQTTTopicFilter]
        let properties: MQTTProperties
        let promise: Promise<SubscribeAcknowledgement>

        /// The filters as sent.
        var filters: [String] { topicFilters.map(\.filter) }
        /// Their QoS.
        var qos: MQTTQoS { topicFilters.first?.qos ?? .atMostOnce }
        /// Their MQTT 5 options (`MQTT_SUB_OPT_*` bits).
        var options: Int32 { topicFilters.first?.optionBits ?? 0 }

        /// The filters the SUBACK's `reasonCodes` granted (one code per filter, in order).
        func granted(by reasonCodes: [MQTTReasonCode]) -> [MQTTTopicFilter] {
            zip(topicFilters, reasonCodes).filter { !$0.1.isFailure }.map(\.0)
        }
    }

    /// What an UNSUBSCRIBE asked for.
    struct Unsubscribe: Sendable {
        let filters: [String]
        let properties: MQTTProperties
        let promise: Promise<MQTTProperties>
    }

    /// One command.
    enum Command: Sendable {
        case subscribe(Subscribe)
        case unsubscribe(Unsubscribe)

        /// The operation named in its errors.
        var operation: MQTTError.Operation {
            switch self {
            case .subscribe: .subscribe
            case .unsubscribe: .unsubscribe
            }
        }

        /// Its MQTT 5 properties.
        var properties: MQTTProperties {
            switch self {
            case .subscribe(let request): request.properties
            case .unsubscribe(let request): request.properties
            }
        }

        /// The packet, for the property checks.
        var packet: PropertyPacket {
            switch self {
            case .subscribe: .subscribe
            case .unsubscribe: .unsubscribe
            }
        }

        /// The packet's exact size.
        func packetSize(version: MQTTProtocolVersion) -> Int {
            switch self {
            case .subscribe(let request): PacketSize.subscribe(filters: request.filters, properties: request.properties, version: version)
            case .unsubscribe(let request): PacketSize.unsubscribe(filters: request.filters, properties: request.properties, version: version)
            }
        }

        /// Fails its caller's wait.
        func fail(_ error: MQTTError) {
            switch self {
            case .subscribe(let request): request.promise.fail(error)
            case .unsubscribe(let request): request.promise.fail(error)
            }
        }
    }

    private var inFlight: [Int32: (order: UInt64, command: Command)] = [:]
    private var lost: [Command] = []
    private var nextOrder: UInt64 = 0

    /// Whether commands wait to be sent again.
    var hasCommandsToResend: Bool { !lost.isEmpty }

    /// `command` went out as packet `mid`.
    mutating func sent(_ command: Command, mid: Int32) {
        nextOrder += 1
        inFlight[mid] = (nextOrder, command)
    }

    /// Packet `mid` was acknowledged.
    ///
    /// - Returns: The command it was, if it was one of ours still in flight.
    @discardableResult
    mutating func acknowledged(_ mid: Int32) -> Command? {
        inFlight.removeValue(forKey: mid)?.command
    }

    /// The connection was lost and a reconnect follows: what was in flight is to be sent again.
    mutating func connectionLost() {
        lost += inFlight.values.sorted { $0.order < $1.order }.map(\.command)
        inFlight.removeAll()
    }

    /// The commands to send again now (the broker accepted a new connection).
    mutating func takeCommandsToResend() -> [Command] {
        defer { lost.removeAll() }
        return lost
    }

    /// Everything, in flight or waiting (to fail it: the session ended).
    mutating func removeAll() -> [Command] {
        defer {
            inFlight.removeAll()
            lost.removeAll()
        }
        return lost + inFlight.values.sorted { $0.order < $1.order }.map(\.command)
    }
}
