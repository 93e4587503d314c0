import Foundation
import MosquittoTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Broker fixture", .timeLimit(.minutes(1)))
struct BrokerFixtureTests {
    @Test("maximumOpenFiles sets the broker process's soft open-file limit, also after a restart")
    func brokerGetsTheConfiguredOpenFileLimit() async throws {
        let own = try #require(openFileLimits(ofProcess: "self"))
        // Something this process does not have, that an unprivileged process may set: up to 16,384
        // (a raise from the usual 1,024), within our hard limit.
        var requested = min(16_384, own.hard)
        if requested == own.soft { requested -= 1 }

        var configuration = MosquittoBrokerConfiguration.anonymous
        configuration.maximumOpenFiles = requested
        try await withMosquittoBroker(configuration) { broker in
            let pid = try #require(broker.processIdentifier)
            let limits = try #require(openFileLimits(ofProcess: "\(pid)"))
            #expect(limits.soft == requested)
            #expect(limits.hard >= requested)

            try await broker.restart()
            let restarted = try #require(broker.processIdentifier)
            #expect(restarted != pid)
            #expect(openFileLimits(ofProcess: "\(restarted)")?.soft == requested)
        }
    }

    @Test("a limit the kernel refuses (above fs.nr_open) makes start() throw, naming the limit")
    func startFailsWhenTheOpenFileLimitCannotBeSet() async throws {
        let nrOpen = try #require(Int(readFirstLine("/proc/sys/fs/nr_open")))
        var configuration = MosquittoBrokerConfiguration.anonymous
        configuration.maximumOpenFiles = nrOpen + 1
        do {
            let broker = try await MosquittoBroker.start(configuration)
            broker.stop()
            Issue.record("started a broker with an open-file limit above fs.nr_open (\(nrOpen))")
        } catch let error as MosquittoTestingError {
            #expect(error.message.contains("open-file limit"))
            #expect(error.message.contains("\(nrOpen + 1)"))
        }
    }

    @Test("without maximumOpenFiles the broker inherits this process's open-file limit")
    func brokerInheritsTheOpenFileLimitByDefault() async throws {
        let own = try #require(openFileLimits(ofProcess: "self"))
        // Not `.anonymous`, which `MQTT_TEST_BROKER_HOST` would turn into an external broker without a process.
        try await withMosquittoBroker(MosquittoBrokerConfiguration(extraConfigLines: ["log_type error"])) { broker in
            let pid = try #require(broker.processIdentifier)
            let limits = try #require(openFileLimits(ofProcess: "\(pid)"))
            #expect(limits.soft == own.soft)
            #expect(limits.hard == own.hard)
        }
    }
}

/// The "Max open files" soft and hard limits from `/proc/<process>/limits` ("unlimited" reads as `Int.max`).
private func openFileLimits(ofProcess process: String) -> (soft: Int, hard: Int)? {
    guard let file = fopen("/proc/\(process)/limits", "r") else { return nil }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 512)
    while fgets(&buffer, Int32(buffer.count), file) != nil {
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard line.hasPrefix("Max open files") else { continue }
        // "Max open files            20000                20000                files"
        let values = line.dropFirst("Max open files".count).split(separator: " ", omittingEmptySubsequences: true)
        guard values.count >= 2 else { return nil }
        func number(_ text: Substring) -> Int? { text == "unlimited" ? Int.max : Int(text) }
        guard let soft = number(values[0]), let hard = number(values[1]) else { return nil }
        return (soft, hard)
    }
    return nil
}

/// The first line of the file at `path`, without the newline; empty when unreadable.
private func readFirstLine(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 256)
    guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "" }
    return String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension BrokerFixtureTests {
    @Test("a broker dies with the test process that started it, even one killed with SIGKILL, and its directory goes too")
    func brokerDiesWithAKilledParent() async throws {
        let holder = try startCommand(["hold-broker"], executable: builtExecutablePath("mqtt-soak"))
        let started = ContinuousClock.now + .seconds(20)
        while holder.outputLines.isEmpty, holder.isRunning, ContinuousClock.now < started {
            try await Task.sleep(for: .milliseconds(20))
        }
        let fields = try #require(holder.outputLines.first, "no broker: \(holder.standardError)").split(separator: " ", maxSplits: 1)
        let pid = try #require(fields.first.flatMap { Int32($0) })
        let directory = String(try #require(fields.last))
        #expect(Self.isAlive(pid), "the broker is not running")
        #expect(access(directory, F_OK) == 0)
        holder.kill()
        let deadline = ContinuousClock.now + .seconds(10)
        while Self.isAlive(pid) || access(directory, F_OK) == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!Self.isAlive(pid), "broker \(pid) outlived the killed test process")
        #expect(access(directory, F_OK) != 0, "\(directory) was left behind")
    }

    /// Whether `pid` runs (a zombie, which only waits for a reaper, does not count).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }
}
