import Foundation
import Mosquitto
import MosquittoTesting
import Synchronization
import Testing

/// The publish window under load, against a scripted peer that holds back its PUBACKs: at most
/// `maxInflightMessages` are on the wire unacknowledged, `pendingPublishCount` counts every
/// publish not yet acknowledged, and `flush(timeout:)` says whether they all were.
@Suite("Publishing under load", .timeLimit(.minutes(1)))
struct PublishFlowTests {
    /// What the peer saw: PUBLISHes received, acknowledged, and the most outstanding at once.
    private final class PeerLog: Sendable {
        let received = Atomic<Int>(0)
        let acknowledged = Atomic<Int>(0)
        let mostOutstanding = Atomic<Int>(0)
        let release = Atomic<Bool>(false)
    }

    @Test("500 QoS 1 publishes with maxInflightMessages 5: 5 on the wire until acknowledged, all pending, flush false; once acknowledged, flush true and none pending, the window never exceeded")
    func inflightWindowPendingCountAndFlush() async throws {
        let log = PeerLog()
        let peer = try ScriptedPeer(readTimeout: .milliseconds(50)) { connection in
            guard connection.acceptConnect() else { return }
            var withheld: [UInt16] = []
            func acknowledge(_ packetID: UInt16) {
                connection.send([0x40, 0x02] + PeerConnection.encode(packetID))
                log.acknowledged.add(1, ordering: .relaxed)
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while !connection.endOfStream, ContinuousClock.now < deadline {
                if let packet = connection.readPacket() {
                    if packet.type == 14 { break }
                    guard packet.type == 3 else { continue }
                    let received = log.received.add(1, ordering: .relaxed).newValue
                    let outstanding = received - log.acknowledged.load(ordering: .relaxed)
                    if outstanding > log.mostOutstanding.load(ordering: .relaxed) { log.mostOutstanding.store(outstanding, ordering: .relaxed) }
                    withheld.append(packet.packetID)
                }
                if log.release.load(ordering: .relaxed) {
                    withheld.forEach(acknowledge)
                    withheld.removeAll()
                }
            }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.maxInflightMessages = 5 }
        try await client.connect()
        let count = 500
        let pending = try (0..<count).map { try client.beginPublish(to: "load/window", payload: Array("\($0)".utf8), qos: .atLeastOnce) }
        #expect(client.pendingPublishCount == count)

        // The window fills, and stays full: nothing more is sent until an acknowledgement.
        let filled = ContinuousClock.now + .seconds(10)
        while log.received.load(ordering: .relaxed) < 5, ContinuousClock.now < filled {
            try await Task.sleep(for: .milliseconds(10))
        }
        let flushedWhileWithheld = await client.flush(timeout: .milliseconds(500))
        #expect(!flushedWhileWithheld, "flush reports the publishes still unacknowledged")
        #expect(log.received.load(ordering: .relaxed) == 5)
        #expect(client.pendingPublishCount == count)

        log.release.store(true, ordering: .relaxed)
        let flushed = await client.flush(timeout: .seconds(20))
        #expect(flushed)
        #expect(client.pendingPublishCount == 0)
        #expect(log.received.load(ordering: .relaxed) == count)
        #expect(log.acknowledged.load(ordering: .relaxed) == count)
        #expect(log.mostOutstanding.load(ordering: .relaxed) == 5)
        for publish in pending {
            #expect(publish.isComplete)
        }
        try await client.disconnect()
    }
}

/// Every wait is bounded or cancellable: `unsubscribe` and `disconnect` (the other waits are in
/// "Client lifecycle"), and a message sequence's iteration.
@Suite("Timeouts and cancellation of unsubscribe, disconnect and iteration", .timeLimit(.minutes(1)))
struct WaitCancellationTests {
    @Test("unsubscribe times out, or ends with cancelled, while the UNSUBACK is withheld; the client stays connected and a later one completes")
    func unsubscribeTimesOutAndIsCancellable() async throws {
        let unsubscribes = Atomic<Int>(0)
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            while let packet = connection.readPacket() {
                guard packet.type == 10 else { continue }
                // The first two UNSUBSCRIBEs are never answered, the third is.
                if unsubscribes.add(1, ordering: .relaxed).newValue > 2 {
                    connection.send([0xB0, 0x02] + PeerConnection.encode(packet.packetID))
                }
            }
        }
        defer { peer.stop() }
        let client = try makeClient(host: "127.0.0.1", port: peer.port) { $0.operationTimeout = .seconds(60) }
        try await client.connect()

        let start = ContinuousClock.now
        let timedOut = await thrownError { try await client.unsubscribe(from: "wait/a", timeout: .milliseconds(300)) }
        // Its own timeout, not the configuration's 60 s (the wide margin is for a busy machine:
        // a loaded run once took 5.1 s).
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(timedOut?.code == .timeout, "\(String(describing: timedOut))")
        #expect(timedOut?.operation == .unsubscribe)

        let waiter = Task { try await client.unsubscribe(from: "wait/b", timeout: .seconds(5)) }
        let sent = ContinuousClock.now + .seconds(10)
        while unsubscribes.load(ordering: .relaxed) < 2, ContinuousClock.now < sent {
            try await Task.sleep(for: .milliseconds(10))
        }
        waiter.cancel()
        let cancelled = failure(of: await waiter.result)
        #expect(cancelled?.code == .cancelled, "\(String(describing: cancelled))")
        #expect(cancelled?.operation == .unsubscribe)

        #expect(client.isConnected)
        try await client.unsubscribe(from: "wait/c", timeout: .seconds(10))
        try await client.disconnect()
    }

    @Test("cancelling a disconnect that cannot finish (a peer that never reads) ends the wait with cancelled; the disconnect still ends the session")
    func disconnectIsCancellable() async throws {
        let release = DispatchSemaphoreBox()
        let peer = try ScriptedPeer { connection in
            guard connection.acceptConnect() else { return }
            // Reads nothing until released, then everything (so the disconnect can finish).
            release.wait(upTo: .seconds(20))
            while connection.readPacket() != nil {}
        }
        defer {
            release.signal()
            peer.stop()
        }
        let client = try makeClient(host: "127.0.0.1", port: peer.port)
        let events = client.connectionEvents
        try await client.connect()
        let payload = [UInt8](repeating: 0x63, count: 1_024)
        for _ in 0..<20_000 {  // 20 MiB: more than the socket buffers hold
            _ = try client.beginPublish(to: "wait/stuck", payload: payload)
        }
        // A deadline far past the cancellation, however late this task resumes on a busy machine.
        let waiter = Task { try await client.disconnect(timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(200))
        waiter.cancel()
        let error = failure(of: await waiter.result)
        // Not the timeout the disconnect itself would reach after 30 s.
        #expect(error?.code == .cancelled, "\(String(describing: error))")
        #expect(error?.operation == .disconnect)
        // A cancellation ends the wait only: the disconnect goes on, and once the peer reads, it
        // writes the backlog and DISCONNECT and ends the session.
        release.signal()
        #expect(await nextDisconnection(on: events, timeout: .seconds(20)) == nil, "a clean end")
        #expect(!client.isConnected)
    }

    @Test("cancelling the task that iterates a subscription ends that iteration; the broker-side subscription stays")
    func cancellingIterationEndsTheSequence() async throws {
        try await withMosquittoBroker { broker in
            let client = try await connectedClient(broker)
            let topic = uniqueTopic()
            let subscription = try await client.subscribe(to: topic, qos: .atLeastOnce)
            let all = MessageCollector(client.messages)
            let iterated = Atomic<Int>(0)
            let ended = Atomic<Bool>(false)
            let iteration = Task {
                do {
                    for try await _ in subscription { iterated.add(1, ordering: .relaxed) }
                } catch {}
                ended.store(true, ordering: .relaxed)
            }
            try await client.publish(to: topic, payload: "1", qos: .atLeastOnce)
            let first = ContinuousClock.now + .seconds(10)
            while iterated.load(ordering: .relaxed) < 1, ContinuousClock.now < first {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(iterated.load(ordering: .relaxed) == 1)
            iteration.cancel()
            // Polled, not awaited: an iteration that ignores the cancellation must fail the test, not hang it.
            let cancelled = ContinuousClock.now + .seconds(5)
            while !ended.load(ordering: .relaxed), ContinuousClock.now < cancelled {
                try await Task.sleep(for: .milliseconds(10))
            }
            let iterationEnded = ended.load(ordering: .relaxed)
            #expect(iterationEnded, "the cancelled iteration ended")
            try await client.publish(to: topic, payload: "2", qos: .atLeastOnce)
            #expect(try await all.waitFor(2).map(\.payloadString) == ["1", "2"], "the broker still sends to the subscription")
            #expect(iterated.load(ordering: .relaxed) == 1)
        }
    }
}

/// The error of a task's result, or `nil` if it succeeded.
private func failure<T, E: Error>(of result: Result<T, E>) -> MQTTError? {
    guard case .failure(let error) = result else { return nil }
    if let error = error as? MQTTError { return error }
    Issue.record("unexpected error type: \(error)")
    return nil
}
