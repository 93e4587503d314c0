// MARK: - Command

/// What `mqtt-soak` was asked to do, parsed by hand from the command line (the tool has no
/// package dependencies, so no argument parser).
enum SoakCommand: Equatable {
    /// `soak`: mixed QoS 0/1/2 load across periodic broker restarts.
    case soak(SoakOptions)
    /// `cycles`: connect / subscribe / publish / receive / unsubscribe / disconnect, again and again.
    case cycles(CycleOptions)
    /// `exit-on-message`: receive one message and exit the process at once, without DISCONNECT.
    case exitOnMessage(ExitOnMessageOptions)
    /// `hold-broker`: start a fixture broker, print its process id and directory, wait to be killed.
    case holdBroker
    /// `help`, `-h`, `--help`: print the usage.
    case help

    /// The usage text.
    static let usage = """
        usage: mqtt-soak soak [--duration SECONDS] [--restart-every SECONDS] [--kill]
                              [--autosave changes|seconds] [--rate PER_SECOND] [--drain-timeout SECONDS]
               mqtt-soak cycles [--count N] [--leak-on-purpose]
               mqtt-soak exit-on-message --port PORT [--topic FILTER] [--qos 0|1|2] [--thread]
               mqtt-soak hold-broker

          soak    Starts a persistent local mosquitto, a persistent-session subscriber and one
                  publisher per QoS, publishes numbered messages for --duration seconds (default 60)
                  while restarting the broker every --restart-every seconds (default 10; --kill
                  sends SIGKILL instead of SIGTERM), then prints sent / received / duplicated / lost
                  per QoS. Exits 1 if a QoS 1/2 message was lost or a QoS 2 message duplicated.
                  --autosave: when the broker saves its database; `changes` (after every change,
                  the default with --kill) or `seconds` (every second, the default otherwise).
          cycles  Runs --count cycles (default 1000) of connect, subscribe, publish QoS 1, receive,
                  unsubscribe, disconnect and release against one local broker: the leak check's
                  workload. --leak-on-purpose keeps every client alive forever (a deliberate leak,
                  to prove that scripts/leak-check.sh fails).
          exit-on-message
                  Connects to 127.0.0.1:PORT (clean session, MQTT 3.1.1), subscribes to --topic
                  (default `#`) at --qos (default 1), prints the first message's topic and exits
                  the process at once, without DISCONNECT: what a process that dies right after a
                  message leaves on the wire (the acknowledgement must already be there). --thread
                  drives the client on a thread of its own instead of the shared event loop.
          hold-broker
                  Starts a broker through MosquittoTesting, prints its process id and its
                  directory on one line, and waits to be killed: a test kills this process with
                  SIGKILL and checks that the broker died with it and its directory is gone.
        """

    /// Parses the arguments that follow the program name.
    /// - Parameter arguments: `CommandLine.arguments.dropFirst()`.
    /// - Returns: The command.
    /// - Throws: `UsageError` for an unknown subcommand or option, or a missing or invalid value.
    static func parse(_ arguments: [String]) throws(UsageError) -> SoakCommand {
        guard let subcommand = arguments.first else { throw UsageError("missing subcommand") }
        var reader = ArgumentReader(Array(arguments.dropFirst()))
        switch subcommand {
        case "soak":
            var options = SoakOptions()
            while let flag = reader.nextFlag() {
                switch flag {
                case "--duration": options.duration = try reader.seconds(for: flag)
                case "--restart-every": options.restartInterval = try reader.seconds(for: flag)
                case "--kill": options.killsBroker = true
                case "--rate": options.messagesPerSecond = try reader.positiveInteger(for: flag)
                case "--drain-timeout": options.drainTimeout = try reader.seconds(for: flag)
                case "--autosave":
                    switch try reader.value(for: flag) {
                    case "changes": options.autosave = .onEveryChange
                    case "seconds": options.autosave = .everySecond
                    case let other: throw UsageError("--autosave takes `changes` or `seconds`, not \"\(other)\"")
                    }
                default: throw UsageError("unknown option \(flag) for soak")
                }
            }
            return .soak(options)
        case "cycles":
            var options = CycleOptions()
            while let flag = reader.nextFlag() {
                switch flag {
                case "--count": options.count = try reader.positiveInteger(for: flag)
                case "--leak-on-purpose": options.leaksOnPurpose = true
                default: throw UsageError("unknown option \(flag) for cycles")
                }
            }
            return .cycles(options)
        case "exit-on-message":
            var options = ExitOnMessageOptions()
            while let flag = reader.nextFlag() {
                switch flag {
                case "--port": options.port = try reader.positiveInteger(for: flag)
                case "--topic": options.topic = try reader.value(for: flag)
                case "--qos":
                    let text = try reader.value(for: flag)
                    guard let qos = Int(text), (0...2).contains(qos) else { throw UsageError("--qos takes 0, 1 or 2, not \"\(text)\"") }
                    options.qos = qos
                case "--thread": options.ownThread = true
                default: throw UsageError("unknown option \(flag) for exit-on-message")
                }
            }
            guard options.port > 0 else { throw UsageError("exit-on-message needs --port") }
            return .exitOnMessage(options)
        case "hold-broker":
            return .holdBroker
        case "help", "-h", "--help":
            return .help
        default:
            throw UsageError("unknown subcommand \"\(subcommand)\"")
        }
    }
}

// MARK: - Options

/// The settings of `mqtt-soak soak`.
struct SoakOptions: Equatable {
    /// When the broker writes its persistence database.
    enum Autosave: Equatable {
        /// `autosave_interval 1` (the fixture's setting): at most once a second.
        case everySecond
        /// `autosave_on_changes true` with `autosave_interval 1`: after every change that
        /// mosquitto counts (queued messages, deliveries completed, subscriptions, ...).
        case onEveryChange
    }

    /// How long messages are published.
    var duration: Duration = .seconds(60)
    /// How often the broker is restarted.
    var restartInterval: Duration = .seconds(10)
    /// Whether restarts kill the broker (SIGKILL) instead of stopping it (SIGTERM, which saves the database).
    var killsBroker = false
    /// Messages published per second for each QoS.
    var messagesPerSecond = 50
    /// How long, at most, to wait after publishing for acknowledgements and deliveries.
    var drainTimeout: Duration = .seconds(30)
    /// When the broker saves its database; `nil` picks ``Autosave/onEveryChange`` with
    /// ``killsBroker`` and ``Autosave/everySecond`` otherwise.
    var autosave: Autosave?

    /// The autosave mode in effect.
    var effectiveAutosave: Autosave { autosave ?? (killsBroker ? .onEveryChange : .everySecond) }
}

/// The settings of `mqtt-soak cycles`.
struct CycleOptions: Equatable {
    /// How many cycles to run.
    var count = 1000
    /// Whether each client is retained forever (a deliberate leak for the leak check's self-test).
    var leaksOnPurpose = false
}

/// The settings of `mqtt-soak exit-on-message`.
struct ExitOnMessageOptions: Equatable {
    /// The loopback port of the broker (or scripted peer).
    var port = 0
    /// The filter to subscribe to.
    var topic = "#"
    /// The subscription's QoS.
    var qos = 1
    /// Whether the client runs on a thread of its own (`MQTTConfiguration.eventLoopGroup = nil`).
    var ownThread = false
}

// MARK: - Reading arguments

/// A bad command line; its message is printed with the usage.
struct UsageError: Error {
    /// What is wrong.
    let message: String

    /// Creates an error with `message`.
    init(_ message: String) { self.message = message }
}

/// Walks `--flag value` pairs.
struct ArgumentReader {
    private var remaining: ArraySlice<String>

    /// Creates a reader over `arguments`.
    init(_ arguments: [String]) { remaining = arguments[...] }

    /// The next argument, expected to be a flag; `nil` at the end.
    mutating func nextFlag() -> String? { remaining.popFirst() }

    /// The value following `flag`.
    /// - Throws: `UsageError` when there is none.
    mutating func value(for flag: String) throws(UsageError) -> String {
        guard let value = remaining.popFirst() else { throw UsageError("\(flag) needs a value") }
        return value
    }

    /// The value following `flag` as a positive whole number.
    /// - Throws: `UsageError` when it is missing or not a positive integer.
    mutating func positiveInteger(for flag: String) throws(UsageError) -> Int {
        let text = try value(for: flag)
        guard let number = Int(text), number > 0 else { throw UsageError("\(flag) needs a positive integer, not \"\(text)\"") }
        return number
    }

    /// The value following `flag` as a positive number of whole seconds.
    /// - Throws: `UsageError` when it is missing or not a positive integer.
    mutating func seconds(for flag: String) throws(UsageError) -> Duration {
        .seconds(try positiveInteger(for: flag))
    }
}
