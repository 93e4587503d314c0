import Mosquitto

// MARK: - ReceiveOptions

/// The options of the commands that print received messages, `mqtt sub` and `mqtt rr` (as in
/// mosquitto, where both print with the same code): `-W`, `-R`, `-v`, `-N`, `-F`, `--json`,
/// `--pretty`, `--retain-as-published`; and those only `sub` takes (``subscribeTable``): `-E`,
/// `-T`, `-U`, `--retained-only`, `--remove-retained`, `--random-filter`.
struct ReceiveOptions {
    /// `-W`: give up this many seconds after connecting.
    var timeoutSeconds: Int?
    /// `-R`: skip messages delivered with the retain flag (stale retained messages); with MQTT 5
    /// the subscription also asks the broker not to send them (retain handling 2), as mosquitto.
    var skipRetained = false
    /// `--retain-as-published`: the MQTT 5 subscription option.
    var retainAsPublished = false
    /// `-v`, `-N`, `-F`, `--json` and `--pretty`.
    var format = MessageFormat()

    // MARK: sub only
    /// `-E`: exit once the SUBACK arrived (and the `-U` unsubscriptions were acknowledged).
    var exitAfterSubscribing = false
    /// `-T`: messages on topics matching one of these filters are neither printed nor counted.
    var filterOut: [String] = []
    /// `-U`: filters to unsubscribe from once subscribed.
    var unsubscribe: [String] = []
    /// `--retained-only`: print only retained messages; end at the first message without the
    /// retain flag.
    var retainedOnly = false
    /// `--remove-retained`: publish an empty retained message (QoS 1) to the topic of every
    /// retained message printed, which deletes it on the broker.
    var removeRetained = false
    /// `--random-filter`: print each message with this chance, in percent (0.1...100).
    var randomFilterPercent: Double?

    /// The shared options, in `--help` order; each command lifts them into its table.
    static var table: [OptionSpec<ReceiveOptions>] {
        [
            .value(["-W"], "SECONDS", noun: "timeout", "Give up, print \"Timed out\" and exit 27, this many seconds after connecting.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.timeoutSeconds = try ValueParser.positive(value, "Invalid timeout \"\(value)\".")
            },
            .flag(["-v", "--verbose"], "Print messages as \"topic payload\".") { $0.format.verbose = true },
            .flag(["-N"], "Do not add an end of line character after each message.") { $0.format.noEndOfLine = true },
            .value(["-F"], "FORMAT", noun: "format", "Print messages with mosquitto_sub's format string (%t topic, %p payload, %P user properties, %j/%J JSON, ...); overrides -v.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.format.custom = try FormatString(value)
            },
            .flag(["--json"], "Print each message as one JSON object: topic, qos, retain, mid, payloadlen, payload (UTF-8 text, else base64 with \"payloadEncoding\":\"base64\"), MQTT 5 properties.") { $0.format.json = true },
            .flag(["--pretty"], "Print the JSON of --json, %j and %J indented over several lines, as mosquitto's --pretty.") { $0.format.pretty = true },
            .flag(["-R"], "Do not print stale messages (those with the retain flag set); with MQTT 5, ask the broker not to send them.") { $0.skipRetained = true },
            .flag(["--retain-as-published"], "MQTT 5 subscription option: keep the retain flag of messages as published.") { $0.retainAsPublished = true },
        ]
    }

    /// The options only `mqtt sub` takes (mosquitto_rr refuses them), in `--help` order.
    static var subscribeTable: [OptionSpec<ReceiveOptions>] {
        [
            .flag(["-E"], "Exit once the subscriptions were acknowledged by the broker.") { $0.exitAfterSubscribing = true },
            .utf8(["-T", "--filter-out"], "FILTER", noun: "topic filter", "Do not print (nor count for -C) messages whose topic matches FILTER. May be repeated.", malformed: "Malformed UTF-8 in -T argument.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.filterOut.append(try Self.filter(value, as: "filter"))
            },
            .utf8(["-U", "--unsubscribe"], "FILTER", noun: "unsubscribe topic", "Unsubscribe from FILTER once subscribed (e.g. from a persistent session). May be repeated.", malformed: "Malformed UTF-8 in -U argument.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.unsubscribe.append(try Self.filter(value, as: "unsubscribe"))
            },
            .flag(["--retained-only"], "Print only retained messages; exit at the first message without the retain flag.") { $0.retainedOnly = true },
            .flag(["--remove-retained"], "Delete every retained message received (publish an empty retained message to its topic); use -T to keep some.") { $0.removeRetained = true },
            .value(["--random-filter"], "PERCENT", noun: "chance", "Print only this percentage of the messages, chosen at random (0.1 to 100); the others still count for -C.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                guard let percent = Double(value), percent >= 0.1, percent <= 100 else {
                    throw CLIError.usage("--random-filter chance must be between 0.1-100.0", spaced: true)
                }
                options.randomFilterPercent = percent
            },
        ]
    }

    /// A topic filter given to `-T` or `-U`, checked as mosquitto checks it.
    private static func filter(_ value: String, as what: String) throws(CLIError) -> String {
        do {
            try MQTTTopic.validateFilter(value)
        } catch {
            throw CLIError.usage("Invalid \(what) topic '\(value)', are all '+' and '#' wildcards correct?")
        }
        return value
    }

    /// The checks once all flags are read.
    func validated() throws(CLIError) -> ReceiveOptions {
        if format.json && format.custom != nil {
            throw CLIError.usage("--json and -F cannot be used together.")
        }
        if skipRetained && retainedOnly {
            // mosquitto_sub's check after its parser: a blank line first, no pointer to --help.
            throw CLIError.setting("Combining '-R' and '--retained-only' makes no sense.").precededByBlankLine()
        }
        return self
    }

    /// The subscription for `filter` with these options (`-q`, `-R`, `--retain-as-published`).
    func subscription(_ filter: String, qos: MQTTQoS) -> MQTTTopicFilter {
        MQTTTopicFilter(filter, qos: qos, retainAsPublished: retainAsPublished, retainHandling: skipRetained ? .doNotSend : .sendOnSubscribe)
    }

    /// Whether `message` passes `-R` and `-T` (mosquitto's order, after `--retained-only`).
    func accepts(_ message: MQTTMessage) -> Bool {
        if skipRetained && message.retain { return false }
        return !filterOut.contains { MQTTTopic.matches(message.topic, filter: $0) }
    }

    /// Whether `--random-filter` lets `message` be printed (mosquitto still counts it for -C).
    func randomlyChosen() -> Bool {
        guard let randomFilterPercent else { return true }
        return Double.random(in: 0..<100) < randomFilterPercent
    }
}

// MARK: - Receiver

/// Connects, subscribes, optionally sends something (the request of `rr`), then prints messages
/// until `limit` were printed, `-W` expires, the connection fails, or SIGINT/SIGTERM arrives; then
/// disconnects cleanly. Shared by `sub` and `rr`.
enum Receiver {
    /// Why the session ended.
    enum Outcome: Sendable {
        /// `limit` messages were printed, or the session ended normally.
        case finished
        /// Cancelled (by the end of a racing task).
        case interrupted
        /// SIGINT or SIGTERM (the signal number).
        case signalled(Int32)
        /// `-W` expired.
        case timedOut
        /// Connecting, subscribing, sending, receiving or writing failed.
        case failed(CLIError)
    }

    /// What to subscribe to and what to do then.
    struct Plan: Sendable {
        var filters: [MQTTTopicFilter]
        /// `-D subscribe ...`.
        var properties: MQTTProperties
        /// `-D unsubscribe ...`, for the `-U` filters.
        var unsubscribeProperties = MQTTProperties()
        /// `--quiet`: no warning lines while receiving.
        var quiet = false
        /// `-W`, `-R`, `-v`, `-N`, `-F`, ... and the sub-only `-E`, `-T`, `-U`, ...
        var options: ReceiveOptions
        /// End after this many messages (`-C`; 1 for `rr`), counted after `-R` and `-T` and
        /// before `--random-filter`, as mosquitto_sub counts; `nil`: no limit.
        var limit: Int?
        /// Runs once subscribed, before messages are read (`rr` publishes its request).
        var afterSubscribing: (@Sendable (MQTTClient) async throws(CLIError) -> Void)?
        /// What SIGINT/SIGTERM do once connected.
        var onSignal: SignalBehaviour = .disconnectWithWill
    }

    /// How a command ends on SIGINT or SIGTERM after the CONNACK, as its mosquitto tool does.
    enum SignalBehaviour: Sendable {
        /// mosquitto_sub: DISCONNECT with reason 0x04 (the broker publishes the will), exit 0.
        case disconnectWithWill
        /// mosquitto_rr, which the signal kills: the connection closes without DISCONNECT.
        case closeWithoutDisconnect
    }

    /// mosquitto_sub's status when a signal arrives before the CONNACK (its `exit(-1)`).
    static let signalledBeforeConnackStatus: Int32 = 255

    /// Runs `plan` on `session`.
    ///
    /// - Returns: The signal (SIGINT, SIGTERM) that ended the session, or `nil`.
    /// - Throws: ``CLIError``: `Timed out` (status 27) when `-W` expires, as mosquitto_sub and
    ///   mosquitto_rr, even if some messages arrived; the failures of the session.
    @discardableResult
    static func run(_ plan: Plan, session: Session) async throws(CLIError) -> Int32? {
        let signals = SignalWatcher()
        // The session races the signals: whichever ends first cancels the other.
        let outcome = await withTaskGroup(of: Outcome.self) { group in
            group.addTask { await connectAndReceive(plan, session: session) }
            group.addTask {
                guard let number = await signals.next() else { return .interrupted }
                return .signalled(number)
            }
            let first = await group.next() ?? .finished
            group.cancelAll()
            return first
        }
        let connected = session.client.connectResult != nil
        switch outcome {
        case .signalled where !connected && plan.onSignal == .disconnectWithWill:
            // mosquitto_sub exits at once, with -1, when no CONNACK has arrived yet.
            var interrupted = CLIError.runtime("Interrupted", status: signalledBeforeConnackStatus)
            interrupted.isSilenced = true
            throw interrupted
        case .signalled(let number) where plan.onSignal == .closeWithoutDisconnect:
            // Killed, as mosquitto_rr is: the socket closes without DISCONNECT (a released
            // client would send one).
            Output.flush()
            Signals.die(of: number)
        case .signalled, .timedOut:
            await session.disconnect(reasonCode: .disconnectWithWillMessage)
        case .finished, .interrupted, .failed:
            await session.disconnect()
        }
        switch outcome {
        case .finished, .interrupted:
            return nil
        case .signalled(let number):
            return number
        case .timedOut:
            throw CLIError.runtime("Timed out", status: MosquittoStatus.timeout)
        case .failed(let error):
            throw error
        }
    }

    /// Connects, then receives until done, with the `-W` timer started once connected.
    ///
    /// Messages are read from `client.messages`, created before connecting, rather than from the
    /// sequence `subscribe(to:)` returns: with `-c`, the broker sends the messages queued in the
    /// persistent session right after CONNACK, before SUBSCRIBE, and a sequence created by
    /// `subscribe` would miss them (libmosquitto has already acknowledged them, so they would be
    /// lost). mosquitto_sub prints them; so does `mqtt sub`.
    private static func connectAndReceive(_ plan: Plan, session: Session) async -> Outcome {
        let messages = session.client.messages
        do {
            try await session.connect()
        } catch {
            return .failed(error)
        }
        return await withTaskGroup(of: Outcome.self) { group in
            // Printed on the client's event-loop thread, as mosquitto_sub prints in its
            // libmosquitto callback: a message reaches the printer without waking another thread,
            // and a full stdout pipe holds up reading from the broker (backpressure) as it does
            // mosquitto_sub's.
            group.addTask(executorPreference: session.client.taskExecutor) {
                do throws(CLIError) {
                    return try await session.untilTheProtocolBreaks { await receive(messages, session: session, plan: plan) }
                } catch {
                    return .failed(error)
                }
            }
            if let seconds = plan.options.timeoutSeconds {
                group.addTask {
                    do {
                        try await Task.sleep(for: .seconds(seconds))
                        return .timedOut
                    } catch {
                        return .interrupted
                    }
                }
            }
            let first = await group.next() ?? .finished
            group.cancelAll()
            return first
        }
    }

    /// Subscribes, unsubscribes from the `-U` filters, runs `afterSubscribing`, then prints
    /// messages from `messages` until the limit is reached, `--retained-only` meets a message
    /// without the retain flag, or the session ends.
    ///
    /// Each message goes through mosquitto_sub's steps, in its order: `--retained-only`, `-R`,
    /// `-T`, `--remove-retained`, `--random-filter`, printing, `-C`.
    private static func receive(_ messages: MQTTMessageSequence, session: Session, plan: Plan) async -> Outcome {
        let client = session.client
        let options = plan.options
        do {
            // The subscription's own sequence is dropped at once (which ends it); see `connectAndReceive`.
            do {
                _ = try await client.subscribe(to: plan.filters, properties: plan.properties)
            } catch where error.code == .subscriptionRefused && error.subscribeResults?.contains(where: { !$0.reasonCode.isFailure }) == true {
                // As mosquitto_sub: some filters were granted, so go on with them, without a word.
            }
            // mosquitto_sub sends one UNSUBSCRIBE per -U filter right after its SUBSCRIBE.
            for filter in options.unsubscribe {
                try await client.unsubscribe(from: [filter], properties: plan.unsubscribeProperties)
            }
        } catch {
            if error.code == .cancelled { return .interrupted }
            if error.code == .subscriptionRefused {
                // mosquitto_sub's line when the broker refused every filter (it then exits 0).
                return .failed(.runtime("All subscription requests were denied.", status: 1))
            }
            return .failed(CLIError(error))
        }
        if options.exitAfterSubscribing { return .finished }
        if let afterSubscribing = plan.afterSubscribing {
            do {
                try await afterSubscribing(client)
            } catch {
                return .failed(error)
            }
        }
        var counted = 0
        let format = plan.options.format
        let statistics = session.statistics
        /// `--remove-retained`: the empty retained messages sent, acknowledged before the end.
        var removals: [MQTTPendingPublish] = []
        do {
            for try await message in messages {
                statistics?.didReceive()
                if options.retainedOnly && !message.retain { break }
                guard options.accepts(message) else { continue }
                if options.removeRetained && message.retain {
                    // As mosquitto_sub: QoS 1, retained, empty (which deletes the retained message).
                    removals.append(try client.beginPublish(to: message.topic, payload: [UInt8](), qos: .atLeastOnce, retain: true))
                }
                if options.randomlyChosen() {
                    // Rendered straight into the stdout buffer (see `Output`): no copy, no write(2)
                    // per message unless stdout is a terminal.
                    var warning: String?
                    let failure = Output.standardOutputBuffer.append { format.render(message, into: &$0, warning: &warning) }
                    if failure != 0 {
                        return .failed(.runtime("Error: Unable to write to standard output (\(systemErrorText(failure))).", status: 1))
                    }
                    // mosquitto_sub's line for a %J payload that is not JSON; it carries on.
                    if let warning, !plan.quiet { Output.printError(warning) }
                }
                // mosquitto_sub counts a message --random-filter did not print.
                counted += 1
                if let limit = plan.limit, counted >= limit { break }
            }
            // mosquitto_sub 2.0.11 never disconnects once it published a removal (it waits for
            // nothing and hangs); `mqtt sub` waits for their PUBACKs, then ends.
            for removal in removals {
                try await removal.acknowledgement()
            }
        } catch let error as MQTTError {
            if error.code == .cancelled { return .interrupted }
            return .failed(CLIError(error))
        } catch {
            return .failed(.runtime("Error: \(error)", status: 1))
        }
        return .finished
    }
}
