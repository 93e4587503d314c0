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
final class EventLoop: Sendable {
    /// A message for the loop's thread.
    private enum Message {
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

    private struct Inbox: ~Copyable {
        var messages: [Message] = []
        /// Clients with a `.write` message in `messages` (coalescing).
        var writeQueued: Set<UInt64> = []
        /// Whether the `eventfd` was written since the loop last drained the inbox.
        var wakePending = false
        /// Set when the thread has exited: jobs go to the global executor instead.
        var exited = false
    }

    private let epoll: Int32
    private let wakeDescriptor: Int32
    private let inbox = Locked(Inbox())
    private let executor: BlockingExecutor
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
    private func requestWrite(_ token: UInt64) {
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

    private func post(_ message: Message) {
        let wake = inbox.withLock { inbox -> Bool in
            inbox.messages.append(message)
            defer { inbox.wakePending = true }
            return !inbox.wakePending
        }
        if wake { signal() }
    }

    /// Whether the caller runs on this loop's thread.
    private var isLoopThread: Bool {
        thread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    private func signal() {
        _ = eventfd_write(wakeDescriptor, 1)
    }

    // MARK: The loop's thread

    /// A session the loop drives.
    private struct Entry {
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
    private struct Driver: ~Copyable {
        var entries: [UInt64: Entry] = [:]
        var shuttingDown = false
    }

    /// How often the loop looks at every session for keepalive, watchdog, backoff and stop deadlines.
    private static let sweepInterval = DriverTiming.stopPollInterval
    /// The longest a session goes between two keepalive checks.
    private static let checkInterval = DriverTiming.idleWait

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

    /// Takes over the socket of a session the executor has just (re)connected.
    private func attach(_ token: UInt64, in driver: inout Driver) {
        guard var entry = driver.entries[token] else { return }
        let bridge = entry.bridge
        let interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        let socket = bridge.loopSocket.withLock { attached -> Int32? in
            let socket = bridge.handle.socket
            guard socket >= 0 else { return nil }
            guard swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_ADD, socket, interest, token) == 0 else {
                // Out of kernel memory for epoll: treat it as a lost connection (the reconnect
                // policy may try again) rather than leave the session undriven.
                bridge.handle.abortConnection()
                return nil
            }
            attached = socket
            return socket
        }
        guard let socket else {
            // The reconnect failed; the policy decides what follows.
            connectionEnded(token, .noConnection, in: &driver)
            return
        }
        entry.interest = interest
        entry.phase = .active(socket: socket)
        entry.nextCheck = ContinuousClock.now
        driver.entries[token] = entry
        bridge.sendDisconnectIfStopping()
        // CONNECT (and anything published meanwhile) is queued: write it now.
        service(token, readable: false, in: &driver)
        checkStop(token, in: &driver)
    }

    /// Reads (when the socket is readable), writes what is queued, and lets the bridge complete
    /// the pass, for one active session. Everything that touches the connection happens under
    /// its ``MosquittoBridge/loopSocket`` lock, which a publishing thread may hold instead to
    /// write directly (and which tells whether the socket is still the one registered here: a
    /// failed write on that thread closes it, and its number may then be reused by another
    /// connection, which epoll_ctl must never touch).
    private func service(_ token: UInt64, readable: Bool, keepAlive: Bool = false, in driver: inout Driver) {
        guard var entry = driver.entries[token], case .active(let socket) = entry.phase else { return }
        let bridge = entry.bridge
        let handle = bridge.handle
        let stopping = entry.stopping
        var gaveUp = false
        let failure = bridge.loopSocket.withLock { attached -> MosquittoStatus? in
            guard attached == socket, handle.socket == socket else { return .noConnection }
            bridge.prepareForPass(&entry.pass, stopping: stopping)
            var status = MosquittoStatus.success
            // A stop: drain, then DISCONNECT, then only write (a read in libmosquitto's
            // "disconnecting" state would close the socket, DISCONNECT unwritten).
            var progress = stopping ? bridge.advanceStop() : .running
            if progress == .giveUp {
                gaveUp = true
                return nil
            }
            if keepAlive, progress == .running {
                status = handle.keepAlive()
            }
            if status.isSuccess, readable, progress == .running, handle.socket == socket {
                status = handle.read(maxPackets: DriverTiming.readBudget)
            }
            // Reading may have queued acknowledgements (PUBACK, PUBREC, ...): write them too.
            if status.isSuccess, handle.socket == socket, handle.wantsWrite {
                status = handle.write()
            }
            // The queue may be written now: DISCONNECT follows at once.
            if stopping, progress == .running, status.isSuccess, handle.socket == socket {
                progress = bridge.advanceStop()
                if progress == .writeOnly, handle.wantsWrite {
                    status = handle.write()
                }
            }
            guard status.isSuccess, handle.socket == socket else {
                // libmosquitto closed the socket (which also took it out of epoll): the
                // connection was lost, or the DISCONNECT was written.
                attached = -1
                return status.isSuccess ? .noConnection : status
            }
            // Writing only: readiness to read would wake the loop again and again for nothing.
            let interest = progress == .writeOnly
                ? EPOLLOUT.rawValue
                : EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (handle.wantsWrite ? EPOLLOUT.rawValue : 0)
            if interest != entry.interest, swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_MOD, socket, interest, token) == 0 {
                entry.interest = interest
            }
            // Re-subscription and the dead-link watchdog (which may shut the socket down: only
            // while it is surely this connection's).
            let wait = bridge.completePass(&entry.pass)
            entry.nextCheck = min(entry.nextCheck, ContinuousClock.now + .milliseconds(Int(wait)))
            return nil
        }
        driver.entries[token] = entry
        // Outside the I/O lock: a consumer woken here may publish at once, and then finds the
        // connection free to write to directly.
        bridge.didFinishPass()
        if gaveUp {
            end(token, in: &driver)
        } else if let failure {
            connectionEnded(token, failure, in: &driver)
        }
    }

    /// The session's connection is gone (libmosquitto has closed the socket): reconnect per the
    /// policy, or end the session.
    private func connectionEnded(_ token: UInt64, _ status: MosquittoStatus, in driver: inout Driver) {
        guard var entry = driver.entries[token] else { return }
        if let delay = entry.bridge.connectionFailed(status, &entry.pass), !entry.stopping {
            entry.phase = .backingOff(until: ContinuousClock.now + delay)
            driver.entries[token] = entry
            // A stop requested meanwhile ends the backoff at once.
            checkStop(token, in: &driver)
        } else {
            end(token, in: &driver)
        }
    }

    /// Removes the session and ends it in the bridge (which may then destroy the handle).
    private func end(_ token: UInt64, in driver: inout Driver) {
        guard let entry = driver.entries.removeValue(forKey: token) else { return }
        let bridge = entry.bridge
        bridge.loopSocket.withLock { attached in
            if case .active(let socket) = entry.phase, attached == socket, bridge.handle.socket == socket {
                // Still open (a DISCONNECT that could not be written in time): unregister it
                // before the handle is destroyed and the number reused.
                _ = swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_DEL, socket, 0, token)
            }
            attached = -1
        }
        bridge.closeSession()
    }

    /// Acts on a requested stop: ends a backoff at once; has an active connection drain its queue
    /// and write DISCONNECT (by the session's deadline).
    private func checkStop(_ token: UInt64, in driver: inout Driver) {
        guard var entry = driver.entries[token], entry.bridge.isStopRequested else { return }
        switch entry.phase {
        case .connecting:
            return  // the executor's call returns first
        case .backingOff:
            end(token, in: &driver)
        case .active:
            if !entry.stopping {
                entry.stopping = true
                driver.entries[token] = entry
            }
            service(token, readable: false, in: &driver)
        }
    }

    /// Keepalive, watchdog, backoff ends and stop deadlines, for every session that is due.
    private func sweep(_ driver: inout Driver) {
        let now = ContinuousClock.now
        for token in Array(driver.entries.keys) {
            guard let entry = driver.entries[token] else { continue }
            switch entry.phase {
            case .connecting:
                continue
            case .backingOff(let until):
                if entry.bridge.isStopRequested {
                    end(token, in: &driver)
                } else if now >= until {
                    driver.entries[token]?.phase = .connecting
                    let bridge = entry.bridge
                    executor.submit { [self] in
                        bridge.reconnectSocket()
                        post(.connectReturned(token, sessionGoesOn: true))
                    }
                }
            case .active:
                if entry.stopping {
                    // Drain, DISCONNECT, or the deadline: the pass asks the bridge.
                    service(token, readable: false, in: &driver)
                    continue
                }
                guard now >= entry.nextCheck else { continue }
                driver.entries[token]?.nextCheck = now + Self.checkInterval
                // Keepalive (a PINGREQ, or closing a link whose PINGRESP never came), then the
                // watchdog; and a stop that is due.
                service(token, readable: false, keepAlive: true, in: &driver)
                checkStop(token, in: &driver)
            }
        }
    }
}

// MARK: - EventLoop as a SessionDriver

extension EventLoop: SessionDriver {
    func start(_ bridge: MosquittoBridge) -> Bool {
        post(.start(bridge))
        return true
    }

    func wake(_ bridge: MosquittoBridge) {
        post(.wake(bridge.eventLoopToken))
    }

    func requestWrite(_ bridge: MosquittoBridge) {
        requestWrite(bridge.eventLoopToken)
    }

    var writesFromCommandThreads: Bool { true }

    var taskExecutor: (any TaskExecutor)? { self }
}

// MARK: - EventLoop as a TaskExecutor

extension EventLoop: TaskExecutor {
    /// Runs `job` on the loop's thread, between two rounds of network work.
    ///
    /// DESIGN: a task that prefers this executor (``MQTTClient/taskExecutor``) runs on the thread
    /// that reads its client's socket, as code on a SwiftNIO event loop does: a message, a
    /// publish acknowledgement or a response resumes it without waking another thread, and what
    /// it publishes is written from the same thread. From the loop's own thread (a continuation
    /// resumed by a callback, or by another job) the job is appended without the `eventfd`
    /// write: the loop drains its inbox before it next waits, and waits no time while the inbox
    /// holds anything. After the thread has exited (its group released and no session left),
    /// jobs run on the global concurrent executor, so a task never waits for a loop that is gone.
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let onLoop = isLoopThread
        let outcome = inbox.withLock { inbox -> (accepted: Bool, wake: Bool) in
            guard !inbox.exited else { return (false, false) }
            inbox.messages.append(.job(job))
            if onLoop { return (true, false) }
            defer { inbox.wakePending = true }
            return (true, !inbox.wakePending)
        }
        if !outcome.accepted {
            globalConcurrentExecutor.enqueue(job)
        } else if outcome.wake {
            signal()
        }
    }
}

// MARK: - BlockingExecutor

/// A few threads for the calls that block: libmosquitto's connect and reconnect (DNS, TCP, the
/// TLS handshake). Shared by a group's event loops, so that a slow connection attempt holds up
/// other attempts at most, never the established connections.
final class BlockingExecutor: Sendable {
    private struct Queue: ~Copyable {
        var jobs: [@Sendable () -> Void] = []
        var head = 0
        var stopped = false
    }

    private let queue = Locked(Queue())
    /// Signalled once per job, and once per thread at shutdown.
    private let available = DispatchSemaphore(value: 0)
    private let numberOfThreads: Int

    /// Starts `numberOfThreads` threads.
    ///
    /// - Throws: ``MQTTError`` with code ``MQTTError/Code/outOfMemory`` when a thread cannot start.
    init(numberOfThreads: Int) throws(MQTTError) {
        self.numberOfThreads = numberOfThreads
        for index in 0..<numberOfThreads {
            guard DriverThread.start({ [self] in run(index: index) }) else {
                shutdown()
                throw MQTTError(.outOfMemory, operation: .configure, detail: "could not start a connect thread")
            }
        }
    }

    /// Runs `job` on one of the threads, in submission order.
    func submit(_ job: @escaping @Sendable () -> Void) {
        queue.withLock { $0.jobs.append(job) }
        available.signal()
    }

    /// Lets the threads exit once the queue is empty.
    func shutdown() {
        queue.withLock { $0.stopped = true }
        for _ in 0..<numberOfThreads { available.signal() }
    }

    private func run(index: Int) {
        DriverThread.setName("mqtt-connect-\(index)")
        while true {
            available.wait()
            let job: (@Sendable () -> Void)? = queue.withLock { queue in
                guard queue.head < queue.jobs.count else { return nil }
                let job = queue.jobs[queue.head]
                queue.head += 1
                if queue.head == queue.jobs.count {
                    queue.jobs.removeAll(keepingCapacity: true)
                    queue.head = 0
                }
                return job
            }
            if let job {
                job()
            } else if queue.withLock({ $0.stopped }) {
                return
            }
        }
    }
}
