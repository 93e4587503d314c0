// MARK: - MQTTMessageSequence

/// An `AsyncSequence` of received messages, with a bounded buffer.
///
/// Each sequence has one consumer; cancelling the task that iterates it ends the sequence (the
/// subscription at the broker stays); so does releasing the sequence and its iterators. It buffers
/// up to ``MQTTConfiguration/messageBufferSize`` messages for a consumer that falls behind (the
/// iterator takes every waiting message at once, and the bound counts those that arrived since);
/// when that overflows it ends by throwing ``MQTTError/Code/messageBufferOverflow`` instead of
/// dropping messages silently. (libmosquitto
/// acknowledges QoS 1/2 messages to the broker before handing them over, so a message dropped
/// here would be lost.) The sequence finishes when the client's session ends: normally after
/// ``MQTTClient/disconnect(reasonCode:properties:timeout:)`` or when the client is released, by throwing when the
/// connection was lost and is not retried. In a session that outlives the connection
/// (``MQTTConfiguration/cleanSession`` off on MQTT 3.1/3.1.1; a non-zero
/// ``MQTTProperties/sessionExpiryInterval`` in ``MQTTConfiguration/connectProperties`` on MQTT 5)
/// the broker keeps the subscriptions across a disconnect, and so do the sequences: the messages
/// queued meanwhile arrive on them after the next ``MQTTClient/connect(timeout:)``.
public struct MQTTMessageSequence: AsyncSequence, Sendable {
    /// The element type: a received message.
    public typealias Element = MQTTMessage

    /// The consumer side of the sequence's buffer; when every copy of the sequence and every
    /// iterator is released, the sequence ends and stops receiving.
    let reader: MessageBuffer.Reader

    /// Creates the iterator. A sequence supports a single iterator.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: MessageBuffer.Iterator(reader))
    }

    /// Iterates over received messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: MessageBuffer.Iterator

        /// The next message, or `nil` when the session ended.
        ///
        /// - Throws: ``MQTTError`` when the connection was lost or the buffer overflowed.
        public mutating func next() async throws -> MQTTMessage? {
            try await base.next()
        }
    }
}

// MARK: - MQTTTopicFilter

/// A subscription filter with the maximum QoS wanted for it and, on MQTT 5, its options.
public struct MQTTTopicFilter: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The filter, e.g. `home/+/sensor` or `$share/workers/jobs/#`.
    public var filter: String
    /// The highest QoS the broker should deliver matching messages with.
    public var qos: MQTTQoS
    /// MQTT 5 no-local: the broker does not send this client its own publications.
    public var noLocal: Bool
    /// MQTT 5 retain-as-published: forwarded messages keep the retain flag they were published
    /// with (normally the flag is cleared on live delivery).
    public var retainAsPublished: Bool
    /// MQTT 5 retain handling: whether retained messages are sent when subscribing.
    public var retainHandling: MQTTRetainHandling

    /// Creates a filter.
    ///
    /// - Parameters:
    ///   - filter: The topic filter.
    ///   - qos: The maximum QoS. Defaults to QoS 0.
    ///   - noLocal: MQTT 5 no-local. Defaults to `false`.
    ///   - retainAsPublished: MQTT 5 retain-as-published. Defaults to `false`.
    ///   - retainHandling: MQTT 5 retain handling. Defaults to sending retained messages.
    public init(
        _ filter: String,
        qos: MQTTQoS = .atMostOnce,
        noLocal: Bool = false,
        retainAsPublished: Bool = false,
        retainHandling: MQTTRetainHandling = .sendOnSubscribe
    ) {
        self.filter = filter
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }

    /// Creates a QoS 0 filter from a literal.
    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// `filter (QoS n)`.
    public var description: String { "\(filter) (\(qos))" }

    /// The MQTT 5 subscription-options bits, without the QoS (`MQTT_SUB_OPT_*`).
    var optionBits: Int32 {
        (noLocal ? 0x04 : 0) | (retainAsPublished ? 0x08 : 0) | (Int32(retainHandling.rawValue) << 4)
    }
}

// MARK: - MQTTRetainHandling

/// When the broker sends retained messages for a new subscription (MQTT 5).
public enum MQTTRetainHandling: UInt8, Sendable, Hashable {
    /// Send retained messages at every subscribe (0, the MQTT 3.1.1 behaviour).
    case sendOnSubscribe = 0
    /// Send them only if the subscription did not exist before (1).
    case sendOnNewSubscription = 1
    /// Never send retained messages for this subscription (2).
    case doNotSend = 2
}

// MARK: - MQTTSubscribeResult

/// The broker's answer for one filter of a SUBSCRIBE.
public struct MQTTSubscribeResult: Sendable, Hashable {
    /// The filter.
    public var filter: String
    /// The SUBACK code: 0, 1 or 2 for the granted QoS, 0x80 or above for a refusal.
    public var reasonCode: MQTTReasonCode

    /// The QoS the broker granted, or `nil` when it refused the filter.
    public var grantedQoS: MQTTQoS? {
        reasonCode.isFailure ? nil : MQTTQoS(rawValue: Int(reasonCode.rawValue))
    }
}

// MARK: - MQTTSubscription

/// An accepted subscription: what the broker granted, and the messages matching its filters.
///
/// ```swift
/// let subscription = try await client.subscribe(to: "home/+/sensor", qos: .atLeastOnce)
/// for try await message in subscription { print(message.topic) }
/// ```
/// Ending the iteration stops local delivery only; ``MQTTClient/unsubscribe(from:properties:timeout:)-(String,_,_)``
/// ends the subscription at the broker (and finishes this sequence).
public struct MQTTSubscription: AsyncSequence, Sendable {
    /// The element type: a received message.
    public typealias Element = MQTTMessage

    /// One result per filter, in the order subscribed.
    public let results: [MQTTSubscribeResult]
    /// The SUBACK's MQTT 5 properties (reason string, user properties); when the filters needed
    /// several SUBSCRIBE packets, those of the first.
    public let properties: MQTTProperties
    let messages: MQTTMessageSequence

    /// Creates the iterator. A subscription supports a single iterator.
    public func makeAsyncIterator() -> MQTTMessageSequence.AsyncIterator {
        messages.makeAsyncIterator()
    }
}

// MARK: - MQTTConnectionEvents

/// An `AsyncSequence` of a client's connection changes. It keeps the newest 64 events for a
/// consumer that falls behind, and finishes when the client is released.
public struct MQTTConnectionEvents: AsyncSequence, Sendable {
    /// The element type: a connection change.
    public typealias Element = MQTTConnectionEvent

    let stream: AsyncStream<MQTTConnectionEvent>

    /// Creates the iterator. A sequence supports a single iterator.
    public func makeAsyncIterator() -> AsyncStream<MQTTConnectionEvent>.AsyncIterator {
        stream.makeAsyncIterator()
    }
}
