internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - LibMosquitto

/// Process-wide libmosquitto entry points that need no client handle: one-time initialisation,
/// error strings and topic checks. Every other C call lives in ``MosquittoHandle``.
enum LibMosquitto {
    /// `mosquitto_lib_init` is not thread-safe: a `static let` runs it exactly once per process,
    /// on whichever thread first needs it (Swift guarantees a lazy global runs once).
    private static let initialization: Int32 = mosquitto_lib_init()

    /// Runs `mosquitto_lib_init` if no one has yet.
    static func ensureInitialized() {
        _ = initialization
    }

    /// `mosquitto_lib_version`: the library loaded at run time (read once).
    static let version: MQTTLibraryVersion = {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        return MQTTLibraryVersion(major: Int(major), minor: Int(minor), revision: Int(revision))
    }()

    // MARK: Strings

    /// `mosquitto_strerror` for a `MOSQ_ERR_*` value.
    static func errorString(_ code: Int32) -> String {
        String(cString: mosquitto_strerror(code))
    }

    /// `mosquitto_connack_string` for an MQTT 3.1/3.1.1 CONNACK return code.
    static func connackString(_ code: UInt8) -> String {
        String(cString: mosquitto_connack_string(Int32(code)))
    }

    /// `mosquitto_reason_string` for an MQTT 5 reason code.
    static func reasonString(_ code: UInt8) -> String {
        String(cString: mosquitto_reason_string(Int32(code)))
    }

    /// `strerror` for an `errno` value.
    static func systemErrorString(_ number: Int32) -> String {
        String(cString: strerror(number))
    }

    // MARK: Topics

    /// `mosquitto_pub_topic_check2`: whether `topic` is a valid publish topic (no wildcards).
    static func isValidPublishTopic(_ topic: String) -> Bool {
        var topic = topic
        return topic.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { mosquitto_pub_topic_check2($0.baseAddress, $0.count) }
        } == MOSQ_ERR_SUCCESS.rawValue
    }

    /// `mosquitto_sub_topic_check2`: whether `filter`'s wildcards are placed validly.
    static func isValidSubscriptionFilter(_ filter: String) -> Bool {
        var filter = filter
        return filter.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { mosquitto_sub_topic_check2($0.baseAddress, $0.count) }
        } == MOSQ_ERR_SUCCESS.rawValue
    }

    /// `mosquitto_validate_utf8`: whether `bytes` are valid MQTT UTF-8 (no control characters
    /// MQTT forbids, no overlong forms, no surrogates).
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= Int(Int32.max) else { return false }
        return mosquitto_validate_utf8(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count)) == MOSQ_ERR_SUCCESS.rawValue
    }

    /// `mosquitto_topic_matches_sub`, or `nil` when either argument is invalid.
    ///
    /// `mosquitto_topic_matches_sub2` ignores its length arguments in 2.0.11 (fixed in 2.0.14),
    /// so the NUL-terminated variant is used; callers reject embedded NULs first.
    static func topicMatches(filter: String, topic: String) -> Bool? {
        var result = false
        let rc = mosquitto_topic_matches_sub(filter, topic, &result)
        return rc == MOSQ_ERR_SUCCESS.rawValue ? result : nil
    }
}
