import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// The messages and exit statuses of `mqtt pub/sub/rr`, side by side with Debian's mosquitto
/// 2.0.11 tools: the same command line must give the same status and the same stderr lines (with
/// `mosquitto_pub` read as `mqtt pub`), so that scripts which test either keep working.
@Suite("CLI messages and exit statuses, side by side with the mosquitto tools", .timeLimit(.minutes(2)))
struct CLIMessageTests {
    /// One run of both programs.
    struct Pair {
        var ours: CLITests.Run
        var theirs: CLITests.Run

        /// Their stderr lines with their program name replaced by ours, blank lines dropped.
        var theirLines: [String] { CLITests.lines(theirs.stderr) }
        /// Our stderr lines, blank lines dropped.
        var ourLines: [String] { CLITests.lines(ours.stderr) }
    }

    /// Runs `mosquitto_<command> arguments` and `mqtt <command> arguments`, one after the other.
    static func sideBySide(_ command: String, _ arguments: [String], input: String? = nil) async throws -> Pair {
        let tool = try Interop.requireExecutable("mosquitto_\(command)", package: "mosquitto-clients")
        let theirs = try ChildProcess(executable: tool, arguments: arguments, standardInput: input.map { .text($0) } ?? .null)
        guard let status = try await theirs.wait(timeout: .seconds(20)) else {
            theirs.kill()
            throw InteropError("mosquitto_\(command) \(arguments.joined(separator: " ")) did not finish within 20 s")
        }
        let theirRun = CLITests.Run(
            status: status.code ?? 128 + (status.signal ?? 0),
            stdout: theirs.standardOutput,
            stderr: theirs.standardError.replacingOccurrences(of: "mosquitto_\(command)", with: "mqtt \(command)")
        )
        let ours = try await CLITests.mqtt([command] + arguments, input: input)
        return Pair(ours: ours, theirs: theirRun)
    }

    @Test(
        "a bad command line: the same error, a blank line and \"Use 'mqtt pub --help' to see usage.\", status 1",
        arguments: [
            ["pub", "-Z"], ["pub", "-t", "a/#", "-m", "x"], ["pub", "-t", "x", "-m", "x", "-q", "3"],
            ["pub", "-t", "x", "-m", "x", "--will-payload", "w"], ["sub", "-p", "1"], ["sub", "-t", "a/#/b"],
            ["rr", "-t", "x", "-e", "y"], ["rr", "-t", "x", "-e", "y/+", "-m", "m"],
        ]
    )
    func usageErrors(_ commandLine: [String]) async throws {
        let run = try await Self.sideBySide(commandLine[0], Array(commandLine.dropFirst()))
        #expect(run.ours.status == 1)
        #expect(run.ours.status == run.theirs.status)
        #expect(run.ourLines == run.theirLines, "ours: \(run.ours.stderr)")
        #expect(run.ourLines.last == "Use 'mqtt \(commandLine[0]) --help' to see usage.")
        // The blank line before the pointer, as mosquitto prints it.
        #expect(run.ours.stderr.contains("\n\nUse 'mqtt"))
    }

    @Test("settings libmosquitto refuses, and -i '': mosquitto's line, without the pointer to --help")
    func settingErrors() async throws {
        for arguments in [["-t", "x", "-m", "x", "-P", "secret"], ["-t", "x", "-m", "x", "-i", ""]] {
            let run = try await Self.sideBySide("pub", arguments)
            #expect(run.ours.status == 1)
            #expect(run.ours.status == run.theirs.status)
            #expect(run.ourLines == run.theirLines)
            #expect(run.ourLines.count == 1, "\(run.ours.stderr)")
        }
    }

    @Test("a refused CONNACK: pub adds libmosquitto's loop error on a second line, sub does not; the CONNACK code is the status")
    func refusedConnack() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3cret"])) { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)", "-t", "x", "-u", "alice", "-P", "wrong"]
            for version in ["311", "5"] {
                let pub = try await Self.sideBySide("pub", base + ["-m", "x", "-V", version])
                #expect(pub.ours.status == (version == "5" ? 135 : 5))
                #expect(pub.ours.status == pub.theirs.status)
                #expect(pub.ourLines == pub.theirLines)
                #expect(pub.ourLines.count == 2, "\(pub.ours.stderr)")
                let sub = try await Self.sideBySide("sub", base + ["-V", version])
                #expect(sub.ours.status == sub.theirs.status)
                #expect(sub.ourLines == sub.theirLines)
                #expect(sub.ourLines.count == 1, "\(sub.ours.stderr)")
            }
        }
    }

    @Test("pub -s with empty input, and -f with a missing file: mosquitto's two lines, status 1")
    func payloadInputErrors() async throws {
        try await withMosquittoBroker { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic()]
            let empty = try await Self.sideBySide("pub", base + ["-s"], input: "")
            #expect(empty.ours.status == 1)
            #expect(empty.ours.status == empty.theirs.status)
            #expect(empty.ourLines == ["Error: Zero length input.", "Error loading input from stdin."])
            #expect(empty.ourLines == empty.theirLines)
            let missing = try await Self.sideBySide("pub", base + ["-f", "/nonexistent/payload"])
            #expect(missing.ours.status == 1)
            #expect(missing.ours.status == missing.theirs.status)
            #expect(missing.ourLines == missing.theirLines)
            #expect(missing.ourLines.count == 2, "\(missing.ours.stderr)")
            // An empty file is an empty message, for both.
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("empty-\(UUID().uuidString)").path
            #expect(FileManager.default.createFile(atPath: path, contents: Data()))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let emptyFile = try await Self.sideBySide("pub", base + ["-f", path])
            #expect(emptyFile.ours.status == 0, "\(emptyFile.ours.stderr)")
            #expect(emptyFile.theirs.status == 0)
        }
    }

    @Test("--will-qos without --will-topic is accepted (and ignored), as mosquitto_pub does")
    func willQoSWithoutTopic() async throws {
        try await withMosquittoBroker { broker in
            let run = try await Self.sideBySide("pub", ["-h", broker.host, "-p", "\(broker.port)", "-t", uniqueTopic(), "-m", "x", "--will-qos", "1"])
            #expect(run.ours.status == 0, "\(run.ours.stderr)")
            #expect(run.theirs.status == 0)
        }
    }

    @Test("a host name that does not resolve: \"Unable to connect (Lookup error.).\", status 1")
    func hostLookupFailure() async throws {
        // `.invalid` never resolves (RFC 6761): no connection is attempted anywhere.
        for command in ["pub", "sub"] {
            let run = try await Self.sideBySide(command, ["-h", "no-such-broker.invalid", "-t", "x"] + (command == "pub" ? ["-m", "x"] : []))
            #expect(run.ours.status == 1)
            #expect(run.ours.status == run.theirs.status)
            #expect(run.ourLines == ["Unable to connect (Lookup error.)."])
            #expect(run.ourLines == run.theirLines)
        }
    }

    @Test("a failed TLS-PSK handshake exits 8 (MOSQ_ERR_TLS), always; mosquitto_pub exits 1, 8 or 14, depending on when the alert arrives")
    func preSharedKeyFailure() async throws {
        try await withMosquittoBroker(.init(tls: .preSharedKey(identity: "device-7", hexKey: "0123456789abcdef"))) { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)", "-t", "x", "-m", "x", "--psk-identity", "device-7"]
            let good = try await CLITests.mqtt(["pub"] + base + ["--psk", "0123456789abcdef"])
            #expect(good.status == 0, "\(good.stderr)")
            let run = try await Self.sideBySide("pub", base + ["--psk", "fedcba9876543210"])
            #expect(run.ours.status == 8, "\(run.ours.stderr)")
            // 1: the alert arrived inside mosquitto_connect ("Unable to connect (A TLS error
            // occurred.)."); 8: in the network loop ("Error: A TLS error occurred."); 14
            // (MOSQ_ERR_ERRNO): the broker's close came first (seen in a CI run).
            #expect([1, 8, 14].contains(run.theirs.status), "\(run.theirs.stderr)")
            #expect(run.ourLines.count == 1)
        }
    }

    @Test("sub whose every subscription the broker refuses: mosquitto_sub's 'All subscription requests were denied.' (status 1, not 0); one refused of two keeps receiving on the other", arguments: ["311", "5"])
    func deniedSubscriptions(version: String) async throws {
        try await withMosquittoBroker(.subscriptionACL(users: ["alice": "s3cret"], allowedSubscriptions: ["allowed/#"])) { broker in
            let base = ["-h", broker.host, "-p", "\(broker.port)", "-u", "alice", "-P", "s3cret", "-V", version]
            let denied = try await Self.sideBySide("sub", base + ["-t", "denied/x", "-W", "5"])
            // The same line; mosquitto_sub then exits 0, `mqtt` 1 (the README lists it).
            #expect(denied.ours.stderr == denied.theirs.stderr, "ours \(denied.ours.stderr)")
            #expect(denied.theirs.stderr == "All subscription requests were denied.\n")
            #expect(denied.theirs.status == 0)
            #expect(denied.ours.status == 1)
            // One filter of two refused: the other still receives (a retained message shows it).
            let topic = "allowed/\(UInt32.random(in: 0...UInt32.max))"
            let publisher = try await connectedClient(broker) { $0.credentials = MQTTCredentials(username: "alice", password: "s3cret") }
            try await publisher.publish(to: topic, payload: "kept", qos: .atLeastOnce, retain: true)
            let mixed = try await Self.sideBySide("sub", base + ["-t", "denied/x", "-t", topic, "-C", "1", "-W", "10"])
            #expect(mixed.ours.status == 0, "\(mixed.ours.stderr)")
            #expect(mixed.ours.status == mixed.theirs.status)
            #expect(mixed.ours.stdout == "kept\n")
            #expect(mixed.ours.stdout == mixed.theirs.stdout)
            #expect(mixed.ours.stderr == mixed.theirs.stderr)
        }
    }
}
