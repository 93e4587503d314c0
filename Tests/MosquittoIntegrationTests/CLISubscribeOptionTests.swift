import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// `mqtt sub` / `mqtt rr`'s options beyond the basics (`-E`, `-T`, `-U`, `--retained-only`,
/// `--remove-retained`, `--retain-as-published`, `--random-filter`, `-M`, `--pretty`) and the
/// `%j` / `%J` formats: black box, the built `mqtt` against a fixture broker, side by side with
/// Debian's mosquitto_sub 2.0.11 (same bytes on stdout and stderr, same exit status) except where
/// the README lists a deliberate difference.
@Suite("mqtt sub options and JSON formats, side by side with mosquitto_sub", .timeLimit(.minutes(2)))
struct CLISubscribeOptionTests {
    /// mosquitto_sub's path, or a failure naming the package.
    static func mosquittoSub() throws -> String {
        try Interop.requireExecutable("mosquitto_sub", package: "mosquitto-clients")
    }

    /// Runs a mosquitto tool to completion (20 s at most).
    static func tool(_ name: String, _ arguments: [String], input: [UInt8]? = nil, systemLibrary: Bool = false) async throws -> CLITests.Run {
        let path = try Interop.requireExecutable(name, package: "mosquitto-clients")
        let process = try ChildProcess(
            executable: path, arguments: arguments, environment: systemLibrary ? ["LD_LIBRARY_PATH": ""] : [:],
            standardInput: input.map { .bytes($0) } ?? .null
        )
        guard let status = try await process.wait(timeout: .seconds(20)) else {
            process.kill()
            throw InteropError("\(name) \(arguments.joined(separator: " ")) did not finish within 20 s")
        }
        return CLITests.Run(status: status.code ?? 128 + (status.signal ?? 0), stdout: process.standardOutput, stderr: process.standardError)
    }

    /// Whether the libmosquitto in use lets a received payload format indicator other than 0 or 1
    /// through: 2.0.11 does; 2.0.21 refuses the PUBLISH as a protocol error (checked on both; the
    /// releases in between are assumed to change with the malformed-property fix of 2.0.16).
    static var receivesAnyPayloadFormat: Bool { MQTTClient.libraryVersion < .firstWithoutMalformedPropertyAbort }

    /// The payload format indicator the samples carry: 5 where it is received, else 1.
    static var samplePayloadFormat: String { receivesAnyPayloadFormat ? "5" : "1" }

    /// `mosquitto_pub` with `arguments` against `broker`, which must succeed. It runs on the
    /// system's libmosquitto (2.0.11), whichever the suite tests: 2.0.21's mosquitto_pub refuses
    /// to send a payload format indicator other than 0 or 1.
    static func publish(_ broker: MosquittoBroker, _ arguments: [String], input: [UInt8]? = nil) async throws {
        let run = try await tool("mosquitto_pub", ["-h", broker.host, "-p", "\(broker.port)"] + arguments, input: input, systemLibrary: true)
        #expect(run.status == 0, "mosquitto_pub \(arguments): \(run.stderr)")
    }

    /// Both subscribers, started together with the same arguments (after `sub` for ours).
    struct Pair {
        let ours: ChildProcess
        let theirs: ChildProcess

        init(_ arguments: [String]) throws {
            theirs = try ChildProcess(executable: try CLISubscribeOptionTests.mosquittoSub(), arguments: arguments)
            ours = try startCommand(["sub"] + arguments)
        }

        /// Waits until each has printed a line satisfying `predicate` (so it is subscribed).
        func waitForLine(where predicate: @escaping (String) -> Bool) async throws {
            try await theirs.waitForLine(timeout: .seconds(10), where: predicate)
            try await ours.waitForLine(timeout: .seconds(10), where: predicate)
        }

        /// Waits for both to exit (10 s at most each; a child still running is killed and
        /// recorded as status -1).
        func finish() async throws -> (ours: CLITests.Run, theirs: CLITests.Run) {
            func run(_ process: ChildProcess) async throws -> CLITests.Run {
                guard let status = try await process.wait(timeout: .seconds(10)) else {
                    process.kill()
                    return CLITests.Run(status: -1, stdout: process.standardOutput, stderr: process.standardError)
                }
                return CLITests.Run(status: status.code ?? 128 + (status.signal ?? 0), stdout: process.standardOutput, stderr: process.standardError)
            }
            return (try await run(ours), try await run(theirs))
        }
    }

    /// Runs mosquitto_sub then `mqtt sub` with `arguments`, one after the other.
    static func sideBySide(_ arguments: [String]) async throws -> (ours: CLITests.Run, theirs: CLITests.Run) {
        let theirs = try await tool("mosquitto_sub", arguments)
        let ours = try await CLITests.mqtt(["sub"] + arguments)
        return (ours, theirs)
    }

    /// `text` with every `"tst"` value (the time of printing) replaced by `T`.
    static func maskingTimes(_ text: String) -> String {
        text.replacingOccurrences(of: #""tst":(\t?)"[^"]*""#, with: #""tst":$1"T""#, options: .regularExpression)
    }

    /// The messages of the JSON tests, published with mosquitto_pub to `topic`/...: MQTT 5
    /// properties (a payload format indicator of 5, duplicate user properties) in the order the
    /// broker gives them for `mqtt pub`, a JSON payload cJSON reformats, text that is not JSON,
    /// an empty retained message, a QoS 2 MQTT 3.1.1 array.
    static func publishJSONSamples(_ broker: MosquittoBroker, topic: String) async throws {
        try await publish(broker, [
            "-V", "5", "-q", "1", "-t", "\(topic)/a",
            "-m", #"{"a": 1.0, "b":[1,2, {"c":null, "e":{}}], "d":"x\u00e9\/\"", "e":1e3, "f":0.1,"a":true, "n":-0.5e-7, "m":12345678901234567890}"#,
            "-D", "publish", "payload-format-indicator", samplePayloadFormat, "-D", "publish", "content-type", "ct",
            "-D", "publish", "response-topic", "rt", "-D", "publish", "correlation-data", "cd",
            "-D", "publish", "user-property", "k", "v", "-D", "publish", "user-property", "k", "w",
        ])
        try await publish(broker, ["-V", "5", "-t", "\(topic)/b", "-m", "not json \"q\" \\ tab\tx\u{1}"])
        try await publish(broker, ["-V", "5", "-t", "\(topic)/c", "-n"])
        try await publish(broker, ["-V", "311", "-q", "2", "-t", "\(topic)/e", "-m", #" [ {} , [ ] ,"\ud83d\ude00", 01, 1., -0, -0.0, 2147483648, -2147483649, 1e15, 1e400, 123456789.123, 5e-7] "#])
    }

    // MARK: - %j, %J, --pretty

    @Test("-F '%j|%J' (and with --pretty): the bytes mosquitto_sub prints, tst aside; a %J payload that is not JSON: mosquitto's error line, status 0", arguments: [false, true])
    func jsonFormats(pretty: Bool) async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            // A retained message first: once both print it, both are subscribed.
            try await Self.publish(broker, ["-t", "\(topic)/first", "-m", "[1]", "-r"])
            let pair = try Pair(
                ["-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-q", "1", "-t", "\(topic)/#", "-F", "%j|%J|%F", "-C", "5", "-W", "30",
                 "-D", "subscribe", "subscription-identifier", "9"] + (pretty ? ["--pretty"] : [])
            )
            try await pair.waitForLine { $0.contains("first") }
            try await Self.publishJSONSamples(broker, topic: topic)
            let (ours, theirs) = try await pair.finish()
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(Self.maskingTimes(ours.stdout) == Self.maskingTimes(theirs.stdout), "ours:\n\(ours.stdout)\ntheirs:\n\(theirs.stdout)")
            #expect(ours.stderr == theirs.stderr)
            #expect(ours.stderr == "Error: Message payload is not valid JSON on topic \(topic)/b.\n")
            #expect(ours.stdout.contains(#""payload-format-indicator":"# + (pretty ? "\t" : "") + Self.samplePayloadFormat))
            // The time as mosquitto writes it: local time, microseconds, "Z", then the offset.
            let time = try #require(ours.stdout.firstMatch(of: #/"tst":\t?"([^"]*)"/#)?.1)
            #expect(time.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}/#) != nil, "\(time)")
        }
    }

    /// Payloads that probe cJSON's parser: its leniencies (a byte order mark, `01`, `1.`, raw
    /// control characters, any byte up to 0x20 as white space, a 70-digit number), what it refuses (`1e`, trailing commas, a lone
    /// surrogate, 1001 nested arrays) and its number printing.
    static let parserProbes: [[UInt8]] = [
        "01", "1.", "-", "1e", "1e+", "[1,]", "{\"a\":1,}", "\t[1]\n", "\u{FEFF}[2]", "tru", "nulls", "\"\u{1}raw\u{7F}\"",
        #""\q""#, #""\udc00""#, #""\ud800x""#, #""\ud800\u0041""#, String(repeating: "1234567890", count: 7), "0.000001234", "1E5",
        "-1.5E-3", #"{"":1}"#, "[true,false,null]", " ", #""""#, #"{"a" : [ ] }"#, ".5", "+1", "1 2", "null", #""tab\there/""#, "\u{1}[3]\u{1F}\u{B}",
        String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000),
        String(repeating: "[", count: 1001) + String(repeating: "]", count: 1001),
    ].map { Array($0.utf8) }

    @Test("%J reads payloads as cJSON does (what it accepts, refuses and how it prints numbers): the bytes and error lines of mosquitto_sub")
    func parsedPayloads() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-t", "\(topic)/first", "-m", "0", "-r"])
            let pair = try Pair(["-h", broker.host, "-p", "\(broker.port)", "-t", "\(topic)/#", "-F", "%l %J", "-C", "\(Self.parserProbes.count + 1)", "-W", "60"])
            try await pair.waitForLine { $0.hasPrefix("1 ") }
            for (index, payload) in Self.parserProbes.enumerated() {
                try await Self.publish(broker, ["-t", "\(topic)/\(index)", "-s"], input: payload)
            }
            let (ours, theirs) = try await pair.finish()
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(CLITests.lines(ours.stdout).count == Self.parserProbes.count + 1)
            #expect(Self.maskingTimes(ours.stdout) == Self.maskingTimes(theirs.stdout), "ours:\n\(ours.stdout)\ntheirs:\n\(theirs.stdout)")
            #expect(ours.stderr == theirs.stderr)
            // "-" (2) and "1e" (3) are refused, "1." (1) is a number.
            #expect(ours.stderr.contains("\(topic)/3.\n") && !ours.stderr.contains("\(topic)/1.\n"), "\(ours.stderr)")
        }
    }

    @Test("%j and %J of a payload that is not UTF-8 or holds a NUL: valid JSON, the whole payload with U+FFFD and \\u0000 (mosquitto prints the raw bytes up to the NUL)")
    func jsonOfBinaryPayload() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-t", topic, "-r", "-s"], input: [UInt8(ascii: "a"), 0, UInt8(ascii: "b"), 0xFF])
            let process = try startCommand(["sub", "-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-C", "1", "-W", "10", "-F", "%j"])
            let status = try await process.wait(timeout: .seconds(10))
            if status == nil { process.kill() }
            #expect(status?.code == 0, "\(process.standardError)")
            // The bytes as printed (`standardOutput` would repair them).
            let printed = process.standardOutputBytes
            #expect(String(validating: printed, as: UTF8.self) != nil, "not UTF-8: \(printed)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(printed)) as? [String: Any], "\(printed)")
            #expect(object["payload"] as? String == "a\u{0}b\u{FFFD}")
            #expect(object["payloadlen"] as? Int == 4)
            #expect(object["retain"] as? Int == 1)
        }
    }

    @Test("a payload format indicator other than 0/1 (5, from mosquitto_pub): %F prints it as mosquitto_sub does; --json keeps it")
    func payloadFormatIndicator() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-V", "5", "-t", topic, "-m", "x", "-r", "-D", "publish", "payload-format-indicator", "5"])
            let arguments = ["-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", topic, "-C", "1", "-W", "10"]
            let (ours, theirs) = try await Self.sideBySide(arguments + ["-F", "[%F] [%3F] [%-3F|"])
            #expect(ours.status == theirs.status)
            #expect(ours.stdout == theirs.stdout)
            guard Self.receivesAnyPayloadFormat else {
                // libmosquitto 2.0.21 drops the connection: both exit with its protocol error.
                #expect(ours.status == 2, "\(ours.stderr)")
                #expect(ours.stderr == theirs.stderr, "ours \(ours.stderr)")
                return
            }
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.stdout == "[5] [  5] [5  |\n")
            let json = try await CLITests.mqtt(["sub"] + arguments + ["--json"])
            let object = try #require(try CLITests.jsonObjects(json.stdout).first)
            let properties = try #require(object["properties"] as? [String: Any], "\(json.stdout)")
            #expect(properties["payloadFormatIndicator"] as? Int == 5)
        }
    }

    @Test("--json --pretty: the --json object laid out as mosquitto's --pretty (tabs, one member a line)")
    func prettyOwnJSON() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-V", "5", "-t", topic, "-m", "hi", "-r", "-D", "publish", "user-property", "k", "v"])
            let run = try await CLITests.mqtt(["sub", "-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", topic, "-C", "1", "-W", "10", "--json", "--pretty"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == """
                {
                \t"topic":\t"\(topic)",
                \t"qos":\t0,
                \t"retain":\ttrue,
                \t"payloadlen":\t2,
                \t"payload":\t"hi",
                \t"properties":\t{
                \t\t"userProperties":\t[["k", "v"]]
                \t}
                }

                """)
        }
    }

    // MARK: - Choosing messages

    @Test("-T (repeated) leaves matching messages unprinted and uncounted by -C, as mosquitto_sub")
    func filterOut() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            for (name, payload) in [("a/1", "one"), ("skip/x", "no"), ("skip/y/z", "no"), ("other", "no"), ("a/2", "two"), ("b", "three")] {
                try await Self.publish(broker, ["-t", "\(topic)/\(name)", "-m", payload, "-r"])
            }
            let (ours, theirs) = try await Self.sideBySide(
                ["-h", broker.host, "-p", "\(broker.port)", "-t", "\(topic)/#", "-v", "-T", "\(topic)/skip/#", "--filter-out", "\(topic)/other", "-C", "3", "-W", "10"]
            )
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(Set(CLITests.lines(ours.stdout)) == ["\(topic)/a/1 one", "\(topic)/a/2 two", "\(topic)/b three"])
            #expect(ours.stdout == theirs.stdout)
        }
    }

    @Test("--retained-only prints the retained messages and exits 0 at the first live one, as mosquitto_sub")
    func retainedOnly() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-t", "\(topic)/r1", "-m", "one", "-r"])
            try await Self.publish(broker, ["-t", "\(topic)/r2", "-m", "two", "-r"])
            let pair = try Pair(["-h", broker.host, "-p", "\(broker.port)", "-t", "\(topic)/#", "-v", "--retained-only", "-W", "10"])
            try await pair.waitForLine { $0.hasSuffix("two") }
            try await Self.publish(broker, ["-t", "\(topic)/live", "-m", "live"])
            try await Self.publish(broker, ["-t", "\(topic)/later", "-m", "later"])
            let (ours, theirs) = try await pair.finish()
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(CLITests.lines(ours.stdout) == ["\(topic)/r1 one", "\(topic)/r2 two"])
            #expect(ours.stdout == theirs.stdout)
        }
    }

    @Test("--remove-retained deletes the retained messages it prints (not those -T filters out), as mosquitto_sub; and with --retained-only it exits once they are deleted")
    func removeRetained() async throws {
        try await withMosquittoBroker { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)"]
            for program in ["mosquitto_sub", "mqtt"] {
                let topic = uniqueTopic()
                for name in ["r1", "r2", "keep/r3"] {
                    try await Self.publish(broker, ["-t", "\(topic)/\(name)", "-m", name, "-r"])
                }
                let arguments = base + ["-t", "\(topic)/#", "-v", "--remove-retained", "-T", "\(topic)/keep/#", "-W", "2"]
                let run = program == "mqtt" ? try await CLITests.mqtt(["sub"] + arguments) : try await Self.tool(program, arguments)
                #expect(run.status == 27, "\(program): \(run.stderr)")
                // The deletions come back to the subscriber as empty, not retained, messages.
                #expect(CLITests.lines(run.stdout) == ["\(topic)/r1 r1", "\(topic)/r2 r2", "\(topic)/r1 (null)", "\(topic)/r2 (null)"], "\(program)")
                let left = try await CLITests.mqtt(["sub"] + base + ["-t", "\(topic)/#", "-v", "-W", "1"])
                #expect(CLITests.lines(left.stdout) == ["\(topic)/keep/r3 keep/r3"], "\(program) left \(left.stdout)")
            }
            // mosquitto_sub 2.0.11 would wait forever here (README: differences). The first
            // deletion comes back as a message without the retain flag, which ends
            // --retained-only; with -M 2 most deletions are still queued then, and must be sent.
            let topic = uniqueTopic()
            let publisher = try await connectedClient(broker)
            for index in 0..<50 {
                try await publisher.publish(to: "\(topic)/\(index)", payload: "r", qos: .atLeastOnce, retain: true)
            }
            try await publisher.disconnect()
            let ours = try await CLITests.mqtt(["sub"] + base + ["-t", "\(topic)/#", "-v", "--retained-only", "--remove-retained", "-M", "2", "-W", "10"])
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(CLITests.lines(ours.stdout).count == 50)
            let left = try await CLITests.mqtt(["sub"] + base + ["-t", "\(topic)/#", "-v", "-W", "1"])
            #expect(left.stdout == "")
        }
    }

    @Test("--retain-as-published: a retained message published while subscribed keeps its retain flag (MQTT 5), as with mosquitto_sub", arguments: [false, true])
    func retainAsPublished(_ enabled: Bool) async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-t", "\(topic)/first", "-m", "first", "-r"])
            let pair = try Pair(
                ["-h", broker.host, "-p", "\(broker.port)", "-V", "5", "-t", "\(topic)/#", "-F", "%r %p", "-C", "2", "-W", "10"]
                    + (enabled ? ["--retain-as-published"] : [])
            )
            try await pair.waitForLine { $0.hasSuffix("first") }
            try await Self.publish(broker, ["-t", "\(topic)/live", "-m", "live", "-r"])
            let (ours, theirs) = try await pair.finish()
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(ours.stdout == "1 first\n\(enabled ? 1 : 0) live\n")
            #expect(ours.stdout == theirs.stdout)
        }
    }

    @Test("--random-filter PERCENT prints about that share of the messages (mosquitto_sub 2.0.11 prints a tenth of it); 100 prints all")
    func randomFilter() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let publisher = try await connectedClient(broker)
            for index in 0..<400 {
                try await publisher.publish(to: "\(topic)/\(index)", payload: "m", qos: .atLeastOnce, retain: true)
            }
            try await publisher.disconnect()
            let base = ["sub", "-h", broker.host, "-p", "\(broker.port)", "-t", "\(topic)/#", "-W", "2"]
            let half = try await CLITests.mqtt(base + ["--random-filter", "50"])
            #expect(half.status == 27)
            // 400 draws at 50 %: 200 ± 10 (one standard deviation); 140...260 is six of them.
            let printed = CLITests.lines(half.stdout).count
            #expect((140...260).contains(printed), "printed \(printed) of 400")
            let all = try await CLITests.mqtt(base + ["--random-filter", "100"])
            #expect(CLITests.lines(all.stdout).count == 400)
        }
    }

    // MARK: - Subscribing

    @Test("-E exits 0 once subscribed, printing nothing (retained messages waiting or not), as mosquitto_sub")
    func exitAfterSubscribing() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-t", topic, "-m", "retained", "-r"])
            let started = ContinuousClock.now
            let (ours, theirs) = try await Self.sideBySide(["-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-E", "-W", "10"])
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            #expect(ours.stdout == theirs.stdout)
            #expect(ContinuousClock.now - started < .seconds(8))
        }
    }

    @Test("-U unsubscribes a persistent session from a filter: its messages are no longer queued, as with mosquitto_sub")
    func unsubscribe() async throws {
        try await withMosquittoBroker { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)", "-q", "1", "-c"]
            for program in ["mosquitto_sub", "mqtt"] {
                let topic = uniqueTopic()
                let id = uniqueClientID(program == "mqtt" ? "ours" : "theirs")
                func sub(_ arguments: [String]) async throws -> CLITests.Run {
                    program == "mqtt" ? try await CLITests.mqtt(["sub"] + base + ["-i", id] + arguments) : try await Self.tool(program, base + ["-i", id] + arguments)
                }
                let created = try await sub(["-t", "\(topic)/a", "-t", "\(topic)/b", "-E"])
                #expect(created.status == 0, "\(program): \(created.stderr)")
                let unsubscribed = try await sub(["-t", "\(topic)/z", "-U", "\(topic)/a", "--unsubscribe", "\(topic)/nothing", "-E"])
                #expect(unsubscribed.status == 0, "\(program): \(unsubscribed.stderr)")
                // Queued for the session while it is offline: only b's message if -U worked.
                try await Self.publish(broker, ["-q", "1", "-t", "\(topic)/a", "-m", "A"])
                try await Self.publish(broker, ["-q", "1", "-t", "\(topic)/b", "-m", "B"])
                let queued = try await sub(["-t", "\(topic)/z", "-v", "-C", "1", "-W", "5"])
                #expect(queued.status == 0, "\(program): \(queued.stderr)")
                #expect(queued.stdout == "\(topic)/b B\n", "\(program)")
            }
        }
    }

    @Test(
        "-R (retain handling 2) and --retain-as-published set the subscription options mosquitto_sub sets (its -d SUBSCRIBE line)",
        arguments: [["-V", "5", "-R"], ["-V", "5", "--retain-as-published"], ["-V", "5", "-R", "--retain-as-published", "-q", "2"], ["-V", "311", "-R"]]
    )
    func subscriptionOptions(_ options: [String]) async throws {
        try await withMosquittoBroker { broker in
            let (ours, theirs) = try await Self.sideBySide(["-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-E", "-d"] + options)
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.status == theirs.status)
            func subscribeLines(_ text: String) -> [String] {
                CLITests.lines(text).filter { $0.contains("sending SUBSCRIBE") }.map { $0.replacingOccurrences(of: #"^Client \S+ "#, with: "", options: .regularExpression) }
            }
            #expect(subscribeLines(ours.stdout).count == 1, "\(ours.stdout)")
            #expect(subscribeLines(ours.stdout) == subscribeLines(theirs.stdout))
        }
    }

    @Test("-M is taken by sub and rr (and pub), and checked as mosquitto checks it")
    func maxInflight() async throws {
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            try await Self.publish(broker, ["-q", "1", "-t", topic, "-m", "x", "-r"])
            let arguments = ["-h", broker.host, "-p", "\(broker.port)", "-q", "1", "-t", topic, "-C", "1", "-W", "10", "-M", "1"]
            let (ours, theirs) = try await Self.sideBySide(arguments)
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.stdout == theirs.stdout)
            let request = try await CLITests.mqtt(["rr", "-h", broker.host, "-p", "\(broker.port)", "-t", "\(topic)/req", "-e", topic, "-m", "q", "-W", "10", "-M", "3"])
            #expect(request.status == 0, "\(request.stderr)")
            #expect(request.stdout == "x\n")
        }
    }

    // MARK: - Command line

    @Test(
        "bad or refused combinations: mosquitto_sub's / mosquitto_rr's lines and status",
        arguments: [
            ["sub", "-t", "x", "-R", "--retained-only"], ["sub", "-t", "x", "-T", "a/#/b"], ["sub", "-t", "x", "-U", "a/+b"],
            ["sub", "-t", "x", "-T"], ["sub", "-t", "x", "-U"], ["sub", "-t", "x", "--random-filter"],
            ["sub", "-t", "x", "--random-filter", "0"], ["sub", "-t", "x", "--random-filter", "abc"], ["sub", "-t", "x", "-M", "0"],
            ["sub", "-t", "x", "-M"], ["rr", "-t", "x", "-e", "y", "-m", "m", "-E"], ["rr", "-t", "x", "-e", "y", "-m", "m", "-T", "z"],
            ["rr", "-t", "x", "-e", "y", "-m", "m", "--retained-only"], ["rr", "-t", "x", "-e", "y", "-m", "m", "-M", "0"],
        ]
    )
    func commandLineErrors(_ commandLine: [String]) async throws {
        let command = commandLine[0]
        let theirs = try await Self.tool("mosquitto_\(command)", Array(commandLine.dropFirst()))
        let ours = try await CLITests.mqtt(commandLine)
        #expect(ours.status == 1)
        #expect(ours.status == theirs.status)
        let expected = theirs.stderr.replacingOccurrences(of: "mosquitto_\(command)", with: "mqtt \(command)")
        #expect(CLITests.lines(ours.stderr) == CLITests.lines(expected), "ours: \(ours.stderr)")
        if commandLine.contains("--retained-only") && command == "sub" {
            // Checked after parsing: a blank line first, and no pointer to --help.
            #expect(ours.stderr == "\nError: Combining '-R' and '--retained-only' makes no sense.\n")
            #expect(ours.stderr == expected)
        } else {
            #expect(CLITests.lines(ours.stderr).last == "Use 'mqtt \(command) --help' to see usage.")
        }
        #expect(ours.stdout == "")
    }

    @Test("--help of sub and rr lists every option they take: mosquitto's, and not -E/-T/-U for rr")
    func helpListsOptions() async throws {
        let shared = ["-M", "-R", "-F", "-N", "-v", "-W", "--pretty", "--retain-as-published", "--json", "-D", "-V", "-q", "-x"]
        let subscribeOnly = ["-E", "-T", "--filter-out", "-U", "--unsubscribe", "--retained-only", "--remove-retained", "--random-filter"]
        for command in ["sub", "rr"] {
            let run = try await CLITests.mqtt([command, "--help"])
            #expect(run.status == 0)
            let listed = Set(CLITests.lines(run.stdout).filter { $0.hasPrefix("  -") }.flatMap { line in
                line.split(separator: " ").map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: ",")) }.prefix { $0.hasPrefix("-") }
            })
            for option in shared {
                #expect(listed.contains(option), "mqtt \(command) --help lacks \(option)")
            }
            for option in subscribeOnly {
                #expect(listed.contains(option) == (command == "sub"), "mqtt \(command) --help and \(option)")
            }
        }
    }
}
