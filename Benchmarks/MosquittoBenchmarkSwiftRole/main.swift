// The Swift client's role process: one `MQTTClient` and the Swift runtime, nothing else (no
// Foundation, no test fixture), so that its CPU time and peak RSS are what a Swift program using
// the library pays. The command line and the result line are the C role's (CMosquittoBaseline's
// role_cli.c), so both speak the same protocol with the orchestrator.
//
//   MosquittoBenchmarkSwiftRole (publisher|subscriber|rtt) --host H --port P ...
//   MosquittoBenchmarkSwiftRole connections ...     (many clients in this process: ConnectionsRole.swift)
//
// Prints one `result ...` line; on failure a line on standard error and exit status 1 (2 for a
// bad command line). Started by `mqtt-bench`.

import CMosquittoBaseline

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes `text` and a newline to standard error.
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
}

/// Parses the command line, runs the role, prints its result; returns the exit status.
func runRole() async -> Int32 {
    if CommandLine.arguments.count > 1, CommandLine.arguments[1] == "connections" {
        return await ConnectionsRole.main(CommandLine.arguments.dropFirst(2))
    }
    let floor = bench_current_rss_kib()
    var spec = bench_role_spec()
    var message = [CChar](repeating: 0, count: 256)
    guard bench_role_parse(CommandLine.argc, CommandLine.unsafeArgv, &spec, &message, message.count) == 0 else {
        printError("swift role: " + String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        return 2
    }
    let options = SwiftRoleOptions(spec.options)
    do {
        var p50: UInt64 = 0
        var p99: UInt64 = 0
        var result: bench_role_result
        switch spec.kind {
        case BENCH_ROLE_ROUND_TRIPS:
            var latencies = [UInt64](repeating: 0, count: Int(options.count))
            result = try await SwiftRoles.roundTrips(options, warmup: bench_round_trip_warmup(options.count), latencies: &latencies)
            latencies.withUnsafeMutableBufferPointer { buffer in
                bench_latency_percentiles(buffer.baseAddress, result.messages, &p50, &p99)
            }
        case BENCH_ROLE_FANOUT:
            printError("swift role: fanout is a C role only")
            return 2
        default:
            guard let pointer = bench_control_map(spec.control_path, 0) else {
                throw RoleFailure(description: "cannot map the control block (errno \(errno))")
            }
            defer { bench_control_unmap(pointer) }
            let control = ControlBlock(pointer: pointer)
            result = spec.kind == BENCH_ROLE_PUBLISHER
                ? try await SwiftRoles.publish(options, control: control)
                : try await SwiftRoles.subscribe(options, control: control)
        }
        bench_print_result(&result, floor, p50, p99)
        return 0
    } catch {
        printError("swift role: \(error)")
        return 1
    }
}

exit(await runRole())
