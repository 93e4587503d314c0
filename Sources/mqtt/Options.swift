import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Why a parser of our own

// The flags are those of mosquitto_pub / mosquitto_sub, so that a script written for them works
// with `mqtt pub` / `mqtt sub` / `mqtt rr` by changing the program name. swift-argument-parser
// cannot express them faithfully: `-h` is the host (not help), values are taken verbatim even
// when they start with `-` (`-m -5`), `-D` takes three or four arguments depending on the second
// (`-D command identifier value`, `-D command user-property name value`), and the error texts and
// exit status must match mosquitto's. So options are declared in small tables (`OptionSpec`) and
// read by the table-driven `OptionParser` below.

// MARK: - OptionSpec

/// One command-line option: its spellings, whether it takes a value, how it changes the options
/// being built, and its line in `--help`.
///
/// Generic over the options value it edits, so the connection options shared by `pub` and `sub`
/// are declared once (for ``CommonOptions``) and lifted into each command's table with
/// ``lifted(_:)``.
struct OptionSpec<Target> {
    /// What the option does with its value, if it has one.
    enum Action {
        /// A switch such as `-r`.
        case flag((inout Target) throws(CLIError) -> Void)
        /// An option followed by one value, such as `-h HOST`. `placeholder` names the value in
        /// `--help`, `noun` in the missing-value error (`-p argument given but no port specified.`).
        /// The action gets the argument as given (see ``Argument``); the constructors
        /// ``value(_:_:noun:_:_:)``, ``utf8(_:_:noun:_:malformed:_:)`` and
        /// ``bytes(_:_:noun:_:_:)`` say how it is read.
        case value(placeholder: String, noun: String, (inout Target, Argument) throws(CLIError) -> Void)
        /// An option followed by several values, such as `-D COMMAND IDENTIFIER VALUE`. The action
        /// takes them from ``OptionValues`` itself, so their number may depend on their content
        /// (`-D publish user-property NAME VALUE` takes one more).
        case values(placeholder: String, (inout Target, inout OptionValues) throws(CLIError) -> Void)
    }

    /// The spellings, short first: `["-h", "--host"]`.
    let names: [String]
    /// The effect.
    let action: Action
    /// The `--help` description (one line).
    let help: String
    /// mosquitto's whole error text when the value is missing, where it does not follow the
    /// usual pattern (`-M argument given but max_inflight not specified.`).
    var missingValue: String?

    /// A flag option.
    static func flag(_ names: [String], _ help: String, _ apply: @escaping (inout Target) throws(CLIError) -> Void) -> OptionSpec {
        OptionSpec(names: names, action: .flag(apply), help: help)
    }

    /// An option with a value read as text (a number, a host name, a file name): bytes that are
    /// not UTF-8 read as U+FFFD, which no such value can use.
    static func value(
        _ names: [String], _ placeholder: String, noun: String? = nil, missing: String? = nil, _ help: String,
        _ apply: @escaping (inout Target, String) throws(CLIError) -> Void
    ) -> OptionSpec {
        argument(names, placeholder, noun: noun, missing: missing, help) { (target: inout Target, argument: Argument) throws(CLIError) in
            try apply(&target, argument.text)
        }
    }

    /// An option with a value that goes into an MQTT string (a topic, a filter): refused with
    /// `malformed`, mosquitto's `Malformed UTF-8 in -t argument.`, unless it is MQTT UTF-8
    /// (``Argument/isMQTTUTF8``).
    static func utf8(
        _ names: [String], _ placeholder: String, noun: String? = nil, _ help: String, malformed: String,
        _ apply: @escaping (inout Target, String) throws(CLIError) -> Void
    ) -> OptionSpec {
        argument(names, placeholder, noun: noun, help) { (target: inout Target, argument: Argument) throws(CLIError) in
            guard argument.isMQTTUTF8 else { throw CLIError.usage(malformed, spaced: true) }
            try apply(&target, argument.text)
        }
    }

    /// An option with a value taken as bytes, exactly as given (a payload, a password).
    static func bytes(
        _ names: [String], _ placeholder: String, noun: String? = nil, _ help: String,
        _ apply: @escaping (inout Target, [UInt8]) throws(CLIError) -> Void
    ) -> OptionSpec {
        argument(names, placeholder, noun: noun, help) { (target: inout Target, argument: Argument) throws(CLIError) in
            try apply(&target, argument.bytes)
        }
    }

    /// An option with a value its action reads from the ``Argument`` itself (a username, checked
    /// once the command line is read).
    static func argument(
        _ names: [String], _ placeholder: String, noun: String? = nil, missing: String? = nil, _ help: String,
        _ apply: @escaping (inout Target, Argument) throws(CLIError) -> Void
    ) -> OptionSpec {
        OptionSpec(names: names, action: .value(placeholder: placeholder, noun: noun ?? placeholder, apply), help: help, missingValue: missing)
    }

    /// An option with several values, taken by `apply` from ``OptionValues``.
    static func values(
        _ names: [String], _ placeholder: String, _ help: String,
        _ apply: @escaping (inout Target, inout OptionValues) throws(CLIError) -> Void
    ) -> OptionSpec {
        OptionSpec(names: names, action: .values(placeholder: placeholder, apply), help: help)
    }

    /// The same option acting on the `Target` inside a larger options value.
    func lifted<Outer>(_ path: WritableKeyPath<Outer, Target>) -> OptionSpec<Outer> {
        switch action {
        case .flag(let apply):
            return OptionSpec<Outer>(names: names, action: .flag { (outer: inout Outer) throws(CLIError) in try apply(&outer[keyPath: path]) }, help: help)
        case .value(let placeholder, let noun, let apply):
            return OptionSpec<Outer>(
                names: names,
                action: .value(placeholder: placeholder, noun: noun) { (outer: inout Outer, value: Argument) throws(CLIError) in
                    try apply(&outer[keyPath: path], value)
                },
                help: help,
                missingValue: missingValue
            )
        case .values(let placeholder, let apply):
            return OptionSpec<Outer>(
                names: names,
                action: .values(placeholder: placeholder) { (outer: inout Outer, values: inout OptionValues) throws(CLIError) in
                    try apply(&outer[keyPath: path], &values)
                },
                help: help
            )
        }
    }

    /// `-h, --host HOST`: the left column of `--help`.
    var synopsis: String {
        let spelled = names.joined(separator: ", ")
        switch action {
        case .flag: return spelled
        case .value(let placeholder, _, _), .values(let placeholder, _): return spelled + " " + placeholder
        }
    }
}

// MARK: - OptionValues

/// The arguments after a multi-value option (``OptionSpec/Action/values(placeholder:_:)``), from
/// which its action takes as many as it needs.
struct OptionValues {
    private let arguments: ArraySlice<Argument>
    /// How many were taken.
    private(set) var consumed = 0
    /// The error for too few arguments, in mosquitto's words
    /// (`--property argument given but not enough arguments specified.`).
    private let shortage: CLIError

    /// The values available after the option named `option` (mosquitto names the long spelling).
    init(_ arguments: ArraySlice<Argument>, option: String) {
        self.arguments = arguments
        shortage = CLIError.usage("\(option) argument given but not enough arguments specified.", spaced: true)
    }

    /// The next `count` values, as given.
    ///
    /// - Throws: ``CLIError`` (usage) when fewer are left.
    mutating func take(_ count: Int) throws(CLIError) -> [Argument] {
        let start = arguments.startIndex + consumed
        guard arguments.endIndex - start >= count else { throw shortage }
        consumed += count
        return Array(arguments[start..<(start + count)])
    }
}

// MARK: - OptionParser

/// Reads `arguments` against a table of ``OptionSpec``s.
///
/// As in mosquitto's clients: each option is a separate argument (no `-rv` bundling, no
/// `--host=x`); a value is the next argument whatever it looks like; a missing value and an
/// unknown option are usage errors; there are no positional arguments.
enum OptionParser {
    /// What the command line asked for.
    enum Outcome<Target> {
        /// Run with these options.
        case run(Target)
        /// `--help` was given: print the usage and exit 0.
        case help
    }

    /// Parses the lines of the defaults file (``ConfigFile``), each on its own as mosquitto reads
    /// them, then `arguments`, into `initial`.
    ///
    /// - Throws: ``CLIError`` (usage) for an unknown option, a missing value, or a value an
    ///   option's action rejects, in a defaults line as on the command line.
    static func parse<Target>(
        _ arguments: [Argument], defaults: [[Argument]] = [], table: [OptionSpec<Target>], initial: Target
    ) throws(CLIError) -> Outcome<Target> {
        var index: [String: OptionSpec<Target>] = [:]
        for spec in table {
            for name in spec.names { index[name] = spec }
        }
        var target = initial
        for arguments in defaults + [arguments] {
            if case .help = try read(arguments, index: index, into: &target) { return .help }
        }
        return .run(target)
    }

    /// Reads one run of arguments (a defaults line, or the command line) into `target`.
    private static func read<Target>(
        _ arguments: [Argument], index: [String: OptionSpec<Target>], into target: inout Target
    ) throws(CLIError) -> Outcome<Void> {
        var position = 0
        while position < arguments.count {
            let argument = arguments[position].text
            position += 1
            if argument == "--help" { return .help }
            guard let spec = index[argument] else {
                throw CLIError.usage("Unknown option '\(argument)'.")
            }
            switch spec.action {
            case .flag(let apply):
                try apply(&target)
            case .value(_, let noun, let apply):
                guard position < arguments.count else {
                    throw CLIError.usage(spec.missingValue ?? "\(argument) argument given but no \(noun) specified.", spaced: true)
                }
                try apply(&target, arguments[position])
                position += 1
            case .values(_, let apply):
                var values = OptionValues(arguments[position...], option: spec.names.last ?? argument)
                try apply(&target, &values)
                position += values.consumed
            }
        }
        return .run(())
    }

    /// The `--help` text for a command: a summary, the usage line, one line per option, the
    /// examples, and the exit statuses.
    static func usage<Target>(summary: String, synopsis: String, table: [OptionSpec<Target>], examples: [String]) -> String {
        let width = min(34, (table.map(\.synopsis.count).max() ?? 0) + 2)
        var lines = [summary, "", "Usage: " + synopsis, "", "Options:"]
        for spec in table {
            let left = "  " + spec.synopsis
            let padding = left.count < width + 2 ? String(repeating: " ", count: width + 2 - left.count) : "  "
            lines.append(left + padding + spec.help)
        }
        lines.append("  --help" + String(repeating: " ", count: max(2, width + 2 - 8)) + "Display this message.")
        lines += ["", "Examples:"] + examples.map { "  " + $0 }
        lines += ["", ExitStatus.help]
        return lines.joined(separator: "\n")
    }
}

// MARK: - Value parsers

/// Strict conversions of option values, with mosquitto's error texts.
///
/// mosquitto uses `atoi`, so `-q abc` silently means QoS 0 there; `mqtt` rejects non-numbers.
enum ValueParser {
    /// A decimal integer, or `nil`.
    static func integer(_ text: String) -> Int? {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-" || $0 == "+") }) else { return nil }
        return Int(text)
    }

    /// C's `atoi`, for the options mosquitto reads with it and whose leniency scripts may rely
    /// on (`--repeat 2x` is 2, `--repeat x` is 0).
    static func cInteger(_ text: String) -> Int {
        Int(atoi(text))
    }

    /// C's `atof` (`--repeat-delay`): the decimal number at the start of `text`, or 0.
    static func cDouble(_ text: String) -> Double {
        atof(text)
    }

    /// A QoS level 0, 1 or 2 (`-q`, `--will-qos`).
    static func qos(_ text: String, what: String = "QoS given") throws(CLIError) -> MQTTQoS {
        guard let number = integer(text), let qos = MQTTQoS(rawValue: number) else {
            throw CLIError.usage("Invalid \(what): \(text)")
        }
        return qos
    }

    /// A TCP port 1...65535 (`-p`).
    static func port(_ text: String) throws(CLIError) -> Int {
        guard let port = integer(text), (1...65_535).contains(port) else {
            throw CLIError.usage("Invalid port given: \(text)")
        }
        return port
    }

    /// A positive count (`-C`, `-W`, `-M`), rejected with `message` when invalid.
    static func positive(_ text: String, _ message: String) throws(CLIError) -> Int {
        guard let number = integer(text), number >= 1 else { throw CLIError.usage(message, spaced: true) }
        return number
    }

    /// A session expiry interval (`-x`): 0...4294967295 seconds, with `-1` and `∞` for
    /// 4294967295 (never expires). mosquitto also takes hexadecimal and octal (`strtol`); `mqtt`
    /// takes decimal only.
    static func sessionExpiry(_ text: String) throws(CLIError) -> UInt32 {
        if text == "∞" { return UInt32.max }
        guard let number = integer(text) else {
            // Too many digits for an Int: out of range, as with mosquitto's `strtol`.
            let digits = text.first == "-" || text.first == "+" ? text.dropFirst() : Substring(text)
            if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
                throw CLIError.usage("session-expiry-interval out of range.", spaced: true)
            }
            throw CLIError.usage("session-expiry-interval not a number.", spaced: true)
        }
        if number == -1 { return UInt32.max }
        guard let interval = UInt32(exactly: number) else {
            throw CLIError.usage("session-expiry-interval out of range.", spaced: true)
        }
        return interval
    }

    /// An MQTT protocol version: `mqttv31`/`31`, `mqttv311`/`311`, `mqttv5`/`5` (`-V`).
    static func protocolVersion(_ text: String) throws(CLIError) -> MQTTProtocolVersion {
        switch text {
        case "mqttv31", "31": return .v3_1
        case "mqttv311", "311": return .v3_1_1
        case "mqttv5", "5": return .v5
        default: throw CLIError.usage("Invalid protocol version argument given.", spaced: true)
        }
    }

    /// A minimum TLS version (`--tls-version`). libmosquitto also knows `tlsv1.1`; the library
    /// supports TLS 1.2 and newer only.
    static func tlsVersion(_ text: String) throws(CLIError) -> MQTTTLSVersion {
        guard let version = MQTTTLSVersion(rawValue: text) else {
            throw CLIError.usage("Invalid TLS version '\(text)': use tlsv1.3 or tlsv1.2 (older versions are not supported).")
        }
        return version
    }
}

// MARK: - Running a command

/// The options of one command (`pub`, `sub`, `rr`): its table, usage text and shared options.
protocol CommandOptions {
    /// The defaults, before the command line is read.
    init()
    /// The command's option table.
    static var table: [OptionSpec<Self>] { get }
    /// The command's `--help` text.
    static var usage: String { get }
    /// The options shared by every command (connection, TLS, `--quiet`, ...).
    var common: CommonOptions { get }
}

/// The part every command shares: parse, answer `--help`, run, and apply `--quiet`.
enum CommandRunner {
    /// Parses the command's defaults file (``ConfigFile``) and `arguments` for `Options`, prints
    /// the usage for `--help`, otherwise runs `body`.
    ///
    /// - Returns: The exit status: 0.
    /// - Throws: ``CLIError``; run-time errors are marked silenced under `--quiet`.
    static func run<Options: CommandOptions>(
        _ arguments: [Argument],
        as _: Options.Type,
        _ body: (Options) async throws(CLIError) -> Void
    ) async throws(CLIError) -> Int32 {
        let initial = Options()
        let defaults = ConfigFile.lines(for: initial.common.tool)
        guard case .run(let options) = try OptionParser.parse(arguments, defaults: defaults, table: Options.table, initial: initial) else {
            Output.printLine(Options.usage)
            return 0
        }
        do {
            try await body(options)
            return 0
        } catch {
            throw error.silenced(quiet: options.common.quiet)
        }
    }
}
