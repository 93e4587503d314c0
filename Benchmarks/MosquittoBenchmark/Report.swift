import CMosquittoBaseline
import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Report

/// Renders ``BenchmarkResults`` as tables of medians with Swift/C ratios, then the issue's
/// targets, each marked `ok` or `MISS` (a miss is reported, not a failure).
struct Report {
    /// What was measured.
    let results: BenchmarkResults

    /// The whole report.
    var rendered: String {
        var lines: [String] = []
        lines += header
        lines += throughputTable
        lines += roundTripTable
        lines += memoryTable
        lines += targets.map(\.line)
        return lines.joined(separator: "\n")
    }

    // MARK: Header

    /// The title lines: versions, settings, load average.
    private var header: [String] {
        var major: Int32 = 0
        var minor: Int32 = 0
        var revision: Int32 = 0
        mosquitto_lib_version(&major, &minor, &revision)
        let options = results.options
        return [
            "mqtt-bench: Swift client vs C libmosquitto \(major).\(minor).\(revision), one process per client, \(results.brokerDescription)",
            "  Swift driver: " + (Environment.value("MQTT_BENCH_SWIFT_DRIVER") == "thread"
                ? "a network thread per client (MQTT_BENCH_SWIFT_DRIVER=thread)"
                : "the shared event-loop group (the default; MQTT_BENCH_SWIFT_DRIVER=thread for a thread per client)"),
            "  Swift tasks: " + (Environment.value("MQTT_BENCH_SWIFT_EXECUTOR") == "global"
                ? "the subscriber's consumer and the round trips on Swift's global executor (MQTT_BENCH_SWIFT_EXECUTOR=global)"
                : "the subscriber's consumer and the round trips prefer the client's event loop (client.taskExecutor;"
                + " MQTT_BENCH_SWIFT_EXECUTOR=global for Swift's global executor)"),
            "  C role: " + (RoleSpec.pureCExecutable.map { "\($0) (C compiler only: libmosquitto and libc, as mosquitto_pub)" }
                ?? "SwiftPM's MosquittoBenchmarkCRole, which also loads libswiftCore and libstdc++ (~3 MiB more RSS than pure C;"
                + " scripts/bench.sh builds a pure C one)"),
            "  \(options.repetitions) repetition(s), medians; \(Format.decimal(options.seconds, 1)) s per throughput row;"
                + " window \(options.window) messages end to end; max in-flight \(options.maxInflight)",
            "  load average before: \(results.loadBefore); after: \(results.loadAfter)",
            "",
        ]
    }

    // MARK: Throughput

    /// The median of `metric` over the repetitions of one row and implementation.
    private func median(_ id: String, _ implementation: RoleSpec.Implementation, _ metric: (PairResult) -> Double) -> Double {
        Statistics.median((results.throughput[id]?[implementation] ?? []).map(metric))
    }

    /// The throughput / CPU / RSS table, medians per row and implementation.
    private var throughputTable: [String] {
        let rows = Workload.throughputRows.filter { results.throughput[$0.id] != nil }
        guard !rows.isEmpty else { return [] }
        var table = TextTable(columns: [
            ("row", .left), ("swift msg/s", .right), ("c msg/s", .right), ("ratio", .right), ("lost s/c", .right),
            ("pub us/msg s", .right), ("c", .right), ("ratio", .right),
            ("sub us/msg s", .right), ("c", .right), ("ratio", .right),
            ("pub MiB s/c", .right), ("sub MiB s/c", .right),
        ])
        for row in rows {
            let rate = throughputImplementations.map { median(row.id, $0, \.messagesPerSecond) }
            let lost = throughputImplementations.map { median(row.id, $0) { Double($0.losses) } }
            let pub = throughputImplementations.map { median(row.id, $0) { $0.publisher.cpuMicrosecondsPerMessage } }
            let sub = throughputImplementations.map { median(row.id, $0) { $0.subscriber.cpuMicrosecondsPerMessage } }
            let pubRSS = throughputImplementations.map { median(row.id, $0) { Double($0.publisher.peakRSSKiB) } }
            let subRSS = throughputImplementations.map { median(row.id, $0) { Double($0.subscriber.peakRSSKiB) } }
            table.add([
                row.title, Format.grouped(rate[0]), Format.grouped(rate[1]), Format.decimal(rate[0] / rate[1], 2),
                "\(Format.grouped(lost[0]))/\(Format.grouped(lost[1]))",
                Format.decimal(pub[0], 2), Format.decimal(pub[1], 2), Format.decimal(pub[0] / pub[1], 2),
                Format.decimal(sub[0], 2), Format.decimal(sub[1], 2), Format.decimal(sub[0] / sub[1], 2),
                "\(Format.mebibytes(pubRSS[0]))/\(Format.mebibytes(pubRSS[1]))",
                "\(Format.mebibytes(subRSS[0]))/\(Format.mebibytes(subRSS[1]))",
            ])
        }
        /// The median start-of-role RSS of `implementation`, in MiB.
        func floor(_ implementation: RoleSpec.Implementation) -> String {
            let values = results.throughput.values.flatMap { ($0[implementation] ?? []).map { Double($0.publisher.floorRSSKiB) } }
            return Format.mebibytes(Statistics.median(values))
        }
        return [
            "Throughput: messages received end to end per second (publisher and subscriber on separate connections),",
            "client CPU (user+sys, getrusage) per message, peak RSS per client process (VmHWM):",
        ] + table.lines + [
            "  (RSS of a role process at start, before any client: Swift \(floor(.swift)) MiB (Swift runtime),"
                + " C \(floor(.c)) MiB; \"lost\" = published but not received)",
            "",
        ]
    }

    // MARK: Round trips

    /// The median of `metric` over the round-trip runs of `implementation`.
    private func roundTripMedian(_ implementation: RoleSpec.Implementation, _ metric: (RoleReport) -> Double) -> Double {
        Statistics.median((results.roundTrips[implementation] ?? []).map(metric))
    }

    /// The round-trip latency table.
    private var roundTripTable: [String] {
        guard !results.roundTrips.isEmpty else { return [] }
        var table = TextTable(columns: [
            ("round trip, QoS 0 64 B", .left), ("p50 us", .right), ("p99 us", .right), ("p50 vs C loop_start", .right),
            ("cpu us/rt", .right), ("peak MiB", .right),
        ])
        let reference = roundTripMedian(.c) { Double($0.latencyP50Nanoseconds) }
        let titles: [RoleSpec.Implementation: String] = [
            .swift: "Swift MQTTClient", .c: "C mosquitto_loop_start", .cLoop: "C mosquitto_loop (1 thread)",
        ]
        for implementation in roundTripImplementations where results.roundTrips[implementation] != nil {
            let p50 = roundTripMedian(implementation) { Double($0.latencyP50Nanoseconds) }
            let p99 = roundTripMedian(implementation) { Double($0.latencyP99Nanoseconds) }
            table.add([
                titles[implementation] ?? implementation.rawValue,
                Format.decimal(p50 / 1000, 1), Format.decimal(p99 / 1000, 1), Format.decimal(p50 / reference, 2),
                Format.decimal(roundTripMedian(implementation) { $0.cpuMicrosecondsPerMessage }, 2),
                Format.mebibytes(roundTripMedian(implementation) { Double($0.peakRSSKiB) }),
            ])
        }
        return [
            "Round trip: one client publishes one message at a time and waits for it on its own subscription",
            "(\(results.options.roundTrips) timed after a warm-up):",
        ] + table.lines + [""]
    }

    // MARK: Memory

    /// The memory-check table.
    private var memoryTable: [String] {
        guard !results.memory.isEmpty else { return [] }
        var table = TextTable(columns: [
            ("memory", .left), ("msgs", .right), ("lost", .right),
            ("pub RSS MiB 10%/50%/100%", .right), ("growth", .right), ("2nd half", .right),
            ("sub RSS MiB 10%/50%/100%", .right), ("growth", .right), ("2nd half", .right),
        ])
        for implementation in throughputImplementations {
            guard let pair = results.memory[implementation] else { continue }
            table.add([
                implementation == .swift ? "Swift" : "C",
                Format.grouped(Double(pair.received)), Format.grouped(Double(pair.losses)),
                pair.publisher.rssSamplesKiB.map { Format.mebibytes(Double($0)) }.joined(separator: "/"),
                Format.growth(pair.publisher.rssSamplesKiB), Format.growth(Array(pair.publisher.rssSamplesKiB.dropFirst())),
                pair.subscriber.rssSamplesKiB.map { Format.mebibytes(Double($0)) }.joined(separator: "/"),
                Format.growth(pair.subscriber.rssSamplesKiB), Format.growth(Array(pair.subscriber.rssSamplesKiB.dropFirst())),
            ])
        }
        return [
            "Memory across \(results.options.memoryMessages) messages (QoS \(results.options.memoryQoS), 64 B): current RSS"
                + " at 10/50/100 % of the messages; growth = 100 % minus 10 %; 2nd half = 100 % minus 50 %"
                + " (per-message growth shows in both, a one-off high-water mark only in the first):",
        ] + table.lines + [""]
    }

    // MARK: Targets

    /// One target of the issue and whether it holds.
    struct Target {
        /// What is required.
        let name: String
        /// The measured value(s), printed after the name.
        let measured: String
        /// `nil` when it could not be measured (row not run).
        let holds: Bool?

        /// `  [ok]   name: measured` or `  [MISS] ...`.
        var line: String {
            let mark = holds.map { $0 ? "[ok]  " : "[MISS]" } ?? "[n/a] "
            return "  \(mark) \(name): \(measured)"
        }
    }

    /// The targets, evaluated on the medians.
    var targets: [Target] {
        var targets: [Target] = []
        let ran = Workload.throughputRows.filter { results.throughput[$0.id] != nil }
        /// Swift's median over C's median of `metric` for row `id`.
        func ratio(_ id: String, _ metric: (PairResult) -> Double) -> Double {
            median(id, .swift, metric) / median(id, .c, metric)
        }
        let throughput = ran.filter(\.hasThroughputTarget).map { ($0.title, ratio($0.id, \.messagesPerSecond)) }
        targets.append(Target(
            name: "throughput Swift/C >= 0.90 (QoS 0 64 B, QoS 1, QoS 2)",
            measured: throughput.map { "\($0.0) \(Format.decimal($0.1, 2))" }.joined(separator: ", "),
            holds: throughput.isEmpty ? nil : throughput.allSatisfy { $0.1 >= 0.90 }
        ))
        for (side, metric) in [("publisher", { (pair: PairResult) in pair.publisher.cpuMicrosecondsPerMessage }),
                               ("subscriber", { (pair: PairResult) in pair.subscriber.cpuMicrosecondsPerMessage })] {
            let ratios = ran.map { ($0.title, ratio($0.id, metric)) }
            targets.append(Target(
                name: "CPU per message Swift/C <= 1.2, \(side)",
                measured: ratios.map { "\($0.0) \(Format.decimal($0.1, 2))" }.joined(separator: ", "),
                holds: ratios.isEmpty ? nil : ratios.allSatisfy { $0.1 <= 1.2 }
            ))
        }
        let rss = ran.flatMap { row in
            [ratio(row.id) { Double($0.publisher.peakRSSKiB) }, ratio(row.id) { Double($0.subscriber.peakRSSKiB) }]
        }
        targets.append(Target(
            name: "peak RSS Swift/C <= 2 per client process",
            measured: "largest ratio \(Format.decimal(rss.max() ?? .nan, 2))",
            holds: rss.isEmpty ? nil : rss.allSatisfy { $0 <= 2 }
        ))
        if results.roundTrips[.swift] != nil, results.roundTrips[.c] != nil {
            let swift = roundTripMedian(.swift) { Double($0.latencyP50Nanoseconds) }
            let c = roundTripMedian(.c) { Double($0.latencyP50Nanoseconds) }
            targets.append(Target(
                name: "round-trip p50 Swift <= 1.2 x C loop_start",
                measured: "\(Format.decimal(swift / 1000, 1)) us vs \(Format.decimal(c / 1000, 1)) us = \(Format.decimal(swift / c, 2))",
                holds: swift / c <= 1.2
            ))
        } else {
            targets.append(Target(name: "round-trip p50 Swift <= 1.2 x C loop_start", measured: "not run", holds: nil))
        }
        if let swift = results.memory[.swift] {
            let growth = [swift.publisher.rssSamplesKiB, swift.subscriber.rssSamplesKiB].map(Format.growthKiB)
            let limitKiB = 1024
            targets.append(Target(
                name: "Swift memory flat across \(results.options.memoryMessages) messages (growth 10 %->100 % < 1 MiB)",
                measured: "publisher \(Format.signedKiB(growth[0])), subscriber \(Format.signedKiB(growth[1]))",
                holds: growth.allSatisfy { $0.map { $0 < limitKiB } ?? false }
            ))
            let secondHalf = [swift.publisher.rssSamplesKiB, swift.subscriber.rssSamplesKiB].map { Format.growthKiB(Array($0.dropFirst())) }
            targets.append(Target(
                name: "Swift: no per-message growth (growth 50 %->100 % < 1 MiB)",
                measured: "publisher \(Format.signedKiB(secondHalf[0])), subscriber \(Format.signedKiB(secondHalf[1]))",
                holds: secondHalf.allSatisfy { $0.map { $0 < limitKiB } ?? false }
            ))
        } else {
            targets.append(Target(name: "Swift memory flat", measured: "not run", holds: nil))
        }
        return targets
    }
}

// MARK: - TextTable

/// A plain-text table with aligned columns.
struct TextTable {
    /// How a column is aligned.
    enum Alignment { case left, right }

    /// The column titles and alignments.
    private let columns: [(title: String, alignment: Alignment)]
    /// The rows added so far.
    private var rows: [[String]] = []

    /// A table with these column titles and alignments.
    init(columns: [(String, Alignment)]) {
        self.columns = columns.map { (title: $0.0, alignment: $0.1) }
    }

    /// Appends a row (one cell per column).
    mutating func add(_ cells: [String]) {
        rows.append(cells)
    }

    /// The header, a rule and the rows, indented by two spaces.
    var lines: [String] {
        let all = [columns.map(\.title)] + rows
        let widths = columns.indices.map { index in all.map { $0.indices.contains(index) ? $0[index].count : 0 }.max() ?? 0 }
        /// One padded line of `cells`.
        func render(_ cells: [String]) -> String {
            "  " + columns.indices.map { index in
                let cell = cells.indices.contains(index) ? cells[index] : ""
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                return columns[index].alignment == .left ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }
        return [render(columns.map(\.title)), "  " + String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))]
            + rows.map(render)
    }
}

// MARK: - Format

/// Number formatting without Foundation.
enum Format {
    /// `value` with `digits` decimals; "-" when not finite.
    static func decimal(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0 ..< digits { scale *= 10 }
        let scaled = Int((abs(value) * scale).rounded())
        let whole = scaled / Int(scale)
        let fraction = scaled % Int(scale)
        let sign = value < 0 && scaled != 0 ? "-" : ""
        guard digits > 0 else { return "\(sign)\(whole)" }
        let fractionText = String(fraction)
        return "\(sign)\(whole)." + String(repeating: "0", count: digits - fractionText.count) + fractionText
    }

    /// A whole number with thousands separators; "-" when not finite.
    static func grouped(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let digits = String(Int(value.rounded()).magnitude)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return value < 0 ? "-" + out : out
    }

    /// KiB as MiB with one decimal.
    static func mebibytes(_ kibibytes: Double) -> String {
        decimal(kibibytes / 1024, 1)
    }

    /// The growth between the first and the last sample, in KiB; `nil` without two samples.
    static func growthKiB(_ samples: [Int]) -> Int? {
        guard let first = samples.first, let last = samples.last, samples.count >= 2 else { return nil }
        return last - first
    }

    /// The growth between the first and the last sample, as signed KiB.
    static func growth(_ samples: [Int]) -> String {
        growthKiB(samples).map(signedKiB) ?? "-"
    }

    /// `+123 KiB`, `-4 KiB`, or "-" for `nil`.
    static func signedKiB(_ kibibytes: Int?) -> String {
        guard let kibibytes else { return "-" }
        return (kibibytes >= 0 ? "+" : "") + "\(kibibytes) KiB"
    }
}
