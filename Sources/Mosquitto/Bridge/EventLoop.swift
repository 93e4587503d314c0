internal import CMosquitto
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - EventLoop

/// One thread that drives the sessions of many clients: it waits on all their sockets with
/// `epoll` and runs libmosquitto's `mosquitto_loop_read`, `mosquitto_loop_write` and
/// `mosquitto_loop_misc` for the ones that are ready or due.
///
/// DESIGN: libmosquitto's own loops cost a thread per client (`mosquitto_loop_start`, or our
/// ``DriverThread``), which stops scaling at a few thousand connections. Here a session is an
/// ``Entry`` in a table owned by the loop's thread; the per-session decisions (reconnect policy,
/// dead-link watchdog, re-subscription, the end of the session) stay in ``MosquittoBridge``, whose
/// session steps the loop calls exactly as the thread driver does. What blocks — the connect and
/// reconnect calls (DNS, TCP, TLS handshake) — runs on the group's ``BlockingExecutor`` so that a
/// slow broker never stalls the other sessions; the loop takes the socket over when it returns.
///
/// Other threads talk to the loop only through its inbox (a locked array plus an `eventfd`
/// wake-up, written at most once until the loop has drained the inbox): new sessions, stop
/// requests, and "this client queued a packet" (libmosquitto wakes its own `mosquitto_loop`
/// through a private socket pair that an event loop cannot watch). Write requests are coalesced
/// per client, so a burst of publishes costs one wake-up and one `mosquitto_loop_write`.
///
/// Every libmosquitto network call for a session happens on exactly one thread at a time: the
/// loop's, or the executor's while the session is in ``Entry/Phase/connecting`` (when the loop
/// leaves the handle alone). Callbacks therefore arrive on the loop's thread, as they would on a
/// client's own driver thread.
///
/// Files: this one holds the loop's state, its inbox and the thread's main loop;
/// `EventLoop+Sessions` what the thread does for each session; `EventLoop+Executors` the
/// ``SessionDriver`` and `TaskExecutor` conformances. (Members are internal rather than private
/// only so that those files reach them: ``Driver`` and ``Entry`` belong to the loop's thread.)
final class EventLoop: Sendable {
    /// A message for the loop's thread.
    enum Message {
        /// A new session: connect it (on the executor), then drive it.
        case start(MosquittoBridge)
        /// The executor finished a connect or reconnect for the session.
        case connectReturned(UInt64, sessionGoesOn: Bool)
        /// The client queued packets: write them.
        case write(UInt64)
        /// The client asked to stop: look at it now.
        case wake(UInt64)
        /// The group is gone: exit once no session is left.
        case shutdown
        /// A task's job, enqueued on the loop as its `TaskExecutor`.
        case job(UnownedJob)
    }

    struct Inbox: ~Copyable {
        var messages: [Message] = []
        /// Clients with a `.write` message in `messages` (coalescing).
        var writeQueued: Set<UInt64> = []
        /// Whether the `eventfd` was written since the loop last drained the inbox.
        var wakePending = false
        /// Set when the thread has exited: jobs go to the global executor instead.
        var exited = false
    }

    let epoll: Int32
    private let wakeDescriptor: Int32
    let inbox = Locked(Inbox())
    let executor: BlockingExecutor
    /// The loop's number in its group, for the thread name.
    private let index: Int
    /// The loop thread's `pthread_self()`, once it runs (0 before).
    private let thread = Atomic<UInt>(0)

    private static let nextToken = Atomic<UInt64>(1)
    /// The epoll token of the wake-up `eventfd`; sessions' tokens start at 1.
    private static let wakeToken: UInt64 = 0

    /// A new session key, unique in the process.
    static func makeToken() -> UInt64 {
        nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Creates the loop's `epoll` instance and wake-up `eventfd` and starts its thread.
    ///
    /// - Throws: ``MQTTError`` with code ``MQTTError/Code/outOfMemory`` when the kernel refuses
    ///   a descriptor or the thread.
    init(index: Int, executor: BlockingExecutor) throws(MQTTError) {
        self.index = index
        self.executor = executor
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeDescriptor = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard epoll >= 0, wakeDescriptor >= 0,
              swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_ADD, wakeDescriptor, EPOLLIN.rawValue, Self.wakeToken) == 0
        else {
            // deinit closes what was opened (it runs when a fully initialised object's init throws).
            let reason = LibMosquitto.systemErrorString(errno)
            throw MQTTError(.outOfMemory, operation: .configure, detail: "could not create an event loop: \(reason)")
        }
        guard DriverThread.start({ [self] in run() }) else {
            throw MQTTError(.outOfMemory, operation: .configure, detail: "could not start an event loop thread")
        }
    }

    private static func closeDescriptors(_ descriptors: Int32...) {
        for descriptor in descriptors where descriptor >= 0 { close(descriptor) }
    }

    // MARK: Any thread

    /// Has the loop write the packets the session with `token` has queued (coalesced).
    func requestWrite(_ token: UInt64) {
        let wake = inbox.withLock { inbox -> Bool in
            guard inbox.writeQueued.insert(token).inserted else { return false }
            inbox.messages.append(.write(token))
            defer { inbox.wakePending = true }
            return !inbox.wakePending
        }
        if wake { signal() }
    }

    /// Lets the thread exit once it drives no session.
    func shutdown() {
        post(.shutdown)
    }

    func post(_ message: Message) {
        let wake = inbox.withLock { inbox -> Bool in
            inbox.messages.append(message)
            defer { inbox.wakePending = true }
            return !inbox.wakePending
        }
        if wake { signal() }
    }

    /// Whether the caller runs on this loop's thread.
    var isLoopThread: Bool {
        thread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    func signal() {
        _ = eventfd_write(wakeDescriptor, 1)
    }

    // MARK: The loop's thread

    /// A session the loop drives.
    struct Entry {
        enum Phase {
            /// The executor is connecting or reconnecting; the loop leaves the handle alone.
            case connecting
            /// Connected: `socket` is registered with epoll (and open until libmosquitto closes it).
            case active(socket: Int32)
            /// Waiting to reconnect.
            case backingOff(until: ContinuousClock.Instant)
        }

        let bridge: MosquittoBridge
        var phase = Phase.connecting
        var pass = MosquittoBridge.DriverPass()
        /// The epoll events registered for the socket.
        var interest: UInt32 = 0
        /// When the keepalive and the watchdog are next due.
        var nextCheck = ContinuousClock.now
        /// Set when a stop was first seen: each pass then asks the bridge how the stop proceeds
        /// (drain, DISCONNECT, write only; the deadline is the session's).
        var stopping = false
    }

    /// The state only the loop's thread touches.
    struct Driver: ~Copyable {
        var entries: [UInt64: Entry] = [:]
        var shuttingDown = false
    }

    /// How often the loop looks at every session for keepalive, watchdog, backoff and stop deadlines.
    static let sweepInterval = DriverTiming.stopPollInterval
    /// The longest a session goes between two keepalive checks.
    static let checkInterval = DriverTiming.idleWait

    private func run() {
        DriverThread.setName("mqtt-loop-\(index)")
        thread.store(UInt(pthread_self()), ordering: .relaxed)
        var driver = Driver()
        let capacity = 256
        var tokens = [UInt64](repeating: 0, count: capacity)
        var events = [UInt32](repeating: 0, count: capacity)
        var nextSweep = ContinuousClock.now + Self.sweepInterval
        while true {
            // Jobs this thread enqueued for itself (see `enqueue`) did not signal: do not sleep on them.
            let pending = !inboxIsEmpty
            if !pending, driver.shuttingDown, driver.entries.isEmpty { break }
            let timeout = pending ? 0 : (nextSweep - ContinuousClock.now).roundedUpMilliseconds
            let count = tokens.withUnsafeMutableBufferPointer { tokens in
                events.withUnsafeMutableBufferPointer { events in
                    swift_mosquitto_epoll_wait(epoll, tokens.baseAddress, events.baseAddress, Int32(capacity), timeout)
                }
            }
            for index in 0..<max(0, Int(count)) {
                let token = tokens[index]
                if token == Self.wakeToken {
                    var value: eventfd_t = 0
                    _ = eventfd_read(wakeDescriptor, &value)
                    continue
                }
                let ready = events[index]
                let readable = ready & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
                service(token, readable: readable, in: &driver)
            }
            drainInbox(into: &driver)
            if ContinuousClock.now >= nextSweep {
                sweep(&driver)
                nextSweep = ContinuousClock.now + Self.sweepInterval
            }
        }
        let orphans = inbox.withLock { inbox -> [Message] in
            inbox.exited = true
            defer { inbox.messages.removeAll() }
            return inbox.messages
        }
        for case .job(let job) in orphans {
            globalConcurrentExecutor.enqueue(job)
        }
        // The descriptors are closed in deinit, not here: a thread that has just posted may
        // still be about to write the eventfd, and its number must not be reused before then.
    }

    deinit {
        Self.closeDescriptors(epoll, wakeDescriptor)
    }

    /// Whether messages wait in the inbox.
    private var inboxIsEmpty: Bool {
        inbox.withLock { $0.messages.isEmpty }
    }

    private func drainInbox(into driver: inout Driver) {
        let messages = inbox.withLock { inbox -> [Message] in
            inbox.wakePending = false
            inbox.writeQueued.removeAll(keepingCapacity: true)
            defer { inbox.messages.removeAll(keepingCapacity: true) }
            return inbox.messages
        }
        for message in messages {
            switch message {
            case .start(let bridge):
                let token = bridge.eventLoopToken
                driver.entries[token] = Entry(bridge: bridge)
                executor.submit { [self] in
                    let goesOn = bridge.openSession()
                    post(.connectReturned(token, sessionGoesOn: goesOn))
                }
            case .connectReturned(let token, let goesOn):
                guard goesOn else {
                    // The session ended in openSession(); the bridge may already be released.
                    driver.entries.removeValue(forKey: token)
                    continue
                }
                attach(token, in: &driver)
            case .write(let token):
                service(token, readable: false, in: &driver)
            case .wake(let token):
                checkStop(token, in: &driver)
            case .shutdown:
                driver.shuttingDown = true
            case .job(let job):
                job.runSynchronously(on: asUnownedTaskExecutor())
            }
        }
    }
}
