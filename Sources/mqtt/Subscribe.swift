import Mosquitto

// MARK: - SubscribeOptions

/// The options of `mqtt sub` (mosquitto_sub's).
struct SubscribeOptions: CommandOptions {
    var common = CommonOptions(tool: .sub)
    /// `-W`, `-R`, `-v`, `-N`, `-F`, ... (shared with `rr`), and `-E`, `-T`, `-U`,
    /// `--retained-only`, `--remove-retained`, `--random-filter` (sub only).
    var receive = ReceiveOptions()
    /// `-t`, repeatable.
    var topics: [String] = []
    /// `-C`: exit after this many messages (those `-R` and `-T` let through).
    var count: Int?

    /// `mqtt sub`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<SubscribeOptions>] {
        let own: [OptionSpec<SubscribeOptions>] = [
            .utf8(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic filter to subscribe to. May be repeated.", malformed: "Malformed UTF-8 in -t argument.") {
                $0.topics.append($1)
            },
            CommonOptions.urlOption(\SubscribeOptions.common) { $0.topics.append($1) },
            .value(["-C"], "COUNT", noun: "count", "Disconnect and exit after receiving COUNT messages.") { (options: inout SubscribeOptions, value: String) throws(CLIError) in
                options.count = try ValueParser.positive(value, "Invalid message count \"\(value)\".")
            },
        ]
        return own
            + (ReceiveOptions.subscribeTable + ReceiveOptions.table).map { $0.lifted(\SubscribeOptions.receive) }
            + CommonOptions.table.map { $0.lifted(\SubscribeOptions.common) }
    }

    static let usage = OptionParser.usage(
        summary: "mqtt sub: subscribe to topics and print the messages received (the flags of mosquitto_sub).",
        synopsis: "mqtt sub [-h host] [-p port] [-u user [-P password]] -t topic ... [-C count] [-E] [-R | --retained-only] [--remove-retained] [-T filter-out ...] [-U topic ...] [-W seconds] [-v | -F format | --json [--pretty]] [options]",
        table: table,
        examples: [
            "mqtt sub -h broker -t 'sensors/#' -v",
            "mqtt sub -t 'sensors/#' -C 10 -W 30                  # 10 messages, or exit 27 after 30 s",
            "mqtt sub -V 5 -t orders --json | jq -r .payload      # one JSON object per message",
            "mqtt sub -t 'logs/#' -F '%I %t %p'                   # time, topic, payload",
            "mqtt sub -c -i archiver -q 1 -t 'events/#'           # a persistent session",
            "mqtt sub -t '#' --retained-only --remove-retained -W 5  # delete every retained message",
            "mqtt sub -V 5 -t 'sensors/#' -F '%J' --pretty         # mosquitto's JSON, payload parsed",
        ]
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
        return topics.map { receive.subscription($0, qos: common.qos) }
    }
}

// MARK: - SubscribeCommand

/// `mqtt sub`: connect, subscribe, print messages until `-C` is reached, `-W` expires, the
/// connection fails, or SIGINT/SIGTERM arrives; then disconnect cleanly (see ``Receiver``).
enum SubscribeCommand {
    /// Runs `mqtt sub` with `arguments` (after `sub`).
    ///
    /// - Returns: The exit status: 0 after `-C` messages or a signal.
    /// - Throws: ``CLIError`` for every failure; `Timed out` (status 27) when `-W` expires, as
    ///   mosquitto_sub, even if some messages arrived.
    static func run(_ arguments: [Argument]) async throws(CLIError) -> Int32 {
        try await CommandRunner.run(arguments, as: SubscribeOptions.self) { (options) throws(CLIError) in
            let filters = try options.validated()
            let receive = try options.receive.validated()
            let session = try Session(options: options.common)
            var plan = Receiver.Plan(
                filters: filters, properties: options.common.properties.subscribe, options: receive, limit: options.count
            )
            plan.unsubscribeProperties = options.common.properties.unsubscribe
            plan.quiet = options.common.quiet
            try await Receiver.run(plan, session: session)
        }
    }
}
