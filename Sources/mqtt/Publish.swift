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

    /// `mqtt pub`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<PublishOptions>] {
        let own: [OptionSpec<PublishOptions>] = [
            .value(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic to publish to.") { $0.topic = $1 },
        ]
        let more: [OptionSpec<PublishOptions>] = [
            .flag(["-r", "--retain"], "Retain the message.") { $0.retain = true },
            .value(["-M"], "COUNT", noun: "max inflight", "Maximum QoS 1/2 messages in flight. Defaults to 20.") { (options: inout PublishOptions, value: String) throws(CLIError) in
                options.common.maxInflight = try ValueParser.positive(value, "Maximum inflight messages must be greater than 0.")
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
        table: table
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
    /// How many QoS 1/2 messages of `-l` may await their acknowledgement at once: lines are
    /// pipelined instead of costing one round trip each, with bounded memory.
    static let lineWindow = 1_000

    /// Runs `mqtt pub` with `arguments` (after `pub`).
    ///
    /// - Returns: The exit status (0).
    /// - Throws: ``CLIError`` for every failure.
    static func run(_ arguments: [String]) async throws(CLIError) -> Int32 {
        try await CommandRunner.run(arguments, as: PublishOptions.self) { (options) throws(CLIError) in try await publish(options) }
    }

    /// Validates, loads the payload (before connecting, like mosquitto_pub), then publishes.
    private static func publish(_ options: PublishOptions) async throws(CLIError) {
        let (topic, source) = try options.validated()
        let payload = try PayloadOptions.load(source)
        let session = try Session(options: options.common)
        let message = Message(topic: topic, qos: options.common.qos, retain: options.retain, properties: options.common.properties.publish)
        try await session.connect()
        do {
            if let payload {
                try await publishOne(payload, as: message, client: session.client)
            } else {
                try await publishLines(as: message, client: session.client)
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
    static func publishOne(_ payload: [UInt8], as message: Message, client: MQTTClient) async throws(CLIError) {
        try await acknowledge(try message.begin(payload, client: client))
    }

    /// `-l`: publishes each line of stdin as it arrives, keeping up to ``lineWindow`` QoS 1/2
    /// messages in flight, and returns once every message was acknowledged.
    private static func publishLines(as message: Message, client: MQTTClient) async throws(CLIError) {
        var inFlight = PendingQueue()
        var splitter = LineSplitter()
        /// Publishes one line, first waiting for the oldest acknowledgement if the window is full.
        func send(_ line: [UInt8]) async throws(CLIError) {
            if inFlight.count >= lineWindow, let oldest = inFlight.popFirst() {
                try await acknowledge(oldest)
            }
            let pending = try message.begin(line, client: client)
            if message.qos != .atMostOnce { inFlight.append(pending) }
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
