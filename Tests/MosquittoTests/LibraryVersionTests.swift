import CMosquitto
import Foundation
import Testing
@testable import Mosquitto

/// The libmosquitto this process runs with, and the two places that rely on its private layout.
/// scripts/test.sh runs this suite once per libmosquitto it tests (2.0.11 from Debian 12, and
/// 2.0.21 built by scripts/libmosquitto.sh): `MQTT_TEST_LIBMOSQUITTO_VERSION` names the one a
/// pass must have loaded, so a pass that silently ran the system's copy fails.
@Suite("libmosquitto version and private layout", .timeLimit(.minutes(1)))
struct LibraryVersionTests {
    @Test("the loaded libmosquitto is a supported one, and the one this pass asked for")
    func loadedVersion() {
        let version = MQTTClient.libraryVersion
        #expect(version >= .minimumSupported)
        #expect(version.major == 2)
        if let expected = ProcessInfo.processInfo.environment["MQTT_TEST_LIBMOSQUITTO_VERSION"], !expected.isEmpty {
            #expect(version.description == expected, "LD_LIBRARY_PATH did not select libmosquitto \(expected)")
        }
        #expect(MQTTLibraryVersion(major: 2, minor: 0, revision: 11) < MQTTLibraryVersion(major: 2, minor: 0, revision: 16))
        #expect(MQTTLibraryVersion(major: 2, minor: 0, revision: 21).description == "2.0.21")
    }

    @Test("a libmosquitto older than 2.0 is refused with notSupported, naming both versions")
    func oldLibraryIsRefused() {
        let error = #expect(throws: MQTTError.self) { try MQTTClient.checkLibrary(MQTTLibraryVersion(major: 1, minor: 6, revision: 9)) }
        #expect(error?.code == .notSupported)
        #expect(error?.detail?.contains("1.6.9") == true && error?.detail?.contains("2.0.0") == true, "\(String(describing: error))")
        #expect(throws: Never.self) { try MQTTClient.checkLibrary(MQTTLibraryVersion(major: 2, minor: 0, revision: 0)) }
    }

    /// `mosquitto_topic_matches_sub2` ignores its length arguments before 2.0.14, which is why
    /// `LibMosquitto.topicMatches` uses the NUL-terminated variant (and callers refuse NULs).
    @Test("topic_matches_sub2 honours its lengths from 2.0.14, not in 2.0.11 (the quirk the library avoids)")
    func topicMatchesSub2Lengths() {
        var result = false
        // "a/b" against the first three bytes of "a/bc": matches only if the length is honoured.
        let rc = mosquitto_topic_matches_sub2("a/b", 3, "a/bc", 3, &result)
        #expect(rc == Int32(MOSQ_ERR_SUCCESS.rawValue))
        let honoursLengths = MQTTClient.libraryVersion >= MQTTLibraryVersion(major: 2, minor: 0, revision: 14)
        #expect(result == honoursLengths, "libmosquitto \(MQTTClient.libraryVersion)")
        // The variant the library uses is right on every version.
        #expect(LibMosquitto.topicMatches(filter: "a/b", topic: "a/bc") == false)
        #expect(LibMosquitto.topicMatches(filter: "a/+", topic: "a/bc") == true)
    }

    @Test("the socket pair an event-loop handle does without is found where the shim expects it, and closed")
    func wakeupPairLayout() throws {
        LibMosquitto.ensureInitialized()
        let handle = try #require(mosquitto_new("layout-check", true, nil))
        defer { mosquitto_destroy(handle) }
        #expect(swift_mosquitto_close_wakeup_pair(handle) == 1, "struct mosquitto no longer begins with sock, sockpairR, sockpairW")
        #expect(swift_mosquitto_close_wakeup_pair(handle) == 0, "already closed: the check refuses")
    }

    @Test("a thread-per-client handle's loop can be woken through its own socket pair")
    func wakeLoopLayout() throws {
        LibMosquitto.ensureInitialized()
        let handle = try #require(mosquitto_new("layout-check-wake", true, nil))
        defer { mosquitto_destroy(handle) }
        #expect(swift_mosquitto_wake_loop(handle) == 1, "the wake-up byte could not be written where the shim expects the pair")
    }
}
