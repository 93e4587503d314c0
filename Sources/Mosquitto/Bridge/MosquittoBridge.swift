import CMosquitto

// MARK: - BridgeEventSink

/// Receives what the bridge reports, already copied into Swift values. Called on the driver
/// thread: implementations must not block and must not call back into the bridge synchronously.
protocol BridgeEventSink: AnyObject, Sendable {
    /// A message arrived.
    func bridgeDidReceive(_ message: MQTTMessage)
    /// One pass of the network loop ended, successfully or not: hand the messages reported by
    /// ``bridgeDidReceive(_:)`` since the last call to their consumers now (waking each at most
    /// once). The driver calls it after every `mosquitto_loop`; a message reported without a
    /// following call may wait in a buffer until the sequence finishes.
    func bridgeDidFinishLoopPass()
    /// The connection changed.
    func bridgeConnectionDidChange(_ event: MQTTConnectionEvent)
    /// An acknowledgement arrived (for the delegate's informational callbacks).
    func bridgeDidAcknowledge(_ acknowledgement: BridgeAcknowledgement)
    /// A session ended for good (no reconnect follows): `nil` after a requested disconnect or
    /// close, otherwise the error that ended it. Always called once per ``MosquittoBridge/connect(timeout:)``.
    func bridgeSessionDidEnd(error: MQTTError?)
    /// Whether log lines at `level` are wanted; checked before a line is copied.
    func wantsLog(_ level: MQTTLogLevel) -> Bool
    /// Whether ``bridgePendingPublishesDidChange(_:)`` is wanted (metrics are on); constant.
    var tracksPendingPublishes: Bool { get }
    /// The number of QoS 1/2 publishes awaiting acknowledgement changed (for metrics). Calls are
    /// serialised, each with the count of that moment, so the last one is the current count.
    func bridgePendingPublishesDidChange(_ count: Int)
    /// A libmosquitto log line.
    func bridgeDidLog(level: MQTTLogLevel, message: String)
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

/// The one owner of a libmosquitto handle and of everything that follows from it: the connection
/// state, the pending-operation tables and the session's driver.
///
/// The driver runs a session's network steps (connect, read/write/keepalive, reconnect per the
/// policy, the end): either a thread of the client's own (``runOwnThread()``, libmosquitto's
/// `mosquitto_loop`), or an ``EventLoop`` shared with other clients. Both call the same session
/// steps below (``openSession()``, ``prepareForPass(_:stopping:)``, ``completePass(_:)``,
/// ``connectionFailed(rc:_:)``, ``reconnectSocket()``, ``closeSession()``), so the decisions stay
/// here; "the driver thread" below is whichever thread runs them at the moment.
///
/// Commands (connect, publish, subscribe, ...) arrive from any task; events arrive from the C
/// thunks in ``BridgeCallbacks`` on the driver thread. Both sides take ``state``'s lock only to
/// read and update Swift state, never while calling libmosquitto or resuming a continuation.
///
/// Lifetime: the handle's userdata holds a retained reference to the bridge (swift-nio-ssl's
/// pattern). ``close()`` is idempotent; the handle is destroyed and the reference released
/// exactly once, by whichever of `close()` and the ending session comes last.
final class MosquittoBridge: Sendable {
    struct State: ~Copyable {
        /// The lifecycle: phase, stop, reconnect attempt (every decision about them is its own).
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
        var publishes = PendingTable<MQTTPublishReceipt>()
        var reservedPublishes = 0
        var subscribes = PendingTable<SubscribeAcknowledgement>()
        /// What the broker accepted, to subscribe again after a session loss (by filter).
        var subscriptions: [String: (filter: MQTTTopicFilter, properties: MQTTProperties)] = [:]
        var unsubscribes = PendingTable<MQTTProperties>()
        /// What the SUBSCRIBEs and UNSUBSCRIBEs in flight asked for, to send them again after a reconnect.
        var commands = PendingCommands()
        /// Set by the dead-link watchdog when it aborts the connection: why it did.
        var deadLinkDetail: String?

        init(policy: MQTTReconnectPolicy) {
            session = SessionStateMachine(policy: policy)
        }
    }

    /// The reason code and properties of the DISCONNECT a requested stop sends.
    struct DisconnectPacket: Sendable {
        var reasonCode = MQTTReasonCode.success
        var properties = MQTTProperties()
    }

    /// How long a stop without a caller's timeout (``close()``, an abandoned connect) gives the
    /// queued packets and DISCONNECT to be written; both drivers use it.
    static let stopGracePeriod = Duration.seconds(5)

    let configuration: MQTTConfiguration
    let clientID: String
    /// The libmosquitto handle; the network calls on it belong to the session's driver.
    let handle: MosquittoHandle
    private let state: Locked<State>
    private let sleeper = Sleeper()
    /// The shared event loop that drives this client's sessions, or `nil` for a thread of its own.
    private let eventLoop: EventLoop?
    /// Serialises ``reportPendingPublishes()``; holds the count last reported.
    private let pendingPublishReports = Locked(0)
    /// This bridge's key in ``eventLoop``.
    let eventLoopToken: UInt64
    /// The event loop as an executor for tasks (``MQTTClient/taskExecutor``).
    var taskExecutor: (any TaskExecutor)? { eventLoop }
    /// On an event loop: the socket the loop has registered for this client (-1 when none), and
    /// the lock under which the loop, or a thread writing directly, does the connection's I/O.
    let loopSocket = Locked<Int32>(-1)
    private let sink: any BridgeEventSink

    /// Creates the handle and applies the configuration.
    ///
    /// - Throws: ``MQTTError`` when libmosquitto rejects a setting.
    init(configuration: MQTTConfiguration, clientID: String, sink: any BridgeEventSink) throws(MQTTError) {
        self.configuration = configuration
        self.clientID = clientID
        self.sink = sink
        self.state = Locked(State(policy: configuration.reconnect))
        self.eventLoop = configuration.eventLoopGroup?.nextLoop()
        self.eventLoopToken = EventLoop.makeToken()
        let placeholder = UnsafeMutableRawPointer(bitPattern: 1)!
        self.handle = try MosquittoHandle.create(
            clientID: clientID, cleanSession: configuration.cleanSession, userdata: placeholder, forEventLoop: eventLoop != nil
        )
        do {
            try handle.apply(configuration)
            _ = try PropertyList(configuration.connectProperties, command: Int32(CMD_CONNECT), operation: .configure)
        } catch {
            handle.destroy()
            throw error
        }
        // Only now is `self` complete: hand libmosquitto the retained reference it keeps.
        mosquitto_user_data_set(handle.pointer, Unmanaged.passRetained(self).toOpaque())
    }

    // MARK: Queries

    /// Whether the broker has accepted the current connection.
    var isConnected: Bool { state.withLock { $0.session.isConnected } }

    /// Whether a session runs (from connect() until it ended: connecting, connected, reconnecting).
    var isSessionRunning: Bool { state.withLock { $0.session.isRunning && !$0.session.stopRequested } }

    /// The CONNACK of the current or last connection.
    var connectResult: MQTTConnectResult? { state.withLock { $0.connectResult } }

    /// How many QoS 1/2 publishes await their acknowledgement (or are being handed over).
    var pendingPublishCount: Int { state.withLock { $0.publishes.count + $0.reservedPublishes } }

    /// Tells the sink how many QoS 1/2 publishes are pending (counting the one being handed to
    /// libmosquitto), when it wants to know. The lock serialises the reports, and each reads the
    /// count inside it: whichever report comes last carries the current count, however the
    /// publishing task and the network thread interleave. (Only the metrics backend's gauge runs
    /// under it; the state lock is taken inside, never the other way round.)
    private func reportPendingPublishes() {
        guard sink.tracksPendingPublishes else { return }
        pendingPublishReports.withLock { lastReported in
            let count = pendingPublishCount
            guard count != lastReported else { return }
            lastReported = count
            sink.bridgePendingPublishesDidChange(count)
        }
    }

    // MARK: Properties

    /// Builds the property list for a packet; non-empty properties need MQTT 5.
    func propertyList(_ properties: MQTTProperties, command: UInt32, operation: MQTTError.Operation) throws(MQTTError) -> PropertyList {
        guard !properties.isEmpty else { return PropertyList() }
        guard configuration.protocolVersion == .v5 else {
            throw MQTTError(.propertyNotAllowed, operation: operation, detail: "MQTT 5 properties on an MQTT \(configuration.protocolVersion) connection")
        }
        return try PropertyList(properties, command: Int32(command), operation: operation)
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
            state.publishes.forgetStale()
        }
        sink.bridgeConnectionDidChange(.connecting)
        guard startDriver() else {
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
        let list = try propertyList(properties, command: CMD_DISCONNECT, operation: .disconnect)
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
        try await stop.exited.wait(timeout: timeout, operation: .disconnect)
    }

    /// Shuts the bridge down for good: disconnects cleanly if connected, fails pending operations
    /// with ``MQTTError/Code/clientClosed``, then destroys the handle. Never blocks; idempotent.
    func close() {
        let now = ContinuousClock.now
        let close: (action: SessionStateMachine.StopAction, driverRunning: Bool)? = state.withLock { state in
            guard let action = state.session.close(now: now, deadline: now + Self.stopGracePeriod) else { return nil }
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
    private func requestStop(because error: MQTTError) {
        let now = ContinuousClock.now
        let action = state.withLock { $0.session.stop(error: error, now: now, deadline: now + Self.stopGracePeriod) }
        perform(action, abandonError: error, list: PropertyList(), reasonCode: .success)
    }

    /// Carries out what a stop asks for at once (the rest happens on the driver's thread).
    private func perform(_ action: SessionStateMachine.StopAction, abandonError: MQTTError, list: borrowing PropertyList, reasonCode: MQTTReasonCode) {
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
        wakeDriver()
    }

    /// Starts the session's driver: a thread of its own, or a place on the shared event loop.
    private func startDriver() -> Bool {
        guard let eventLoop else { return DriverThread.start { [self] in runOwnThread() } }
        eventLoop.start(self)
        return true
    }

    /// Tells the driver to look at the stop flag now: ends a reconnect backoff, or has the event
    /// loop write a queued DISCONNECT.
    private func wakeDriver() {
        sleeper.wake()
        if let eventLoop {
            eventLoop.wake(eventLoopToken)
        } else {
            handle.wakeLoop()
        }
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
    private func requestWrite() {
        // Nothing queued (a QoS 1/2 message that libmosquitto holds back for its in-flight
        // window, or a packet another thread wrote already): nothing to do. Reliable on this
        // thread, which has just queued whatever it queued.
        guard let eventLoop, handle.wantsWrite else { return }
        let written = loopSocket.withLockIfAvailable { attached -> Bool in
            let socket = handle.socket
            guard attached >= 0, socket == attached else { return false }
            let rc = handle.write()
            guard rc == MOSQ_ERR_SUCCESS.rawValue, handle.socket == socket else {
                // libmosquitto closed the socket; the loop, told below, applies the policy.
                attached = -1
                return false
            }
            return !handle.wantsWrite
        } ?? false
        if !written {
            eventLoop.requestWrite(eventLoopToken)
        }
    }

    private func failConnectAttempt(with error: MQTTError) {
        let promise = state.withLock { state in
            defer { state.connectPromise = nil }
            return state.connectPromise
        }
        promise?.fail(error)
    }

    private func releaseHandle() {
        handle.destroy()
        Unmanaged.passUnretained(self).release()
    }

    // MARK: Publish, subscribe, unsubscribe

    /// Queues a PUBLISH. The payload is copied by libmosquitto before this returns.
    func publish(
        topic: String, payload: UnsafeRawBufferPointer, qos: MQTTQoS, retain: Bool, properties: MQTTProperties
    ) throws(MQTTError) -> MQTTPendingPublish {
        let list = try propertyList(properties, command: CMD_PUBLISH, operation: .publish)
        try state.withLock { (state) throws(MQTTError) in
            guard !state.session.closed else { throw MQTTError(.clientClosed, operation: .publish) }
            guard state.session.acceptsCommands else { throw MQTTError(.notConnected, operation: .publish) }
            if let limits = state.publishLimits {
                let size = limits.maximumPacketSize == nil ? 0 : PacketSize.publish(
                    topicLength: topic.utf8.count, payloadLength: payload.count, qos: qos, properties: properties, version: configuration.protocolVersion
                )
                try limits.check(qos: qos, retain: retain, packetSize: size)
            }
            if qos != .atMostOnce {
                guard state.publishes.count + state.reservedPublishes < configuration.maxPendingPublishes else {
                    throw MQTTError(.queueFull, operation: .publish, detail: "\(configuration.maxPendingPublishes) publishes await acknowledgement")
                }
                state.reservedPublishes += 1
            }
        }
        if qos != .atMostOnce { reportPendingPublishes() }
        var (rc, mid) = handle.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: list)
        let messageID = UInt16(truncatingIfNeeded: mid)
        if qos == .atMostOnce {
            // The hot path of QoS 0: nothing to wait for, so no promise. `on_publish` still fires
            // for the ID once the packet is written; mark it ignored.
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTError(mosquittoCode: rc, operation: .publish, detail: "topic \"\(topic)\"")
            }
            state.withLock { $0.publishes.ignore(mid) }
            requestWrite()
            return MQTTPendingPublish(completed: MQTTPublishReceipt(messageID: messageID, qos: qos))
        }
        let promise = Promise<MQTTPublishReceipt>()
        let early: Result<MQTTPublishReceipt, MQTTError>? = state.withLock { state in
            state.reservedPublishes -= 1
            // Without a socket libmosquitto 2.0.11 answers a QoS 1/2 publish with NO_CONN but
            // keeps the message and sends it after the (re)connect: it is queued, not failed.
            // That holds in any phase while the session lives, including the moment between a
            // lost socket and our `.reconnecting` (a session that ends fails it with the rest).
            if rc == MOSQ_ERR_NO_CONN.rawValue, mid != 0, state.session.isRunning {
                rc = MOSQ_ERR_SUCCESS.rawValue
            }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { return nil }
            return state.publishes.register(promise, for: mid)
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            reportPendingPublishes()
            throw MQTTError(mosquittoCode: rc, operation: .publish, detail: "topic \"\(topic)\"")
        }
        if early != nil { reportPendingPublishes() }
        requestWrite()
        if let early {
            promise.complete(early)
        }
        return MQTTPendingPublish(messageID: messageID, qos: qos, promise: promise, defaultTimeout: configuration.operationTimeout)
    }

    /// Queues one SUBSCRIBE for `filters` at `qos`.
    ///
    /// - Returns: The SUBACK's reason codes, one per filter, once it arrives (sent again after a
    ///   reconnect if the connection is lost first).
    func subscribe(filters: [String], qos: MQTTQoS, options: Int32, properties: MQTTProperties) throws(MQTTError) -> Promise<SubscribeAcknowledgement> {
        let request = PendingCommands.Subscribe(filters: filters, qos: qos, options: options, properties: properties, promise: Promise())
        try send(request)
        return request.promise
    }

    private func send(_ request: PendingCommands.Subscribe) throws(MQTTError) {
        let list = try propertyList(request.properties, command: CMD_SUBSCRIBE, operation: .subscribe)
        try requireConnected(for: .subscribe)?.check(
            packetSize: PacketSize.subscribe(filters: request.filters, properties: request.properties, version: configuration.protocolVersion),
            operation: .subscribe
        )
        let (rc, mid) = handle.subscribe(filters: request.filters, qos: request.qos, options: request.options, properties: list)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError(mosquittoCode: rc, operation: .subscribe) }
        requestWrite()
        let early = state.withLock { state in
            let early = state.subscribes.register(request.promise, for: mid)
            if early == nil { state.commands.sent(.subscribe(request), mid: mid) }
            return early
        }
        if let early { request.promise.complete(early) }
    }

    /// Queues one UNSUBSCRIBE for `filters`.
    ///
    /// - Returns: A promise completed by the UNSUBACK (sent again after a reconnect if the
    ///   connection is lost first).
    func unsubscribe(filters: [String], properties: MQTTProperties) throws(MQTTError) -> Promise<MQTTProperties> {
        let request = PendingCommands.Unsubscribe(filters: filters, properties: properties, promise: Promise())
        try send(request)
        return request.promise
    }

    private func send(_ request: PendingCommands.Unsubscribe) throws(MQTTError) {
        let list = try propertyList(request.properties, command: CMD_UNSUBSCRIBE, operation: .unsubscribe)
        try requireConnected(for: .unsubscribe)?.check(
            packetSize: PacketSize.unsubscribe(filters: request.filters, properties: request.properties, version: configuration.protocolVersion),
            operation: .unsubscribe
        )
        let (rc, mid) = handle.unsubscribe(filters: request.filters, properties: list)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError(mosquittoCode: rc, operation: .unsubscribe) }
        requestWrite()
        let early = state.withLock { state in
            let early = state.unsubscribes.register(request.promise, for: mid)
            if early == nil { state.commands.sent(.unsubscribe(request), mid: mid) }
            return early
        }
        if let early { request.promise.complete(early) }
    }

    /// Sends again, in their order, the SUBSCRIBEs and UNSUBSCRIBEs a lost connection took with
    /// it (on the driver thread, once the broker accepted the new connection). One that cannot be
    /// sent fails its caller.
    private func resendCommandsIfNeeded() {
        let commands = state.withLock { state in
            state.session.isConnected && state.commands.hasCommandsToResend ? state.commands.takeCommandsToResend() : []
        }
        for command in commands {
            switch command {
            case .subscribe(let request):
                do { try send(request) } catch { request.promise.fail(error) }
            case .unsubscribe(let request):
                do { try send(request) } catch { request.promise.fail(error) }
            }
        }
    }

    // MARK: Subscription registry

    /// Records accepted subscriptions, to restore them after a session loss.
    func remember(_ filters: [MQTTTopicFilter], properties: MQTTProperties) {
        state.withLock { state in
            for filter in filters { state.subscriptions[filter.filter] = (filter, properties) }
        }
    }

    /// Forgets unsubscribed filters.
    func forget(_ filters: [String]) {
        state.withLock { state in
            for filter in filters { state.subscriptions.removeValue(forKey: filter) }
        }
    }

    /// Subscribes again to everything recorded (on the driver thread, outside any callback).
    /// Results are not awaited; a failure is logged.
    private func resubscribeIfNeeded() {
        let records = state.withLock { state -> [(filter: MQTTTopicFilter, properties: MQTTProperties)] in
            guard state.session.resubscribeNeeded else { return [] }
            state.session.resubscribeNeeded = false
            return Array(state.subscriptions.values)
        }
        for record in records {
            do {
                _ = try subscribe(
                    filters: [record.filter.filter], qos: record.filter.qos, options: record.filter.optionBits, properties: record.properties
                )
            } catch {
                if sink.wantsLog(.error) {
                    sink.bridgeDidLog(level: .error, message: "re-subscribing to \(record.filter.filter) failed: \(error)")
                }
            }
        }
    }

    /// - Returns: The broker's limits, when it sent a Maximum Packet Size.
    private func requireConnected(for operation: MQTTError.Operation) throws(MQTTError) -> PublishLimits? {
        try state.withLock { (state) throws(MQTTError) in
            guard !state.session.closed else { throw MQTTError(.clientClosed, operation: operation) }
            guard state.session.isConnected else { throw MQTTError(.notConnected, operation: operation) }
            return state.publishLimits?.maximumPacketSize == nil ? nil : state.publishLimits
        }
    }

    // MARK: Driver

    /// The body of the client's own driver thread: connect, loop, reconnect per policy, then
    /// clean up. (An ``EventLoop`` runs the same steps for many sessions at once.)
    private func runOwnThread() {
        DriverThread.setName("mqtt-client")
        guard openSession() else { return }
        sendDisconnectIfStopping()
        var pass = DriverPass()
        var loopTimeout = Self.idleLoopTimeout
        driving: while true {
            var rc: Int32
            switch advanceStop() {
            case .giveUp:
                break driving
            case .writeOnly, .sendDisconnect:
                // DISCONNECT is queued: write, never read (see SessionStateMachine).
                guard handle.hasSocket else { break driving }
                rc = handle.writeWhenWritable(timeoutMilliseconds: 100)
                if rc == MOSQ_ERR_SUCCESS.rawValue { continue }
            case .running:
                let stopping = isStopRequested
                prepareForPass(&pass, stopping: stopping)
                rc = handle.loop(timeoutMilliseconds: stopping ? 100 : loopTimeout)
                // What the pass read may have queued acknowledgements (PUBACK, PUBREC, PUBCOMP):
                // they are written before the messages reach Swift, as the docs promise.
                if rc == MOSQ_ERR_SUCCESS.rawValue, handle.wantsWrite {
                    rc = handle.write()
                }
                sink.bridgeDidFinishLoopPass()
                if rc == MOSQ_ERR_SUCCESS.rawValue {
                    loopTimeout = completePass(&pass)
                    continue
                }
            }
            if rc == MOSQ_ERR_INVAL.rawValue, handle.socket >= FD_SETSIZE {
                // mosquitto_loop waits with select(), which cannot take descriptor numbers of
                // FD_SETSIZE (1,024) or more: in a process with that many files open, only an
                // event loop can drive the connection.
                requestStop(because: MQTTError(
                    .notSupported, operation: isConnected ? .connection : .connect,
                    detail: "the connection's descriptor is \(handle.socket), and a client's own network thread (libmosquitto's select() loop) "
                        + "cannot use descriptors above \(FD_SETSIZE - 1); use an MQTTEventLoopGroup (MQTTConfiguration.eventLoopGroup)"
                ))
                break
            }
            guard let delay = connectionFailed(rc: rc, &pass) else { break }
            sleeper.sleep(delay)
            if isStopRequested { break }
            reconnectSocket()
        }
        closeSession()
    }

    // MARK: Session steps (the driver's thread)

    /// What the driver of a session keeps between its passes over the connection.
    struct DriverPass {
        /// Whether libmosquitto's log callback is installed.
        var logging = true
        /// When the dead-link watchdog last looked.
        var lastWatchdogCheck = ContinuousClock.now
        /// How long (ms) the watchdog allowed the driver to wait, as of its last look.
        var watchdogWait = MosquittoBridge.idleLoopTimeout
    }

    /// Whether the session should end (a disconnect, a close, a failed or abandoned connect).
    var isStopRequested: Bool { state.withLock { $0.session.stopRequested } }

    /// Between passes: how a requested stop proceeds (``SessionStateMachine/stopProgress(now:wantsWrite:)``).
    /// Once the queue is written it queues DISCONNECT (and returns `.writeOnly`); when the
    /// deadline passed it shuts the socket down, DISCONNECT unwritten (`.giveUp`). On an event
    /// loop, call it under the connection's I/O lock.
    func advanceStop() -> SessionStateMachine.StopProgress {
        guard isStopRequested else { return .running }
        let wantsWrite = handle.wantsWrite
        let (progress, packet) = state.withLock { state in
            let awaiting = state.publishes.count + state.reservedPublishes > 0
            return (state.session.stopProgress(now: .now, wantsWrite: wantsWrite, awaitingAcknowledgements: awaiting), state.disconnectPacket)
        }
        switch progress {
        case .running, .writeOnly:
            return progress
        case .sendDisconnect:
            // Read what has arrived first: a socket closed with unread data sends a reset, which
            // may make the peer drop the DISCONNECT it has not read yet.
            _ = handle.read(maxPackets: 64)
            let list = (try? propertyList(packet.properties, command: CMD_DISCONNECT, operation: .disconnect)) ?? PropertyList()
            handle.disconnect(reasonCode: packet.reasonCode, properties: list)
            return .writeOnly
        case .giveUp:
            if sink.wantsLog(.warning) {
                sink.bridgeDidLog(level: .warning, message: "\(clientID): DISCONNECT not written in time; closing the connection without it")
            }
            handle.abortConnection()
            return .giveUp
        }
    }

    /// Makes the session's first connection: blocks on DNS, TCP and the TLS handshake, then queues
    /// CONNECT. On failure the session has ended (``closeSession()`` is not called again).
    ///
    /// - Returns: Whether the session goes on.
    func openSession() -> Bool {
        let keepAlive = Int(configuration.keepAlive.wholeSeconds)
        let properties: PropertyList
        do {
            properties = try propertyList(configuration.connectProperties, command: CMD_CONNECT, operation: .connect)
        } catch {
            finishDriver(error: error)
            return false
        }
        let (rc, errno) = handle.connect(
            host: configuration.host, port: configuration.port, keepAlive: keepAlive, bindAddress: configuration.bindAddress, properties: properties
        )
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            finishDriver(error: connectError(rc: rc, errno: errno))
            return false
        }
        return true
    }

    /// Queues DISCONNECT right after CONNECT when a stop was requested while the blocking
    /// connect ran (libmosquitto ignores `mosquitto_disconnect` without a socket), so that the
    /// session ends at once instead of after the grace period.
    func sendDisconnectIfStopping() {
        if isStopRequested {
            handle.disconnect()
        }
    }

    /// After a pass that may have received messages: their consumers are woken (once per pass,
    /// not per message).
    func didFinishPass() {
        sink.bridgeDidFinishLoopPass()
    }

    /// Before a pass over the connection. Log lines are needed while connecting (OpenSSL's reasons
    /// for a failed connect) and when someone reads them; otherwise libmosquitto need not format
    /// one per packet.
    func prepareForPass(_ pass: inout DriverPass, stopping: Bool) {
        let wantsLogging = stopping || !isConnected || sink.wantsLog(.error)
        if wantsLogging != pass.logging {
            handle.setLogging(wantsLogging)
            pass.logging = wantsLogging
        }
    }

    /// After a pass that left the connection healthy: subscribes again after a lost session, and
    /// lets the dead-link watchdog look (it asks the kernel, `TCP_INFO`: at most every 100 ms,
    /// not per packet).
    ///
    /// - Returns: How long (ms) the driver may wait for activity before the next pass.
    func completePass(_ pass: inout DriverPass) -> Int32 {
        resubscribeIfNeeded()
        resendCommandsIfNeeded()
        let now = ContinuousClock.now
        let sinceCheck = now - pass.lastWatchdogCheck
        guard sinceCheck >= .milliseconds(100) else {
            // Not looking again yet; but the wait it allowed at its last look keeps running out.
            return max(1, pass.watchdogWait - sinceCheck.roundedUpMilliseconds)
        }
        pass.lastWatchdogCheck = now
        pass.watchdogWait = watchForDeadLink()
        return pass.watchdogWait
    }

    /// After the connection failed (libmosquitto has closed the socket): decides, per the
    /// reconnect policy, whether to reconnect, and reports `.reconnecting`.
    ///
    /// - Returns: The delay before ``reconnectSocket()``, or `nil` when the session ends.
    func connectionFailed(rc: Int32, _ pass: inout DriverPass) -> Duration? {
        if !pass.logging {
            handle.setLogging(true)
            pass.logging = true
        }
        guard let attempt = nextReconnectAttempt(afterLoopError: rc) else { return nil }
        let delay = configuration.reconnect.delay(forAttempt: attempt)
        sink.bridgeConnectionDidChange(.reconnecting(attempt: attempt, delay: delay))
        return delay
    }

    /// Connects again (blocking, like ``openSession()``). A failure shows as a missing socket, on
    /// which the driver calls ``connectionFailed(rc:_:)`` again.
    func reconnectSocket() {
        _ = handle.reconnect()
    }

    /// Ends the session: fails what still waits and reports the disconnection.
    func closeSession() {
        finishDriver(error: nil)
    }

    /// How long `mosquitto_loop` waits for activity when nothing else is due (ms).
    static let idleLoopTimeout: Int32 = 1000

    /// How long (ms) a link may stay silent before the watchdog aborts it: 1.5 × keepalive, less
    /// a margin (a tenth of the keepalive, at least 750 ms) so that the disconnection event reaches
    /// the application within 1.5 × keepalive even on a busy machine; never less than keepalive
    /// + 1.5 s, the longest silence of a healthy link (libmosquitto pings after one keepalive, at
    /// most a second late).
    static func deadLinkLimit(keepAliveSeconds: Int) -> Int {
        let margin = max(750, keepAliveSeconds * 100)
        return max(keepAliveSeconds * 1_500 - margin, keepAliveSeconds * 1_000 + 1_500)
    }

    /// The dead-link watchdog, run between loop iterations.
    ///
    /// On a healthy connection data arrives from the broker at least once per keepalive interval:
    /// libmosquitto sends PINGREQ when it has heard nothing for that long, and the broker answers.
    /// On a black-holed link (a pulled cable, a vanished NAT entry, a frozen peer) nothing arrives
    /// and no error either; libmosquitto alone notices only when its PINGREQ has gone unanswered
    /// for another whole interval, 1–2 keepalives (plus a second) after the link died. Once the
    /// kernel reports nothing received for 1.5 × keepalive (the limit MQTT gives the broker for
    /// the client) less a margin (``deadLinkLimit(keepAliveSeconds:)``), this aborts the connection, so that the
    /// disconnection is reported, and the reconnect policy applies, within 1.5 × keepalive of the
    /// last sign of life. (A healthy link is never that quiet: libmosquitto pings after one
    /// keepalive, at most a second late, and keepalives are at least 5 s.)
    ///
    /// - Returns: How long the next `mosquitto_loop` may wait (ms): until the limit at the latest.
    private func watchForDeadLink() -> Int32 {
        let keepAlive: Duration? = state.withLock { state in
            guard state.session.isConnected else { return nil }
            return state.connectResult?.serverKeepAlive ?? configuration.keepAlive
        }
        guard let keepAlive, keepAlive > .zero, let silent = handle.millisecondsSinceReceive else {
            return Self.idleLoopTimeout
        }
        let limit = Self.deadLinkLimit(keepAliveSeconds: Int(keepAlive.wholeSeconds))
        guard silent >= limit else {
            return Int32(min(Int(Self.idleLoopTimeout), limit - silent))
        }
        let detail = "dead link: nothing received from the broker for \(silent) ms (keepalive \(keepAlive.wholeSeconds) s)"
        state.withLock { $0.deadLinkDetail = detail }
        if sink.wantsLog(.warning) {
            sink.bridgeDidLog(level: .warning, message: "\(clientID): \(detail); closing the connection")
        }
        handle.abortConnection()
        return 1
    }

    /// Decides whether to reconnect after the connection failed; returns the attempt number.
    private func nextReconnectAttempt(afterLoopError rc: Int32) -> Int? {
        state.withLock { state in
            // Before the first CONNACK this is a failed connect (e.g. a TLS handshake that
            // failed inside the loop): keep OpenSSL's reason from the log.
            let error = state.session.everConnected
                ? MQTTError(mosquittoCode: rc, operation: .connection)
                : MQTTError(mosquittoCode: rc, operation: .connect, detail: Self.failureDetail(state.connectLog, fallback: nil))
            switch state.session.connectionLost(error: error, now: .now) {
            case .reconnect(let attempt): return attempt
            case .end: return nil
            }
        }
    }

    /// Ends a session: fails whatever still waits, reports the disconnection, and destroys the
    /// handle if the client was closed meanwhile.
    private func finishDriver(error: MQTTError?) {
        struct Leftovers: ~Copyable {
            var publishes: [Promise<MQTTPublishReceipt>]
            var subscribes: [Promise<SubscribeAcknowledgement>]
            var unsubscribes: [Promise<MQTTProperties>]
            var connect: Promise<MQTTConnectResult>?
            var exited: Promise<Void>
            var report: Bool
            var release: Bool
            var closed: Bool
            var requested: Bool
            var stopped: Bool
            var error: MQTTError?
        }
        let leftovers = state.withLock { state in
            let end = state.session.sessionEnded(error: error)
            // The broker keeps subscriptions only if the session outlives the connection; so do we.
            if !(end.requested && configuration.sessionOutlivesConnection) {
                state.subscriptions.removeAll()
            }
            defer { state.connectPromise = nil }
            var subscribes = state.subscribes.removeAll()
            var unsubscribes = state.unsubscribes.removeAll()
            // Commands waiting to be sent again are no longer in the tables: fail them too.
            for command in state.commands.removeAll() {
                switch command {
                case .subscribe(let request): subscribes.append(request.promise)
                case .unsubscribe(let request): unsubscribes.append(request.promise)
                }
            }
            return Leftovers(
                publishes: state.publishes.removeAll(),
                subscribes: subscribes,
                unsubscribes: unsubscribes,
                connect: state.connectPromise,
                exited: state.driverExited,
                report: end.report,
                release: state.session.closed && !state.closeUsesHandle,
                closed: state.session.closed,
                requested: end.requested,
                stopped: state.session.stopRequested,
                error: end.error
            )
        }
        let connectError = leftovers.error ?? MQTTError(.connectionLost, operation: .connect, detail: "the connection closed before CONNACK")
        leftovers.connect?.fail(connectError)
        let pendingError: MQTTError =
            leftovers.closed ? MQTTError(.clientClosed, operation: .connection)
            : leftovers.requested ? MQTTError(.notConnected, operation: .connection, detail: "disconnected before the acknowledgement arrived")
            : MQTTError(.connectionLost, operation: .connection)
        leftovers.publishes.forEach { $0.fail(pendingError) }
        if !leftovers.publishes.isEmpty { reportPendingPublishes() }
        leftovers.subscribes.forEach { $0.fail(pendingError) }
        leftovers.unsubscribes.forEach { $0.fail(pendingError) }
        let sessionError = leftovers.requested ? nil : (leftovers.error ?? connectError)
        if leftovers.report {
            sink.bridgeConnectionDidChange(.disconnected(sessionError))
        }
        sink.bridgeSessionDidEnd(error: sessionError)
        if leftovers.stopped, !leftovers.requested, let error = leftovers.error, error.operation == .disconnect {
            // A requested DISCONNECT that did not reach the wire: disconnect() must say so.
            leftovers.exited.fail(error)
        } else {
            leftovers.exited.succeed(())
        }
        if leftovers.release {
            releaseHandle()
        }
    }

    /// The error for a failed `mosquitto_connect_bind_v5`, with OpenSSL's reason when there is one.
    private func connectError(rc: Int32, errno: Int32) -> MQTTError {
        let log = state.withLock { $0.connectLog }
        let detail = Self.failureDetail(log, fallback: "\(configuration.host):\(configuration.port)")
        return MQTTError(mosquittoCode: rc, operation: .connect, errno: errno, detail: detail)
    }

    /// libmosquitto's error lines from a failed connect (OpenSSL's reasons among them), or `fallback`.
    private static func failureDetail(_ log: [String], fallback: String?) -> String? {
        log.isEmpty ? fallback : log.joined(separator: " | ")
    }

    // MARK: Events from the thunks (driver thread)

    func didConnect(returnCode: Int32, sessionPresent: Bool, properties: MQTTProperties) {
        guard returnCode == 0 else {
            var error = MQTTError.connectRefused(returnCode: returnCode, version: configuration.protocolVersion)
            error.detail = properties.reasonString
            // A refusal is final: retrying a bad password only hammers the broker.
            state.withLock { $0.session.connackRefused(error) }
            failConnectAttempt(with: error)
            return
        }
        let result = MQTTConnectResult(sessionPresent: sessionPresent, properties: properties)
        let (promise, report) = state.withLock { state in
            let resubscribe = !sessionPresent && configuration.resubscribeOnSessionLoss && !state.subscriptions.isEmpty
            let report = state.session.connackAccepted(now: .now, resubscribe: resubscribe)
            state.connectResult = result
            state.publishLimits = result.publishLimits
            state.connectLog = []
            state.deadLinkDetail = nil
            defer { state.connectPromise = nil }
            return (state.connectPromise, report)
        }
        promise?.succeed(result)
        if report {
            sink.bridgeConnectionDidChange(.connected(sessionPresent: sessionPresent))
        }
    }

    func didDisconnect(returnCode: Int32, properties: MQTTProperties) {
        let deadLink: String? = state.withLock { state in
            defer { state.deadLinkDetail = nil }
            return state.deadLinkDetail
        }
        let error: MQTTError? =
            returnCode == 0 ? nil
            : deadLink != nil
                ? MQTTError(.connectionLost, operation: .connection, detail: deadLink)
            : returnCode >= 0x80
                ? MQTTError(
                    .connectionLost, operation: .connection, reasonCode: MQTTReasonCode(rawValue: UInt8(truncatingIfNeeded: returnCode)),
                    detail: "the broker sent DISCONNECT" + (properties.reasonString.map { ": \($0)" } ?? "")
                )
                : MQTTError(.connectionLost, operation: .connection, mosquittoErrorCode: returnCode)
        struct Outcome: ~Copyable {
            var failed: [Promise<SubscribeAcknowledgement>]
            var failedUnsubscribes: [Promise<MQTTProperties>]
            var failedPublishes: [Promise<MQTTPublishReceipt>]
            var report: Bool
        }
        let outcome = state.withLock { state in
            let (report, willReconnect) = state.session.disconnected(now: .now)
            if !willReconnect, let error {
                // Before the first CONNACK, a drop is a failed connect: say why (TLS, reset, ...).
                state.session.recordEndError(
                    state.session.everConnected || returnCode >= 0x80
                        ? error
                        : MQTTError(mosquittoCode: returnCode, operation: .connect, detail: Self.failureDetail(state.connectLog, fallback: nil))
                )
            }
            // QoS 1/2 PUBLISHes are sent again by libmosquitto, SUBSCRIBE/UNSUBSCRIBE by us
            // (resendCommandsIfNeeded), with new packet IDs: their waits go on.
            state.publishes.forgetIgnored()
            let subscribes = state.subscribes.removeAll()
            let unsubscribes = state.unsubscribes.removeAll()
            if willReconnect {
                state.commands.connectionLost()
            } else {
                _ = state.commands.removeAll()
            }
            return Outcome(
                failed: willReconnect ? [] : subscribes,
                failedUnsubscribes: willReconnect ? [] : unsubscribes,
                failedPublishes: willReconnect ? [] : state.publishes.removeAll(),
                report: report
            )
        }
        let pendingError = error ?? MQTTError(.notConnected, operation: .connection, detail: "disconnected before the acknowledgement arrived")
        outcome.failed.forEach { $0.fail(pendingError) }
        outcome.failedUnsubscribes.forEach { $0.fail(pendingError) }
        outcome.failedPublishes.forEach { $0.fail(pendingError) }
        if !outcome.failedPublishes.isEmpty { reportPendingPublishes() }
        if outcome.report {
            sink.bridgeConnectionDidChange(.disconnected(error))
        }
    }

    func didPublish(mid: Int32, reasonCode: MQTTReasonCode, properties: MQTTProperties) {
        let messageID = UInt16(truncatingIfNeeded: mid)
        let result: Result<MQTTPublishReceipt, MQTTError> =
            reasonCode.isFailure
            ? .failure(MQTTError(.publishRefused, operation: .publish, reasonCode: reasonCode, detail: properties.reasonString))
            : .success(MQTTPublishReceipt(messageID: messageID, qos: .atLeastOnce, reasonCode: reasonCode, properties: properties))
        let promise = state.withLock { $0.publishes.resolve(mid, with: result) }
        if let promise {
            promise.complete(result)
            reportPendingPublishes()
        }
        sink.bridgeDidAcknowledge(.published(messageID: messageID, reasonCode: reasonCode))
    }

    func didReceive(_ message: MQTTMessage) {
        sink.bridgeDidReceive(message)
    }

    func didSubscribe(mid: Int32, reasonCodes: [MQTTReasonCode], properties: MQTTProperties) {
        let acknowledgement = SubscribeAcknowledgement(reasonCodes: reasonCodes, properties: properties)
        let promise = state.withLock { state in
            state.commands.acknowledged(mid)
            return state.subscribes.resolve(mid, with: .success(acknowledgement))
        }
        promise?.succeed(acknowledgement)
        sink.bridgeDidAcknowledge(.subscribed(messageID: UInt16(truncatingIfNeeded: mid), reasonCodes: reasonCodes))
    }

    func didUnsubscribe(mid: Int32, properties: MQTTProperties) {
        let promise = state.withLock { state in
            state.commands.acknowledged(mid)
            return state.unsubscribes.resolve(mid, with: .success(properties))
        }
        promise?.succeed(properties)
        sink.bridgeDidAcknowledge(.unsubscribed(messageID: UInt16(truncatingIfNeeded: mid)))
    }

    func didLog(level: Int32, text: UnsafePointer<CChar>) {
        let isError = UInt32(level) & UInt32(MOSQ_LOG_ERR) != 0
        let capture = isError && state.withLock { $0.session.phase == .connecting }
        let logLevel = MQTTLogLevel(mosquittoLevel: level)
        let wanted = sink.wantsLog(logLevel)
        guard capture || wanted else { return }
        let line = String(cString: text)
        if capture {
            state.withLock { state in
                if state.connectLog.count < 8 { state.connectLog.append(line) }
            }
        }
        if wanted {
            sink.bridgeDidLog(level: logLevel, message: line)
        }
    }
}

// MARK: - Log levels

extension MQTTLogLevel {
    init(mosquittoLevel level: Int32) {
        let bits = UInt32(level)
        if bits & UInt32(MOSQ_LOG_ERR) != 0 {
            self = .error
        } else if bits & UInt32(MOSQ_LOG_WARNING) != 0 {
            self = .warning
        } else if bits & UInt32(MOSQ_LOG_DEBUG) != 0 {
            self = .debug
        } else {
            self = .info
        }
    }
}
