import Mosquitto

// MARK: - PublishOptions

/// The options of `mqtt pub` (mosquitto_pub's).
struct PublishOptions {
    /// Where the payload comes from: exactly one of `-m`, `-f`, `-n`, `-s`, `-l`.
    enum Source {
        case message(String)
        case file(String)
        case null
        case standardInput
        case standardInputLines
    }

    var common = CommonOptions()
    /// `-t` (given twice, the last wins, as in mosquitto_pub).
    var topic: String?
    var source: Source?
    /// Set when a second message source was given; reported after parsing, as mosquitto does.
    var conflictingSources = false
    var retain = false

    /// Records a message source, noting a conflict if one was already given.
    mutating func setSource(_ newSource: Source) {
        if source != nil { conflictingSources = true }
        source = newSource
    }

    /// `mqtt pub`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<PublishOptions>] {
        let own: [OptionSpec<PublishOptions>] = [
            .value(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic to publish to.") { $0.topic = $1 },
            .value(["-m", "--message"], "MESSAGE", noun: "message", "Message payload to send.") { $0.setSource(.message($1)) },
            .value(["-f", "--file"], "FILE", noun: "file", "Send the contents of a file as the message.") { $0.setSource(.file($1)) },
            .flag(["-n", "--null-message"], "Send a null (zero length) message.") { $0.setSource(.null) },
            .flag(["-s", "--stdin-file"], "Read stdin, sending the entire input as one message.") { $0.setSource(.standardInput) },
            .flag(["-l", "--stdin-line"], "Read stdin, sending a separate message for each line.") { $0.setSource(.standardInputLines) },
            .flag(["-r", "--retain"], "Retain the message.") { $0.retain = true },
            .value(["-M"], "COUNT", noun: "max inflight", "Maximum QoS 1/2 messages in flight. Defaults to 20.") { (options: inout PublishOptions, value: String) throws(CLIError) in
                options.common.maxInflight = try ValueParser.positive(value, "Maximum inflight messages must be greater than 0.")
            },
        ]
        return own + CommonOptions.table.map { $0.lifted(\PublishOptions.common) }
    }

    static let usage = OptionParser.usage(
        summary: "mqtt pub: publish a message on a topic and exit (the flags of mosquitto_pub).",
        synopsis: "mqtt pub [-h host] [-p port] [-u user [-P password]] -t topic {-m message | -f file | -n | -s | -l} [options]",
        table: table
    )

    /// mosquitto_pub's checks once all flags are read.
    func validated() throws(CLIError) -> (topic: String, source: Source) {
        if conflictingSources {
            throw CLIError.usage("Only one type of message can be sent at once.")
        }
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
    /// How many QoS 1/2 messages of `-l` may await their acknowledgement at once: lines are
    /// pipelined instead of costing one round trip each, with bounded memory.
    static let lineWindow = 1_000

    /// Runs `mqtt pub` with `arguments` (after `pub`).
    ///
    /// - Returns: The exit status (0).
    /// - Throws: ``CLIError`` for every failure.
    static func run(_ arguments: [String]) async throws(CLIError) -> Int32 {
        guard case .run(let options) = try OptionParser.parse(arguments, table: PublishOptions.table, initial: PublishOptions()) else {
            Output.printLine(PublishOptions.usage)
            return 0
        }
        do {
            try await publish(options)
            return 0
        } catch {
            throw error.silenced(quiet: options.common.quiet)
        }
    }

    /// Validates, loads the payload (before connecting, like mosquitto_pub), then publishes.
    private static func publish(_ options: PublishOptions) async throws(CLIError) {
        let (topic, source) = try options.validated()
        let qos = options.common.qos
        let payload: [UInt8]?
        switch source {
        case .message(let text): payload = Array(text.utf8)
        case .file(let path): payload = try Input.readFile(path)
        case .null: payload = []
        case .standardInput: payload = try Input.readStandardInput()
        case .standardInputLines: payload = nil
        }
        let session = try Session(options: options.common)
        try await session.connect()
        do {
            if let payload {
                try await publishOne(payload, to: topic, qos: qos, retain: options.retain, client: session.client)
            } else {
                try await publishLines(to: topic, qos: qos, retain: options.retain, client: session.client)
            }
        } catch {
            await session.disconnect()
            throw error
        }
        await session.disconnect()
    }

    /// Publishes one message and, for QoS 1/2, waits for PUBACK / PUBCOMP.
    private static func publishOne(_ payload: [UInt8], to topic: String, qos: MQTTQoS, retain: Bool, client: MQTTClient) async throws(CLIError) {
        let pending: MQTTPendingPublish
        do {
            pending = try client.beginPublish(to: topic, payload: payload, qos: qos, retain: retain)
        } catch {
            throw CLIError(error)
        }
        try await acknowledge(pending)
    }

    /// `-l`: publishes each line of stdin as it arrives, keeping up to ``lineWindow`` QoS 1/2
    /// messages in flight, and returns once every message was acknowledged.
    private static func publishLines(to topic: String, qos: MQTTQoS, retain: Bool, client: MQTTClient) async throws(CLIError) {
        var inFlight = PendingQueue()
        var splitter = LineSplitter()
        /// Publishes one line, first waiting for the oldest acknowledgement if the window is full.
        func send(_ line: [UInt8]) async throws(CLIError) {
            if inFlight.count >= lineWindow, let oldest = inFlight.popFirst() {
                try await acknowledge(oldest)
            }
            do {
                let pending = try client.beginPublish(to: topic, payload: line, qos: qos, retain: retain)
                if qos != .atMostOnce { inFlight.append(pending) }
            } catch {
                throw CLIError(error)
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
        while let pending = inFlight.popFirst() {
            try await acknowledge(pending)
        }
    }

    /// Awaits one acknowledgement (immediate for QoS 0).
    private static func acknowledge(_ pending: MQTTPendingPublish) async throws(CLIError) {
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

    mutating func popFirst() -> MQTTPendingPublish? {
        guard head < items.count else { return nil }
        defer {
            head += 1
            if head > 4_096 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
        }
        return items[head]
    }
}
