// MARK: - SessionStateMachine

/// The lifecycle of a client's sessions as a pure state machine: no I/O, no locks, no clock.
///
/// A session runs from ``connectRequested()`` to ``sessionEnded()``: the first connection, then
/// reconnects per the policy, until a stop (a disconnect, a close, a failed or abandoned connect)
/// or a loss that the policy does not retry. ``MosquittoBridge`` holds one machine under its lock,
/// feeds it every event (with the time, which the machine never reads itself) and carries out
/// the returned actions outside the lock: it stays the only place that calls libmosquitto.
///
/// DESIGN: this replaces a phase plus seven Bools that the bridge and both drivers kept in step
/// by hand (postgres-nio's `ConnectionStateMachine` is the model). What it decides:
/// - whether commands may run (``acceptsCommands``, ``isConnected``);
/// - the reconnect attempt, which counts on across connections until one has stayed up for the
///   policy's ``MQTTReconnectPolicy/stablePeriod`` (a broker that accepts and then drops every
///   connection is retried with a growing delay, not five times a second);
/// - how a stop ends a live connection: first everything queued before it is written (draining:
///   libmosquitto still reads acknowledgements normally), then DISCONNECT, after which the driver
///   only writes, so no acknowledgement read in libmosquitto's "disconnecting" state can close
///   the socket with the DISCONNECT still unwritten; a deadline bounds both steps, and a
///   DISCONNECT that missed it is an error for the caller, not a silent success;
/// - whether a disconnection is reported once, and whether the end was the one requested;
/// - what the operations awaiting an answer (``pending``) become when a connection is lost or
///   the session ends, and when the subscriptions (``subscriptions``) are made again or forgotten.
struct SessionStateMachine: Sendable {
    /// Where the session is.
    enum Phase: Sendable, Equatable {
        /// No session: the driver is not running.
        case idle
        /// The first connection of the session: the blocking connect, then waiting for CONNACK.
        case connecting
        /// The broker accepted the connection at `since`.
        case connected(since: ContinuousClock.Instant)
        /// The connection was lost; the driver waits for the backoff or reconnects.
        case reconnecting
        /// A stop was requested on a live connection: what was queued before it is being written,
        /// then DISCONNECT follows (acknowledgements are still read meanwhile).
        case draining(deadline: ContinuousClock.Instant)
        /// The session is ending: DISCONNECT is queued (or the connection is gone or was never
        /// made); the driver only writes until the socket closes or the deadline passes.
        case disconnecting(deadline: ContinuousClock.Instant)
    }

    /// What a stop request asks the bridge to do at once.
    enum StopAction: Sendable, Equatable {
        /// Nothing runs, or a stop is already under way.
        case none
        /// No live connection: fail the connect attempt, queue DISCONNECT (libmosquitto sends it
        /// if a socket exists) and wake the driver (which ends a backoff at once).
        case abandonConnection
        /// A live connection: wake the driver, which drains and then sends DISCONNECT.
        case drain
    }

    /// What the driver does next while the session is stopping (``stopProgress(now:wantsWrite:)``).
    enum StopProgress: Sendable, Equatable {
        /// Not stopping, or draining: run ordinary passes (read and write).
        case running
        /// The queue has been written: queue DISCONNECT now, then only write.
        case sendDisconnect
        /// DISCONNECT is queued: only write, never read, until the socket closes.
        case writeOnly
        /// The deadline passed with DISCONNECT unwritten: close the connection without it.
        case giveUp
    }

    /// What follows a lost connection (``connectionLost(error:now:)``).
    enum LossAction: Sendable, Equatable {
        /// Report `.reconnecting` and reconnect after the policy's delay for `attempt`.
        case reconnect(attempt: Int)
        /// The session ends.
        case end
    }

    /// The policy's settings the machine needs.
    let reconnectEnabled: Bool
    let stablePeriod: Duration
    /// ``MQTTConfiguration/resubscribeOnSessionLoss``.
    let resubscribesOnSessionLoss: Bool
    /// ``MQTTConfiguration/sessionOutlivesConnection``: the broker keeps the session after a requested disconnect.
    let sessionOutlivesConnection: Bool

    /// The operations awaiting the broker's answer. The bridge records and resolves single
    /// operations here; the machine's events decide what a lost connection or an ended session
    /// does to them.
    var pending = PendingOperations()
    /// What the broker accepted, to subscribe again after a session loss.
    var subscriptions = SubscriptionRegistry()

    private(set) var phase = Phase.idle
    /// Whether the client was closed (for good).
    private(set) var closed = false
    /// Whether the session should end (a disconnect, a close, a failed or abandoned connect).
    private(set) var stopRequested = false
    /// Why the session ends, when not as requested.
    private(set) var stopError: MQTTError?
    /// Whether the broker accepted a connection in this session.
    private(set) var everConnected = false
    /// The reconnect attempt: 0 until a connection is lost, then counting until one is stable.
    private(set) var reconnectAttempt = 0
    /// Whether the current connection's end has been reported (or there is nothing to report).
    private(set) var disconnectReported = true
    /// A CONNACK without session asked for the recorded subscriptions to be made again.
    private(set) var resubscribeNeeded = false
    /// When the broker accepted the current (or last lost) connection, until the loss is handled.
    private var connectedSince: ContinuousClock.Instant?
    /// Until when a drain waits for the acknowledgements of QoS 1/2 publishes in flight.
    private var acknowledgementsUntil: ContinuousClock.Instant?

    /// A machine for `policy`.
    init(policy: MQTTReconnectPolicy, resubscribesOnSessionLoss: Bool = true, sessionOutlivesConnection: Bool = false) {
        reconnectEnabled = policy.isEnabled
        stablePeriod = policy.stablePeriod
        self.resubscribesOnSessionLoss = resubscribesOnSessionLoss
        self.sessionOutlivesConnection = sessionOutlivesConnection
    }

    /// A machine for `configuration`.
    init(configuration: MQTTConfiguration) {
        self.init(
            policy: configuration.reconnect, resubscribesOnSessionLoss: configuration.resubscribeOnSessionLoss,
            sessionOutlivesConnection: configuration.sessionOutlivesConnection
        )
    }

    // MARK: Queries

    /// Whether the broker has accepted the current connection and no stop was requested.
    var isConnected: Bool {
        if case .connected = phase { return true }
        return false
    }

    /// Whether the driver runs (from connect until the session ended).
    var isRunning: Bool { phase != .idle }

    /// Whether publishes may be queued: a session runs and is not stopping (QoS 1/2 queued while
    /// reconnecting are sent after the reconnect).
    var acceptsCommands: Bool {
        switch phase {
        case .connecting, .connected, .reconnecting: return !stopRequested
        case .idle, .draining, .disconnecting: return false
        }
    }

    /// Whether a session is winding down (so that a new connect waits for its end).
    var isEnding: Bool {
        switch phase {
        case .draining, .disconnecting: return true
        case .idle, .connecting, .connected, .reconnecting: return false
        }
    }

    // MARK: Events

    /// `connect()` was called: a session starts.
    ///
    /// - Throws: ``MQTTError/Code/clientClosed`` or ``MQTTError/Code/alreadyConnected``.
    mutating func connectRequested() throws(MQTTError) {
        guard !closed else { throw MQTTError(.clientClosed, operation: .connect) }
        guard phase == .idle else { throw MQTTError(.alreadyConnected, operation: .connect) }
        phase = .connecting
        stopRequested = false
        stopError = nil
        everConnected = false
        reconnectAttempt = 0
        disconnectReported = false
        resubscribeNeeded = false
        connectedSince = nil
        pending.sessionStarted()
    }

    /// The broker accepted the connection. The reconnect attempt is not reset here: only a
    /// connection that stays up for ``stablePeriod`` does that (see ``connectionLost(error:now:)``).
    ///
    /// Without the broker's session (`sessionPresent == false`) the recorded subscriptions are to
    /// be made again (``takeResubscriptions()``), when the configuration asks for it.
    ///
    /// - Returns: Whether to report `.connected` (not when a stop came first).
    mutating func connackAccepted(now: ContinuousClock.Instant, sessionPresent: Bool) -> Bool {
        everConnected = true
        guard !stopRequested else { return false }
        phase = .connected(since: now)
        connectedSince = now
        disconnectReported = false
        if !sessionPresent, resubscribesOnSessionLoss, !subscriptions.isEmpty { resubscribeNeeded = true }
        return true
    }

    /// The subscriptions to make again after a CONNACK without session, once (empty otherwise).
    mutating func takeResubscriptions() -> [SubscriptionRegistry.Entry] {
        guard resubscribeNeeded, isConnected else { return [] }
        resubscribeNeeded = false
        return subscriptions.all
    }

    /// The broker refused the connection: final (retrying a bad password only hammers the broker).
    /// The session's end is then reported with the refusal, also after a reconnect whose lost
    /// connection was reported already (the application must learn why it ended).
    mutating func connackRefused(_ error: MQTTError) {
        stopRequested = true
        if stopError == nil { stopError = error }
        disconnectReported = false
    }

    /// A stop: `disconnect()` (`error == nil`), a connect that timed out or was cancelled, a
    /// configuration the driver cannot run, or ``close()``.
    ///
    /// - Parameters:
    ///   - now: When the stop was requested.
    ///   - deadline: Until when queued packets and DISCONNECT may be written. For the first half
    ///     of that time the drain also waits for the acknowledgements of QoS 1/2 publishes in
    ///     flight (as Paho's disconnect does), so that no PUBACK arrives after DISCONNECT: a
    ///     socket closed with unread data sends a reset, and the peer's kernel may then drop the
    ///     DISCONNECT it has not read yet.
    mutating func stop(error: MQTTError?, now: ContinuousClock.Instant, deadline: ContinuousClock.Instant) -> StopAction {
        guard isRunning else { return .none }
        let first = !stopRequested
        stopRequested = true
        if let error, stopError == nil { stopError = error }
        switch phase {
        case .connected:
            phase = .draining(deadline: deadline)
            acknowledgementsUntil = now + (deadline - now) / 2
            return .drain
        case .connecting, .reconnecting:
            phase = .disconnecting(deadline: deadline)
            return .abandonConnection
        case .idle, .draining, .disconnecting:
            return first ? .abandonConnection : .none
        }
    }

    /// ``MosquittoBridge/close()``: the client ends for good; a running session stops.
    ///
    /// - Returns: `nil` if it was closed already; otherwise the stop action (`.none` without a session).
    mutating func close(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant) -> StopAction? {
        guard !closed else { return nil }
        closed = true
        return stop(error: nil, now: now, deadline: deadline)
    }

    /// The driver asks, between passes, how a stop proceeds.
    ///
    /// - Parameters:
    ///   - wantsWrite: Whether libmosquitto still has bytes queued for the socket.
    ///   - awaitingAcknowledgements: Whether QoS 1/2 publishes await their acknowledgement.
    mutating func stopProgress(now: ContinuousClock.Instant, wantsWrite: Bool, awaitingAcknowledgements: Bool = false) -> StopProgress {
        switch phase {
        case .draining(let deadline):
            if now >= deadline { return giveUp() }
            if wantsWrite { return .running }
            if awaitingAcknowledgements, let until = acknowledgementsUntil, now < until { return .running }
            phase = .disconnecting(deadline: deadline)
            return .sendDisconnect
        case .disconnecting(let deadline):
            if now >= deadline { return giveUp() }
            return .writeOnly
        case .idle, .connecting, .connected, .reconnecting:
            return .running
        }
    }

    private mutating func giveUp() -> StopProgress {
        if stopError == nil {
            stopError = MQTTError(
                .timeout, operation: .disconnect,
                detail: "the queued packets and DISCONNECT could not be written in time; the connection was closed without DISCONNECT"
            )
        }
        return .giveUp
    }

    /// libmosquitto reported the connection closed (`on_disconnect`): a live connection moves to
    /// `.reconnecting`, or to `.disconnecting` when the session ends with it.
    ///
    /// - Returns: Whether to report `.disconnected` (once per connection that was reported up),
    ///   whether the session will reconnect, and the waits to fail: none when it will (QoS 1/2
    ///   publishes stay, SUBSCRIBE and UNSUBSCRIBE are sent again), all of them otherwise
    ///   (``PendingOperations/connectionLost(willReconnect:)``).
    mutating func disconnected(now: ContinuousClock.Instant) -> (report: Bool, willReconnect: Bool, abandoned: PendingOperations.Abandoned) {
        let willReconnect = !stopRequested && everConnected && reconnectEnabled
        let wasUp: Bool
        switch phase {
        case .connected:
            wasUp = true
            phase = willReconnect ? .reconnecting : .disconnecting(deadline: now)
        case .draining, .disconnecting:
            wasUp = everConnected
        case .idle, .connecting, .reconnecting:
            wasUp = false
        }
        let report = wasUp && !disconnectReported
        if report { disconnectReported = true }
        return (report, willReconnect, pending.connectionLost(willReconnect: willReconnect))
    }

    /// The error for waits abandoned when a connection closes (``disconnected(now:)``): after a
    /// close, ``MQTTError/Code/clientClosed``; otherwise the connection's own error, or
    /// ``MQTTError/Code/notConnected`` after a requested disconnect.
    func abandonedError(connectionError: MQTTError?) -> MQTTError {
        if closed { return MQTTError(.clientClosed, operation: .connection) }
        return connectionError ?? MQTTError(.notConnected, operation: .connection, detail: "disconnected before the acknowledgement arrived")
    }

    /// Records why the session ends when nothing else has (the first reason wins).
    mutating func recordEndError(_ error: MQTTError) {
        if stopError == nil, !stopRequested { stopError = error }
    }

    /// The driver found the connection gone (or a reconnect failed): reconnect or end.
    ///
    /// The attempt counts on from the last one unless the connection that was lost had stayed
    /// up for ``stablePeriod``: then the backoff starts again at attempt 1.
    mutating func connectionLost(error: MQTTError, now: ContinuousClock.Instant) -> LossAction {
        guard !stopRequested, everConnected, reconnectEnabled else {
            recordEndError(error)
            return .end
        }
        if let since = connectedSince, now - since >= stablePeriod {
            reconnectAttempt = 0
        }
        connectedSince = nil
        phase = .reconnecting
        reconnectAttempt += 1
        return .reconnect(attempt: reconnectAttempt)
    }

    /// How a session ended (``sessionEnded(error:)``).
    struct SessionEnd: Sendable {
        /// Whether a disconnection is still to be reported.
        let report: Bool
        /// Whether the end was the one requested (a stop without error).
        let requested: Bool
        /// The error that ended it, when not as requested.
        let error: MQTTError?
        /// Whether the broker keeps the subscriptions (and so do we, and the message sequences).
        let keepsSubscriptions: Bool
        /// Every wait still pending, to fail.
        let abandoned: PendingOperations.Abandoned
        /// The error for those waits: ``MQTTError/Code/clientClosed`` after a close,
        /// ``MQTTError/Code/notConnected`` after a requested disconnect, otherwise
        /// ``MQTTError/Code/connectionLost``.
        let pendingError: MQTTError
    }

    /// The driver has ended the session: every pending wait is abandoned, and the subscriptions
    /// are forgotten unless the broker keeps them (a requested end of a session that outlives
    /// its connection).
    mutating func sessionEnded(error: MQTTError?) -> SessionEnd {
        phase = .idle
        resubscribeNeeded = false
        connectedSince = nil
        let report = !disconnectReported
        disconnectReported = true
        let requested = stopRequested && stopError == nil && error == nil
        let keepsSubscriptions = requested && sessionOutlivesConnection
        if !keepsSubscriptions {
            subscriptions.removeAll()
        }
        let pendingError: MQTTError =
            closed ? MQTTError(.clientClosed, operation: .connection)
            : requested ? MQTTError(.notConnected, operation: .connection, detail: "disconnected before the acknowledgement arrived")
            : MQTTError(.connectionLost, operation: .connection)
        return SessionEnd(
            report: report, requested: requested, error: error ?? stopError, keepsSubscriptions: keepsSubscriptions,
            abandoned: pending.removeAll(), pendingError: pendingError
        )
    }
}
