import Mosquitto

// MARK: - ReceiveOptions

/// The options of the commands that print received messages, `mqtt sub` and `mqtt rr` (as in
/// mosquitto, where both print with the same code): `-W`, `-R`, `-v`, `-N`, `-F`, `--json`.
struct ReceiveOptions {
    /// `-W`: give up this many seconds after connecting.
    var timeoutSeconds: Int?
    /// `-R`: skip messages delivered with the retain flag (stale retained messages).
    var skipRetained = false
    /// `-v`, `-N`, `-F` and `--json`.
    var format = MessageFormat()

    /// The shared options, in `--help` order; each command lifts them into its table.
    static var table: [OptionSpec<ReceiveOptions>] {
        [
            .value(["-W"], "SECONDS", noun: "timeout", "Give up, print \"Timed out\" and exit 27, this many seconds after connecting.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.timeoutSeconds = try ValueParser.positive(value, "Invalid timeout \"\(value)\".")
            },
            .flag(["-v", "--verbose"], "Print messages as \"topic payload\".") { $0.format.verbose = true },
            .flag(["-N"], "Do not add an end of line character after each message.") { $0.format.noEndOfLine = true },
            .value(["-F"], "FORMAT", noun: "format", "Print messages with mosquitto_sub's format string (%t topic, %p payload, %P user properties, ...); overrides -v.") { (options: inout ReceiveOptions, value: String) throws(CLIError) in
                options.format.custom = try FormatString(value)
            },
            .flag(["--json"], "Print each message as one JSON object: topic, qos, retain, mid, payloadlen, payload (UTF-8 text, else base64 with \"payloadEncoding\":\"base64\"), MQTT 5 properties.") { $0.format.json = true },
            .flag(["-R"], "Do not print stale messages (those with the retain flag set).") { $0.skipRetained = true },
        ]
    }

    /// The checks once all flags are read.
    func validated() throws(CLIError) -> ReceiveOptions {
        if format.json && format.custom != nil {
            throw CLIError.usage("--json and -F cannot be used together.")
        }
        return self
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
        /// `-W`, `-R`, `-v`, `-N`, `-F`.
        var options: ReceiveOptions
        /// End after this many printed messages (`-C`; 1 for `rr`); `nil`: no limit.
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

    /// Subscribes, runs `afterSubscribing`, then prints messages from `messages` until the limit
    /// is reached or the session ends.
    private static func receive(_ messages: MQTTMessageSequence, session: Session, plan: Plan) async -> Outcome {
        let client = session.client
        do {
            // The subscription's own sequence is dropped at once (which ends it); see `connectAndReceive`.
            _ = try await client.subscribe(to: plan.filters, properties: plan.properties)
        } catch {
            if error.code == .cancelled { return .interrupted }
            return .failed(CLIError(error))
        }
        if let afterSubscribing = plan.afterSubscribing {
            do {
                try await afterSubscribing(client)
            } catch {
                return .failed(error)
            }
        }
        var printed = 0
        let format = plan.options.format
        let statistics = session.statistics
        do {
            for try await message in messages {
                statistics?.didReceive()
                if plan.options.skipRetained && message.retain { continue }
                // Rendered straight into the stdout buffer (see `Output`): no copy, no write(2)
                // per message unless stdout is a terminal.
                let failure = Output.standardOutputBuffer.append { format.render(message, into: &$0) }
                if failure != 0 {
                    return .failed(.runtime("Error: Unable to write to standard output (\(systemErrorText(failure))).", status: 1))
                }
                printed += 1
                if let limit = plan.limit, printed >= limit { return .finished }
            }
        } catch let error as MQTTError {
            return .failed(CLIError(error))
        } catch {
            return .failed(.runtime("Error: \(error)", status: 1))
        }
        return .finished
    }
}
