import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// The shared event-loop driver. (scripts/test.sh also runs every integration suite with
/// `MQTT_TEST_DRIVER=event-loop`, so each behaviour tested elsewhere is tested on it too.)
@Suite("Event-loop group", .serialized, .timeLimit(.minutes(1)))
struct EventLoopGroupTests {
    /// The IDs of this process's threads named `name` (or starting with it).
    private func threads(named name: String) -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(tasks.filter { task in
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            return comm.hasPrefix(name)
        })
    }

    @Test("300 clients on one event-loop thread each receive their own message, without a network thread each")
    func manyClientsOnOneThread() async throws {
        try await withMosquittoBroker { broker in
            let group = try MQTTEventLoopGroup(numberOfThreads: 1)
            let clientThreadsBefore = threads(named: "mqtt-client")
            let root = uniqueTopic()
            var clients: [MQTTClient] = []
            var collectors: [MessageCollector] = []
            for index in 0..<300 {
                let client = try makeClient(broker, clientID: uniqueClientID("g\(index)")) { $0.eventLoopGroup = group }
                try await client.connect()
                collectors.append(MessageCollector(try await client.subscribe(to: "\(root)/\(index)", qos: .atLeastOnce)))
                clients.append(client)
            }
            // Thread-per-client would have started 300 "mqtt-client" threads; other suites running
            // in parallel start a few.
            let newClientThreads = threads(named: "mqtt-client").subtracting(clientThreadsBefore)
            #expect(newClientThreads.count < 100, "\(newClientThreads.count) new per-client threads")
            let publisher = try await connectedClient(broker)
            for index in 0..<300 {
                try await publisher.publish(to: "\(root)/\(index)", payload: "for \(index)", qos: .atLeastOnce)
            }
            for (index, collector) in collectors.enumerated() {
                let messages = try await collector.waitFor(1, timeout: .seconds(10))
                #expect(messages.map(\.payloadString) == ["for \(index)"])
            }
            for client in clients { try await client.disconnect() }
        }
    }

    @Test("clients on a two-thread group exchange QoS 0, 1 and 2 messages in order")
    func exchangesEveryQoS() async throws {
        try await withMosquittoBroker { broker in
            let group = try MQTTEventLoopGroup(numberOfThreads: 2)
            let subscriber = try await connectedClient(broker) { $0.eventLoopGroup = group }
            let publisher = try await connectedClient(broker) { $0.eventLoopGroup = group }
            for qos in [MQTTQoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
                let topic = uniqueTopic()
                let collector = MessageCollector(try await subscriber.subscribe(to: topic, qos: qos))
                for number in 0..<500 {
                    try await publisher.publish(to: topic, payload: "\(number)", qos: qos)
                }
                let messages = try await collector.waitFor(500)
                #expect(messages.map(\.payloadString) == (0..<500).map { "\($0)" }, "QoS \(qos)")
                #expect(messages.allSatisfy { $0.qos == qos })
            }
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    @Test("a group's threads end once the group and its clients are released")
    func threadsEndWithTheGroup() async throws {
        _ = testEventLoopGroup  // made now, so that its threads are not counted as ours
        let before = threads(named: "mqtt-loop")
        try await withMosquittoBroker { broker in
            var group: MQTTEventLoopGroup? = try MQTTEventLoopGroup(numberOfThreads: 3, numberOfConnectThreads: 1)
            #expect(group?.numberOfThreads == 3)
            var client: MQTTClient? = try await connectedClient(broker) { $0.eventLoopGroup = group }
            // All three start with the first client; the two it does not use may take a moment
            // (on a loaded machine) to run far enough to name themselves.
            var ours = threads(named: "mqtt-loop").subtracting(before)
            let started = ContinuousClock.now + .seconds(5)
            while ours.count < 3, ContinuousClock.now < started {
                try await Task.sleep(for: .milliseconds(10))
                ours = threads(named: "mqtt-loop").subtracting(before)
            }
            #expect(ours.count == 3)
            try await client?.disconnect()
            client = nil
            group = nil
            let deadline = ContinuousClock.now + .seconds(5)
            while !threads(named: "mqtt-loop").isDisjoint(with: ours), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(threads(named: "mqtt-loop").isDisjoint(with: ours))
        }
    }

    @Test("a client on an event loop holds one descriptor (its socket), not libmosquitto's two more for waking its own loop")
    func oneDescriptorPerClient() async throws {
        let group = try MQTTEventLoopGroup()
        func openDescriptors() -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
        }
        let before = openDescriptors()
        let clients = try (0..<200).map { index in
            var configuration = MQTTConfiguration(clientID: "fd-\(index)")
            configuration.eventLoopGroup = group
            return try MQTTClient(configuration: configuration)
        }
        let opened = openDescriptors() - before
        // With libmosquitto's socket pair it would be 400 (other suites running meanwhile open a few).
        #expect(opened < 100, "\(opened) descriptors for \(clients.count) unconnected clients")
    }

    /// The calling thread's name.
    private static func threadName() -> String {
        let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        return comm.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("a task that prefers the client's task executor runs on its event-loop thread: after messages, QoS 1/2 acknowledgements and sleeps")
    func tasksRunOnTheLoop() async throws {
        try await withMosquittoBroker { broker in
            let group = try MQTTEventLoopGroup(numberOfThreads: 1)
            let client = try await connectedClient(broker) { $0.eventLoopGroup = group }
            let executor = try #require(client.taskExecutor)
            let topic = uniqueTopic()
            let outcome = try await Task(executorPreference: executor) { () async throws -> (names: Set<String>, payloads: [String]) in
                var names: Set<String> = [Self.threadName()]
                let subscription = try await client.subscribe(to: topic, qos: .exactlyOnce)
                names.insert(Self.threadName())
                for number in 0..<200 {
                    try await client.publish(to: topic, payload: "\(number)", qos: number.isMultiple(of: 2) ? .atLeastOnce : .exactlyOnce)
                    names.insert(Self.threadName())
                }
                try await Task.sleep(for: .milliseconds(5))
                names.insert(Self.threadName())
                var payloads: [String] = []
                for try await message in subscription {
                    names.insert(Self.threadName())
                    payloads.append(message.payloadString ?? "")
                    if payloads.count == 200 { break }
                }
                return (names, payloads)
            }.value
            #expect(outcome.names == ["mqtt-loop-0"])
            #expect(outcome.payloads == (0..<200).map { "\($0)" })
            try await client.disconnect()
            let ownThread = try makeClient(broker) { $0.eventLoopGroup = nil }
            #expect(ownThread.taskExecutor == nil)
        }
    }

    @Test("a task executor outlives its group: once the loop thread has ended, its jobs run on the global executor")
    func executorOutlivesItsGroup() async throws {
        _ = testEventLoopGroup
        let before = threads(named: "mqtt-loop")
        var client: MQTTClient? = try {
            var configuration = MQTTConfiguration(clientID: uniqueClientID("orphan"))
            configuration.eventLoopGroup = try MQTTEventLoopGroup(numberOfThreads: 1, numberOfConnectThreads: 1)
            return try MQTTClient(configuration: configuration)
        }()
        let executor = try #require(client?.taskExecutor)
        // Once a job has run there, the thread has named itself.
        #expect(await Task(executorPreference: executor) { Self.threadName() }.value == "mqtt-loop-0")
        let ours = threads(named: "mqtt-loop").subtracting(before)
        #expect(ours.count == 1)
        client = nil  // and with it the last reference to the group
        let deadline = ContinuousClock.now + .seconds(5)
        while !threads(named: "mqtt-loop").isDisjoint(with: ours), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(threads(named: "mqtt-loop").isDisjoint(with: ours))
        let name = await Task(executorPreference: executor) { () async -> String in
            try? await Task.sleep(for: .milliseconds(1))
            return Self.threadName()
        }.value
        #expect(!name.hasPrefix("mqtt-loop"))
    }

    @Test("a group needs 1 to 64 threads of each kind")
    func validatesThreadCounts() {
        for (loops, connectors, named) in [(0, 1, "numberOfThreads"), (65, 1, "numberOfThreads"), (1, 0, "numberOfConnectThreads"), (1, 65, "numberOfConnectThreads")] {
            do {
                _ = try MQTTEventLoopGroup(numberOfThreads: loops, numberOfConnectThreads: connectors)
                Issue.record("\(loops) loop and \(connectors) connect threads were accepted")
            } catch {
                #expect(error.code == .invalidConfiguration)
                #expect(error.detail?.contains(named) == true)
            }
        }
    }
}
