import Mosquitto
import Synchronization

// MARK: - Statistics

/// The counters behind the statistics line that `-d` prints every 10 seconds (`--stats SECONDS`
/// sets the interval, and prints the line without `-d`'s log) and once more at the end:
///
///     Statistics: 10.0 s: sent 81234 (8123/s), acknowledged 81000, pending 234, received 0 (0/s), reconnects 0
///     Statistics (end): 12.3 s: sent 100000 (8130/s), acknowledged 100000, pending 0, received 0 (0/s), reconnects 0
///
/// Like `-d`'s log lines (and mosquitto's), they go to standard output, so standard error keeps
/// carrying nothing but the error line of a failure. Rates are per second over the last interval
/// (the whole run for the last line). `sent`: messages handed to the library; `acknowledged` /
/// `pending`: QoS 1/2 messages whose PUBACK/PUBCOMP arrived / has not arrived yet; `received`:
/// messages received (including those `-R` skips); `reconnects`: connections after the first.
///
/// Counters are atomics, updated by the command's task and read by the reporter's.
final class Statistics: Sendable {
    private let started = ContinuousClock.now
    private let sentCount = Atomic<Int>(0)
    private let acknowledgedCount = Atomic<Int>(0)
    private let pendingCount = Atomic<Int>(0)
    private let receivedCount = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)
    /// What the previous line reported, for the rates: (time, sent, received).
    private let previous: Mutex<(ContinuousClock.Instant, Int, Int)>

    init() {
        previous = Mutex((started, 0, 0))
    }

    /// One message handed to the library.
    func didSend() { sentCount.add(1, ordering: .relaxed) }
    /// `count` QoS 1/2 acknowledgements arrived.
    func didAcknowledge(_ count: Int = 1) { acknowledgedCount.add(count, ordering: .relaxed) }
    /// How many QoS 1/2 messages await their acknowledgement.
    func setPending(_ count: Int) { pendingCount.store(count, ordering: .relaxed) }
    /// One message received.
    func didReceive() { receivedCount.add(1, ordering: .relaxed) }
    /// The broker accepted a connection.
    func didConnect() { connections.add(1, ordering: .relaxed) }

    /// Whether a connection was ever accepted.
    var hasConnected: Bool { connections.load(ordering: .relaxed) > 0 }

    /// The statistics line; `final` for the last one (rates over the whole run).
    func line(final: Bool = false) -> String {
        let now = ContinuousClock.now
        let sent = sentCount.load(ordering: .relaxed)
        let received = receivedCount.load(ordering: .relaxed)
        let (since, sentBefore, receivedBefore) = previous.withLock { previous in
            defer { previous = (now, sent, received) }
            return final ? (started, 0, 0) : previous
        }
        let seconds = Double((now - since).components.attoseconds) / 1e18 + Double((now - since).components.seconds)
        func rate(_ count: Int) -> Int { seconds > 0 ? Int((Double(count) / seconds).rounded()) : 0 }
        let elapsed = now - started
        let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let reconnects = max(0, connections.load(ordering: .relaxed) - 1)
        return (final ? "Statistics (end): " : "Statistics: ")
            + "\(formatSeconds(total)) s: sent \(sent) (\(rate(sent - sentBefore))/s), "
            + "acknowledged \(acknowledgedCount.load(ordering: .relaxed)), pending \(pendingCount.load(ordering: .relaxed)), "
            + "received \(received) (\(rate(received - receivedBefore))/s), reconnects \(reconnects)"
    }

    /// `12.3`.
    private func formatSeconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

// MARK: - StatisticsReporter

/// Prints ``Statistics/line(final:)`` every `interval` and counts connections, until cancelled.
enum StatisticsReporter {
    /// Starts reporting; the connection events are read from `events`, created before connecting
    /// so that the first connection is counted.
    static func start(_ statistics: Statistics, events: MQTTConnectionEvents, interval: Duration) -> Task<Void, Never> {
        Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in events {
                        if case .connected = event { statistics.didConnect() }
                    }
                }
                group.addTask {
                    while true {
                        do {
                            try await Task.sleep(for: interval)
                        } catch {
                            return
                        }
                        Output.printLine(statistics.line())
                    }
                }
                await group.waitForAll()
            }
        }
    }
}
