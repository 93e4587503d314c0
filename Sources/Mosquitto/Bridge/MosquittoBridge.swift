// MARK: - BridgeEventSink

/// Receives what the bridge reports, already copied into Swift values. Called on the driver
/// thread: implementations must not block and must not call back into the bridge synchronously.
///
/// Received messages take a path of their own (two calls per pass, no enum to build per
/// message); everything else is one ``BridgeEvent``. The two queries let the bridge skip work
/// nobody wants (formatting a log line, counting pending publishes).
protocol BridgeEventSink: AnyObject, Sendable {
    /// A message arrived.
    func bridgeDidReceive(_ message: MQTTMessage)
    /// One pass of the network loop ended, successfully or not: hand the messages reported by
    /// ``bridgeDidReceive(_:)`` since the last call to their consumers now (waking each at most
    /// once). The driver calls it after every pass; a message reported without a following
    /// call may wait in a buffer until the sequence finishes.
    func bridgeDidFinishLoopPass()
    /// Anything else the bridge reports: connection changes, acknowledgements, the end of a
    /// session, the pending-publish count, log lines.
    func bridgeDidReport(_ event: BridgeEvent)
    /// Whether log lines at `level` are wanted; checked before a line is copied.
    func wantsLog(_ level: MQTTLogLevel) -> Bool
    /// Whether ``BridgeEvent/pendingPublishes(_:)`` is wanted (metrics are on); constant.
    var tracksPendingPublishes: Bool { get }
}

/// What the bridge reports to its sink besides received messages.
enum BridgeEvent: Sendable {
    /// The connection changed.
    case connection(MQTTConnectionEvent)
    /// An acknowledgement arrived (for the delegate's informational callbacks).
    case acknowledgement(BridgeAcknowledgement)
    /// A session ended for good (no reconnect follows): `nil` after a requested disconnect or
    /// close, otherwise the error that ended it. Reported once per ``MosquittoBridge/connect(timeout:)``.
    /// `keepsSubscriptions`: the broker keeps the session's subscriptions (a requested end of a
    /// session that outlives its connection), so their message sequences stay open for the next
    /// connect; decided by ``SessionStateMachine/sessionEnded(error:)``, the one owner of that rule.
    case sessionEnded(MQTTError?, keepsSubscriptions: Bool)
    /// The number of QoS 1/2 publishes awaiting acknowledgement changed (for metrics; only when
    /// ``BridgeEventSink/tracksPendingPublishes``). Reports are serialised, each with the count
    /// of its moment, so the last one is the current count.
    case pendingPublishes(Int)
    /// A libmosquitto log line, or one of the bridge's own.
    case log(MQTTLogLevel, String)
}

/// An acknowledgement from the broker, for informational callbacks.
enum BridgeAcknowledgement: Sendable {
    case published(messageID: UInt16, reasonCode: MQTTReasonCode)
    case subscribed(messageID: UInt16, reasonCodes: [MQTTReasonCode])
    case unsubscribed(messageID: UInt16)
}

/// A SUBACK: one reason code per filter, and the packet's properties.
struct SubscribeAcknowledgement: Sendable {
    var reasonCodes: [MQTTReasonCode]
    var properties: MQTTProperties
}

// MARK: - MosquittoBridge

/// The one owner of a libmosquitto handle and of everything that follows from it: the session
/// (its ``SessionStateMachine``, which holds the pending operations and the subscriptions) and
/// the session's driver.
///
/// The driver runs a session's network steps (connect, read/write/keepalive, reconnect per the
/// policy, the end): a ``SessionDriver``, either a ``ThreadDriver`` (a thread per session,
/// libmosquitto's `mosquitto_loop`) or an ``EventLoop`` shared with other clients. Both call the same session
/// steps below (``openSession()``, ``prepareForPass(_:stopping:)``, ``completePass(_:)``,
/// ``connectionFailed(_:_:)``, ``reconnectSocket()``, ``closeSession()``), so the decisions stay
/// here; "the driver thread" below is whichever thread runs them at the moment.
///
/// Commands (connect, publish, subscribe, ...) arrive from any task; events arrive from the C
/// thunks in ``BridgeCallbacks`` on the driver thread. Both sides take ``state``'s lock only to
/// read and update Swift state, never while calling libmosquitto or resuming a continuation.
///
/// Files: this one holds the state, connect, disconnect and close; `+Commands` publish, subscribe
/// and the subscription registry; `+Session` the driver's steps; `+Events` what the C thunks
/// report. The lifecycle decisions themselves live in ``SessionStateMachine`` (no I/O, no locks).
///
/// Lifetime: the handle's userdata holds a retained reference to the bridge (swift-nio-ssl's
/// pattern). ``close()`` is idempotent; the handle is destroyed and the reference released
/// exactly once, by whichever of `close()` and the ending session comes last.
final class MosquittoBridge: Sendable {
    struct State: ~Copyable {
        /// The lifecycle: phase, stop, reconnect attempt, the pending operations and the
        /// subscriptions to restore (every decision about them is its own).
        var session: SessionStateMachine
        var closeUsesHandle = false
        /// Completed when the session ends: failed when a requested DISCONNECT did not reach the wire.
        var driverExited = Promise<Void>(completed: .success(()))
        /// The DISCONNECT that a requested stop sends once the queue is written.
        var disconnectPacket = DisconnectPacket()
        var connectPromise: Promise<MQTTConnectResult>?
        /// The CONNACK of the current (or last) connection: the server's capabilities.
        var connectResult: MQTTConnectResult?
        /// What `connectResult` allows a publish (checked for every publish).
        var publishLimits: PublishLimits?
        var connectLog: [String] = []
        /// Set by the dead-link watchdog when it aborts the connection: why it did.
        var deadLinkDetail: String?

        init(configuration: MQTTConfiguration) {
            session = SessionStateMachine(configuration: configuration)
        }
    }

    /// The reason code and properties of the DISCONNECT a requested stop sends.
    struct DisconnectPacket: Sendable {
        var reasonCode = MQTTReasonCode.success
        var properties = MQTTProperties()
    }

    let configuration: MQTTConfiguration
    let clientID: String
    /// The libmosquitto handle; the network calls on it belong to the session's driver.
    let handle: MosquittoHandle
    let state: Locked<State>
    let sleeper = Sleeper()
    /// What drives this client's sessions: a shared ``EventLoop`` or a ``ThreadDriver``.
    let driver: any SessionDriver
    /// Serialises ``reportPendingPublishes()``; holds the count last reported.
    let pendingPublishReports = Locked(0)
    /// This bridge's key in an ``EventLoop``.
    let eventLoopToken: UInt64
    /// The event loop as an executor for tasks (``MQTTClient/taskExecutor``).
    var taskExecutor: (any TaskExecutor)? { driver.taskExecutor }
    /// On an event loop: the socket the loop has registered for this client (-1 when none), and
    /// the lock under which the loop, or a thread writing directly, does the connection's I/O.
    let loopSocket = Locked<Int32>(-1)
    let sink: any BridgeEventSink

    /// Creates the handle and applies the configuration.
    ///
    /// - Throws: ``MQTTError`` when libmosquitto rejects a setting.
    init(configuration: MQTTConfiguration, clientID: String, sink: any BridgeEventSink) throws(MQTTError) {
        self.configuration = configuration
        self.clientID = clientID.isEmpty ? "(client ID assigned by the broker)" : clientID
        self.sink = sink
        self.state = Locked(State(configuration: configuration))
        let eventLoop = configuration.eventLoopGroup?.nextLoop()
        self.driver = eventLoop ?? ThreadDriver()
        self.eventLoopToken = EventLoop.makeToken()
        let placeholder = UnsafeMutableRawPointer(bitPattern: 1)!
        self.handle = try MosquittoHandle.create(
            clientID: clientID, cleanSession: configuration.cleanSession, userdata: placeholder, forEventLoop: eventLoop != nil
        )
        do {
            try handle.apply(configuration)
            _ = try PropertyList(configuration.connectProperties, for: .connect, operation: .configure)
        } catch {
            handle.destroy()
            throw error
        }
        // Only now is `self` complete: hand libmosquitto the retained reference it keeps.
        handle.setUserdata(Unmanaged.passRetained(self).toOpaque())
    }

    // MARK: Queries

    /// Whether the broker has accepted the current connection.
    var isConnected: Bool { state.withLock { $0.session.isConnected } }

    /// Whether a session runs (from connect() until it ended: connecting, connected, reconnecting).
    var isSessionRunning: Bool { state.withLock { $0.session.isRunning && !$0.session.stopRequested } }

    /// The CONNACK of the current or last connection.
    var connectResult: MQTTConnectResult? { state.withLock { $0.connectResult } }

    /// How many QoS 1/2 publishes await their acknowledgement (or are being handed over).
    var pendingPublishCount: Int { state.withLock { $0.session.pending.publishCount } }

    /// Tells the sink how many QoS 1/2 publishes are pending (counting the one being handed to
    /// libmosquitto), when it wants to know. The lock serialises the reports, and each reads the
    /// count inside it: whichever report comes last carries the current count, however the
    /// publishing task and the network thread interleave. (Only the metrics backend's gauge runs
    /// under it; the state lock is taken inside, never the other way round.)
    func reportPendingPublishes() {
        guard sink.tracksPendingPublishes else { return }
        pendingPublishReports.withLock { lastReported in
            let count = pendingPublishCount
            guard count != lastReported else { return }
            lastReported = count
            sink.bridgeDidReport(.pendingPublishes(count))
        }
    }

    // MARK: Properties

    /// Builds the property list for a packet; non-empty properties need MQTT 5.
    func propertyList(_ properties: MQTTProperties, for packet: PropertyPacket, operation: MQTTError.Operation) throws(MQTTError) -> PropertyList {
        guard !properties.isEmpty else { return PropertyList() }
        guard configuration.protocolVersion == .v5 else {
            throw MQTTError(.propertyNotAllowed, operation: operation, detail: "MQTT 5 properties on an MQTT \(configuration.protocolVersion) connection")
        }
        return try PropertyList(properties, for: packet, operation: operation)
    }

    // MARK: Connect and disconnect

    /// Starts a session on its driver and waits for the CONNACK.
    func connect(timeout: Duration) async throws(MQTTError) -> MQTTConnectResult {
        // A session that is ending (its driver thread winding down after a disconnect or a lost
        // connection) is waited for, so that reacting to `.disconnected` with connect() works.
        let ending: Promise<Void>? = state.withLock { state in
            state.session.isEnding || (state.session.isRunning && state.session.stopRequested) ? state.driverExited : nil
        }
        if let ending {
            do {
                try await ending.wait(timeout: timeout, operation: .connect)
            } catch where error.code == .timeout || error.code == .cancelled {
                throw error
            } catch {
                // The last session ended with an error (reported to its disconnect()): it ended.
            }
        }
        let promise = Promise<MQTTConnectResult>()
        try state.withLock { (state) throws(MQTTError) in
            try state.session.connectRequested()
            state.disconnectPacket = DisconnectPacket()
            state.connectLog = []
            state.connectPromise = promise
            state.driverExited = Promise()
        }
        sink.bridgeDidReport(.connection(.connecting))
        guard driver.start(self) else {
            let error = MQTTError(.outOfMemory, operation: .connect, detail: "could not start the network thread")
            finishDriver(error: error)
            throw error
        }
        do {
            return try await promise.wait(timeout: timeout, operation: .connect)
        } catch {
            if error.code == .timeout || error.code == .cancelled {
                requestStop(because: error)
            }
            throw error
        }
    }

    /// Ends the session and waits until it ended: on a live connection everything queued before
    /// this call is written first, then DISCONNECT (a connection attempt is abandoned instead).
    ///
    /// - Throws: ``MQTTError/Code/timeout`` when the queue and DISCONNECT were not written within
    ///   `timeout` (the connection is then closed without DISCONNECT: the broker publishes the will).
    func disconnect(timeout: Duration, reasonCode: MQTTReasonCode = .success, properties: MQTTProperties = MQTTProperties()) async throws(MQTTError) {
        let list = try propertyList(properties, for: .disconnect, operation: .disconnect)
        let now = ContinuousClock.now
        let deadline = now + timeout
        let stop: (action: SessionStateMachine.StopAction, exited: Promise<Void>)? = state.withLock { state in
            guard state.session.isRunning else { return nil }
            if !state.session.stopRequested {
                state.disconnectPacket = DisconnectPacket(reasonCode: reasonCode, properties: properties)
            }
            return (state.session.stop(error: nil, now: now, deadline: deadline), state.driverExited)
        }
        guard let stop else { return }
        perform(stop.action, abandonError: MQTTError(.cancelled, operation: .connect, detail: "disconnect() was called"), list: list, reasonCode: reasonCode)
        // Past the session's own deadline, so that a DISCONNECT that missed it is reported by the
        // session (saying so), not by this wait's timer racing it: a quarter of the timeout, at
        // least 250 ms (a loaded machine has run the session's close more than 250 ms late).
        let margin = max(.milliseconds(250), timeout / 4)
        try await stop.exited.wait(timeout: timeout + margin, operation: .disconnect)
    }

    /// Shuts the bridge down for good: disconnects cleanly if connected, fails pending operations
    /// with ``MQTTError/Code/clientClosed``, then destroys the handle. Never blocks; idempotent.
    func close() {
        let now = ContinuousClock.now
        let close: (action: SessionStateMachine.StopAction, driverRunning: Bool)? = state.withLock { state in
            guard let action = state.session.close(now: now, deadline: now + DriverTiming.stopGracePeriod) else { return nil }
            // While this flag is set the exiting driver leaves the handle alone: we still use it.
            state.closeUsesHandle = state.session.isRunning
            return (action, state.session.isRunning)
        }
        guard let close else { return }
        if close.driverRunning {
            perform(close.action, abandonError: MQTTError(.clientClosed, operation: .connect), list: PropertyList(), reasonCode: .success)
            let driverAlreadyExited = state.withLock { state in
                state.closeUsesHandle = false
                return !state.session.isRunning
            }
            // The driver ended while we used the handle, so it left the release to us.
            if driverAlreadyExited { releaseHandle() }
        } else {
            releaseHandle()
        }
    }

    /// Stops the session because of `error` (a connect that timed out or was cancelled, a
    /// connection the driver cannot run).
    func requestStop(because error: MQTTError) {
        let now = ContinuousClock.now
        let action = state.withLock { $0.session.stop(error: error, now: now, deadline: now + DriverTiming.stopGracePeriod) }
        perform(action, abandonError: error, list: PropertyList(), reasonCode: .success)
    }

    /// Carries out what a stop asks for at once (the rest happens on the driver's thread).
    func perform(_ action: SessionStateMachine.StopAction, abandonError: MQTTError, list: borrowing PropertyList, reasonCode: MQTTReasonCode) {
        switch action {
        case .none:
            return
        case .abandonConnection:
            failConnectAttempt(with: abandonError)
            // Sent right after CONNECT if a socket exists (else the driver sends it once one does).
            handle.disconnect(reasonCode: reasonCode, properties: list)
        case .drain:
            // The driver writes the queue, then sends DISCONNECT itself.
            break
        }
        driver.wake(self)
    }

    /// Writes what a command just queued, on an event loop's connection: at once on the calling
    /// thread when the loop is not busy with this connection, otherwise through the loop.
    ///
    /// DESIGN: libmosquitto wakes its own `mosquitto_loop` through a private socket pair, which
    /// an event loop cannot watch, so the loop must be told. Writing here instead saves the
    /// wake-up and the hop to the loop's thread, as libmosquitto's single-threaded mode does:
    /// a request–response round trip then crosses threads once (the answer, to the waiting task)
    /// instead of twice. The connection's I/O lock (``loopSocket``) keeps this write and the
    /// loop's reads from running at the same time (OpenSSL needs that), and the loop itself is
    /// never waited for: when it holds the lock, it is asked to write instead (coalesced, so a
    /// burst of publishes costs it one write pass).
    func requestWrite() {
        // Nothing queued (a QoS 1/2 message that libmosquitto holds back for its in-flight
        // window, or a packet another thread wrote already): nothing to do. Reliable on this
        // thread, which has just queued whatever it queued.
        guard driver.writesFromCommandThreads, handle.wantsWrite else { return }
        let written = loopSocket.withLockIfAvailable { attached -> Bool in
            let socket = handle.socket
            guard attached >= 0, socket == attached else { return false }
            guard handle.write().isSuccess, handle.socket == socket else {
                // libmosquitto closed the socket; the loop, told below, applies the policy.
                attached = -1
                return false
            }
            return !handle.wantsWrite
        } ?? false
        if !written {
            driver.requestWrite(self)
        }
    }

    func failConnectAttempt(with error: MQTTError) {
        let promise = state.withLock { state in
            defer { state.connectPromise = nil }
            return state.connectPromise
        }
        promise?.fail(error)
    }

    func releaseHandle() {
        handle.destroy()
        Unmanaged.passUnretained(self).release()
    }

}
