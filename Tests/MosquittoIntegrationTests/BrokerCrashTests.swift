import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` of the broker in the middle of a stream of QoS 1/2 messages, then a restart on the
/// same port: with persistent sessions on both ends, nothing may be lost.
@Suite("Broker crashes", .timeLimit(.minutes(1)))
struct BrokerCrashTests {
    /// A persistent broker that saves its database after every change. By default mosquitto
    /// acknowledges a PUBLISH before its periodic save, so a `kill -9` can lose a message it has
    /// already acknowledged; no client can recover that. Saving on every change closes the gap
    /// far enough for the broker not to be the weak link these tests measure.
    static let crashSafeBroker = MosquittoBrokerConfiguration(persistence: true, extraConfigLines: ["autosave_on_changes true"])

    /// What a crash run delivered, and who lost what.
    struct Outcome: CustomStringConvertible {
        var sent: Int
        var received: Int
        var unique: Int
        var kills: Int
        var reconnections: Int
        /// Lost messages the broker had acknowledged to the publisher shortly (at most
        /// ``brokerWindow``) before a kill: mosquitto acknowledges before it saves, so these die
        /// with the broker, and no client can bring them back.
        var lostByBroker: [Int] = []
        /// Every other lost message: the client's fault. Must be empty.
        var lostByClient: [Int] = []
        /// Numbers delivered twice with a kill between the copies: the broker restarted from a
        /// snapshot older than the delivery (a QoS 2 duplicate no client can prevent).
        var duplicatedAcrossKill: [Int] = []
        /// Numbers delivered twice with no kill between the copies: the client's fault for QoS 2.
        var duplicatedWithoutKill: [Int] = []
        /// The highest number the subscriber had received when each kill took the broker down.
        var highestReceivedAtKill: [Int] = []
        /// Each lost message's distance from the nearest kill's ``highestReceivedAtKill``.
        var lossOffsets: [Int] = []
        /// The error the subscriber's sequence ended with before the run was over, if any.
        var sequenceError: String?
        var duplicates: Int { received - unique }
        var lost: Int { sent - unique }
        var description: String {
            "\(sent) sent, \(unique) delivered (\(received) copies, \(duplicates) duplicates), \(lost) lost; \(kills) kills, \(reconnections) reconnections"
                + "; lost in the broker's save window: \(lostByBroker.count) \(lostByBroker.prefix(10)), otherwise: \(lostByClient.count) \(lostByClient.prefix(10))"
                + "; duplicated across a kill: \(duplicatedAcrossKill.count), otherwise: \(duplicatedWithoutKill.count) \(duplicatedWithoutKill.prefix(10))"
                + "; loss offsets from the kills: \(lossOffsets.prefix(20)) (range \(lossOffsets.min() ?? 0)...\(lossOffsets.max() ?? 0))" + (sequenceError.map { "; the sequence ended with \($0)" } ?? "")
        }
    }

    /// How long before a kill an acknowledged message may still be missing from the broker's
    /// last save (the save after a change runs after the acknowledgement is written, and takes
    /// milliseconds; this is generous).
    static let brokerWindow: Duration = .milliseconds(500)

    /// libmosquitto's and mosquitto's in-flight window (20 messages each way, the defaults). A kill
    /// can only lose what was in flight at that moment: at most this many acknowledged but unsaved
    /// publishes from the publisher, and as many on their way to the subscriber.
    static let inflightWindow = 20

    /// Where a message the broker lost in a kill can lie, relative to the highest number the
    /// subscriber had received when the kill took the broker down: behind it by at most what a
    /// kill can take (`perKill`: a QoS 2 message waits for its PUBREL in the subscriber while
    /// later ones are delivered, so up to both windows; a loss 26 behind was seen at QoS 2), or
    /// ahead of it by what was in flight plus what the broker had queued for the subscriber,
    /// which lags the publisher on a loaded machine (offsets of 50 to 60 were seen with other
    /// builds running; 10 windows is generous and still "at a kill": the runs are about 2,000
    /// messages apart). A loss anywhere else is not the broker's.
    static func lossRange(perKill: Int) -> ClosedRange<Int> { (-perKill)...(10 * inflightWindow) }

    /// Checks that what a kill run lost is bounded by what the broker can lose: at most
    /// `perKill` messages per kill, each near the moment of a kill.
    static func expectLossesBoundedByTheBroker(_ outcome: Outcome, perKill: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(outcome.lost <= perKill * outcome.kills, "more than \(perKill) lost per kill: \(outcome)", sourceLocation: sourceLocation)
        #expect(outcome.lossOffsets.allSatisfy { lossRange(perKill: perKill).contains($0) }, "a loss away from every kill: \(outcome)", sourceLocation: sourceLocation)
        #expect(outcome.lossOffsets.count == outcome.lost, "\(outcome)", sourceLocation: sourceLocation)
        #expect(outcome.sequenceError == nil, "\(outcome)", sourceLocation: sourceLocation)
    }

    /// When the broker took ownership of each message (PUBACK for QoS 1, PUBREC for QoS 2, read
    /// from libmosquitto's debug log), and in which of the publisher's connections. The delegate
    /// sees log lines and disconnections in order, so the connection is exact even when the
    /// delegate runs late.
    final class OwnershipClock: MQTTClientDelegate {
        struct Entry {
            var time: ContinuousClock.Instant
            var connection: Int
        }

        private final class Table: Sendable {
            let state = Mutex<(entries: [UInt16: (ContinuousClock.Instant, Int)], connection: Int)>(([:], 0))
        }

        private let table = Table()

        func mqttClient(_ client: MQTTClient, didLog message: String, level: MQTTLogLevel) async {
            guard message.contains("received PUBACK") || message.contains("received PUBREC"),
                  let range = message.range(of: "(Mid: ")
            else { return }
            let digits = message[range.upperBound...].prefix { $0.isNumber }
            guard let messageID = UInt16(digits) else { return }
            let now = ContinuousClock.now
            table.state.withLock { state in
                if state.entries[messageID] == nil { state.entries[messageID] = (now, state.connection) }
            }
        }

        func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async {
            table.state.withLock { $0.connection += 1 }
        }

        subscript(messageID: UInt16) -> Entry? {
            table.state.withLock { state in state.entries[messageID].map { Entry(time: $0.0, connection: $0.1) } }
        }
    }

    /// Every message received, with its arrival time.
    final class ArrivalLog: Sendable {
        private final class Entries: Sendable {
            let list = Mutex<[(number: Int, time: ContinuousClock.Instant)]>([])
        }

        private let entries = Entries()
        private let reader: Task<Void, Never>

        init(_ sequence: MQTTSubscription) {
            let entries = entries
            let failure = Failure()
            self.failureBox = failure
            reader = Task {
                do {
                    for try await message in sequence {
                        let number = message.payloadString.flatMap { Int($0) } ?? -1
                        entries.list.withLock { $0.append((number, ContinuousClock.now)) }
                    }
                } catch {
                    failure.error.withLock { $0 = "\(error)" }
                }
            }
        }

        deinit { reader.cancel() }

        private final class Failure: Sendable {
            let error = Mutex<String?>(nil)
        }

        private let failureBox: Failure

        /// The error the sequence ended with (kept, not swallowed), if it has.
        var error: String? { failureBox.error.withLock { $0 } }

        var count: Int { entries.list.withLock { $0.count } }
        var uniqueCount: Int { Set(entries.list.withLock { $0.map(\.number) }).count }
        var all: [(number: Int, time: ContinuousClock.Instant)] { entries.list.withLock { $0 } }
    }

    /// A client with a persistent session that reconnects quickly.
    private func persistentClient(_ broker: MosquittoBroker, clientID: String) throws -> MQTTClient {
        try makeClient(broker, clientID: clientID) {
            $0.cleanSession = false
            $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(50), maximumDelay: .milliseconds(200))
        }
    }

    /// Publishes `count` numbered messages at `qos` and kills the broker `kills` times (or stops
    /// it gracefully), evenly spread over what the subscriber receives, restarting it at once each
    /// time. Waits for every acknowledgement and for every message to arrive (bounded), then
    /// reports what was lost and duplicated, and whether the broker's save window explains it.
    private func crashRun(
        qos: MQTTQoS, count: Int, kills: Int, graceful: Bool = false, waitForAll: Duration = .seconds(20)
    ) async throws -> Outcome {
        try await withMosquittoBroker(Self.crashSafeBroker) { broker in
            let topic = uniqueTopic("crash")
            let subscriber = try persistentClient(broker, clientID: uniqueClientID("sub"))
            let subscriberEvents = subscriber.connectionEvents
            let connections = Task {
                var connected = 0
                for await event in subscriberEvents {
                    if case .connected = event { connected += 1 }
                }
                return connected
            }
            try await subscriber.connect()
            let arrivals = ArrivalLog(try await subscriber.subscribe(to: topic, qos: qos))
            let publisher = try persistentClient(broker, clientID: uniqueClientID("pub"))
            let ownership = OwnershipClock()
            publisher.delegate = ownership
            try await publisher.connect()

            // Queue everything at once: libmosquitto keeps 20 in flight and the rest in order.
            // Message IDs start at 1, so message n has ID n + 1.
            let pending = try (0..<count).map { number in
                try publisher.beginPublish(to: topic, payload: Array(String(number).utf8), qos: qos)
            }
            // When each kill began and when the broker was back.
            var outages: [(start: ContinuousClock.Instant, end: ContinuousClock.Instant)] = []
            for kill in 1...kills {
                let mark = count * kill / (kills + 1)
                let deadline = ContinuousClock.now + .seconds(20)
                while arrivals.count < mark || !subscriber.isConnected || !publisher.isConnected, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(2))
                }
                let start = ContinuousClock.now
                if graceful { broker.stop() } else { broker.kill() }
                try await broker.restart()
                outages.append((start, ContinuousClock.now))
            }
            for publish in pending {
                _ = try await publish.acknowledgement(timeout: .seconds(30))
            }
            let deadline = ContinuousClock.now + waitForAll
            while arrivals.uniqueCount < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            // Redeliveries may still be on their way: give them a moment to be counted.
            try await Task.sleep(for: .milliseconds(300))
            let sequenceError = arrivals.error
            try await publisher.disconnect()
            try await subscriber.disconnect()
            connections.cancel()

            var firstArrival: [Int: ContinuousClock.Instant] = [:]
            var outcome = Outcome(sent: count, received: 0, unique: 0, kills: kills, reconnections: await connections.value - 1)
            for (number, time) in arrivals.all {
                outcome.received += 1
                guard let first = firstArrival[number] else {
                    firstArrival[number] = time
                    continue
                }
                if outages.contains(where: { first < $0.end && $0.start < time }) {
                    outcome.duplicatedAcrossKill.append(number)
                } else {
                    outcome.duplicatedWithoutKill.append(number)
                }
            }
            outcome.unique = firstArrival.count
            // What the subscriber had received when each kill took the broker down: everything
            // that arrived before the broker was back (nothing arrives while it is down).
            let highestReceivedAtKill = outages.map { outage in arrivals.all.filter { $0.time < outage.end }.map(\.number).max() ?? -1 }
            outcome.highestReceivedAtKill = highestReceivedAtKill
            outcome.sequenceError = sequenceError
            for number in 0..<count where firstArrival[number] == nil {
                // The broker took it in the connection that kill k ended, shortly before the kill.
                let inWindow = ownership[UInt16(number + 1)].map { taken in
                    taken.connection < outages.count && outages[taken.connection].start - Self.brokerWindow <= taken.time
                } ?? false
                if let nearest = highestReceivedAtKill.min(by: { abs(number - $0) < abs(number - $1) }) {
                    outcome.lossOffsets.append(number - nearest)
                }
                if inWindow, !graceful {
                    outcome.lostByBroker.append(number)
                } else {
                    outcome.lostByClient.append(number)
                }
            }
            return outcome
        }
    }

    @Test("kill -9 in the middle of 10,000 QoS 1 messages: all arrive but what the broker lost in its save window, duplicates counted")
    func oneKillQoS1() async throws {
        let outcome = try await crashRun(qos: .atLeastOnce, count: 10_000, kills: 1)
        print("[broker crash] QoS 1, 1 kill: \(outcome)")
        #expect(outcome.lostByClient.isEmpty, "\(outcome)")
        Self.expectLossesBoundedByTheBroker(outcome, perKill: Self.inflightWindow)
        #expect(outcome.reconnections >= 1, "\(outcome)")
    }

    @Test("five kills in one run of 10,000 QoS 1 messages: all arrive but what the broker lost in its save window, duplicates counted")
    func fiveKillsQoS1() async throws {
        let outcome = try await crashRun(qos: .atLeastOnce, count: 10_000, kills: 5)
        print("[broker crash] QoS 1, 5 kills: \(outcome)")
        #expect(outcome.lostByClient.isEmpty, "\(outcome)")
        Self.expectLossesBoundedByTheBroker(outcome, perKill: Self.inflightWindow)
        #expect(outcome.reconnections >= 5, "\(outcome)")
    }

    /// Graceful restarts (SIGTERM: mosquitto saves its state) lose nothing at QoS 2. Most runs
    /// deliver each message exactly once; a few duplicates can appear after a restart, because
    /// libmosquitto 2.0.11's QoS 2 receiver queues a PUBLISH the broker re-sends (it never saw
    /// the PUBREC) next to the copy already awaiting PUBREL, and a later re-sent PUBREL for that
    /// ID releases the stale copy (`handle__publish` / `message__remove` in lib/). Measured: 0
    /// duplicates in most runs, 14 in one. The test holds that none appears without a restart.
    @Test("five graceful restarts in one run of 10,000 QoS 2 messages: none lost, no duplicate without a restart between")
    func fiveRestartsQoS2() async throws {
        let outcome = try await crashRun(qos: .exactlyOnce, count: 10_000, kills: 5, graceful: true)
        print("[broker crash] QoS 2, 5 graceful restarts: \(outcome)")
        #expect(outcome.lost == 0, "\(outcome)")
        #expect(outcome.duplicatedWithoutKill.isEmpty, "\(outcome)")
    }

    @Test("five graceful restarts in one run of 10,000 QoS 1 messages: all arrive")
    func fiveRestartsQoS1() async throws {
        let outcome = try await crashRun(qos: .atLeastOnce, count: 10_000, kills: 5, graceful: true)
        print("[broker crash] QoS 1, 5 graceful restarts: \(outcome)")
        #expect(outcome.lost == 0, "\(outcome)")
    }

    /// Exactly once does NOT survive `kill -9` of mosquitto 2.0.11, whatever the client: the
    /// broker restarts from a snapshot older than the PUBRECs and PUBCOMPs it had sent, and
    /// libmosquitto's QoS 2 receiver queues a re-sent PUBLISH next to the one awaiting PUBREL
    /// instead of recognising it. The same run with `mosquitto_sub` (plain libmosquitto) as the
    /// subscriber lost 15 to 1,131 of the 10,000 and delivered 1,535 to 4,676 duplicates. This
    /// test holds what the client controls: every publish is acknowledged, nothing hangs, no
    /// message is delivered twice without a kill between the copies, and what is lost is what a
    /// kill can take: at most both in-flight windows per kill, each loss next to a kill (measured:
    /// 16 to 41 lost in 5 kills, within 53 of the subscriber's position at a kill on a quiet machine).
    @Test("five kills in one run of 10,000 QoS 2 messages: all acknowledged, no duplicate without a kill between, losses only in flight at a kill")
    func fiveKillsQoS2() async throws {
        let outcome = try await crashRun(qos: .exactlyOnce, count: 10_000, kills: 5, waitForAll: .seconds(3))
        print("[broker crash] QoS 2, 5 kills: \(outcome)")
        #expect(outcome.duplicatedWithoutKill.isEmpty, "\(outcome)")
        Self.expectLossesBoundedByTheBroker(outcome, perKill: 2 * Self.inflightWindow)
        #expect(outcome.reconnections >= 5, "\(outcome)")
    }
}

extension BrokerCrashTests {
    @Test("seq 1 10000 | mqtt pub -l -q 1 -c with two broker kills: a persistent mqtt sub -c gets all 10,000 (but what the killed broker had not saved) and both exit 0")
    func commandLineSurvivesKills() async throws {
        try await withMosquittoBroker(Self.crashSafeBroker) { broker in
            let topic = uniqueTopic("cli")
            let endpoint = ["-h", broker.host, "-p", "\(broker.port)"]
            let subscriber = try startCommand(["sub"] + endpoint + ["-c", "-i", uniqueClientID("clisub"), "-q", "1", "-t", topic])
            // Until the subscription is in place a message goes nowhere: probe until one arrives.
            let prober = try await connectedClient(broker)
            let ready = ContinuousClock.now + .seconds(10)
            while !subscriber.outputLines.contains("ready"), ContinuousClock.now < ready {
                try await prober.publish(to: topic, payload: "ready", qos: .atLeastOnce)
                try await Task.sleep(for: .milliseconds(100))
            }
            try await prober.disconnect()
            #expect(subscriber.outputLines.contains("ready"))

            func received() -> [Int] { subscriber.outputLines.compactMap { Int($0) } }
            let count = 10_000
            let input = (1...count).map { "\($0)\n" }.joined()
            let publisher = try startCommand(
                ["pub"] + endpoint + ["-l", "-q", "1", "-c", "-i", uniqueClientID("clipub"), "-t", topic], input: input
            )
            var publisherRunningAtKill: [Bool] = []
            var highestReceivedAtKill: [Int] = []
            for mark in [count / 3, 2 * count / 3] {
                let deadline = ContinuousClock.now + .seconds(20)
                while received().count < mark, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(2))
                }
                publisherRunningAtKill.append(publisher.isRunning)
                highestReceivedAtKill.append(received().max() ?? 0)
                broker.kill()
                try await broker.restart()
            }
            let publisherStatus = try await publisher.wait(timeout: .seconds(40))
            let deadline = ContinuousClock.now + .seconds(20)
            while Set(received()).count < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            subscriber.signal(SIGTERM)
            let subscriberStatus = try await subscriber.wait(timeout: .seconds(10))
            let numbers = received()
            let missing = Set(1...count).subtracting(numbers)
            print("[broker crash] mqtt pub -l / mqtt sub -c, 2 kills: \(Set(numbers).count) of \(count) delivered, \(numbers.count - Set(numbers).count) duplicates")
            #expect(publisherRunningAtKill == [true, true], "the kills must fall in the middle of the run")
            #expect(publisherStatus == .exited(0), "\(publisher.standardError)")
            #expect(publisher.standardError.isEmpty)
            // mosquitto 2.0.11 may lose a message it had acknowledged but not yet saved or
            // forwarded when it is killed (RELIABILITY.md; the library's crash runs tell these
            // apart by the broker's acknowledgement times). Such a message was on its way to the
            // subscriber at the kill: just past what it had received. Any other loss fails.
            let brokerWindow = Set(highestReceivedAtKill.flatMap { ($0 + 1)...($0 + 1_000) })
            let unexplained = missing.subtracting(brokerWindow)
            if !missing.isEmpty {
                print("[broker crash] CLI: lost in the broker's window at a kill: \(missing.intersection(brokerWindow).sorted())")
            }
            #expect(unexplained.isEmpty, "\(unexplained.count) lines lost, e.g. \(unexplained.sorted().prefix(10))")
            #expect(missing.count <= 10, "\(missing.count) lines lost, e.g. \(missing.sorted().prefix(10))")
            #expect(subscriberStatus == .exited(0), "\(subscriber.standardError)")
        }
    }
}
