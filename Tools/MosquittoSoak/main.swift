// mqtt-soak: the reliability tools of swift-mosquitto.
//
//   mqtt-soak soak --duration 60      mixed QoS 0/1/2 load across broker restarts (scripts/soak.sh)
//   mqtt-soak cycles --count 1000     short-lived clients, for LeakSanitizer (scripts/leak-check.sh)
//   mqtt-soak exit-on-message --port P  dies right after its first message (a lifecycle test)
//   mqtt-soak hold-broker             starts a broker and waits to be killed (a fixture test)
//
// Exit status: 0 passed, 1 failed, 2 bad command line.

import MosquittoTesting

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

/// Runs the command given on the command line and returns the exit status.
func runCommandLine() async -> Int32 {
    let command: SoakCommand
    do {
        command = try SoakCommand.parse(Array(CommandLine.arguments.dropFirst()))
    } catch {
        printError("mqtt-soak: \(error.message)\n\n\(SoakCommand.usage)")
        return 2
    }
    do {
        switch command {
        case .help:
            print(SoakCommand.usage)
            return 0
        case .soak(let options):
            let report = try await SoakRun(options: options).run()
            print(report.rendered)
            return report.passed ? 0 : 1
        case .cycles(let options):
            print(try await CycleRun(options: options).run())
            return 0
        case .exitOnMessage(let options):
            try await exitOnFirstMessage(options)
            return 1
        case .holdBroker:
            let broker = try await MosquittoBroker.start()
            let directory = broker.logFilePath.map { String($0[..<($0.lastIndex(of: "/") ?? $0.endIndex)]) } ?? ""
            var line = "\(broker.processIdentifier ?? 0) \(directory)\n"
            line.withUTF8 { bytes in _ = write(STDOUT_FILENO, bytes.baseAddress, bytes.count) }
            while true { try await Task.sleep(for: .seconds(60)) }
        }
    } catch {
        printError("mqtt-soak: \(error)")
        return 1
    }
}

let status = await runCommandLine()
// Flush and exit through `exit` so that atexit handlers (LeakSanitizer's report) run.
fflush(nil)
exit(status)
