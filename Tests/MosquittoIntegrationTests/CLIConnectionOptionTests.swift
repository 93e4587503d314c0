import Foundation
import Mosquitto
import MosquittoTesting
import Testing

/// The mosquitto tools' ways of saying where the broker is and what to send: the defaults file,
/// `-L URL`, `--unix`, `--proxy`, `--repeat`; side by side with Debian's mosquitto 2.0.11 tools.
@Suite("CLI connection options and defaults files", .timeLimit(.minutes(2)))
struct CLIConnectionOptionTests {
    /// Runs `mosquitto_<command>` with `arguments` and `environment` added.
    static func mosquitto(_ command: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> CLITests.Run {
        let tool = try Interop.requireExecutable("mosquitto_\(command)", package: "mosquitto-clients")
        let child = try ChildProcess(executable: tool, arguments: arguments, environment: environment)
        guard let status = try await child.wait(timeout: .seconds(20)) else {
            child.kill()
            throw InteropError("mosquitto_\(command) did not finish within 20 s")
        }
        return CLITests.Run(
            status: status.code ?? 128 + (status.signal ?? 0), stdout: child.standardOutput,
            stderr: child.standardError.replacingOccurrences(of: "mosquitto_\(command)", with: "mqtt \(command)")
        )
    }

    /// A new empty directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mqtt-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test("the defaults file ($XDG_CONFIG_HOME/mosquitto_pub, else ~/.config/mosquitto_pub) is read as mosquitto_pub reads it: comments, CRLF, leading blanks, a value with spaces, the command line after it")
    func defaultsFile() async throws {
        try await withMosquittoBroker { broker in
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let topic = uniqueTopic()
            let lines = "# a comment: -Z would be an error\n-h \(broker.host)\r\n   -p \(broker.port)\n-m hello  world\n\n-q 1\n-t wrong/topic\n"
            try Data(lines.utf8).write(to: directory.appendingPathComponent("mosquitto_pub"))
            let subscriber = try await connectedClient(broker)
            let messages = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            // The command line's -t comes after the file's and wins.
            let ours = try await CLITests.mqtt(["pub", "-t", topic], environment: ["XDG_CONFIG_HOME": directory.path])
            #expect(ours.status == 0, "\(ours.stderr)")
            let theirs = try await Self.mosquitto("pub", ["-t", topic], environment: ["XDG_CONFIG_HOME": directory.path])
            #expect(theirs.status == 0, "\(theirs.stderr)")
            let received = try await messages.waitFor(2)
            #expect(received.map(\.payloadString) == ["hello  world", "hello  world"])
            #expect(received.map(\.qos) == [.atLeastOnce, .atLeastOnce])

            // Without XDG_CONFIG_HOME: $HOME/.config/mosquitto_sub.
            let home = directory.appendingPathComponent("home")
            try FileManager.default.createDirectory(at: home.appendingPathComponent(".config"), withIntermediateDirectories: true)
            try Data("-p \(broker.port)\n-C 1\n-W 30\n-v\n".utf8).write(to: home.appendingPathComponent(".config/mosquitto_sub"))
            let id = uniqueClientID()
            let sub = try startCommand(["-u", "XDG_CONFIG_HOME", "HOME=\(home.path)", mqttExecutablePath(), "sub", "-h", broker.host, "-t", topic, "-i", id], executable: "/usr/bin/env")
            try await waitForSubscription(broker, clientID: id, filter: topic)
            try await subscriber.publish(to: topic, payload: "from the library", qos: .atLeastOnce)
            let status = try await sub.wait(timeout: .seconds(30))
            #expect(status?.code == 0, "\(sub.standardError)")
            #expect(sub.standardOutput == "\(topic) from the library\n")
        }
    }

    @Test("an error in the defaults file is reported as on the command line, byte for byte as mosquitto's; --help there prints the usage")
    func defaultsFileErrors() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("mosquitto_sub")
        for contents in ["-k 2\n", "-Z\n", "-t\n", "-D connect user-property a b\n", "-q 3\n"] {
            try Data(contents.utf8).write(to: file)
            let environment = ["XDG_CONFIG_HOME": directory.path]
            let ours = try await CLITests.mqtt(["sub", "-t", "x", "-p", "1"], environment: environment)
            let theirs = try await Self.mosquitto("sub", ["-t", "x", "-p", "1"], environment: environment)
            #expect(ours.status == 1, "\(contents): \(ours.stderr)")
            #expect(ours.status == theirs.status, "\(contents)")
            #expect(ours.stderr == theirs.stderr, "\(contents): ours \(ours.stderr)")
        }
        try Data("--help\n".utf8).write(to: file)
        let help = try await CLITests.mqtt(["sub", "-t", "x", "-p", "1"], environment: ["XDG_CONFIG_HOME": directory.path])
        #expect(help.status == 0)
        #expect(help.stdout.hasPrefix("mqtt sub: "), "\(help.stdout)")
    }

    /// A defaults file cut as `fgets(line, 1024, ...)` cuts it, checked without a process.
    @Test("a defaults line longer than 1,023 bytes is read as several lines, as mosquitto's fgets reads it")
    func longDefaultsLines() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // 1,023 bytes of "-m xxx...", then "-Z" as the rest of the same line: an unknown option.
        let line = "-m " + String(repeating: "x", count: 1_020) + "-Z\n"
        try Data(line.utf8).write(to: directory.appendingPathComponent("mosquitto_pub"))
        let environment = ["XDG_CONFIG_HOME": directory.path]
        let ours = try await CLITests.mqtt(["pub", "-t", "x", "-p", "1"], environment: environment)
        let theirs = try await Self.mosquitto("pub", ["-t", "x", "-p", "1"], environment: environment)
        #expect(ours.stderr.hasPrefix("Error: Unknown option '-Z'."), "\(ours.stderr)")
        #expect(ours.stderr == theirs.stderr)
        #expect(ours.status == theirs.status)
    }

    @Test("-L mqtt://user:password@host:port/topic publishes and subscribes as -h/-p/-u/-P/-t would; its errors are mosquitto's")
    func urlOption() async throws {
        try await withMosquittoBroker(.password(users: ["alice": "s3:cret"])) { broker in
            let topic = uniqueTopic()
            // The password runs from the first colon to the first @ (it cannot hold an @).
            let url = "mqtt://alice:s3:cret@\(broker.host):\(broker.port)/\(topic)"
            let id = uniqueClientID()
            let sub = try startCommand(["sub", "-L", url, "-C", "2", "-W", "30", "-i", id])
            try await waitForSubscription(broker, clientID: id, filter: topic)
            let ours = try await CLITests.mqtt(["pub", "-L", url, "-m", "ours", "-q", "1"])
            #expect(ours.status == 0, "\(ours.stderr)")
            let theirs = try await Self.mosquitto("pub", ["-L", url, "-m", "theirs", "-q", "1"])
            #expect(theirs.status == 0, "\(theirs.stderr)")
            let status = try await sub.wait(timeout: .seconds(30))
            #expect(status?.code == 0, "\(sub.standardError)")
            #expect(sub.standardOutput == "ours\ntheirs\n")
            // A wrong password in the URL is refused like -P.
            let refused = try await CLITests.mqtt(["pub", "-L", "mqtt://alice:wrong@\(broker.host):\(broker.port)/\(topic)", "-m", "x"])
            #expect(refused.status == 5, "\(refused.stderr)")
        }
        for url in ["http://host/topic", "mqtt://host", "mqtt://host/a/#"] {
            let ours = try await CLITests.mqtt(["pub", "-L", url, "-m", "x"])
            let theirs = try await Self.mosquitto("pub", ["-L", url, "-m", "x"])
            #expect(ours.status == 1, "\(url): \(ours.stderr)")
            #expect(ours.status == theirs.status, "\(url)")
            #expect(CLITests.lines(ours.stderr) == CLITests.lines(theirs.stderr), "\(url): ours \(ours.stderr)")
        }
    }

    @Test("--repeat 3 --repeat-delay 0.3 publishes the message three times, each at least 0.3 s after the previous one was acknowledged; its errors are mosquitto's")
    func repeatOption() async throws {
        try await withMosquittoBroker { broker in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let messages = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            let start = ContinuousClock.now
            let run = try await CLITests.mqtt(["pub", "-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-m", "again", "-q", "1", "--repeat", "3", "--repeat-delay", "0.3"])
            let elapsed = ContinuousClock.now - start
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try await messages.waitFor(3).map(\.payloadString) == ["again", "again", "again"])
            #expect(elapsed >= .milliseconds(600), "\(elapsed)")
        }
        for arguments in [["--repeat", "0"], ["--repeat", "x"], ["--repeat-delay", "-1"], ["--repeat"]] {
            let ours = try await CLITests.mqtt(["pub", "-t", "x", "-m", "x", "-p", "1"] + arguments)
            let theirs = try await Self.mosquitto("pub", ["-t", "x", "-m", "x", "-p", "1"] + arguments)
            #expect(ours.status == 1)
            #expect(ours.status == theirs.status, "\(arguments)")
            #expect(ours.stderr == theirs.stderr, "\(arguments): ours \(ours.stderr)")
        }
    }

    @Test("--unix PATH connects through the broker's Unix socket: pub and sub, and mosquitto_pub alike")
    func unixSocket() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("mqtt.sock").path
        try await withMosquittoBroker(.init(extraConfigLines: ["listener 0 \(socket)"])) { broker in
            let topic = uniqueTopic()
            let id = uniqueClientID()
            let sub = try startCommand(["sub", "--unix", socket, "-t", topic, "-C", "2", "-W", "30", "-i", id])
            try await waitForSubscription(broker, clientID: id, filter: topic)
            let ours = try await CLITests.mqtt(["pub", "--unix", socket, "-t", topic, "-m", "ours", "-q", "1"])
            #expect(ours.status == 0, "\(ours.stderr)")
            let theirs = try await Self.mosquitto("pub", ["--unix", socket, "-t", topic, "-m", "theirs", "-q", "1"])
            #expect(theirs.status == 0, "\(theirs.stderr)")
            let status = try await sub.wait(timeout: .seconds(30))
            #expect(status?.code == 0, "\(sub.standardError)")
            #expect(sub.standardOutput == "ours\ntheirs\n")
        }
        let missing = try await CLITests.mqtt(["pub", "--unix", socket, "-t", "x", "-m", "x"])
        let theirs = try await Self.mosquitto("pub", ["--unix", socket, "-t", "x", "-m", "x"])
        #expect(missing.status == theirs.status)
        #expect(missing.stderr == theirs.stderr, "ours \(missing.stderr)")
    }

    @Test("--keyform pem works over mutual TLS; its errors are mosquitto's; OpenSSL engines (--tls-engine, --tls-engine-kpass-sha1, --keyform engine) are refused with one line saying so")
    func keyFormAndEngines() async throws {
        try await withMosquittoBroker(.mutualTLS) { broker in
            let files = try #require(broker.certificates)
            let tls = ["-h", "localhost", "-p", "\(broker.port)", "--cafile", files.caFile, "--cert", files.clientCertificate, "--key", files.clientKey]
            let run = try await CLITests.mqtt(["pub"] + tls + ["-t", uniqueTopic(), "-m", "x", "--keyform", "PEM"])
            #expect(run.status == 0, "\(run.stderr)")
            for extra in [["--keyform", "der"], ["--tls-engine"], ["--keyform"]] {
                let ours = try await CLITests.mqtt(["pub"] + tls + ["-t", "x", "-m", "x"] + extra)
                let theirs = try await Self.mosquitto("pub", tls + ["-t", "x", "-m", "x"] + extra)
                #expect(ours.status == 1, "\(extra): \(ours.stderr)")
                #expect(ours.status == theirs.status, "\(extra)")
                #expect(ours.stderr == theirs.stderr, "\(extra): ours \(ours.stderr)")
            }
            for extra in [["--tls-engine", "pkcs11"], ["--tls-engine-kpass-sha1", String(repeating: "ab", count: 20)], ["--keyform", "engine"]] {
                let ours = try await CLITests.mqtt(["pub"] + tls + ["-t", "x", "-m", "x"] + extra)
                #expect(ours.status == 1)
                #expect(ours.stderr == "Error: \(extra[0] == "--keyform" ? "--keyform engine" : extra[0]): OpenSSL engines are not supported by mqtt (deprecated in OpenSSL 3); use a PEM key file.\n", "\(ours.stderr)")
            }
        }
        let missingKey = try await CLITests.mqtt(["pub", "-t", "x", "-m", "x", "--keyform", "pem"])
        let theirs = try await Self.mosquitto("pub", ["-t", "x", "-m", "x", "--keyform", "pem"])
        #expect(missingKey.stderr == theirs.stderr, "ours \(missingKey.stderr)")
        #expect(missingKey.stderr.hasPrefix("Error: If keyform is set, keyfile must be also specified."))
    }

    @Test("--proxy socks5h://user:password@host:port tunnels through a SOCKS5 proxy (%25, %3A and %40 decoded in the credentials); its errors are mosquitto's")
    func proxyOption() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try SOCKS5Proxy(credentials: (username: "u:1", password: "p%@x"))
            defer { proxy.stop() }
            let topic = uniqueTopic()
            let subscriber = try await connectedClient(broker)
            let messages = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))
            let url = "socks5h://u%3A1:p%25%40x@127.0.0.1:\(proxy.port)"
            let run = try await CLITests.mqtt(["pub", "--proxy", url, "-h", broker.host, "-p", "\(broker.port)", "-t", topic, "-m", "tunnelled", "-q", "1"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(try await messages.waitFor(1).map(\.payloadString) == ["tunnelled"])
            #expect(proxy.usernames == ["u:1"])
            #expect(proxy.requests == [.init(command: 1, addressType: 1, host: broker.host, port: broker.port)], "\(proxy.requests)")
        }
        for url in ["http://127.0.0.1:1080", "socks5h://", "socks5h://h:0", "socks5h://h:70000"] {
            let ours = try await CLITests.mqtt(["pub", "-t", "x", "-m", "x", "--proxy", url])
            let theirs = try await Self.mosquitto("pub", ["-t", "x", "-m", "x", "--proxy", url])
            #expect(ours.status == 1, "\(url): \(ours.stderr)")
            #expect(ours.status == theirs.status, "\(url)")
            #expect(CLITests.lines(ours.stderr) == CLITests.lines(theirs.stderr), "\(url): ours \(ours.stderr)")
        }
    }
}
