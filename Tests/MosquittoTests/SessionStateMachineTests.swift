import Testing
@testable import Mosquitto

/// The lifecycle without a broker: every transition of ``SessionStateMachine``, time passed in.
@Suite("Session state machine", .timeLimit(.minutes(1)))
struct SessionStateMachineTests {
    let start = ContinuousClock.now

    func machine(
        _ policy: MQTTReconnectPolicy = .exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(30), jitter: false, stablePeriod: .seconds(10))
    ) -> SessionStateMachine {
        SessionStateMachine(policy: policy)
    }

    /// A machine whose first connection was accepted at `start`.
    func connected(_ policy: MQTTReconnectPolicy = .exponentialBackoff(jitter: false)) throws -> SessionStateMachine {
        var machine = machine(policy)
        try machine.connectRequested()
        do {
            let value = machine.connackAccepted(now: start, sessionPresent: true)
            #expect(value)
        }
        return machine
    }

    let lost = MQTTError(.connectionLost, operation: .connection)

    @Test("connect starts a session once; a second connect is refused while it runs")
    func connectOnce() throws {
        var machine = machine()
        #expect(!machine.isRunning)
        try machine.connectRequested()
        #expect(machine.phase == .connecting)
        #expect(machine.acceptsCommands && !machine.isConnected)
        let second = #expect(throws: MQTTError.self) { try machine.connectRequested() }
        #expect(second?.code == .alreadyConnected)
        do {
            let value = machine.connackAccepted(now: start, sessionPresent: false)
            #expect(value)
        }
        #expect(machine.phase == .connected(since: start))
        #expect(machine.isConnected)
        let restore = machine.takeResubscriptions()
        #expect(restore.isEmpty, "nothing recorded, nothing to restore")
    }

    @Test("a closed machine refuses to connect, and closing twice does nothing")
    func closedRefuses() {
        var machine = machine()
        do {
            let value = machine.close(now: start, deadline: start)
            #expect(value == SessionStateMachine.StopAction.none)
        }
        do {
            let value = machine.close(now: start, deadline: start)
            #expect(value == nil)
        }
        let error = #expect(throws: MQTTError.self) { try machine.connectRequested() }
        #expect(error?.code == .clientClosed)
    }

    @Test("a refused CONNACK is final, even with reconnect on")
    func refusalIsFinal() throws {
        var machine = machine()
        try machine.connectRequested()
        machine.connackRefused(MQTTError(.notAuthorized, operation: .connect))
        do {
            let value = machine.connectionLost(error: lost, now: start)
            #expect(value == .end)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(!end.requested)
        #expect(end.error?.code == .notAuthorized)
        #expect(!machine.isRunning)
    }

    @Test("a reconnect the broker refuses ends the session, reported with the refusal after the loss was reported")
    func refusedReconnectIsReported() throws {
        var machine = try connected()
        let loss = machine.disconnected(now: start + .seconds(1))
        #expect(loss.report && loss.willReconnect)
        _ = machine.connectionLost(error: lost, now: start + .seconds(1))
        machine.connackRefused(MQTTError(.notAuthorized, operation: .connect))
        do {
            let value = machine.disconnected(now: start + .seconds(2))
            #expect(!value.report && !value.willReconnect)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(end.report, "the end is reported once more, with its reason")
        #expect(!end.requested && end.error?.code == .notAuthorized)
    }

    @Test("a connection lost before the first CONNACK ends the session (a failed connect)")
    func lossBeforeFirstConnack() throws {
        var machine = machine()
        try machine.connectRequested()
        let failure = MQTTError(.connectionRefused, operation: .connect)
        do {
            let value = machine.connectionLost(error: failure, now: start)
            #expect(value == .end)
        }
        do {
            let value = machine.sessionEnded(error: nil)
            #expect(value.error?.code == .connectionRefused)
        }
    }

    @Test("with reconnect off, a lost connection is reported once and ends the session with its error")
    func lossWithoutReconnect() throws {
        var machine = try connected(.disabled)
        let first = machine.disconnected(now: start + .seconds(1))
        #expect(first.report && !first.willReconnect)
        #expect(!machine.isConnected && !machine.acceptsCommands)
        do {
            let value = machine.disconnected(now: start + .seconds(1))
            #expect(value.report == false)
        }
        do {
            let value = machine.connectionLost(error: lost, now: start + .seconds(1))
            #expect(value == .end)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(!end.report, "already reported")
        #expect(end.error?.code == .connectionLost)
    }

    @Test("the reconnect attempt keeps counting across connections that do not stay up for the stable period")
    func backoffGrowsUntilStable() throws {
        var machine = try connected(.exponentialBackoff(jitter: false, stablePeriod: .seconds(10)))
        var now = start
        // A broker that accepts and drops at once, over and over: 1, 2, 3, ... never back to 1.
        for expected in 1...6 {
            now += .milliseconds(200)
            do {
                let value = machine.disconnected(now: now)
                #expect(value.willReconnect)
            }
            do {
                let value = machine.connectionLost(error: lost, now: now)
                #expect(value == .reconnect(attempt: expected))
            }
            #expect(machine.acceptsCommands, "QoS 1/2 publishes queue while reconnecting")
            now += .milliseconds(100)
            do {
                let value = machine.connackAccepted(now: now, sessionPresent: true)
                #expect(value)
            }
        }
        // This connection stays up for the stable period: the next loss starts again at 1.
        now += .seconds(10)
        _ = machine.disconnected(now: now)
        do {
            let value = machine.connectionLost(error: lost, now: now)
            #expect(value == .reconnect(attempt: 1))
        }
    }

    @Test("failed reconnects (no CONNACK) count on too")
    func failedReconnectsCount() throws {
        var machine = try connected()
        _ = machine.disconnected(now: start + .seconds(60))
        do {
            let value = machine.connectionLost(error: lost, now: start + .seconds(60))
            #expect(value == .reconnect(attempt: 1))
        }
        do {
            let value = machine.connectionLost(error: lost, now: start + .seconds(61))
            #expect(value == .reconnect(attempt: 2))
        }
        do {
            let value = machine.connectionLost(error: lost, now: start + .seconds(63))
            #expect(value == .reconnect(attempt: 3))
        }
    }

    @Test("the policy's delays for a CONNACK-and-close broker over 20 s: 1 + 2 + 4 + 8 s, so 5 attempts, not 100")
    func attemptsOverTwentySeconds() throws {
        let policy = MQTTReconnectPolicy.exponentialBackoff(minimumDelay: .seconds(1), maximumDelay: .seconds(30), jitter: false)
        var machine = try connected(policy)
        var now = start
        var connections = 1
        while true {
            _ = machine.disconnected(now: now)
            guard case .reconnect(let attempt) = machine.connectionLost(error: lost, now: now) else { Issue.record("ended"); return }
            now += policy.delay(forAttempt: attempt)
            guard now - start <= .seconds(20) else { break }
            do {
                let value = machine.connackAccepted(now: now, sessionPresent: true)
                #expect(value)
            }
            connections += 1
        }
        #expect(connections == 5)
    }

    @Test("disconnect on a live connection drains first, then sends DISCONNECT, then only writes")
    func disconnectDrainsThenSendsDisconnect() throws {
        var machine = try connected()
        let deadline = start + .seconds(5)
        do {
            let value = machine.stop(error: nil, now: start, deadline: deadline)
            #expect(value == .drain)
        }
        #expect(!machine.acceptsCommands && !machine.isConnected && machine.isEnding)
        do {
            let value = machine.stopProgress(now: start, wantsWrite: true)
            #expect(value == .running, "acknowledgements are still read while the queue drains")
        }
        do {
            let value = machine.stopProgress(now: start + .seconds(1), wantsWrite: true)
            #expect(value == .running)
        }
        do {
            let value = machine.stopProgress(now: start + .seconds(2), wantsWrite: false)
            #expect(value == .sendDisconnect)
        }
        #expect(machine.phase == .disconnecting(deadline: deadline))
        do {
            let value = machine.stopProgress(now: start + .seconds(2), wantsWrite: true)
            #expect(value == .writeOnly)
        }
        do {
            let value = machine.stop(error: nil, now: start, deadline: deadline)
            #expect(value == SessionStateMachine.StopAction.none, "a second disconnect only waits")
        }
        let disconnected = machine.disconnected(now: start + .seconds(2))
        #expect(disconnected.report && !disconnected.willReconnect)
        do {
            let value = machine.connectionLost(error: lost, now: start + .seconds(2))
            #expect(value == .end)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(end.requested && end.error == nil && !end.report)
    }

    @Test("a drain waits for acknowledgements in flight for half the time, then sends DISCONNECT anyway")
    func drainWaitsForAcknowledgements() throws {
        var machine = try connected()
        do {
            let value = machine.stop(error: nil, now: start, deadline: start + .seconds(4))
            #expect(value == .drain)
        }
        do {
            let value = machine.stopProgress(now: start + .seconds(1), wantsWrite: false, awaitingAcknowledgements: true)
            #expect(value == .running)
        }
        do {
            let value = machine.stopProgress(now: start + .seconds(2), wantsWrite: false, awaitingAcknowledgements: true)
            #expect(value == .sendDisconnect)
        }
        var acknowledged = try connected()
        _ = acknowledged.stop(error: nil, now: start, deadline: start + .seconds(4))
        do {
            let value = acknowledged.stopProgress(now: start + .milliseconds(10), wantsWrite: false, awaitingAcknowledgements: false)
            #expect(value == .sendDisconnect)
        }
    }

    @Test("a DISCONNECT not written by the deadline gives up with a timeout error, not a silent success")
    func drainDeadline() throws {
        var machine = try connected()
        do {
            let value = machine.stop(error: nil, now: start, deadline: start + .seconds(1))
            #expect(value == .drain)
        }
        do {
            let value = machine.stopProgress(now: start + .seconds(1), wantsWrite: true)
            #expect(value == .giveUp)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(!end.requested)
        #expect(end.error?.code == .timeout)
        #expect(end.error?.operation == .disconnect)
        #expect(end.report)
    }

    @Test("a stop while connecting or reconnecting abandons the attempt; a backoff does not reconnect")
    func stopWhileConnecting() throws {
        var connecting = machine()
        try connecting.connectRequested()
        do {
            let value = connecting.stop(error: nil, now: start, deadline: start)
            #expect(value == .abandonConnection)
        }
        do {
            let value = connecting.stopProgress(now: start - .seconds(1), wantsWrite: true)
            #expect(value == .writeOnly)
        }
        do {
            let value = connecting.connackAccepted(now: start, sessionPresent: true)
            #expect(value == false, "no .connected after a stop")
        }

        var reconnecting = try connected()
        _ = reconnecting.disconnected(now: start)
        do {
            let value = reconnecting.connectionLost(error: lost, now: start)
            #expect(value == .reconnect(attempt: 1))
        }
        do {
            let value = reconnecting.stop(error: nil, now: start, deadline: start)
            #expect(value == .abandonConnection)
        }
        do {
            let value = reconnecting.connectionLost(error: lost, now: start)
            #expect(value == .end)
        }
        do {
            let value = reconnecting.sessionEnded(error: nil)
            #expect(value.requested)
        }
    }

    @Test("a stop with an error (a connect timeout) ends the session with that error")
    func stopWithError() throws {
        var machine = machine()
        try machine.connectRequested()
        do {
            let value = machine.stop(error: MQTTError(.timeout, operation: .connect), now: start, deadline: start)
            #expect(value == .abandonConnection)
        }
        let end = machine.sessionEnded(error: nil)
        #expect(!end.requested)
        #expect(end.error?.code == .timeout)
    }

    @Test("a new session starts clean after the last one ended")
    func sessionsAreIndependent() throws {
        var machine = try connected()
        _ = machine.stop(error: MQTTError(.timeout, operation: .connect), now: start, deadline: start)
        _ = machine.sessionEnded(error: nil)
        try machine.connectRequested()
        #expect(!machine.stopRequested && machine.stopError == nil && machine.reconnectAttempt == 0 && !machine.everConnected)
    }
}
