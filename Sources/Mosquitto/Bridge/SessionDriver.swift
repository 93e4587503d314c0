#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - SessionDriver

/// What runs a session's network steps: connect, read and write, keepalive, the reconnect
/// backoff, the stop, the end.
///
/// Two drivers exist, and ``MosquittoBridge`` holds one of them without knowing which:
/// ``ThreadDriver`` (a thread per client around libmosquitto's `mosquitto_loop`) and
/// ``EventLoop`` (one epoll thread for many clients, from an ``MQTTEventLoopGroup``). Both call
/// the bridge's session steps (``MosquittoBridge/openSession()``,
/// ``MosquittoBridge/prepareForPass(_:stopping:)``, ``MosquittoBridge/completePass(_:)``,
/// ``MosquittoBridge/advanceStop()``, ``MosquittoBridge/connectionFailed(_:_:)``,
/// ``MosquittoBridge/reconnectSocket()``, ``MosquittoBridge/closeSession()``) in the same order,
/// with the timing of ``DriverTiming``: the decisions are the bridge's and its
/// ``SessionStateMachine``'s; a driver only decides when to wait and on what.
protocol SessionDriver: Sendable {
    /// Starts driving `bridge`'s new session (the bridge has moved its machine to `.connecting`).
    ///
    /// - Returns: `false` when the driver could not start (no thread): the session has not begun.
    func start(_ bridge: MosquittoBridge) -> Bool

    /// Has the driver look at `bridge`'s session now: a stop was requested (end a backoff, drain
    /// and write DISCONNECT).
    func wake(_ bridge: MosquittoBridge)

    /// Has the driver write what a command just queued on `bridge`'s connection, when the
    /// calling thread could not write it itself (``MosquittoBridge/requestWrite()``).
    func requestWrite(_ bridge: MosquittoBridge)

    /// Whether a command's thread may write to the connection directly, under the connection's
    /// I/O lock (``MosquittoBridge/loopSocket``), instead of leaving it to the driver.
    var writesFromCommandThreads: Bool { get }

    /// The executor that runs tasks on the driver's thread, if it offers one.
    var taskExecutor: (any TaskExecutor)? { get }
}

// MARK: - DriverTiming

/// The timing both drivers follow.
enum DriverTiming {
    /// The longest a driver waits without activity before the next pass: keepalive and the
    /// dead-link watchdog are looked at least this often.
    static let idleWait = Duration.seconds(1)
    /// How often a stopping session is looked at (drain progress, the DISCONNECT, the deadline),
    /// and how often an event loop sweeps its sessions for due backoffs and checks.
    static let stopPollInterval = Duration.milliseconds(100)
    /// How often, at most, the dead-link watchdog asks the kernel (`TCP_INFO`).
    static let watchdogInterval = Duration.milliseconds(100)
    /// How long a stop without a caller's timeout (``MosquittoBridge/close()``, an abandoned
    /// connect) gives the queued packets and DISCONNECT to be written.
    static let stopGracePeriod = Duration.seconds(5)
    /// How many packets a stop reads before its DISCONNECT (what has already arrived); a pass
    /// reads ``MQTTConfiguration/packetsPerRead``.
    static let readBudget = 64
}

extension Duration {
    /// The duration in whole milliseconds, for libmosquitto's and the kernel's waits.
    var driverMilliseconds: Int32 {
        Int32(clamping: components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000)
    }
}

// MARK: - ThreadDriver

/// The driver that gives each session a thread of its own (``MQTTConfiguration/eventLoopGroup``
/// `nil`): it makes the blocking connect (DNS, TCP, TLS) there, then runs `mosquitto_loop`, which
/// waits with `select()` and is woken by libmosquitto's own socket pair when a command queues a
/// packet. Owning the loop (rather than `mosquitto_loop_start`) avoids libmosquitto 2.0.11's
/// `loop_stop` hang during reconnects and its thread that cannot be restarted, and keeps the
/// reconnect policy ours.
struct ThreadDriver: SessionDriver {
    func start(_ bridge: MosquittoBridge) -> Bool {
        DriverThread.start { Self.run(bridge) }
    }

    func wake(_ bridge: MosquittoBridge) {
        bridge.sleeper.wake()
        bridge.handle.wakeLoop()
    }

    /// Nothing to do: libmosquitto wakes its own `mosquitto_loop`, which writes.
    func requestWrite(_ bridge: MosquittoBridge) {}

    var writesFromCommandThreads: Bool { false }

    var taskExecutor: (any TaskExecutor)? { nil }

    /// The body of the session's thread: connect, loop, reconnect per policy, then clean up.
    static func run(_ bridge: MosquittoBridge) {
        DriverThread.setName("mqtt-client")
        guard bridge.openSession() else { return }
        bridge.sendDisconnectIfStopping()
        let handle = bridge.handle
        var pass = MosquittoBridge.DriverPass()
        var loopTimeout = DriverTiming.idleWait.driverMilliseconds
        let stopPoll = DriverTiming.stopPollInterval.driverMilliseconds
        driving: while true {
            var status: MosquittoStatus
            let stopping = bridge.isStopRequested
            switch stopping ? bridge.advanceStop() : .running {
            case .giveUp:
                break driving
            case .writeOnly, .sendDisconnect:
                // DISCONNECT is queued: write, never read (see SessionStateMachine).
                guard handle.hasSocket else { break driving }
                status = handle.writeWhenWritable(timeoutMilliseconds: stopPoll)
                if status.isSuccess { continue }
            case .running:
                bridge.prepareForPass(&pass, stopping: stopping)
                status = handle.loop(timeoutMilliseconds: stopping ? stopPoll : loopTimeout)
                // What the pass read may have queued acknowledgements (PUBACK, PUBREC, PUBCOMP):
                // they are written before the messages reach Swift, as the docs promise.
                if status.isSuccess, handle.wantsWrite {
                    status = handle.write()
                }
                bridge.didFinishPass()
                if status.isSuccess {
                    loopTimeout = bridge.completePass(&pass)
                    continue
                }
            }
            if status == .invalidArgument, handle.socket >= FD_SETSIZE {
                // mosquitto_loop waits with select(), which cannot take descriptor numbers of
                // FD_SETSIZE (1,024) or more: in a process with that many files open, only an
                // event loop can drive the connection.
                bridge.requestStop(because: MQTTError(
                    .notSupported, operation: bridge.isConnected ? .connection : .connect,
                    detail: "the connection's descriptor is \(handle.socket), and a client's own network thread (libmosquitto's select() loop) "
                        + "cannot use descriptors above \(FD_SETSIZE - 1); use an MQTTEventLoopGroup (MQTTConfiguration.eventLoopGroup)"
                ))
                break
            }
            guard let delay = bridge.connectionFailed(status, &pass) else { break }
            bridge.sleeper.sleep(delay)
            if bridge.isStopRequested { break }
            bridge.reconnectSocket()
        }
        bridge.closeSession()
    }
}
