import CMosquitto
import Testing
@testable import Mosquitto
#if canImport(Glibc)
import Glibc
#endif

@Suite("MQTT 5 property lists", .timeLimit(.minutes(1)))
struct PropertyListTests {
    static var everyProperty: MQTTProperties {
        var p = MQTTProperties()
        p.payloadFormat = .utf8
        p.messageExpiryInterval = 60
        p.contentType = "text/plain"
        p.responseTopic = "r/t"
        p.correlationData = [1, 2, 3]
        p.subscriptionIdentifiers = [9]
        p.topicAlias = 3
        p.willDelayInterval = 5
        p.sessionExpiryInterval = 100
        p.assignedClientIdentifier = "assigned"
        p.serverKeepAlive = 30
        p.authenticationMethod = "SCRAM"
        p.authenticationData = [7, 7]
        p.requestProblemInformation = true
        p.requestResponseInformation = false
        p.responseInformation = "resp/"
        p.serverReference = "other:1883"
        p.reasonString = "because"
        p.receiveMaximum = 10
        p.topicAliasMaximum = 4
        p.maximumQoS = .atLeastOnce
        p.retainAvailable = false
        p.maximumPacketSize = 4096
        p.wildcardSubscriptionAvailable = true
        p.subscriptionIdentifiersAvailable = false
        p.sharedSubscriptionAvailable = true
        p.userProperties = [MQTTUserProperty("a", "1"), MQTTUserProperty("a", "2")]
        return p
    }

    @Test("every property survives the trip into a libmosquitto list and back")
    func everyPropertyRoundTrips() throws {
        // CONNACK allows most of them; the check is skipped by building for a permissive packet.
        let properties = Self.everyProperty
        var adder = MQTTProperties()
        adder = properties
        let list = try PropertyList(adder, for: .will, operation: .validate, checkingAllowed: false)
        #expect(MQTTProperties(copying: list.pointer) == properties)
    }

    @Test("properties are values: a copy is independent, clearing the last field makes the set empty, equal sets hash alike")
    func valueSemantics() {
        var a = MQTTProperties()
        #expect(a.isEmpty)
        #expect(MemoryLayout<MQTTProperties>.size == MemoryLayout<Int>.size)
        a.contentType = "text/plain"
        a.userProperties.append(MQTTUserProperty("k", "v"))
        var b = a
        b.contentType = "application/json"
        #expect(a.contentType == "text/plain")
        #expect(b.contentType == "application/json")
        #expect(a != b)
        b.contentType = "text/plain"
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a.description == #"MQTTProperties(contentType: "text/plain", userProperties: [k:v])"#)
        b.contentType = nil
        b.userProperties = []
        #expect(b.isEmpty)
        #expect(b == MQTTProperties())
        #expect(b.description == "MQTTProperties()")
        #expect(MQTTProperties(copying: nil).isEmpty)
        #expect(!Self.everyProperty.isEmpty)
    }

    /// The identifiers of a libmosquitto list, in list order (the order they go on the wire).
    static func identifiers(_ list: borrowing PropertyList) -> [Int32] {
        var result: [Int32] = []
        var item = list.pointer
        while let current = item {
            result.append(mosquitto_property_identifier(current))
            item = mosquitto_property_next(current)
        }
        return result
    }

    @Test("properties are written in the order they were set, user properties among the others; unset ones leave the order; equality ignores it")
    func writtenInTheOrderSet() throws {
        var p = MQTTProperties()
        p.userProperties.append(MQTTUserProperty("a", "1"))
        p.messageExpiryInterval = 30
        p.contentType = "text/plain"
        p.userProperties.append(MQTTUserProperty("b", "2"))
        p.payloadFormat = .utf8
        p.contentType = "text/csv"
        let list = try PropertyList(p, for: .publish, operation: .validate)
        #expect(Self.identifiers(list) == [38, 2, 3, 38, 1])
        p.messageExpiryInterval = nil
        p.userProperties.removeLast()
        #expect(Self.identifiers(try PropertyList(p, for: .publish, operation: .validate)) == [38, 3, 1])
        var q = MQTTProperties()
        q.payloadFormat = .utf8
        q.contentType = "text/csv"
        q.userProperties = [MQTTUserProperty("a", "1")]
        #expect(p == q)
        #expect(p.hashValue == q.hashValue)
        // Received properties have no recorded order: the MQTT 5 table's.
        let sent = try PropertyList(q, for: .publish, operation: .validate)
        let received = MQTTProperties(copying: sent.pointer)
        #expect(Self.identifiers(try PropertyList(received, for: .publish, operation: .validate)) == [1, 3, 38])
    }

    @Test("PUBLISH properties are allowed on PUBLISH, CONNECT-only ones are not")
    func allowedPerPacket() {
        var publish = MQTTProperties()
        publish.contentType = "x"
        publish.userProperties = [MQTTUserProperty("k", "v")]
        #expect(throws: Never.self) { _ = try PropertyList(publish, for: .publish, operation: .publish) }
        var connectOnly = MQTTProperties()
        connectOnly.sessionExpiryInterval = 1
        do {
            _ = try PropertyList(connectOnly, for: .publish, operation: .publish)
            Issue.record("session expiry accepted on PUBLISH")
        } catch {
            #expect(error.code == .propertyNotAllowed)
            #expect(error.detail == "session-expiry-interval is not allowed on PUBLISH")
        }
    }

    /// Resident size is process-wide, and the broker-crash runs move tens of megabytes: this test
    /// runs only in a process of its own, which `scripts/test.sh` starts with
    /// `MQTT_MEMORY_TEST=1 swift test --filter listsAreFreed`.
    @Test(
        "building, reading and freeing 50,000 large lists does not grow the process",
        .enabled(if: getenv("MQTT_MEMORY_TEST").map { String(cString: $0) } == "1", "run alone by scripts/test.sh (MQTT_MEMORY_TEST=1)")
    )
    func listsAreFreed() throws {
        // 50 user properties per list: an unfreed list or unfreed strings read back would grow the
        // process by hundreds of megabytes (measured: 440 MB without free_all, 64 MB with the
        // user-property names leaked).
        var properties = Self.everyProperty
        properties.userProperties = (0..<50).map { MQTTUserProperty("name-\($0)", "value-\($0)") }
        func cycle() throws {
            let list = try PropertyList(properties, for: .will, operation: .validate, checkingAllowed: false)
            _ = MQTTProperties(copying: list.pointer)
        }
        for _ in 0..<2_000 { try cycle() }
        let before = try Self.residentBytes()
        for _ in 0..<50_000 { try cycle() }
        let after = try Self.residentBytes()
        #expect(after < before + 16 * 1024 * 1024, "resident size grew by \(after - before) bytes")
    }

    /// The resident set size, from /proc/self/statm.
    static func residentBytes() throws -> Int {
        let descriptor = open("/proc/self/statm", O_RDONLY)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = read(descriptor, &buffer, buffer.count)
        let fields = String(decoding: buffer[0..<max(0, count)], as: UTF8.self).split(separator: " ")
        let pages = try #require(fields.count > 1 ? Int(fields[1]) : nil)
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
