// `mqtt`: a command-line MQTT client with the flags of mosquitto_pub, mosquitto_sub and
// mosquitto_rr.
//
//     mqtt pub -h broker -t sensors/1 -q 1 -m 21.5
//     mqtt sub -h broker -t 'sensors/#' -v -C 10
//     mqtt rr -h broker -t service/time -e replies/me -m now
//
// Exit status: 0 on success; otherwise mosquitto's message on stderr and its status (the CONNACK
// code for a refused connection, 27 when `sub -W` / `rr -W` expires, libmosquitto's error
// number, or 1); see `ExitStatus.help`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Commands

/// Dispatches to a subcommand and turns every failure into one stderr line and an exit status.
enum MQTTCommandLine {
    static let usage = """
        mqtt: publish, subscribe and send requests to an MQTT broker, with the flags of
        mosquitto_pub, mosquitto_sub and mosquitto_rr.

        Usage: mqtt pub [options] -t topic {-m message | -f file | -n | -s | -l}
               mqtt sub [options] -t topic ...
               mqtt rr [options] -t topic -e response-topic {-m message | -f file | -n | -s}
               mqtt {pub|sub|rr} --help

        Commands:
          pub   Publish a message and exit (mosquitto_pub).
          sub   Subscribe and print the messages received (mosquitto_sub).
          rr    Publish an MQTT 5 request and print the first response (mosquitto_rr).

        Examples:
          mqtt sub -h broker -t 'home/+/sensor' -q 1 -v
          mqtt pub -h broker -t home/livingroom/sensor -q 1 -m '{"temperature":21.5}'
          seq 1 1000 | mqtt pub -h broker -t numbers -q 1 -l
          mqtt sub -h broker -V 5 -t orders --json -C 10 > orders.jsonl
          mqtt rr -h broker -t svc/echo -e replies/me -m ping -W 5

        """ + ExitStatus.help

    /// The command a link named `mosquitto_pub`, `mosquitto_sub` or `mosquitto_rr` to `mqtt` runs
    /// (`pub`, `sub`, `rr`), from the program name `argv[0]`; `nil` for any other name.
    static func command(invokedAs programName: String) -> String? {
        let name = programName.split(separator: "/").last.map(String.init) ?? programName
        return ["mosquitto_pub": "pub", "mosquitto_sub": "sub", "mosquitto_rr": "rr"][name]
    }

    /// Runs the command line (without the program name) and returns the exit status, once
    /// standard output is flushed.
    ///
    /// - Parameter programName: How errors name the command: `mqtt` (then `pub` and the rest
    ///   follow), or a link's `mosquitto_pub`.
    static func main(_ arguments: [Argument], programName: String = "mqtt") async -> Int32 {
        do {
            let status = try await run(arguments)
            let failure = Output.flush()
            if failure != 0 {
                // The last buffered output could not be written (a full disk, a closed pipe).
                Output.printError("Error: Unable to write to standard output (\(systemErrorText(failure))).")
                return 1
            }
            return status
        } catch {
            if !error.isSilenced {
                Output.printError(error.precedingBlankLine ? "\n" + error.singleLine : error.singleLine)
                if error.isSpaced {
                    Output.printError("")
                }
                if let line = error.followingLine {
                    Output.printError(line)
                }
                if error.pointsToHelp, let command = arguments.first?.text, ["pub", "sub", "rr"].contains(command) {
                    let name = programName == "mqtt" ? "mqtt \(command)" : programName
                    Output.printError("\nUse '\(name) --help' to see usage.")
                }
            } else {
                Output.flush()
            }
            return error.status
        }
    }

    private static func run(_ arguments: [Argument]) async throws(CLIError) -> Int32 {
        guard let command = arguments.first?.text else {
            throw CLIError.usage("No command given: use 'mqtt pub', 'mqtt sub' or 'mqtt rr' ('mqtt --help' for usage).")
        }
        let rest = Array(arguments.dropFirst())
        switch command {
        case "pub":
            return try await PublishCommand.run(rest)
        case "sub":
            return try await SubscribeCommand.run(rest)
        case "rr":
            return try await RequestCommand.run(rest)
        case "--help", "-h", "help":
            Output.printLine(usage)
            return 0
        default:
            throw CLIError.usage("Unknown command '\(command)': use 'mqtt pub', 'mqtt sub' or 'mqtt rr' ('mqtt --help' for usage).")
        }
    }
}

// MARK: - Entry

// On the main thread, before anything else runs: SIGINT and SIGTERM must reach the process.
Signals.unblockOnThisThread()
// The arguments as bytes: `CommandLine.arguments` would have repaired invalid UTF-8 (Argument).
// Run as a link named mosquitto_pub (or _sub, _rr), `mqtt` is that tool.
let programName = CommandLine.unsafeArgv[0].map { Argument(cString: $0).text } ?? "mqtt"
let status: Int32
if let command = MQTTCommandLine.command(invokedAs: programName) {
    let name = programName.split(separator: "/").last.map(String.init) ?? programName
    status = await MQTTCommandLine.main([Argument(command)] + Argument.processArguments(), programName: name)
} else {
    status = await MQTTCommandLine.main(Argument.processArguments())
}
exit(status)
