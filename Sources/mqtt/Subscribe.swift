import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - SubscribeOptions

/// The options of `mqtt sub` (mosquitto_sub's).
struct SubscribeOptions {
    var common = CommonOptions()
    /// `-t`, repeatable.
    var topics: [String] = []
    /// `-C`: exit after this many printed messages.
    var count: Int?
    /// `-W`: give up this many seconds after connecting.
    var timeoutSeconds: Int?
    /// `-R`: skip messages delivered with the retain flag (stale retained messages).
    var skipRetained = false
    /// `-v` and `-N`.
    var format = MessageFormat()

    /// `mqtt sub`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<SubscribeOptions>] {
        let own: [OptionSpec<SubscribeOptions>] = [
            .value(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic filter to subscribe to. May be repeated.") { $0.topics.append($1) },
            .value(["-C"], "COUNT", noun: "count", "Disconnect and exit after receiving COUNT messages.") { (options: inout SubscribeOptions, value: String) throws(CLIError) in
                options.count = try ValueParser.positive(value, "Invalid message count \"\(value)\".")
            },
            .value(["-W"], "SECONDS", noun: "timeout", "Disconnect and exit (status 27) this many seconds after connecting.") { (options: inout SubscribeOptions, value: String) throws(CLIError) in
                options.timeoutSeconds = try ValueParser.positive(value, "Invalid timeout \"\(value)\".")
            },
            .flag(["-v", "--verbose"], "Print messages as \"topic payload\".") { $0.format.verbose = true },
            .flag(["-N"], "Do not add an end of line character after the payload.") { $0.format.noEndOfLine = true },
            .flag(["-R"], "Do not print stale messages (those with the retain flag set).") { $0.skipRetained = true },
        ]
        return own + CommonOptions.table.map { $0.lifted(\SubscribeOptions.common) }
    }

    static let usage = OptionParser.usage(
        summary: "mqtt sub: subscribe to topics and print the messages received (the flags of mosquitto_sub).",
        synopsis: "mqtt sub [-h host] [-p port] [-u user [-P password]] -t topic ... [-C count] [-W seconds] [-v] [options]",
        table: table
    )

    /// mosquitto_sub's checks once all flags are read.
    func validated() throws(CLIError) -> [MQTTTopicFilter] {
        guard !topics.isEmpty else {
            throw CLIError.usage("You must specify a topic to subscribe to.")
        }
        for topic in topics {
            do {
                try MQTTTopic.validateFilter(topic)
            } catch {
                throw CLIError.usage("Invalid subscription topic '\(topic)', are all '+' and '#' wildcards correct?")
            }
        }
        return topics.map { MQTTTopicFilter($0, qos: common.qos) }
    }
}

// MARK: - SubscribeCommand

/// `mqtt sub`: connect, subscribe, print messages until `-C` is reached, `-W` expires, the
/// connection fails, or SIGINT/SIGTERM arrives; then disconnect cleanly.
enum SubscribeCommand {
    /// Why the session ended.
    enum Outcome: Sendable {
        /// `-C` messages were printed, or the session ended normally.
        case finished
        /// SIGINT or SIGTERM.
        case interrupted
        /// `-W` expired.
        case timedOut
        /// Connecting, subscribing, receiving or writing failed.
        case failed(CLIError)
    }

    /// Runs `mqtt sub` with `arguments` (after `sub`).
    ///
    /// - Returns: The exit status: 0 after `-C` messages or a signal.
    /// - Throws: ``CLIError`` for every failure; `Timed out` (status 27) when `-W` expires, as
    ///   mosquitto_sub, even if some messages arrived.
    static func run(_ arguments: [String]) async throws(CLIError) -> Int32 {
        guard case .run(let options) = try OptionParser.parse(arguments, table: SubscribeOptions.table, initial: SubscribeOptions()) else {
            Output.printLine(SubscribeOptions.usage)
            return 0
        }
        do {
            try await subscribe(options)
            return 0
        } catch {
            throw error.silenced(quiet: options.common.quiet)
        }
    }

    private static func subscribe(_ options: SubscribeOptions) async throws(CLIError) {
        let filters = try options.validated()
        let session = try Session(options: options.common)
        let signals = SignalWatcher()
        // The session races the signals: whichever ends first cancels the other.
        let outcome = await withTaskGroup(of: Outcome.self) { group in
            group.addTask { await run(session, filters: filters, options: options) }
            group.addTask {
                _ = await signals.next()
                return .interrupted
            }
            let first = await group.next() ?? .finished
            group.cancelAll()
            return first
        }
        await session.disconnect()
        switch outcome {
        case .finished, .interrupted:
            return
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
    private static func run(_ session: Session, filters: [MQTTTopicFilter], options: SubscribeOptions) async -> Outcome {
        let messages = session.client.messages
        do {
            try await session.connect()
        } catch {
            return .failed(error)
        }
        return await withTaskGroup(of: Outcome.self) { group in
            group.addTask { await receive(messages, client: session.client, filters: filters, options: options) }
            if let seconds = options.timeoutSeconds {
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

    /// Subscribes, then prints messages from `messages` until `-C` is reached or the session ends.
    private static func receive(
        _ messages: MQTTMessageSequence, client: MQTTClient, filters: [MQTTTopicFilter], options: SubscribeOptions
    ) async -> Outcome {
        do {
            // The subscription's own sequence is dropped at once (which ends it); see `run`.
            _ = try await client.subscribe(to: filters)
        } catch {
            if error.code == .cancelled { return .interrupted }
            return .failed(CLIError(error))
        }
        var printed = 0
        do {
            for try await message in messages {
                if options.skipRetained && message.retain { continue }
                let bytes = options.format.render(message)
                if !bytes.isEmpty {
                    let failure = Output.standardOutput(bytes)
                    if failure != 0 {
                        return .failed(.runtime("Error: Unable to write to standard output (\(systemErrorText(failure))).", status: 1))
                    }
                }
                printed += 1
                if let count = options.count, printed >= count { return .finished }
            }
        } catch let error as MQTTError {
            return .failed(CLIError(error))
        } catch {
            return .failed(.runtime("Error: \(error)", status: 1))
        }
        return .finished
    }
}
