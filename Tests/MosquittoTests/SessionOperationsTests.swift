import Testing
@testable import Mosquitto

/// What the session state machine does to the operations awaiting an answer and to the
/// subscriptions it restores, without a broker: the rules of reconnect, disconnect and close.
@Suite("Session state machine: pending operations and subscriptions")
struct SessionOperationsTests {
    let start = ContinuousClock.now
    let reconnecting = MQTTReconnectPolicy.exponentialBackoff(jitter: false)

    /// A machine whose first connection was accepted, with one QoS 1 publish (mid 1), one
    /// SUBSCRIBE (mid 2) and one UNSUBSCRIBE (mid 3) awaiting their acknowledgements.
    func busy(
        _ policy: MQTTReconnectPolicy, sessionOutlivesConnection: Bool = false
    ) throws -> (SessionStateMachine, Promise<MQTTPublishReceipt>, Promise<SubscribeAcknowledgement>, Promise<MQTTProperties>) {
        var machine = SessionStateMachine(policy: policy, sessionOutlivesConnection: sessionOutlivesConnection)
        try machine.connectRequested()
        _ = machine.connackAccepted(now: start, sessionPresent: false)
        let publish = Promise<MQTTPublishReceipt>()
        #expect(machine.pending.publishes.register(publish, for: 1) == nil)
        let subscribe = PendingCommands.Subscribe(topicFilters: [MQTTTopicFilter("a/#", qos: .atLeastOnce)], properties: MQTTProperties(), promise: Promise())
        #expect(machine.pending.subscribes.register(subscribe.promise, for: 2) == nil)
        machine.pending.commands.sent(.subscribe(subscribe), mid: 2)
        let unsubscribe = PendingCommands.Unsubscribe(filters: ["b"], properties: MQTTProperties(), promise: Promise())
        #expect(machine.pending.unsubscribes.register(unsubscribe.promise, for: 3) == nil)
        machine.pending.commands.sent(.unsubscribe(unsubscribe), mid: 3)
        machine.subscriptions.remember(["a/#", MQTTTopicFilter("c", qos: .exactlyOnce, noLocal: true)], properties: MQTTProperties())
        return (machine, publish, subscribe.promise, unsubscribe.promise)
    }

    @Test("a lost connection with reconnect on abandons nothing: publishes stay, SUBSCRIBE and UNSUBSCRIBE wait to be sent again in order")
    func lossWithReconnectKeepsEverything() throws {
        var (machine, _, subscribe, unsubscribe) = try busy(reconnecting)
        let outcome = machine.disconnected(now: start + .seconds(1))
        #expect(outcome.willReconnect && outcome.report)
        #expect(outcome.abandoned.isEmpty)
        #expect(machine.pending.publishCount == 1)
        #expect(machine.pending.commands.hasCommandsToResend)
        let resend = machine.pending.commands.takeCommandsToResend()
        #expect(resend.map(\.operation) == [.subscribe, .unsubscribe])
        #expect(subscribe.result == nil && unsubscribe.result == nil, "their callers still wait")
    }

    @Test("a lost connection with reconnect off abandons every wait")
    func lossWithoutReconnectAbandonsAll() throws {
        var (machine, publish, subscribe, unsubscribe) = try busy(.disabled)
        let outcome = machine.disconnected(now: start + .seconds(1))
        #expect(!outcome.willReconnect)
        #expect(outcome.abandoned.publishes.count == 1 && outcome.abandoned.subscribes.count == 1 && outcome.abandoned.unsubscribes.count == 1)
        outcome.abandoned.fail(with: MQTTError(.connectionLost, operation: .connection))
        #expect(publish.result.map { (try? $0.get()) == nil } == true)
        #expect(subscribe.result != nil && unsubscribe.result != nil)
        #expect(machine.pending.publishCount == 0 && !machine.pending.commands.hasCommandsToResend)
    }

    @Test("the end of a session fails what waits, commands waiting to be re-sent included, with the error that fits the end")
    func sessionEndFailsWaits() throws {
        // Lost for good: connectionLost.
        do {
            var (machine, _, _, _) = try busy(reconnecting)
            _ = machine.disconnected(now: start + .seconds(1))
            _ = machine.stop(error: MQTTError(.timeout, operation: .connect), now: start, deadline: start)
            let end = machine.sessionEnded(error: nil)
            #expect(end.abandoned.publishes.count == 1)
            #expect(end.abandoned.subscribes.count == 1 && end.abandoned.unsubscribes.count == 1, "the re-send queue is failed too")
            #expect(end.pendingError.code == .connectionLost)
        }
        // A requested disconnect: notConnected.
        do {
            var (machine, _, _, _) = try busy(reconnecting)
            _ = machine.stop(error: nil, now: start, deadline: start + .seconds(5))
            let end = machine.sessionEnded(error: nil)
            #expect(end.requested && end.pendingError.code == .notConnected)
        }
        // A close: clientClosed.
        do {
            var (machine, _, _, _) = try busy(reconnecting)
            _ = machine.close(now: start, deadline: start + .seconds(5))
            let end = machine.sessionEnded(error: nil)
            #expect(end.pendingError.code == .clientClosed)
        }
    }

    @Test("waits abandoned as the connection closes after a close() fail with clientClosed; after a disconnect with notConnected")
    func abandonedAtCloseSayClientClosed() throws {
        var (machine, _, _, _) = try busy(.disabled)
        _ = machine.stop(error: nil, now: start, deadline: start + .seconds(5))
        #expect(machine.abandonedError(connectionError: nil).code == .notConnected)
        _ = machine.close(now: start, deadline: start + .seconds(5))
        let outcome = machine.disconnected(now: start)
        #expect(outcome.abandoned.publishes.count == 1)
        #expect(machine.abandonedError(connectionError: nil).code == .clientClosed)
    }

    @Test("subscriptions are restored once after a CONNACK without session, with their QoS and options; not with the session present")
    func restorationAfterSessionLoss() throws {
        var (machine, _, _, _) = try busy(reconnecting)
        #expect(machine.takeResubscriptions().isEmpty, "the first connection restores nothing: it was recorded afterwards")
        _ = machine.disconnected(now: start + .seconds(1))
        _ = machine.connectionLost(error: MQTTError(.connectionLost, operation: .connection), now: start + .seconds(1))
        _ = machine.connackAccepted(now: start + .seconds(2), sessionPresent: true)
        #expect(machine.takeResubscriptions().isEmpty, "the broker kept the session")
        _ = machine.disconnected(now: start + .seconds(3))
        _ = machine.connectionLost(error: MQTTError(.connectionLost, operation: .connection), now: start + .seconds(3))
        _ = machine.connackAccepted(now: start + .seconds(4), sessionPresent: false)
        let restore = machine.takeResubscriptions()
        #expect(restore.map(\.filter) == ["a/#", MQTTTopicFilter("c", qos: .exactlyOnce, noLocal: true)])
        #expect(machine.takeResubscriptions().isEmpty, "once")
    }

    @Test("subscriptions outlive a requested end only when the session does; never a lost one")
    func registryFollowsTheSession() throws {
        do {
            var (machine, _, _, _) = try busy(reconnecting, sessionOutlivesConnection: true)
            _ = machine.stop(error: nil, now: start, deadline: start + .seconds(5))
            let end = machine.sessionEnded(error: nil)
            #expect(end.keepsSubscriptions, "the sequences stay open too")
            #expect(!machine.subscriptions.isEmpty)
        }
        do {
            var (machine, _, _, _) = try busy(reconnecting, sessionOutlivesConnection: false)
            _ = machine.stop(error: nil, now: start, deadline: start + .seconds(5))
            let end = machine.sessionEnded(error: nil)
            #expect(!end.keepsSubscriptions)
            #expect(machine.subscriptions.isEmpty)
        }
        do {
            var (machine, _, _, _) = try busy(.disabled, sessionOutlivesConnection: true)
            _ = machine.disconnected(now: start)
            _ = machine.sessionEnded(error: MQTTError(.connectionLost, operation: .connection))
            #expect(machine.subscriptions.isEmpty)
        }
    }

    @Test("without resubscribeOnSessionLoss nothing is restored")
    func restorationOff() throws {
        var machine = SessionStateMachine(policy: reconnecting, resubscribesOnSessionLoss: false)
        try machine.connectRequested()
        machine.subscriptions.remember(["a"], properties: MQTTProperties())
        _ = machine.connackAccepted(now: start, sessionPresent: false)
        #expect(machine.takeResubscriptions().isEmpty)
    }
}
