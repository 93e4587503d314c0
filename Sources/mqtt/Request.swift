import Mosquitto

// MARK: - RequestOptions

/// The options of `mqtt rr` (mosquitto_rr's).
struct RequestOptions: CommandOptions {
    /// The shared options; MQTT 5 by default, as mosquitto_rr.
    var common = CommonOptions(tool: .rr)
    /// `-m`, `-f`, `-n`, `-s` (mosquitto_rr has no `-l`).
    var payload = PayloadOptions()
    /// `-W`, `-R`, `-v`, `-N`, `-F`, `--json`, `--pretty`, `--retain-as-published` (shared with `sub`).
    var receive = ReceiveOptions()
    /// `-t`: where the request is published.
    var topic: String?
    /// `-e`: where the response is expected.
    var responseTopic: String?

    init() {
        common.protocolVersion = .v5
    }

    /// `mqtt rr`'s option table: its own options, then the shared ones.
    static var table: [OptionSpec<RequestOptions>] {
        let own: [OptionSpec<RequestOptions>] = [
            .utf8(["-t", "--topic"], "TOPIC", noun: "topic", "MQTT topic to publish the request to.", malformed: "Malformed UTF-8 in -t argument.") { $0.topic = $1 },
            CommonOptions.urlOption(\RequestOptions.common) { $0.topic = $1 },
            .utf8(["-e"], "TOPIC", noun: "response topic", "Response topic: subscribed to, and sent as the request's response-topic property.", malformed: "Malformed UTF-8 in -e argument.") {
                $0.responseTopic = $1
            },
        ]
        return own
            + PayloadOptions.table(lines: false).map { $0.lifted(\RequestOptions.payload) }
            + ReceiveOptions.table.map { $0.lifted(\RequestOptions.receive) }
            + CommonOptions.table(defaultVersion: "mqttv5").map { $0.lifted(\RequestOptions.common) }
    }

    static let usage = OptionParser.usage(
        summary: "mqtt rr: publish a request and print the first response (the flags of mosquitto_rr).",
        synopsis: "mqtt rr [-h host] [-p port] [-u user [-P password]] -t topic -e response-topic {-m message | -f file | -n | -s} [-W seconds] [options]",
        table: table,
        examples: [
            "mqtt rr -t svc/time -e replies/me -m now -W 5",
            "mqtt rr -t svc/echo -e replies/me -m ping --json -D publish correlation-data 42",
        ]
    )

    /// mosquitto_rr's checks once all flags are read.
    func validated() throws(CLIError) -> (topic: String, responseTopic: String, source: PayloadOptions.Source) {
        let source = try payload.validated()
        guard let topic, let source, let responseTopic else {
            throw CLIError.usage("All of topic, message, and response topic must be supplied.")
        }
        do {
            try MQTTTopic.validatePublishTopic(topic)
        } catch {
            throw CLIError.usage("Invalid publish topic '\(topic)', does it contain '+' or '#'?")
        }
        do {
            try MQTTTopic.validatePublishTopic(responseTopic)
        } catch {
            throw CLIError.usage("Invalid response topic '\(responseTopic)', does it contain '+' or '#'?")
        }
        if common.properties.publish.responseTopic != nil {
            throw CLIError.usage(verbatim: "Error in PUBLISH properties: Duplicate response topic.")
        }
        return (topic, responseTopic, source)
    }
}

// MARK: - RequestCommand

/// `mqtt rr`: MQTT 5 request/response as mosquitto_rr does it. Connects, subscribes to the `-e`
/// topic, publishes the request to `-t` with the response-topic property set to the `-e` topic,
/// prints the first message received on the `-e` topic, and exits 0.
///
/// As mosquitto_rr (checked against 2.0.11): no correlation data is added (give one with
/// `-D publish correlation-data ...`), and the first message on the response topic is the
/// response, whatever its correlation data; `-W` prints `Timed out` and exits 27; with `-V 311`
/// the request goes without properties. The library's `MQTTClient.request` is not used: it
/// chooses its own response topic, while `-e` names it here.
enum RequestCommand {
    /// Runs `mqtt rr` with `arguments` (after `rr`).
    ///
    /// - Returns: The exit status: 0 once a response was printed.
    /// - Throws: ``CLIError`` for every failure; `Timed out` (status 27) when `-W` expires;
    ///   after SIGINT/SIGTERM, nothing printed and status 128 + the signal (mosquitto_rr is
    ///   killed by them: no response is no success).
    static func run(_ arguments: [Argument]) async throws(CLIError) -> Int32 {
        try await CommandRunner.run(arguments, as: RequestOptions.self) { (options) throws(CLIError) in try await request(options) }
    }

    /// Validates, loads the payload (before connecting), then runs the exchange.
    private static func request(_ options: RequestOptions) async throws(CLIError) {
        let (topic, responseTopic, source) = try options.validated()
        let receive = try options.receive.validated()
        let payload = try PayloadOptions.load(source) ?? []
        let session = try Session(options: options.common)
        var properties = options.common.properties.publish
        if options.common.protocolVersion == .v5 {
            properties.responseTopic = responseTopic
        }
        let request = PublishCommand.Message(topic: topic, qos: options.common.qos, retain: false, properties: properties)
        var plan = Receiver.Plan(
            filters: [receive.subscription(responseTopic, qos: options.common.qos)],
            properties: options.common.properties.subscribe,
            options: receive,
            limit: 1,
            afterSubscribing: { (client: MQTTClient) throws(CLIError) in
                try await PublishCommand.publishOne(payload, as: request, client: client, statistics: session.statistics)
            },
            onSignal: .closeWithoutDisconnect
        )
        plan.quiet = options.common.quiet
        if let signal = try await Receiver.run(plan, session: session) {
            var interrupted = CLIError.runtime("Interrupted", status: 128 + signal)
            interrupted.isSilenced = true
            throw interrupted
        }
    }
}
