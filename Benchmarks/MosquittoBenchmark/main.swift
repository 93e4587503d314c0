// mqtt-bench: the Swift client against a C baseline calling libmosquitto directly.
//
//   mqtt-bench [--quick] [--repetitions N] [--seconds S] [--host H --port P] ...
//   mqtt-bench connections [--count N] [--driver thread|shared] ...   (many clients in one process)
//
// It spawns the role executables built next to it: MosquittoBenchmarkSwiftRole (one MQTTClient)
// and MosquittoBenchmarkCRole (one libmosquitto client, pure C), one process per client.
//
// Exit status: 0 when every row ran (a missed target is reported, not a failure), 1 when
// something failed outright, 2 for a bad command line.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Runs the benchmark; returns the exit status.
func runCommandLine() async -> Int32 {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == "connections" {
        return await runConnections(Array(arguments.dropFirst()))
    }
    if arguments.contains("--help") || arguments.contains("-h") || arguments.first == "help" {
        Output.line(BenchmarkOptions.usage)
        return 0
    }
    let options: BenchmarkOptions
    do {
        options = try BenchmarkOptions.parse(arguments)
    } catch {
        Output.error("mqtt-bench: \(error.message)\n\n\(BenchmarkOptions.usage)")
        return 2
    }
    do {
        let results = try await Orchestrator(options: options).run()
        Output.line(Report(results: results).rendered)
        return 0
    } catch {
        Output.error("mqtt-bench: \(error)")
        return 1
    }
}

/// Runs `mqtt-bench connections`; returns the exit status.
func runConnections(_ arguments: [String]) async -> Int32 {
    if arguments.contains("--help") || arguments.contains("-h") {
        Output.line(ConnectionsOptions.usage)
        return 0
    }
    do {
        let options = try ConnectionsOptions.parse(arguments)
        let result = try await ConnectionsRun(options: options).run()
        Output.line(ConnectionsReport(result: result).rendered)
        return 0
    } catch let error as UsageError {
        Output.error("mqtt-bench: \(error.message)\n\n\(ConnectionsOptions.usage)")
        return 2
    } catch {
        Output.error("mqtt-bench: \(error)")
        return 1
    }
}

exit(await runCommandLine())
