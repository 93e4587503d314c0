import Mosquitto

// MARK: - PublishOptions

/// The options of `mqtt pub` (mosquitto_pub's).
struct PublishOptions: CommandOptions {
    var common = CommonOptions()
    /// `-m`, `-f`, `-n`, `-s`, `-l`.
    var payload = PayloadOptions()
    /// `-t` (given twice, the last wins, as in mosquitto_pub).
    var topic: String?
    var retain = false
    /// `--repeat`: how many times to publish the message (not with `-l`).
    var repeatCount = 1
    /// `--repeat-delay`: the pause after each acknowledged (QoS 0: sent) repetition.
    var repeatDelay = Duration.zero

    /// `mqtt pub`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<PublishOptions>] {
        let own: [OptionSpec<PublishOptions>] = [
            .utf8(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic to publish to.", malformed: "Malformed UTF-8 in -t argument.") { $0.topic = $1 },
            CommonOptions.urlOption(\PublishOptions.common) { $0.topic = $1 },
        ]
        let more: [OptionSpec<PublishOptions>] = [
            .flag(["-r", "--retain"], "Retain the message.") { $0.retain = true },
            .value(["--repeat"], "COUNT", noun: "count", "With -m, -f, -n or -s: publish the message COUNT times, each after the previous one completed.") { (options: inout PublishOptions, value: String) throws(CLIError) in
                // atoi, as mosquitto_pub: "2x" is 2, "x" is 0.
                options.repeatCount = ValueParser.cInteger(value)
                guard options.repeatCount >= 1 else { throw CLIError.usage("--repeat argument must be >0.", spaced: true) }
            },
            .value(["--repeat-delay"], "SECONDS", noun: "time", "With --repeat: wait SECONDS (a decimal) between the publishes. Defaults to 0.") { (options: inout PublishOptions, value: String) throws(CLIError) in
                // atof, as mosquitto_pub, to the microsecond.
                let seconds = ValueParser.cDouble(value)
                guard seconds >= 0 else { throw CLIError.usage("--repeat-delay argument must be >=0.0.", spaced: true) }
                options.repeatDelay = .microseconds(Int64((seconds * 1_000_000).rounded(.down)))
            },
        ]
        return own
            + PayloadOptions.table(lines: true).map { $0.lifted(\PublishOptions.payload) }
            + more
            + CommonOptions.table.map { $0.lifted(\PublishOptions.common) }
    }

    static let usage = OptionParser.usage(
        summary: "mqtt pub: publish a message on a topic and exit (the flags of mosquitto_pub).",
        synopsis: "mqtt pub [-h host] [-p port] [-u user [-P password]] -t topic {-m message | -f file | -n | -s | -l} [options]",
        table: table,
        examples: [
            "mqtt pub -h broker -t sensors/1 -q 1 -m 21.5",
            "mqtt pub -t config/device -r -f device.json          # a retained message from a file",
            "mqtt pub -t config/device -r -n                      # clear the retained message",
            "seq 1 100000 | mqtt pub -t numbers -q 1 -l --stats 5 # one message per line, progress every 5 s",
            "mqtt pub -V 5 -t orders -m '{}' -D publish content-type application/json -D publish user-property site berlin",
        ]
    )

    /// mosquitto_pub's checks once all flags are read.
    func validated() throws(CLIError) -> (topic: String, source: PayloadOptions.Source) {
        let source = try payload.validated()
        guard let topic, let source else {
            throw CLIError.usage("Both topic and message must be supplied.")
        }
        do {
            try MQTTTopic.validatePublishTopic(topic)
        } catch {
            throw CLIError.usage("Invalid publish topic '\(topic)', does it contain '+' or '#'?")
        }
        return (topic, source)
    }
}

// MARK: - PublishCommand

/// `mqtt pub`: connect, publish one message (or one per line of stdin), wait for the
/// acknowledgements of QoS 1/2 messages, disconnect cleanly.
enum PublishCommand {
    /// How many QoS 1/2 messages of `-l` may await their acknowledgement at once. libmosquitto
    /// keeps `-M` of them in flight and queues the rest (mosquitto_pub queues all of stdin). Bounded
    /// for memory, below the library's ``MQTTConfiguration/maxPendingPublishes`` (10,000), and
    /// necessarily below 65,535: packet identifiers are 16 bits, and a window that wraps them makes
    /// two pending publishes share an identifier (tried: `pub -l` then waits forever). Larger
    /// windows (32,768, 60,000) measured no faster.
    static let lineWindow = 8_192

    /// Runs `mqtt pub` with `arguments` (after `pub`).
    ///
    /// - Returns: The exit status (0).
    /// - Throws: ``CLIError`` for every failure.
    static func run(_ arguments: [Argument]) async throws(CLIError) -> Int32 {
        try await CommandRunner.run(arguments, as: PublishOptions.self) { (options) throws(CLIError) in try await publish(options) }
    }

    /// Validates, loads the payload (before connecting, like mosquitto_pub), then publishes.
    private static func publish(_ options: PublishOptions) async throws(CLIError) {
        let (topic, source) = try options.validated()
        let payload = try PayloadOptions.load(source)
        // `-d` lines wait in the stdout buffer: write them before dying of SIGINT/SIGTERM.
        let signalHandlers = Output.flushBeforeDyingOfSignals()
        defer { withExtendedLifetime(signalHandlers) {} }
        let session = try Session(options: options.common)
        let message = Message(topic: topic, qos: options.common.qos, retain: options.retain, properties: options.common.properties.publish)
        do {
            try await session.connect()
        } catch {
            throw error.afterRefusalAsPrintedByPub()
        }
        do {
            try await session.untilTheProtocolBreaks { () throws(CLIError) in
                if let payload {
                    for repetition in 1...options.repeatCount {
                        if repetition > 1, options.repeatDelay > .zero {
                            try? await Task.sleep(for: options.repeatDelay)
                        }
                        try await publishOne(payload, as: message, client: session.client, statistics: session.statistics)
                    }
                } else {
                    try await publishLines(as: message, client: session.client, statistics: session.statistics)
                }
            }
        } catch {
            await session.disconnect()
            throw error
        }
        await session.disconnect()
    }

    /// Everything of a message but its payload.
    struct Message: Sendable {
        var topic: String
        var qos: MQTTQoS
        var retain: Bool
        /// `-D publish ...` (and, for `rr`, the response topic).
        var properties: MQTTProperties

        /// Hands `payload` to the library (see `MQTTClient.beginPublish`).
        func begin(_ payload: [UInt8], client: MQTTClient) throws(CLIError) -> MQTTPendingPublish {
            do {
                return try client.beginPublish(to: topic, payload: payload, qos: qos, retain: retain, properties: properties)
            } catch {
                throw CLIError(error)
            }
        }
    }

    /// Publishes one message and, for QoS 1/2, waits for PUBACK / PUBCOMP. Used by `rr` too.
    static func publishOne(_ payload: [UInt8], as message: Message, client: MQTTClient, statistics: Statistics?) async throws(CLIError) {
        let pending = try message.begin(payload, client: client)
        statistics?.didSend()
        statistics?.setPending(message.qos == .atMostOnce ? 0 : 1)
        try await acknowledge(pending)
        if message.qos != .atMostOnce {
            statistics?.didAcknowledge()
            statistics?.setPending(0)
        }
    }

    /// `-l`: publishes each line of stdin as it arrives and returns once every QoS 1/2 message
    /// was acknowledged.
    ///
    /// The loop never waits for one acknowledgement per line (a suspension, a thread wake-up and
    /// a timer each): after every line it only drops the acknowledgements that have arrived
    /// from the front of the queue (they arrive in order), and when ``lineWindow`` messages
    /// await theirs it waits until half of them have arrived, so it suspends about once per
    /// 4,096 acknowledgements.
    private static func publishLines(as message: Message, client: MQTTClient, statistics: Statistics?) async throws(CLIError) {
        var inFlight = PendingQueue()
        var splitter = LineSplitter()
        let tracked = message.qos != .atMostOnce
        /// Publishes one line, first making room in the window if it is full.
        func send(_ line: [UInt8]) async throws(CLIError) {
            if tracked {
                try await inFlight.dropAcknowledged(statistics)
                if inFlight.count >= lineWindow {
                    try await inFlight.waitUntilBelow(lineWindow / 2, statistics)
                }
            }
            let pending = try message.begin(line, client: client)
            statistics?.didSend()
            if tracked {
                inFlight.append(pending)
                statistics?.setPending(inFlight.count)
            }
        }
        do {
            for try await chunk in StandardInputChunks() {
                for line in splitter.lines(in: chunk) {
                    try await send(line)
                }
            }
        } catch let error as CLIError {
            throw error
        } catch let error as Input.ReadError {
            throw CLIError.runtime("Error: Unable to read standard input (\(systemErrorText(error.number))).")
        } catch {
            throw CLIError.runtime("Error: \(error)")
        }
        if let last = splitter.finish() {
            try await send(last)
        }
        try await inFlight.waitUntilBelow(1, statistics)
    }

    /// Awaits one acknowledgement (immediate for QoS 0, or when it has arrived).
    fileprivate static func acknowledge(_ pending: MQTTPendingPublish) async throws(CLIError) {
        do {
            try await pending.acknowledgement()
        } catch {
            throw CLIError.publishRefused(messageID: pending.messageID, error: error)
        }
    }
}

// MARK: - PendingQueue

/// A FIFO of publishes awaiting acknowledgement, with O(1) removal from the front.
private struct PendingQueue {
    private var items: [MQTTPendingPublish] = []
    private var head = 0

    var count: Int { items.count - head }

    mutating func append(_ pending: MQTTPendingPublish) {
        items.append(pending)
    }

    /// Removes the acknowledged publishes at the front, without suspending; throws the first
    /// failure (an MQTT 5 refusal, a lost connection without reconnect) among them.
    mutating func dropAcknowledged(_ statistics: Statistics?) async throws(CLIError) {
        var dropped = 0
        defer {
            if dropped > 0 {
                statistics?.didAcknowledge(dropped)
                statistics?.setPending(count)
            }
        }
        while head < items.count, items[head].isComplete {
            // Complete: returns at once (throws the failure, if it is one).
            try await PublishCommand.acknowledge(items[head])
            popFirst()
            dropped += 1
        }
    }

    /// Waits until fewer than `limit` publishes await their acknowledgement.
    ///
    /// Acknowledgements arrive in order, so it waits for the one `limit` from the end, then drops
    /// everything acknowledged before it; if something before it is still missing (out of order
    /// after a reconnect), it waits for the oldest instead.
    mutating func waitUntilBelow(_ limit: Int, _ statistics: Statistics?) async throws(CLIError) {
        try await dropAcknowledged(statistics)
        while count >= limit {
            try await PublishCommand.acknowledge(items[items.count - limit])
            try await dropAcknowledged(statistics)
            if count >= limit {
                try await PublishCommand.acknowledge(items[head])
                try await dropAcknowledged(statistics)
            }
        }
    }

    private mutating func popFirst() {
        head += 1
        if head > 4_096 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }
}
