import Glibc
import MosquittoTesting
import Synchronization
import Testing

/// `mqtt` reads its arguments as the bytes the process received, side by side with Debian's
/// mosquitto 2.0.11 tools: payloads and passwords go out byte for byte, topics, usernames and
/// property strings that are not MQTT UTF-8 are refused with mosquitto's message, and the error
/// text (blank lines included) and status are mosquitto's.
@Suite("CLI arguments as bytes", .timeLimit(.minutes(2)))
struct CLIArgumentTests {
    /// Runs `executable` with `arguments` of any bytes: a Swift `String` cannot hold bytes that
    /// are not UTF-8, so `/bin/sh` builds each argument with `printf` from octal escapes.
    static func run(_ executable: String, _ arguments: [[UInt8]], timeout: Duration = .seconds(20)) async throws -> CLITests.Run {
        func quoted(_ bytes: [UInt8]) -> String {
            bytes.isEmpty ? "''" : "\"$(printf '" + bytes.map { "\\" + String($0, radix: 8) }.joined() + "')\""
        }
        let script = "exec " + ([Array(executable.utf8)] + arguments).map(quoted).joined(separator: " ")
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", script])
        guard let status = try await child.wait(timeout: timeout) else {
            child.kill()
            Issue.record("\(executable) did not finish within \(timeout)")
            return CLITests.Run(status: -1, stdout: child.standardOutput, stderr: child.standardError)
        }
        return CLITests.Run(status: status.code ?? 128 + (status.signal ?? 0), stdout: child.standardOutput, stderr: child.standardError)
    }

    /// `mqtt <command> arguments` and `mosquitto_<command> arguments`; their stderr with their
    /// program name read as ours.
    static func sideBySide(_ command: String, _ arguments: [[UInt8]]) async throws -> (ours: CLITests.Run, theirs: CLITests.Run) {
        let tool = try Interop.requireExecutable("mosquitto_\(command)", package: "mosquitto-clients")
        let ours = try await run(mqttExecutablePath(), [Array(command.utf8)] + arguments)
        var theirs = try await run(tool, arguments)
        theirs.stderr = theirs.stderr.replacingOccurrences(of: "mosquitto_\(command)", with: "mqtt \(command)")
        return (ours, theirs)
    }

    static func bytes(_ arguments: [String]) -> [[UInt8]] { arguments.map { Array($0.utf8) } }

    /// What a scripted peer read from each connection: the CONNECT's body and the first
    /// PUBLISH's body.
    final class Capture: Sendable {
        let packets = Mutex<[(connect: [UInt8], publish: [UInt8]?)]>([])
    }

    /// A peer that accepts every connection (in the CONNECT's protocol version), records its
    /// CONNECT and first PUBLISH, acknowledges a QoS 1 PUBLISH, and waits for the DISCONNECT.
    static func recordingPeer(_ capture: Capture) throws -> ScriptedPeer {
        try ScriptedPeer { connection in
            guard let connect = connection.read(until: 1) else { return }
            let isV5 = connect.body.count > 6 && connect.body[6] == 5
            connection.send(isV5 ? [0x20, 0x03, 0x00, 0x00, 0x00] : [0x20, 0x02, 0x00, 0x00])
            let publish = connection.read(until: 3)
            capture.packets.withLock { $0.append((connect.body, publish?.body)) }
            if let publish, publish.qos == 1 {
                let topicLength = Int(publish.body[0]) << 8 | Int(publish.body[1])
                connection.send([0x40, 0x02] + publish.body[(2 + topicLength)..<(4 + topicLength)])
            }
            _ = connection.read(until: 14)
        }
    }

    @Test("-m, --will-payload, -P and binary -D values that are not UTF-8 go out byte for byte: the CONNECT and the PUBLISH are mosquitto_pub's")
    func bytesGoOutAsGiven() async throws {
        let tool = try Interop.requireExecutable("mosquitto_pub", package: "mosquitto-clients")
        let capture = Capture()
        let peer = try Self.recordingPeer(capture)
        defer { peer.stop() }
        let password: [UInt8] = [0x70, 0xff, 0x77, 0xc0, 0x80]
        let willPayload: [UInt8] = [0xfe, 0x0a, 0x80]
        let message: [UInt8] = [0x61, 0xff, 0x62, 0xed, 0xa0, 0x80]
        let correlation: [UInt8] = [0xff, 0x01, 0xc3]
        let v311 = Self.bytes(["-p", "\(peer.port)", "-i", "raw", "-u", "user", "-t", "t", "--will-topic", "w", "-q", "1"])
            + [Array("-P".utf8), password, Array("--will-payload".utf8), willPayload, Array("-m".utf8), message]
        let v5 = Self.bytes(["-p", "\(peer.port)", "-i", "raw5", "-t", "t", "-V", "5", "-q", "0"])
            + [Array("-D".utf8), Array("publish".utf8), Array("correlation-data".utf8), correlation, Array("-m".utf8), message]
        for arguments in [v311, v5] {
            let ours = try await Self.run(mqttExecutablePath(), [Array("pub".utf8)] + arguments)
            #expect(ours.status == 0, "\(ours.stderr)")
            let theirs = try await Self.run(tool, arguments)
            #expect(theirs.status == 0, "\(theirs.stderr)")
        }
        let packets = capture.packets.withLock { $0 }
        try #require(packets.count == 4)
        // MQTT 3.1.1 CONNECT payload: client ID, will topic, will payload, username, password.
        let expectedConnectPayload = PeerConnection.encode("raw") + PeerConnection.encode("w")
            + PeerConnection.encode(UInt16(willPayload.count)) + willPayload
            + PeerConnection.encode("user") + PeerConnection.encode(UInt16(password.count)) + password
        #expect(Array(packets[0].connect.dropFirst(10)) == expectedConnectPayload, "\(packets[0].connect)")
        #expect(packets[0].connect == packets[1].connect, "ours \(packets[0].connect), mosquitto_pub \(packets[1].connect)")
        // QoS 1 PUBLISH: topic, packet ID, payload.
        #expect(packets[0].publish.map { Array($0.suffix(message.count)) } == message)
        #expect(packets[0].publish == packets[1].publish)
        // MQTT 5 QoS 0 PUBLISH: topic, properties (correlation data), payload.
        let expectedV5 = PeerConnection.encode("t") + [UInt8(3 + correlation.count), 0x09] + PeerConnection.encode(UInt16(correlation.count))
            + correlation + message
        #expect(packets[2].publish == expectedV5, "\(String(describing: packets[2].publish))")
        #expect(packets[2].publish == packets[3].publish)
    }

    @Test("MQTT 5 properties go on the wire in command-line order, user properties among the others: the CONNECT and PUBLISH bytes are mosquitto_pub's")
    func propertiesInCommandLineOrder() async throws {
        let tool = try Interop.requireExecutable("mosquitto_pub", package: "mosquitto-clients")
        let capture = Capture()
        let peer = try Self.recordingPeer(capture)
        defer { peer.stop() }
        let arguments = Self.bytes([
            "-p", "\(peer.port)", "-i", "ordered", "-t", "t", "-m", "x", "-q", "0",
            "-D", "connect", "user-property", "first", "1", "-D", "connect", "maximum-packet-size", "5000",
            "-D", "connect", "receive-maximum", "7", "-D", "connect", "user-property", "last", "2",
            "-D", "publish", "user-property", "u", "1", "-D", "publish", "message-expiry-interval", "30",
            "-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "v", "2",
            "-D", "publish", "payload-format-indicator", "1",
        ])
        let ours = try await Self.run(mqttExecutablePath(), [Array("pub".utf8)] + arguments)
        #expect(ours.status == 0, "\(ours.stderr)")
        let theirs = try await Self.run(tool, arguments)
        #expect(theirs.status == 0, "\(theirs.stderr)")
        let packets = capture.packets.withLock { $0 }
        try #require(packets.count == 2)
        #expect(packets[0].connect == packets[1].connect, "ours \(packets[0].connect), mosquitto_pub \(packets[1].connect)")
        #expect(packets[0].publish == packets[1].publish, "ours \(String(describing: packets[0].publish)), mosquitto_pub \(String(describing: packets[1].publish))")
        // The PUBLISH's properties after the topic: user property u, expiry, content type, user property v, format.
        let expected: [UInt8] = [0x26] + PeerConnection.encode("u") + PeerConnection.encode("1") + [0x02, 0, 0, 0, 30]
            + [0x03] + PeerConnection.encode("text/plain") + [0x26] + PeerConnection.encode("v") + PeerConnection.encode("2") + [0x01, 1]
        let publish = try #require(packets[0].publish)
        #expect(Array(publish.dropFirst(3 + 1).prefix(expected.count)) == expected, "\(publish)")
        #expect(publish[3] == UInt8(expected.count))
    }

    @Test(
        "a topic, filter, response topic, will topic, username or property string that is not MQTT UTF-8 is refused with mosquitto's text, blank lines included",
        arguments: [
            ("pub", ["-t"], [0x61, 0xff]), ("pub", ["-t"], [0x61, 0x01]), ("pub", ["-t"], [0xc0, 0x80]), ("pub", ["-t"], [0xed, 0xa0, 0x80]),
            ("pub", ["-t"], [0xef, 0xbf, 0xbf]), ("pub", ["-t"], [0x61, 0xc2, 0x85]), ("sub", ["-t"], [0x61, 0xff]),
            ("rr", ["-e"], [0x61, 0xff]), ("pub", ["--will-topic"], [0x77, 0xff]), ("pub", ["-u"], [0x75, 0xff]),
            ("pub", ["-D", "publish", "content-type"], [0x63, 0xff]), ("pub", ["-D", "publish", "user-property"], [0x6e, 0x02]),
        ] as [(String, [String], [UInt8])]
    )
    func malformedUTF8IsRefused(command: String, option: [String], value: [UInt8]) async throws {
        // Port 1: nothing listens there, so an argument let through fails differently.
        var arguments = Self.bytes(["-p", "1", "-m", "x", "-q", "1"]) + Self.bytes(option) + [value]
        if option.last == "user-property" { arguments += Self.bytes(["value"]) }
        if option != ["-t"] { arguments += Self.bytes(["-t", "ok"]) }
        if command == "rr" { arguments += Self.bytes(["-t", "request"]) }
        if command == "sub" { arguments.removeSubrange(2...3) }
        let run = try await Self.sideBySide(command, arguments)
        #expect(run.ours.status == 1)
        #expect(run.ours.status == run.theirs.status)
        #expect(run.ours.stderr == run.theirs.stderr)
        #expect(run.ours.stderr.hasPrefix(option == ["-u"] ? "Error: Problem setting" : option[0] == "-D" ? "Error adding property" : "Error: Malformed UTF-8"), "\(run.ours.stderr)")
    }

    @Test("a user-property value that is not MQTT UTF-8 is refused; mosquitto_pub sends it (libmosquitto 2.0 checks only the name), and a broker closes the connection for it")
    func malformedUserPropertyValueIsRefused() async throws {
        let arguments = Self.bytes(["-p", "1", "-t", "x", "-m", "x", "-D", "publish", "user-property", "name"]) + [[0x76, 0xff]]
        let run = try await Self.sideBySide("pub", arguments)
        #expect(run.ours.status == 1)
        #expect(run.ours.stderr == "Error adding property user-property 7\n\nUse 'mqtt pub --help' to see usage.\n")
        // mosquitto_pub got as far as connecting (to port 1, where nothing listens).
        #expect(run.theirs.stderr.contains("Connection refused"), "\(run.theirs.stderr)")
    }

    @Test("a client ID or prefix that is empty or not MQTT UTF-8 fails with status 1 as in mosquitto, which prints nothing for one that is not UTF-8; mqtt names it")
    func invalidClientIDs() async throws {
        for (command, option, value) in [("pub", "-i", [0xff]), ("pub", "-I", [0x01]), ("sub", "-i", [0x61, 0xff]), ("rr", "-i", [0xff])] as [(String, String, [UInt8])] {
            var arguments = Self.bytes(["-p", "1", "-t", "x", option]) + [value]
            if command != "sub" { arguments += Self.bytes(["-m", "x"]) }
            if command == "rr" { arguments += Self.bytes(["-e", "reply"]) }
            let run = try await Self.sideBySide(command, arguments)
            #expect(run.ours.status == 1)
            #expect(run.ours.status == run.theirs.status)
            #expect(run.theirs.stderr.isEmpty, "\(run.theirs.stderr)")
            #expect(run.ours.stderr == (command == "pub" ? "Error: Invalid id.\n" : "Error: Invalid id and/or clean_session.\n"), "\(run.ours.stderr)")
        }
        // An empty one: mosquitto prints the same text, per tool.
        for command in ["pub", "sub"] {
            let arguments = Self.bytes(["-p", "1", "-t", "x", "-i", ""] + (command == "pub" ? ["-m", "x"] : []))
            let run = try await Self.sideBySide(command, arguments)
            #expect(run.ours.status == run.theirs.status)
            #expect(run.ours.stderr == run.theirs.stderr)
            #expect(!run.ours.stderr.isEmpty)
        }
    }

    @Test(
        "usage errors print exactly mosquitto's stderr: one blank line before the pointer to --help, two where mosquitto's text ends in one",
        arguments: [
            ["pub", "-p"], ["pub", "-t", "x", "-m", "x", "-k", "2"], ["pub", "-Z"], ["pub", "-t", "a/#", "-m", "x"],
            ["pub", "-t", "x", "-m", "x", "-D", "publish", "foo", "1"], ["sub", "-t", "a", "-C", "0"], ["pub", "-t", "x", "-m", "x", "-q", "3"],
            ["pub", "-t", "x", "-m", "x", "-V", "7"], ["pub", "-t", "x", "-m", "x", "-n"], ["pub", "-t", "x", "-D", "publish", "user-property", "a"],
            ["sub", "-t", "x", "-W", "0"], ["pub", "-t", "x", "-m", "x", "--will-qos", "3"], ["pub", "-t", "x", "-m", "x", "-x", "nope"],
        ]
    )
    func usageErrorsAreByteForByte(_ commandLine: [String]) async throws {
        let run = try await Self.sideBySide(commandLine[0], Self.bytes(Array(commandLine.dropFirst())))
        #expect(run.ours.status == 1)
        #expect(run.ours.status == run.theirs.status)
        #expect(run.ours.stderr == run.theirs.stderr)
        #expect(run.ours.stderr.hasSuffix("\n\nUse 'mqtt \(commandLine[0]) --help' to see usage.\n"), "\(run.ours.stderr)")
    }

    @Test("a link named mosquitto_pub, mosquitto_sub or mosquitto_rr to mqtt is that tool: its errors name the link, byte for byte as the real tool's, and it publishes and subscribes")
    func linkNamedLikeTheTools() async throws {
        let directory = "/tmp/mqtt-links-\(UInt32.random(in: 0...UInt32.max))"
        try #require(mkdir(directory, 0o700) == 0)
        defer {
            for tool in ["pub", "sub", "rr"] { unlink("\(directory)/mosquitto_\(tool)") }
            rmdir(directory)
        }
        for tool in ["pub", "sub", "rr"] {
            try #require(symlink(mqttExecutablePath(), "\(directory)/mosquitto_\(tool)") == 0)
            let real = try Interop.requireExecutable("mosquitto_\(tool)", package: "mosquitto-clients")
            for arguments in [["-Z"], ["-t", "x", "-k", "1"]] {
                let ours = try await Self.run("\(directory)/mosquitto_\(tool)", Self.bytes(arguments))
                let theirs = try await Self.run(real, Self.bytes(arguments))
                #expect(ours.status == theirs.status, "\(tool) \(arguments)")
                #expect(ours.stderr == theirs.stderr, "\(tool) \(arguments): ours \(ours.stderr)")
                #expect(ours.stderr.hasSuffix("Use 'mosquitto_\(tool) --help' to see usage.\n"))
            }
        }
        try await withMosquittoBroker { broker in
            let topic = uniqueTopic()
            let endpoint = ["-h", broker.host, "-p", "\(broker.port)"]
            let id = uniqueClientID()
            // A $share filter is a valid filter under MQTT 3.1.1 too (mosquitto gives it its MQTT 5 meaning).
            let sub = try startCommand(endpoint + ["-V", "311", "-t", "$share/group/\(topic)", "-C", "1", "-W", "10", "-i", id], executable: "\(directory)/mosquitto_sub")
            try await waitForSubscription(broker, clientID: id, filter: "$share/group/\(topic)")
            let pub = try await Self.run("\(directory)/mosquitto_pub", Self.bytes(endpoint + ["-t", topic, "-m", "through a link", "-q", "1"]))
            #expect(pub.status == 0, "\(pub.stderr)")
            let status = try await sub.wait(timeout: .seconds(10))
            #expect(status?.code == 0, "\(sub.standardError)")
            #expect(sub.standardOutput == "through a link\n")
        }
    }

    @Test("--quiet silences a setting libmosquitto refuses (a password without a username), as mosquitto's err_printf does; a usage error still prints")
    func quietSilencesSettingErrors() async throws {
        let silent = try await Self.sideBySide("pub", Self.bytes(["-t", "x", "-m", "x", "-P", "secret", "--quiet"]))
        #expect(silent.ours.status == 1)
        #expect(silent.ours.status == silent.theirs.status)
        #expect(silent.ours.stderr.isEmpty, "\(silent.ours.stderr)")
        #expect(silent.theirs.stderr.isEmpty)
        let loud = try await Self.sideBySide("pub", Self.bytes(["-t", "x", "-m", "x", "-k", "1", "--quiet"]))
        #expect(loud.ours.stderr == loud.theirs.stderr)
        #expect(!loud.ours.stderr.isEmpty)
    }
}
