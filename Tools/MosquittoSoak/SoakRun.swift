import Mosquitto
import MosquittoTesting

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - SoakRun

/// One `mqtt-soak soak` run: a persistent broker, the clients (``SoakClients``), publishing with
/// periodic broker restarts, then a bounded drain and the totals.
struct SoakRun {
    /// The run's settings.
    let options: SoakOptions

    /// The identifier that makes this run's client IDs and topics unique.
    let runID = String(UInt32.random(in: 0 ... .max), radix: 16)

    /// Runs the soak and returns what it measured. Progress lines go to standard output.
    /// - Throws: `MosquittoTestingError` when the broker cannot be started; `MQTTError` when a
    ///   client cannot connect or subscribe at the start. Failures after the start are reported
    ///   in the returned ``SoakReport`` instead.
    func run() async throws -> SoakReport {
        let topics = SoakTopics(runID: runID)
        let ledger = DeliveryLedger()
        let broker = try await MosquittoBroker.start(brokerConfiguration)
        defer { broker.stop() }
        print("mqtt-soak: broker on \(broker.host):\(broker.port), log \(broker.logFilePath ?? "-")")
        let clients = try await SoakClients.start(
            broker: broker, runID: runID, topics: topics, messagesPerSecond: options.messagesPerSecond, ledger: ledger
        )
        print(
            "mqtt-soak: publishing \(options.messagesPerSecond) msg/s per QoS for \(options.duration.wholeSeconds) s, "
                + "\(options.killsBroker ? "killing (SIGKILL)" : "restarting (SIGTERM)") the broker every \(options.restartInterval.wholeSeconds) s, "
                + "autosave \(options.effectiveAutosave == .onEveryChange ? "on every change" : "every second")"
        )

        let clock = ContinuousClock()
        let started = clock.now
        var (pending, restarts, problems) = await publishWithRestarts(clients.publishers, broker: broker, until: started + options.duration)
        let drainStarted = clock.now
        problems += await drain(clients.publishers, pending: pending, ledger: ledger)
        let tallies = MQTTQoS.allCases.map { ledger.tally(for: $0) }
        let drainTime = drainStarted.duration(to: clock.now)
        problems += await clients.shutDown()

        var report = SoakReport(
            options: options,
            tallies: tallies,
            restarts: restarts,
            subscriberConnections: clients.subscriberTally.current,
            publisherConnections: clients.publisherTallies.map(\.current),
            publishingTime: started.duration(to: drainStarted),
            drainTime: drainTime,
            problems: problems
        )
        report.anomalies = [MQTTQoS.atLeastOnce, .exactlyOnce].flatMap { qos in
            ledger.anomalies(for: qos).map { "\(qos): \($0)" }
        }
        if !report.passed {
            report.brokerLogCopy = Self.saveBrokerLog(broker, runID: runID)
        }
        return report
    }

    // MARK: Phases

    /// Runs the publishers and the broker restarts side by side until `deadline`.
    /// - Returns: Each publisher's publishes still awaiting acknowledgement, the number of
    ///   restarts (-1 when one failed), and the failure of a restart, if any.
    private func publishWithRestarts(
        _ publishers: [SoakPublisher], broker: MosquittoBroker, until deadline: ContinuousClock.Instant
    ) async -> (pending: [[MQTTPendingPublish]], restarts: Int, problems: [String]) {
        let restarter = BrokerRestarter(broker: broker, interval: options.restartInterval, kills: options.killsBroker)
        let restarting = Task { () -> Result<Int, any Error> in
            do { return .success(try await restarter.run(until: deadline)) } catch { return .failure(error) }
        }
        let publishing = publishers.map { publisher in Task { await publisher.run(until: deadline) } }
        var pending: [[MQTTPendingPublish]] = []
        for task in publishing { pending.append(await task.value) }
        switch await restarting.value {
        case .success(let count): return (pending, count, [])
        case .failure(let error): return (pending, -1, ["broker restart failed: \(error)"])
        }
    }

    /// Waits, within ``SoakOptions/drainTimeout``, for the acknowledgements of `pending` and then
    /// for every accepted QoS 1/2 message to be received; then one more second for late duplicates.
    /// - Returns: A problem when messages were still missing at the deadline.
    private func drain(_ publishers: [SoakPublisher], pending: [[MQTTPendingPublish]], ledger: DeliveryLedger) async -> [String] {
        let clock = ContinuousClock()
        let deadline = clock.now + options.drainTimeout
        for (publisher, waiting) in zip(publishers, pending) {
            await publisher.awaitAcknowledgements(waiting, deadline: deadline)
        }
        while !ledger.allDelivered([.atLeastOnce, .exactlyOnce]), clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let complete = ledger.allDelivered([.atLeastOnce, .exactlyOnce])
        try? await Task.sleep(for: .seconds(1))
        return complete ? [] : ["some QoS 1/2 messages were still missing after the \(options.drainTimeout.wholeSeconds) s drain"]
    }

    // MARK: Configuration

    /// The broker: persistent, saving its database per ``SoakOptions/effectiveAutosave``.
    private var brokerConfiguration: MosquittoBrokerConfiguration {
        var configuration = MosquittoBrokerConfiguration.persistent
        if options.effectiveAutosave == .onEveryChange {
            // With `autosave_on_changes`, `autosave_interval` counts changes instead of seconds.
            configuration.extraConfigLines = ["autosave_on_changes true", "autosave_interval 1"]
        }
        return configuration
    }

    // MARK: Diagnosis

    /// Copies the broker's log (removed with the broker) to `$TMPDIR` or `/tmp`, for a failed run.
    /// - Returns: The copy's path, or `nil` when it could not be written.
    private static func saveBrokerLog(_ broker: MosquittoBroker, runID: String) -> String? {
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let path = "\(directory)/mqtt-soak-\(runID)-broker.log"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var text = broker.logContents()
        return text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                guard written > 0 else { return nil }
                offset += written
            }
            return path
        }
    }
}

// MARK: - Duration

extension Duration {
    /// The whole seconds of the duration (rounded down).
    var wholeSeconds: Int64 { components.seconds }

    /// The duration in seconds with one decimal, e.g. `"61.3"`.
    var secondsText: String {
        let tenths = components.seconds * 10 + components.attoseconds / 100_000_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
