// `mqtt`: a command-line MQTT client with the flags of mosquitto_pub, mosquitto_sub and
// mosquitto_rr.
//
//     mqtt pub -h broker -t sensors/1 -q 1 -m 21.5
//     mqtt sub -h broker -t 'sensors/#' -v -C 10
//     mqtt rr -h broker -t service/time -e replies/me -m now
//
// Exit status: 0 on success; otherwise one line on stderr and mosquitto's status (the CONNACK
// code for a refused connection, 27 when `sub -W` / `rr -W` expires, libmosquitto's error
// number, or 1).

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
        """

    /// Runs the command line (without the program name) and returns the exit status.
    static func main(_ arguments: [String]) async -> Int32 {
        do {
            return try await run(arguments)
        } catch {
            if !error.isSilenced {
                Output.printError(error.singleLine)
            }
            return error.status
        }
    }

    private static func run(_ arguments: [String]) async throws(CLIError) -> Int32 {
        guard let command = arguments.first else {
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

let status = await MQTTCommandLine.main(Array(CommandLine.arguments.dropFirst()))
exit(status)
