// mqtt-bench: the Swift client against a C baseline calling libmosquitto directly.
//
//   mqtt-bench [--quick] [--repetitions N] [--seconds S] [--host H --port P] ...
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

exit(await runCommandLine())
