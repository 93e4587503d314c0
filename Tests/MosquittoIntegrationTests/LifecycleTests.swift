import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Client lifecycle", .timeLimit(.minutes(1)))
struct LifecycleTests {
    @Test("connecting twice fails with alreadyConnected; disconnect and connect again works")
    func connectTwiceFailsAndReconnectWorks() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            do {
                try await client.connect()
                Issue.record("connected twice")
            } catch let error as MQTTError {
                #expect(error.code == .alreadyConnected)
            }
            try await client.disconnect()
            #expect(!client.isConnected)
            try await client.disconnect()  // idempotent
            try await client.connect()
            #expect(client.isConnected)
            try await client.publish(to: uniqueTopic(), payload: "again", qos: .atLeastOnce)
        }
    }

    @Test("a client bound to a local address connects from it")
    func bindAddressIsUsed() async throws {
        try await withMosquittoBroker { broker in
            let clientID = uniqueClientID("bound")
            let client = try makeClient(broker, clientID: clientID) { $0.bindAddress = "127.0.0.1" }
            try await client.connect()
            try await waitForLog(broker, "New client connected from 127.0.0.1:")
            #expect(broker.logContents().contains("as \(clientID)"))
            // Not an address: the lookup of the bind address fails, and says so.
            let unbindable = try makeClient(broker) { $0.bindAddress = "127.0.0.254.1" }
            let error = await thrownError { try await unbindable.connect() }
            #expect(error?.code == .hostLookupFailed, "\(String(describing: error))")
            #expect(error?.operation == .connect)
            #expect(!unbindable.isConnected)
        }
    }

    @Test("publish after disconnect fails with notConnected")
    func publishAfterDisconnectFails() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            try await client.disconnect()
            do {
                try await client.publish(to: uniqueTopic(), payload: "x", qos: .atLeastOnce)
                Issue.record("published while disconnected")
            } catch let error as MQTTError {
                #expect(error.code == .notConnected)
            }
        }
    }

    @Test("dropping the last reference to a connected client frees it and disconnects")
    func droppingConnectedClientFreesIt() async throws {
        try await withMosquittoBroker { broker in
            weak var weakClient: MQTTClient?
            var subscription: MQTTSubscription?
            do {
                let client = try await connectedClient(broker)
                subscription = try await client.subscribe(to: uniqueTopic())
                weakClient = client
            }
            #expect(weakClient == nil)
            // The subscription ends once the dropped client's session is closed.
            let ended = try #require(subscription)
            await #expect(throws: SequenceEnded.self) { _ = try await collect(1, from: ended) }
        }
    }

    @Test("connect times out against a server that never answers")
    func connectTimesOut() async throws {
        let server = try SilentServer()
        var configuration = MQTTConfiguration(host: "127.0.0.1", port: server.port)
        configuration.connectTimeout = .seconds(60)
        let client = try MQTTClient(configuration: configuration)
        let start = ContinuousClock.now
        do {
            try await client.connect(timeout: .milliseconds(500))
            Issue.record("connected to a silent server")
        } catch {
            #expect(error.code == .timeout)
            #expect(error.operation == .connect)
        }
        // The call's own 500 ms, not the configuration's 60 s (nor the never of a silent server);
        // the wide margin is for resuming this task while other suites keep both cores busy (a
        // loaded run once took 5.3 s).
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(!client.isConnected)
    }

    @Test("cancelling a task that awaits connect ends the wait with cancelled")
    func cancellingConnectEndsTheWait() async throws {
        let server = try SilentServer()
        let client = try MQTTClient(configuration: .init(host: "127.0.0.1", port: server.port))
        let task = Task { () async throws(MQTTError) in try await client.connect(timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let result = await task.result
        #expect(throws: MQTTError(.cancelled, operation: .connect)) { try result.get() }
    }

    @Test("acknowledgement and SUBACK waits time out or are cancelled while the broker is frozen; the message stays queued")
    func waitsAreBoundedAndCancellable() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let pid = try #require(broker.processIdentifier)
            // SIGSTOP freezes the broker: the TCP connection stays up but nothing is answered.
            kill(pid, SIGSTOP)
            defer { kill(pid, SIGCONT) }

            do {
                try await client.publish(to: topic, payload: "x", qos: .atLeastOnce, timeout: .milliseconds(300))
                Issue.record("PUBACK from a frozen broker")
            } catch let error as MQTTError {
                #expect(error.code == .timeout)
                #expect(error.operation == .publish)
            }
            do {
                _ = try await client.subscribe(to: topic, qos: .atLeastOnce, timeout: .milliseconds(300))
                Issue.record("SUBACK from a frozen broker")
            } catch let error as MQTTError {
                #expect(error.code == .timeout)
                #expect(error.operation == .subscribe)
            }

            let pending = try client.beginPublish(to: topic, payload: [1], qos: .exactlyOnce)
            let waiter = Task { () async throws(MQTTError) in try await pending.acknowledgement(timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            waiter.cancel()
            let result = await waiter.result
            #expect(throws: MQTTError(.cancelled, operation: .publish)) { try result.get() }
            #expect(!pending.isComplete)

            // A timeout or cancellation ends the wait only: once the broker runs again the message
            // is acknowledged.
            kill(pid, SIGCONT)
            let receipt = try await pending.acknowledgement(timeout: .seconds(10))
            #expect(receipt.qos == .exactlyOnce)
            #expect(receipt.messageID == pending.messageID)
        }
    }

    @Test("the delegate receives events in order and may publish and disconnect from a callback")
    func delegateReceivesEventsAndMayCallBack() async throws {
        try await withMosquittoBroker { broker in
            let recorder = Recorder()
            let client = try makeClient(broker)
            client.delegate = recorder
            let topic = uniqueTopic()
            recorder.replyTopic = topic + "/reply"
            try await client.connect()
            let replies = try await client.subscribe(to: topic + "/reply", qos: .atLeastOnce)
            _ = try await client.subscribe(to: topic, qos: .atLeastOnce)
            try await client.publish(to: topic, payload: "ping", qos: .atLeastOnce)
            // The delegate publishes "pong" (awaiting its PUBACK) and then disconnects.
            #expect(try await collect(1, from: replies).map(\.payloadString) == ["pong"])
            let deadline = ContinuousClock.now + .seconds(10)
            while !recorder.events.contains("disconnected"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let events = recorder.events
            #expect(events.first == "connected")
            #expect(events.contains("subscribed"))
            #expect(events.contains("published"))
            #expect(events.contains("message \(topic)"))
            #expect(events.last == "disconnected")
            #expect(!client.isConnected)
        }
    }
}

/// A loopback listening socket that never accepts: a client's TCP handshake completes through the
/// backlog, but no CONNACK ever comes.
private final class SilentServer {
    var port: Int { listener.port }
    private let listener: LoopbackListener

    init() throws {
        listener = try LoopbackListener(backlog: 8)
    }
}

/// A delegate that records events and answers "ping" with "pong", then disconnects.
private final class Recorder: MQTTClientDelegate {
    private let state = Mutex<(events: [String], replyTopic: String)>(([], ""))

    var events: [String] { state.withLock { $0.events } }
    var replyTopic: String {
        get { state.withLock { $0.replyTopic } }
        set { state.withLock { $0.replyTopic = newValue } }
    }

    private func record(_ event: String) { state.withLock { $0.events.append(event) } }

    func mqttClient(_ client: MQTTClient, didConnect result: MQTTConnectResult) async { record("connected") }
    func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async { record(error == nil ? "disconnected" : "lost") }
    func mqttClient(_ client: MQTTClient, didSubscribe messageID: UInt16, reasonCodes: [MQTTReasonCode]) async { record("subscribed") }
    func mqttClient(_ client: MQTTClient, didPublish messageID: UInt16, reasonCode: MQTTReasonCode) async { record("published") }
    func mqttClient(_ client: MQTTClient, didReceive message: MQTTMessage) async {
        record("message \(message.topic)")
        guard message.payloadString == "ping" else { return }
        do {
            try await client.publish(to: replyTopic, payload: "pong", qos: .atLeastOnce)
            try await Task.sleep(for: .milliseconds(200))
            try await client.disconnect()
        } catch {
            record("error \(error)")
        }
    }
}

/// The delegate's whole event sequence, not its first and last events.
@Suite("Delegate event order", .timeLimit(.minutes(1)))
struct DelegateOrderTests {
    @Test("two sessions of 200 messages each: the delegate sees connected, subscribed, every message in order, unsubscribed, disconnected, twice")
    func delegateSeesEveryEventInOrder() async throws {
        try await withMosquittoBroker { broker in
            let recorder = DelegateRecorder()
            let client = try makeClient(broker)
            client.delegate = recorder
            let publisher = try await connectedClient(broker)
            let topic = uniqueTopic()
            let perSession = 200
            var expected: [String] = []
            for session in 0..<2 {
                let all = MessageCollector(client.messages)
                try await client.connect()
                _ = try await client.subscribe(to: topic, qos: .atLeastOnce)
                let numbers = (session * perSession)..<((session + 1) * perSession)
                let pending = try numbers.map { try publisher.beginPublish(to: topic, payload: "\($0)", qos: .atLeastOnce) }
                for publish in pending { try await publish.acknowledgement() }
                // Everything has reached the client (the delegate may lag behind).
                #expect(try await all.waitFor(perSession).count == perSession)
                try await client.unsubscribe(from: topic)
                try await client.disconnect()
                expected += ["connected", "subscribed"] + numbers.map { "message \($0)" } + ["unsubscribed", "disconnected"]
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while recorder.events.count < expected.count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let events = recorder.events
            #expect(events.count == expected.count)
            let firstDifference = zip(events, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(firstDifference == nil, "first difference at \(firstDifference ?? -1): \(firstDifference.map { Array(events[$0...].prefix(5)) } ?? [])")
        }
    }
}

extension DelegateOrderTests {
    @Test("the client holds its delegate weakly: a released delegate is freed, gets nothing more, and the client goes on (messages then wait for a sequence)")
    func releasedDelegate() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let client = try await connectedClient(broker)
            _ = try await client.subscribe(to: topic, qos: .atLeastOnce)
            weak var released: DelegateRecorder?
            do {
                let recorder = DelegateRecorder()
                released = recorder
                client.delegate = recorder
                try await client.publish(to: topic, payload: "seen", qos: .atLeastOnce)
                let deadline = ContinuousClock.now + .seconds(10)
                while !recorder.events.contains("message seen"), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(recorder.events.contains("message seen"), "the control: a live delegate receives")
            }
            #expect(released == nil, "the client kept its delegate alive")
            #expect(client.delegate == nil)
            try await client.publish(to: topic, payload: "after", qos: .atLeastOnce)
            // Nobody takes it now but the client's own sequence of the subscription, which was
            // dropped: the message is held for the next matching sequence.
            let later = try await collect(1, from: client.messages)
            #expect(later.map(\.payloadString) == ["after"])
            #expect(client.isConnected)
            try await client.disconnect()
        }
    }
}

/// A delegate that records every event as a line.
final class DelegateRecorder: MQTTClientDelegate {
    private final class Log: Sendable {
        let events = Mutex<[String]>([])
    }

    private let log = Log()

    var events: [String] { log.events.withLock { $0 } }

    private func record(_ event: String) { log.events.withLock { $0.append(event) } }

    func mqttClient(_ client: MQTTClient, didConnect result: MQTTConnectResult) async { record("connected") }
    func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async { record(error.map { "lost \($0.code)" } ?? "disconnected") }
    func mqttClient(_ client: MQTTClient, didSubscribe messageID: UInt16, reasonCodes: [MQTTReasonCode]) async { record("subscribed") }
    func mqttClient(_ client: MQTTClient, didUnsubscribe messageID: UInt16) async { record("unsubscribed") }
    func mqttClient(_ client: MQTTClient, didPublish messageID: UInt16, reasonCode: MQTTReasonCode) async { record("published") }
    func mqttClient(_ client: MQTTClient, didReceive message: MQTTMessage) async {
        // A suspension point, as a real delegate's await: a delivery that did not wait for the
        // previous call to return would let later messages overtake here.
        await Task.yield()
        record("message \(message.payloadString ?? "?")")
    }
}
