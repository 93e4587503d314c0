import Mosquitto
import MosquittoTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A process with more than 1,024 descriptors open. It holds that many while it runs, so every
/// socket any test opens meanwhile gets a number above 1,023: scripts/test.sh runs this suite
/// on its own.
@Suite("Descriptor numbers above 1,023", .serialized, .timeLimit(.minutes(1)))
struct DescriptorLimitTests {
    /// Opens /dev/null until a descriptor numbered at least `number` is open; returns them all.
    private func occupyDescriptors(upTo number: Int32) throws -> [Int32] {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < rlim_t(number) + 100 {
            limit.rlim_cur = min(limit.rlim_max, rlim_t(number) + 100)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        var descriptors: [Int32] = []
        while descriptors.last.map({ $0 < number }) ?? true {
            let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                descriptors.forEach { close($0) }
                throw MQTTError(.outOfMemory, operation: .configure, detail: "only \(descriptors.count) descriptors could be opened")
            }
            descriptors.append(descriptor)
        }
        return descriptors
    }

    @Test("a client's own network thread cannot use a descriptor above 1,023 and says why; an event-loop client can")
    func descriptorsAbove1023() async throws {
        try await withMosquittoBroker { broker in
            let occupied = try occupyDescriptors(upTo: 1_100)
            defer { occupied.forEach { close($0) } }

            let threadClient = try makeClient(broker) { $0.eventLoopGroup = nil }
            let error = await thrownError { try await threadClient.connect() }
            #expect(error?.code == .notSupported)
            #expect(error?.detail?.contains("MQTTEventLoopGroup") == true, "\(String(describing: error))")

            let group = try MQTTEventLoopGroup()
            let subscriber = try await connectedClient(broker) { $0.eventLoopGroup = group }
            let publisher = try await connectedClient(broker) { $0.eventLoopGroup = group }
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            try await publisher.publish(to: topic, payload: "above 1023", qos: .atLeastOnce)
            #expect(try await received.waitFor(1).map(\.payloadString) == ["above 1023"])
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }
}
