import Mosquitto

// MARK: - SoakReport

/// What a soak run measured, the table it prints, and whether it passed.
struct SoakReport {
    /// The run's settings.
    var options: SoakOptions
    /// The totals, one per QoS in order 0, 1, 2.
    var tallies: [QoSTally]
    /// Broker restarts completed; -1 when a restart failed.
    var restarts: Int
    /// The subscriber's connections and losses.
    var subscriberConnections: ConnectionTally.Counts
    /// Each publisher's connections and losses, in QoS order.
    var publisherConnections: [ConnectionTally.Counts]
    /// How long messages were published.
    var publishingTime: Duration
    /// How long the drain took (acknowledgements, deliveries and the one-second settle).
    var drainTime: Duration
    /// What went wrong besides the counts (a failed restart, an ended sequence, a drain timeout).
    var problems: [String]
    /// Samples of lost and duplicated QoS 1/2 messages, e.g. `QoS 2: lost 1234 (mid 567)`.
    var anomalies: [String] = []
    /// Where the broker's log was copied when the run failed.
    var brokerLogCopy: String?

    // MARK: Verdict

    /// Why the run failed: lost QoS 1/2 messages, duplicated QoS 2 messages, deliveries of
    /// messages never sent, a QoS that sent nothing, and every entry of ``problems``.
    var failures: [String] {
        var failures: [String] = []
        for tally in tallies {
            if tally.qos != .atMostOnce, tally.lost > 0 { failures.append("\(tally.lost) \(tally.qos) messages lost") }
            if tally.qos == .exactlyOnce, tally.duplicated > 0 { failures.append("\(tally.duplicated) \(tally.qos) messages duplicated") }
            if tally.unexpected > 0 { failures.append("\(tally.unexpected) unexpected \(tally.qos) deliveries") }
            if tally.sent == 0 { failures.append("no \(tally.qos) message was sent") }
        }
        return failures + problems
    }

    /// Whether the run passed.
    var passed: Bool { failures.isEmpty }

    // MARK: Rendering

    /// The table and summary lines printed at the end of a run.
    var rendered: String {
        let headers = ["QoS", "sent", "received", "duplicated", "lost", "refused", "unexpected", "acked", "ack failed"]
        let rows = tallies.map { tally in
            [
                "\(tally.qos.rawValue)", "\(tally.sent)", "\(tally.received)", "\(tally.duplicated)", "\(tally.lost)",
                "\(tally.refused)", "\(tally.unexpected)",
                tally.qos == .atMostOnce ? "-" : "\(tally.acknowledged)",
                tally.qos == .atMostOnce ? "-" : "\(tally.acknowledgementFailures)",
            ]
        }
        let widths = headers.indices.map { column in ([headers] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "  ")
        }
        let publisherReconnections = publisherConnections.map(\.reconnections).reduce(0, +)
        var lines = [line(headers)] + rows.map(line)
        lines.append(
            "restarts: \(restarts < 0 ? "failed" : "\(restarts)") (\(options.killsBroker ? "SIGKILL" : "SIGTERM"))"
                + "  reconnects: \(subscriberConnections.reconnections + publisherReconnections)"
                + " (subscriber \(subscriberConnections.reconnections), publishers "
                + publisherConnections.map { "\($0.reconnections)" }.joined(separator: "/") + ")"
                + "  connections lost: \(([subscriberConnections] + publisherConnections).map(\.losses).reduce(0, +))"
                + "  published for \(publishingTime.secondsText) s, drained in \(drainTime.secondsText) s"
        )
        lines.append(
            "sent: accepted by the library; refused: publish attempts the library refused (not sent); "
                + "received: distinct messages; lost = sent - received"
        )
        if !anomalies.isEmpty {
            lines.append("QoS 1/2 messages not received exactly once (first 10 per QoS):")
            lines += anomalies.map { "  \($0)" }
        }
        if let brokerLogCopy { lines.append("broker log: \(brokerLogCopy)") }
        let failures = failures
        lines.append(failures.isEmpty ? "result: PASS (no QoS 1/2 message lost, no QoS 2 message duplicated)" : "result: FAIL: " + failures.joined(separator: "; "))
        return lines.joined(separator: "\n")
    }
}
