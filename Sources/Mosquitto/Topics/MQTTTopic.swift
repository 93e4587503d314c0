#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - MQTTTopic

/// Topic and topic-filter checks, using libmosquitto's own rules.
///
/// ```swift
/// try MQTTTopic.validatePublishTopic("home/livingroom/sensor")
/// try MQTTTopic.validateFilter("home/+/sensor")
/// MQTTTopic.matches("home/livingroom/sensor", filter: "home/+/sensor") // true
/// ```
public enum MQTTTopic {
    /// The largest topic or filter MQTT can carry: 65,535 bytes of UTF-8.
    public static let maximumLength = 65_535

    /// Checks that `topic` can be published to: non-empty, no `+` or `#`, no NUL, valid UTF-8,
    /// at most 65,535 bytes.
    ///
    /// - Parameter topic: The topic to check.
    /// - Throws: ``MQTTError`` with code ``MQTTError/Code/invalidTopic``.
    public static func validatePublishTopic(_ topic: String) throws(MQTTError) {
        try validatePublishTopic(topic, operation: .validate)
    }

    static func validatePublishTopic(_ topic: String, operation: MQTTError.Operation) throws(MQTTError) {
        try checkCommon(topic, code: .invalidTopic, operation: operation)
        if !LibMosquitto.isValidPublishTopic(topic) {
            throw MQTTError(.invalidTopic, operation: operation, detail: "wildcard in publish topic \"\(topic)\"")
        }
    }

    /// Checks that `filter` can be subscribed to: non-empty, `#` only as the whole last level,
    /// `+` only as a whole level, no NUL, valid UTF-8, at most 65,535 bytes. A shared
    /// subscription (`$share/GROUP/FILTER`) is checked as a whole.
    ///
    /// - Parameter filter: The subscription filter to check.
    /// - Throws: ``MQTTError`` with code ``MQTTError/Code/invalidTopicFilter``.
    public static func validateFilter(_ filter: String) throws(MQTTError) {
        try validateFilter(filter, operation: .validate)
    }

    static func validateFilter(_ filter: String, operation: MQTTError.Operation) throws(MQTTError) {
        try checkCommon(filter, code: .invalidTopicFilter, operation: operation)
        if !LibMosquitto.isValidSubscriptionFilter(filter) {
            throw MQTTError(.invalidTopicFilter, operation: operation, detail: "wildcard misplaced in \"\(filter)\"")
        }
        if filter.hasPrefix("$share/") {
            let parts = filter.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count < 3 || parts[1].isEmpty || parts[2].isEmpty
                || parts[1].contains("+") || parts[1].contains("#")
            {
                throw MQTTError(.invalidTopicFilter, operation: operation, detail: "malformed shared subscription \"\(filter)\"")
            }
        }
    }

    /// Whether `topic` matches the subscription `filter` (`mosquitto_topic_matches_sub`).
    ///
    /// A shared subscription filter `$share/GROUP/FILTER` matches what `FILTER` matches.
    /// Invalid input never matches.
    ///
    /// - Parameters:
    ///   - topic: A publish topic.
    ///   - filter: A subscription filter.
    /// - Returns: `true` when a subscription to `filter` receives messages published to `topic`.
    public static func matches(_ topic: String, filter: String) -> Bool {
        if topic.utf8.contains(0) || filter.utf8.contains(0) { return false }
        return LibMosquitto.topicMatches(filter: stripSharePrefix(filter), topic: topic) ?? false
    }

    // MARK: Internals

    /// The filter a shared subscription applies to its messages (`$share/g/a/b` → `a/b`).
    static func stripSharePrefix(_ filter: String) -> String {
        guard filter.hasPrefix("$share/") else { return filter }
        let parts = filter.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count == 3 ? String(parts[2]) : filter
    }

    private static func checkCommon(_ string: String, code: MQTTError.Code, operation: MQTTError.Operation) throws(MQTTError) {
        let utf8 = string.utf8
        if utf8.isEmpty {
            throw MQTTError(code, operation: operation, detail: "empty")
        }
        if utf8.count > maximumLength {
            throw MQTTError(code, operation: operation, detail: "\(utf8.count) bytes, more than \(maximumLength)")
        }
        if utf8.contains(0) {
            throw MQTTError(code, operation: operation, detail: "contains a NUL character")
        }
        var copy = string
        if !copy.withUTF8({ LibMosquitto.isValidUTF8(UnsafeRawBufferPointer($0)) }) {
            throw MQTTError(code, operation: operation, detail: "not valid MQTT UTF-8")
        }
    }
}

// MARK: - TopicMatcher

/// A subscription filter prepared for matching many topics (every received message): a filter
/// without wildcards matches by plain comparison, without a call into libmosquitto.
struct TopicMatcher: Sendable {
    /// The filter without a `$share/group/` prefix.
    private let filter: String
    /// Its bytes, for comparing exact filters with `memcmp`.
    private let filterBytes: [UInt8]
    /// Whether the filter has no `+` or `#`, so only the identical topic matches.
    private let isExact: Bool

    /// Prepares `filter` (as subscribed, `$share/` prefix allowed).
    init(filter: String) {
        let stripped = MQTTTopic.stripSharePrefix(filter)
        self.filter = stripped
        filterBytes = Array(stripped.utf8)
        isExact = !stripped.utf8.contains { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") || $0 == 0 }
    }

    /// Whether messages published to `topic` match the filter (``MQTTTopic/matches(_:filter:)``).
    func matches(_ topic: String) -> Bool {
        // Byte for byte, as MQTT compares: `String ==` would also equate canonically equivalent
        // spellings ("é" and "e" + U+0301), which are different topics.
        guard isExact else { return MQTTTopic.matches(topic, filter: filter) }
        return topic.utf8.withContiguousStorageIfAvailable { topic in
            filterBytes.withUnsafeBufferPointer { filter in
                topic.count == filter.count && (topic.isEmpty || memcmp(topic.baseAddress!, filter.baseAddress!, topic.count) == 0)
            }
        } ?? topic.utf8.elementsEqual(filterBytes)
    }
}
