internal import CMosquitto
#if canImport(Glibc)
import Glibc
#endif

// The session's steps, run by its driver (a ThreadDriver or an EventLoop: see SessionDriver).

extension MosquittoBridge {
    // MARK: Session steps (the driver's thread)

    /// What the driver of a session keeps between its passes over the connection.
    struct DriverPass {
        /// Whether libmosquitto's log callback is installed.
        var logging = true
        /// When the dead-link watchdog last looked.
        var lastWatchdogCheck = ContinuousClock.now
        /// How long (ms) the watchdog allowed the driver to wait, as of its last look.
        var watchdogWait = DriverTiming.idleWait.driverMilliseconds
    }

    /// Whether the session should end (a disconnect, a close, a failed or abandoned connect).
    var isStopRequested: Bool { state.withLock { $0.session.stopRequested } }

    /// Between passes: how a requested stop proceeds (``SessionStateMachine/stopProgress(now:wantsWrite:)``).
    /// Once the queue is written it queues DISCONNECT (and returns `.writeOnly`); when the
    /// deadline passed it shuts the socket down, DISCONNECT unwritten (`.giveUp`). On an event
    /// loop, call it under the connection's I/O lock, and only once a stop was requested.
    func advanceStop() -> SessionStateMachine.StopProgress {
        let wantsWrite = handle.wantsWrite
        let (progress, packet) = state.withLock { state in
            let awaiting = state.session.pending.publishCount > 0
            return (state.session.stopProgress(now: .now, wantsWrite: wantsWrite, awaitingAcknowledgements: awaiting), state.disconnectPacket)
        }
        switch progress {
        case .running, .writeOnly:
            return progress
        case .sendDisconnect:
            // Read what has arrived first: a socket closed with unread data sends a reset, which
            // may make the peer drop the DISCONNECT it has not read yet.
            handle.read(maxPackets: DriverTiming.readBudget)
            let list = (try? propertyList(packet.properties, for: .disconnect, operation: .disconnect)) ?? PropertyList()
            handle.disconnect(reasonCode: packet.reasonCode, properties: list)
            return .writeOnly
        case .giveUp:
            if sink.wantsLog(.warning) {
                sink.bridgeDidReport(.log(.warning, "\(clientID): DISCONNECT not written in time; closing the connection without it"))
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
            properties = try propertyList(configuration.connectProperties, for: .connect, operation: .connect)
        } catch {
            finishDriver(error: error)
            return false
        }
        let (status, errno) = handle.connect(
            host: configuration.host, port: configuration.port, keepAlive: keepAlive, bindAddress: configuration.bindAddress, properties: properties
        )
        guard status.isSuccess else {
            finishDriver(error: connectError(status, errno: errno))
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
        guard sinceCheck >= DriverTiming.watchdogInterval else {
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
    func connectionFailed(_ status: MosquittoStatus, _ pass: inout DriverPass) -> Duration? {
        if !pass.logging {
            handle.setLogging(true)
            pass.logging = true
        }
        guard let attempt = nextReconnectAttempt(after: status) else { return nil }
        let delay = configuration.reconnect.delay(forAttempt: attempt)
        sink.bridgeDidReport(.connection(.reconnecting(attempt: attempt, delay: delay)))
        return delay
    }

    /// Connects again (blocking, like ``openSession()``). A failure shows as a missing socket, on
    /// which the driver calls ``connectionFailed(_:_:)`` again.
    func reconnectSocket() {
        handle.reconnect()
    }

    /// Ends the session: fails what still waits and reports the disconnection.
    func closeSession() {
        finishDriver(error: nil)
    }

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
    func watchForDeadLink() -> Int32 {
        let keepAlive: Duration? = state.withLock { state in
            guard state.session.isConnected else { return nil }
            return state.connectResult?.serverKeepAlive ?? configuration.keepAlive
        }
        guard let keepAlive, keepAlive > .zero, let silent = handle.millisecondsSinceReceive else {
            return DriverTiming.idleWait.driverMilliseconds
        }
        let limit = Self.deadLinkLimit(keepAliveSeconds: Int(keepAlive.wholeSeconds))
        guard silent >= limit else {
            return Int32(min(Int(DriverTiming.idleWait.driverMilliseconds), limit - silent))
        }
        let detail = "dead link: nothing received from the broker for \(silent) ms (keepalive \(keepAlive.wholeSeconds) s)"
        state.withLock { $0.deadLinkDetail = detail }
        if sink.wantsLog(.warning) {
            sink.bridgeDidReport(.log(.warning, "\(clientID): \(detail); closing the connection"))
        }
        handle.abortConnection()
        return 1
    }

    /// Decides whether to reconnect after the connection failed; returns the attempt number.
    func nextReconnectAttempt(after status: MosquittoStatus) -> Int? {
        state.withLock { state in
            // Before the first CONNACK this is a failed connect (e.g. a TLS handshake that
            // failed inside the loop): keep OpenSSL's reason from the log.
            let error = state.session.everConnected
                ? MQTTError(status, operation: .connection)
                : connectFailure(status, log: state.connectLog)
            switch state.session.connectionLost(error: error, now: .now) {
            case .reconnect(let attempt): return attempt
            case .end: return nil
            }
        }
    }

    /// Ends a session: fails whatever still waits, reports the disconnection, and destroys the
    /// handle if the client was closed meanwhile.
    func finishDriver(error: MQTTError?) {
        struct Leftovers: Sendable {
            var end: SessionStateMachine.SessionEnd
            var connect: Promise<MQTTConnectResult>?
            var exited: Promise<Void>
            var release: Bool
            var stopped: Bool
        }
        let leftovers = state.withLock { state in
            defer { state.connectPromise = nil }
            return Leftovers(
                end: state.session.sessionEnded(error: error),
                connect: state.connectPromise,
                exited: state.driverExited,
                release: state.session.closed && !state.closeUsesHandle,
                stopped: state.session.stopRequested
            )
        }
        let end = leftovers.end
        let connectError = end.error ?? MQTTError(.connectionLost, operation: .connect, detail: "the connection closed before CONNACK")
        leftovers.connect?.fail(connectError)
        end.abandoned.fail(with: end.pendingError)
        if !end.abandoned.publishes.isEmpty { reportPendingPublishes() }
        let sessionError = end.requested ? nil : (end.error ?? connectError)
        if end.report {
            sink.bridgeDidReport(.connection(.disconnected(sessionError)))
        }
        sink.bridgeDidReport(.sessionEnded(sessionError, keepsSubscriptions: end.keepsSubscriptions))
        if leftovers.stopped, !end.requested, let error = end.error, error.operation == .disconnect {
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
    /// Through a proxy the TCP connection is the proxy's, so the detail names it.
    func connectError(_ status: MosquittoStatus, errno: Int32) -> MQTTError {
        let log = state.withLock { $0.connectLog }
        return MQTTError(status, operation: .connect, errno: errno, detail: connectFailureDetail(status, log: log))
    }

    /// The error for a connection that ended before the first CONNACK (inside the loop: a TLS
    /// handshake, the SOCKS5 exchange, a reset). With a proxy configured, libmosquitto's codes
    /// for the proxy's refusals become ``MQTTError/Code/proxyFailure``, saying which refusal.
    func connectFailure(_ status: MosquittoStatus, log: [String]) -> MQTTError {
        guard let proxy = configuration.socksProxy, let reason = Self.proxyRefusal(status, withCredentials: proxy.username != nil) else {
            return MQTTError(status, operation: .connect, detail: connectFailureDetail(status, log: log))
        }
        return MQTTError(
            .proxyFailure, operation: .connect, mosquittoErrorCode: status.rawValue,
            detail: "SOCKS5 proxy \(proxy.host):\(proxy.port) \(reason)" + (log.isEmpty ? "" : " | " + log.joined(separator: " | "))
        )
    }

    /// What a failed connect says beyond its code: libmosquitto's error lines (OpenSSL's reasons
    /// among them), a hint when a connection without TLS closed before the CONNACK (what a TLS
    /// port does with a plain CONNECT), and the endpoint, `host:port` (through a proxy, the
    /// proxy's, since the TCP connection is the proxy's).
    func connectFailureDetail(_ status: MosquittoStatus, log: [String]) -> String {
        var parts = log.isEmpty ? [] : [log.joined(separator: " | ")]
        let usesTLS = configuration.tls != nil || configuration.psk != nil
        if !usesTLS, MQTTError(status, operation: .connect).code == .connectionLost {
            parts.append("the server closed the connection before CONNACK; if it is a TLS port, set MQTTConfiguration.tls")
        }
        let broker = "\(configuration.host):\(configuration.port)"
        parts.append(configuration.socksProxy.map { "SOCKS5 proxy \($0.host):\($0.port) (for \(broker))" } ?? broker)
        return parts.joined(separator: "; ")
    }

    /// What a SOCKS5 failure code from libmosquitto's proxy exchange (`socks_mosq.c`) means, or
    /// `nil` for a code the exchange does not produce.
    static func proxyRefusal(_ status: MosquittoStatus, withCredentials: Bool) -> String? {
        switch status.rawValue {
        case MOSQ_ERR_PROXY.rawValue:
            withCredentials
                ? "refused the username and password or the request, or closed the connection"
                : "refused the request or closed the connection"
        case MOSQ_ERR_AUTH.rawValue:
            withCredentials
                ? "refused the authentication or, by its rules, the connection"
                : "requires authentication (no acceptable method without a username) or refused the connection by its rules"
        case MOSQ_ERR_NO_CONN.rawValue: "could not reach the broker"
        case MOSQ_ERR_PROTOCOL.rawValue: "sent a malformed reply"
        default: nil
        }
    }
}
