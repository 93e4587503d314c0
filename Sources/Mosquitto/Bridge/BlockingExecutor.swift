import Dispatch

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
