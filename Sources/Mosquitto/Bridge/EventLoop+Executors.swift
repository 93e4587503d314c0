import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
