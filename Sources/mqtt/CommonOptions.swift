import Mosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - CommonOptions

/// The options `mqtt pub`, `mqtt sub` and `mqtt rr` share: broker address, identity, session,
/// credentials, TLS / TLS-PSK, will, MQTT 5 properties, QoS and the diagnostics switches. Declared
/// once here and turned into an `MQTTConfiguration` by ``configuration()``.
struct CommonOptions {
    /// The command these options are for (`pub`, `sub`, `rr`): it names the defaults file
    /// (``ConfigFile``) and some error texts.
    enum Tool: String {
        case pub, sub, rr
    }

    /// The command (`pub` unless the command's options say otherwise).
    var tool = Tool.pub

    // MARK: Endpoint and session
    /// The broker's host name or address; with `--unix`, the socket's path.
    var host = "localhost"
    /// `nil`: 8883 with TLS or PSK options, 1883 otherwise (as mosquitto). 0 (only through
    /// `--unix`): a Unix socket at ``host``.
    var port: Int?
    /// `--proxy`: the SOCKS5 proxy to connect through.
    var proxy: ProxyURL?
    var bindAddress: String?
    /// `-i`, as given: checked once the command line is read, as mosquitto_new checks it.
    var clientID: Argument?
    /// `-I`: the client ID is this prefix and the process ID.
    var clientIDPrefix: Argument?
    var cleanSession = true
    var keepAliveSeconds = 60
    var protocolVersion = MQTTProtocolVersion.v3_1_1
    var noDelay = false
    var maxInflight: Int?
    /// `-x`: the MQTT 5 session expiry interval; `UInt32.max` never expires. `nil`: never with
    /// `-c`, else 0 (mosquitto's default).
    var sessionExpiry: UInt32?

    // MARK: MQTT 5 properties
    /// `-D`, for every packet.
    var properties = PropertyOptions()

    // MARK: Credentials
    /// `-u`, as given: checked once the command line is read (mosquitto_username_pw_set).
    var username: Argument?
    /// `-P`: bytes, sent as given (an MQTT password is binary data).
    var password: [UInt8]?

    // MARK: TLS
    var caFile: String?
    var caPath: String?
    var certFile: String?
    var keyFile: String?
    /// `--keyform`: only `pem` (the default) is supported; `engine` sets ``engineOption``.
    var keyForm: String?
    /// `--tls-engine` / `--tls-engine-kpass-sha1` / `--keyform engine`: the option that asked
    /// for an OpenSSL engine, refused once the command line is read.
    var engineOption: String?
    var ciphers: String?
    var tlsVersion: MQTTTLSVersion?
    var alpn: String?
    var insecure = false
    var useOSCertificates = false
    var psk: String?
    var pskIdentity: String?

    // MARK: Will
    var willTopic: String?
    var willPayload: [UInt8]?
    var willQoS: MQTTQoS?
    var willRetain = false

    // MARK: Messages and diagnostics
    /// `-q`: the publish QoS (pub) or the subscription QoS (sub).
    var qos = MQTTQoS.atMostOnce
    /// `-d`: print libmosquitto's log lines and a statistics line every 10 s to stdout.
    var debug = false
    /// `--stats`: print the statistics line every this many seconds (without `-d`'s log).
    var statsInterval: Int?
    /// `--quiet`: do not print run-time errors.
    var quiet = false
    /// `--no-reconnect`: end on a lost connection instead of reconnecting.
    var reconnect = true
}

// MARK: - Option table

extension CommonOptions {
    /// The shared options, in `--help` order. Each command lifts them into its own table.
    static var table: [OptionSpec<CommonOptions>] { table(defaultVersion: "mqttv311") }

    /// The shared options, with `-V`'s default as `--help` names it (`rr` defaults to `mqttv5`).
    static func table(defaultVersion: String) -> [OptionSpec<CommonOptions>] {
        [
            .value(["-h", "--host"], "HOST", noun: "host", "MQTT host to connect to. Defaults to localhost.") { $0.host = $1 },
            .value(["-p", "--port"], "PORT", noun: "port", "Network port. Defaults to 1883, or 8883 for MQTT over TLS.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.port = try ValueParser.port(value)
            },
            .value(["--unix"], "PATH", noun: "socket path", "Connect to the broker through the Unix socket at PATH instead of TCP.") {
                $0.host = $1
                $0.port = 0
            },
            .value(["--proxy"], "URL", noun: "proxy url", "SOCKS5 proxy: socks5h://[username[:password]@]host[:port] (port 1080 by default).") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.proxy = try ProxyURL(value)
            },
            .value(["-A"], "ADDRESS", noun: "address", "Bind the outgoing socket to this host/IP address.") { $0.bindAddress = $1 },
            .argument(["-i", "--id"], "ID", noun: "id", "Client id. Defaults to a random one.") { (options: inout CommonOptions, value: Argument) throws(CLIError) in
                guard options.clientIDPrefix == nil else { throw CLIError.usage("-i and -I argument cannot be used together.") }
                options.clientID = value
            },
            .argument(["-I", "--id-prefix"], "PREFIX", noun: "id prefix", "Client id: PREFIX followed by the process id (mosquitto's -I).") { (options: inout CommonOptions, value: Argument) throws(CLIError) in
                guard options.clientID == nil else { throw CLIError.usage("-i and -I argument cannot be used together.") }
                options.clientIDPrefix = value
            },
            .flag(["-c", "--disable-clean-session"], "Disable clean session (persistent client); requires -i.") { $0.cleanSession = false },
            .value(["-k", "--keepalive"], "SECONDS", noun: "keepalive", "Keep alive in seconds. Defaults to 60.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                guard let seconds = ValueParser.integer(value), (5...65_535).contains(seconds) else {
                    throw CLIError.usage("Invalid keepalive given, it must be between 5 and 65535 inclusive.", spaced: true)
                }
                options.keepAliveSeconds = seconds
            },
            .value(["-q", "--qos"], "QOS", noun: "QoS", "Quality of service level: 0, 1 or 2. Defaults to 0.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.qos = try ValueParser.qos(value)
            },
            .argument(["-u", "--username"], "USER", noun: "username", "Username for authentication.") { $0.username = $1 },
            .bytes(["-P", "--pw"], "PASSWORD", noun: "password", "Password for authentication (requires -u), byte for byte.") { $0.password = $1 },
            .value(["-V", "--protocol-version"], "VERSION", noun: "version", "MQTT version: mqttv5, mqttv311 or mqttv31 (5, 311, 31). Defaults to \(defaultVersion).") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.protocolVersion = try ValueParser.protocolVersion(value)
            },
            .values(["-D", "--property"], "COMMAND ID VALUE", "MQTT 5 property for COMMAND (connect, publish, subscribe, unsubscribe, disconnect, will): ID as mosquitto names it (content-type, ...); user-property takes NAME VALUE. Sets -V 5.") { (options: inout CommonOptions, values: inout OptionValues) throws(CLIError) in
                try options.properties.parse(&values)
                // As in mosquitto: `-D` makes the client an MQTT 5 client (a later -V still counts).
                options.protocolVersion = .v5
            },
            .value(["-x"], "SECONDS", noun: "session expiry interval", "MQTT 5 session expiry interval (ignored before v5): 0-4294967294, or -1/∞ never. Defaults to ∞ with -c, else 0.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.sessionExpiry = try ValueParser.sessionExpiry(value)
            },
            .flag(["--nodelay"], "Disable Nagle's algorithm.") { $0.noDelay = true },
            // As in mosquitto, for every command: sub and rr receive QoS 1/2 messages in flight too.
            .value(["-M"], "COUNT", missing: "-M argument given but max_inflight not specified.", "Maximum QoS 1/2 messages in flight. Defaults to 20.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.maxInflight = try ValueParser.positive(value, "Maximum inflight messages must be greater than 0.")
            },
            .flag(["-d", "--debug"], "Print debug messages (libmosquitto's log) to stdout.") { $0.debug = true },
            .value(["--stats"], "SECONDS", noun: "interval", "Print the statistics line (sent, acknowledged, pending, received, rates, reconnects) to stdout every SECONDS and at the end.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.statsInterval = try ValueParser.positive(value, "Invalid statistics interval \"\(value)\".")
            },
            .flag(["--quiet"], "Do not print run-time error messages.") { $0.quiet = true },
            .flag(["--no-reconnect"], "Exit on a lost connection instead of reconnecting (0.1 s to 5 s apart).") { $0.reconnect = false },
            .utf8(["--will-topic"], "TOPIC", noun: "will topic", "Topic of the client's will.", malformed: "Malformed UTF-8 in --will-topic argument.") {
                $0.willTopic = $1
            },
            .bytes(["--will-payload"], "PAYLOAD", noun: "will payload", "Payload of the will, byte for byte. Defaults to zero length.") { $0.willPayload = $1 },
            .value(["--will-qos"], "QOS", noun: "will QoS", "QoS of the will. Defaults to 0.") { (options: inout CommonOptions, value: String) throws(CLIError) in
                guard let number = ValueParser.integer(value), let qos = MQTTQoS(rawValue: number) else {
                    throw CLIError.usage("Invalid will QoS \(value).", spaced: true)
                }
                options.willQoS = qos
            },
            .flag(["--will-retain"], "Retain the will.") { $0.willRetain = true },
            .value(["--cafile"], "FILE", noun: "file", "File of trusted CA certificates (PEM); enables TLS.") { $0.caFile = $1 },
            .value(["--capath"], "DIR", noun: "path", "Directory of trusted CA certificates; enables TLS.") { $0.caPath = $1 },
            .value(["--cert"], "FILE", noun: "file", "Client certificate (PEM), with --key.") { $0.certFile = $1 },
            .value(["--key"], "FILE", noun: "file", "Client private key (PEM), with --cert.") { $0.keyFile = $1 },
            .value(["--keyform"], "FORM", noun: "keyform", "Form of --key: pem (the only one supported; engine keys are not).") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.keyForm = value
                if value.lowercased() == "engine" { options.engineOption = "--keyform engine" }
            },
            .value(["--tls-engine"], "ENGINE", noun: "engine_id", "OpenSSL engine: not supported (accepted to say so).") { (options: inout CommonOptions, _: String) throws(CLIError) in
                options.engineOption = "--tls-engine"
            },
            .value(["--tls-engine-kpass-sha1"], "SHA1", noun: "kpass sha1", "Engine key password hash: not supported (accepted to say so).") { (options: inout CommonOptions, _: String) throws(CLIError) in
                options.engineOption = "--tls-engine-kpass-sha1"
            },
            .value(["--ciphers"], "CIPHERS", noun: "ciphers", "OpenSSL cipher list.") { $0.ciphers = $1 },
            .value(["--tls-version"], "VERSION", noun: "version", "Minimum TLS version: tlsv1.3 or tlsv1.2 (default).") { (options: inout CommonOptions, value: String) throws(CLIError) in
                options.tlsVersion = try ValueParser.tlsVersion(value)
            },
            .value(["--tls-alpn"], "PROTOCOL", noun: "protocol", "ALPN protocol to offer.") { $0.alpn = $1 },
            .flag(["--tls-use-os-certs"], "Trust the OS's CA certificates; enables TLS.") { $0.useOSCertificates = true },
            .flag(["--insecure"], "Do not check that the server certificate names the host. Insecure.") { $0.insecure = true },
            .value(["--psk"], "HEX-KEY", noun: "key", "Pre-shared key in hexadecimal (no 0x); enables TLS-PSK.") { $0.psk = $1 },
            .value(["--psk-identity"], "IDENTITY", noun: "identity", "Client identity for TLS-PSK.") { $0.pskIdentity = $1 },
        ]
    }
}

// MARK: - -L

extension CommonOptions {
    /// `-L URL`, for a command whose topic (or filter) `setTopic` records: host, port, username,
    /// password and, with `mqtts://`, TLS with the system's CA certificates (see ``BrokerURL``).
    static func urlOption<Target>(
        _ common: WritableKeyPath<Target, CommonOptions>, setTopic: @escaping (inout Target, String) -> Void
    ) -> OptionSpec<Target> {
        .argument(["-L", "--url"], "URL", noun: "URL", "mqtt(s)://[username[:password]@]host[:port]/topic: host, port, credentials and topic in one.") { (target: inout Target, value: Argument) throws(CLIError) in
            let url = try BrokerURL(value)
            setTopic(&target, url.topic)
            target[keyPath: common].apply(url)
        }
    }

    /// What `-L` sets.
    private mutating func apply(_ url: BrokerURL) {
        host = url.host
        port = url.port
        if url.tls { useOSCertificates = true }
        if let username = url.username {
            self.username = username
            password = url.password
        }
    }
}

// MARK: - Building the configuration

extension CommonOptions {
    /// The port used: `-p`, else 8883 when TLS or PSK options are given, else 1883 (mosquitto's rule).
    var effectivePort: Int {
        port ?? ((caFile != nil || caPath != nil || psk != nil) ? 8883 : 1883)
    }

    /// The library configuration for these options, after mosquitto's consistency checks.
    ///
    /// TLS is on with `--cafile`, `--capath` or `--tls-use-os-certs`, and (as in mosquitto 2.0)
    /// when the port is 8883 with no other certificate options (then the OS's CA certificates are
    /// trusted). `--cert`/`--key`/`--insecure`/`--ciphers` alone do not turn TLS on. A connection
    /// lost after the first CONNACK is reestablished (as `mosquitto_sub` does), with QoS 1/2
    /// messages kept and resent, unless `--no-reconnect`; a first connect that fails still ends
    /// the command.
    ///
    /// - Throws: ``CLIError`` (usage) for inconsistent options.
    func configuration() throws(CLIError) -> MQTTConfiguration {
        try validate()
        var configuration = MQTTConfiguration(
            host: host,
            port: effectivePort,
            clientID: clientID?.text ?? clientIDPrefix.map { $0.text + String(getpid()) } ?? "",
            protocolVersion: protocolVersion,
            keepAlive: .seconds(keepAliveSeconds),
            cleanSession: cleanSession
        )
        // No -i: an empty client ID, which the broker assigns, as the mosquitto tools send.
        configuration.brokerAssignsClientID = true
        configuration.bindAddress = bindAddress
        if let proxy {
            configuration.socksProxy = MQTTSOCKS5Proxy(host: proxy.host, port: proxy.port, username: proxy.username, password: proxy.password)
        }
        configuration.tcpNoDelay = noDelay
        if let maxInflight { configuration.maxInflightMessages = maxInflight }
        if let username { configuration.credentials = MQTTCredentials(username: username.text, passwordBytes: password) }
        if let willTopic {
            configuration.will = MQTTWill(
                topic: willTopic, payload: willPayload ?? [], qos: willQoS ?? .atMostOnce, retain: willRetain, properties: properties.will
            )
        }
        if protocolVersion == .v5 {
            configuration.connectProperties = properties.connect
            if let expiry = effectiveSessionExpiry, expiry > 0 {
                configuration.connectProperties.sessionExpiryInterval = expiry
            }
        }
        if let psk, let pskIdentity {
            configuration.psk = MQTTPreSharedKey(identity: pskIdentity, hexKey: psk, ciphers: ciphers)
        } else if caFile != nil || caPath != nil || useOSCertificates || effectivePort == 8883 {
            configuration.tls = tlsConfiguration()
        }
        configuration.reconnect = reconnect ? .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .seconds(5)) : .disabled
        // A CLI waits as long as the connection lives (mosquitto has no such timeouts); with
        // --no-reconnect a lost connection fails pending operations at once, and keepalive
        // detects dead peers.
        configuration.operationTimeout = .seconds(24 * 3600)
        // Received messages wait here while stdout is slow; a bounded buffer would end `sub`.
        configuration.messageBufferSize = 1 << 20
        configuration.eventLoopGroup = try Self.eventLoopGroup()
        return configuration
    }

    /// The network driver: one event-loop thread rather than the client's own `select()` loop,
    /// which wakes once per queued packet through libmosquitto's socket pair; with the event
    /// loop a burst of publishes costs one wake-up, or none when the publishing task writes
    /// them itself (measured in scripts/cli-throughput.sh).
    private static func eventLoopGroup() throws(CLIError) -> MQTTEventLoopGroup {
        do {
            return try MQTTEventLoopGroup(numberOfThreads: 1, numberOfConnectThreads: 1)
        } catch {
            throw CLIError(error)
        }
    }

    /// The session expiry interval `-x` or `-c` asks for on an MQTT 5 connection (mosquitto: `-c`
    /// without `-x` never expires); `nil` when neither applies. Not used with MQTT 3.1/3.1.1,
    /// where mosquitto ignores `-x`.
    private var effectiveSessionExpiry: UInt32? {
        guard protocolVersion == .v5 else { return nil }
        if let sessionExpiry { return sessionExpiry }
        // `-D connect session-expiry-interval` then sets it instead of `-c`.
        return cleanSession || properties.hasConnectSessionExpiry ? nil : UInt32.max
    }

    /// The certificate-based TLS settings.
    private func tlsConfiguration() -> MQTTTLSConfiguration {
        // `--tls-use-os-certs` with a CA file trusts both (the library uses the OS directory
        // only when neither file nor directory is given).
        let directory = caPath ?? (useOSCertificates && caFile != nil ? "/etc/ssl/certs" : nil)
        var tls = MQTTTLSConfiguration(caFile: caFile, caDirectory: directory, certificateFile: certFile, keyFile: keyFile)
        tls.insecureSkipHostnameVerification = insecure
        if let tlsVersion { tls.minimumVersion = tlsVersion }
        tls.ciphers = ciphers
        tls.alpn = alpn
        return tls
    }

    /// mosquitto's checks of option combinations, with its error texts where it has one.
    private func validate() throws(CLIError) {
        if properties.isGiven && protocolVersion != .v5 {
            throw CLIError.usage("MQTT 5 properties (-D) cannot be sent with MQTT \(protocolVersion): remove -V or use -V 5.")
        }
        // As mosquitto: a prefix (-I) does not count as a client id for a lasting session.
        if effectiveSessionExpiry == UInt32.max && (clientID == nil || clientIDPrefix != nil) {
            throw CLIError.usage("You must provide a client id if you are using an infinite session expiry interval.")
        }
        if !cleanSession && (clientID == nil || clientIDPrefix != nil) {
            throw CLIError.usage("You must provide a client id if you are using the -c option.")
        }
        if let sessionExpiry, sessionExpiry > 0, protocolVersion == .v5, properties.hasConnectSessionExpiry {
            throw CLIError.usage(verbatim: "Error in CONNECT properties: Duplicate property in property list")
        }
        // mosquitto_new refuses an empty id (MOSQ_ERR_INVAL) and one that is not MQTT UTF-8, a
        // prefix included (mosquitto then prints nothing at all; `mqtt` says why). An empty
        // prefix is fine: the id is then the process ID.
        if let clientID, clientID.bytes.isEmpty || !clientID.isMQTTUTF8 {
            throw CLIError.setting(tool == .pub ? "Invalid id." : "Invalid id and/or clean_session.")
        }
        if let clientIDPrefix, !clientIDPrefix.isMQTTUTF8 {
            throw CLIError.setting(tool == .pub ? "Invalid id." : "Invalid id and/or clean_session.")
        }
        // mosquitto_username_pw_set refuses a password without a username, and a username that
        // is not MQTT UTF-8: mosquitto's text, without the usage pointer.
        if (password != nil && username == nil) || username?.isMQTTUTF8 == false {
            throw CLIError.setting("Problem setting username and/or password.")
        }
        if willTopic == nil {
            if willPayload != nil { throw CLIError.usage("Will payload given, but no will topic given.") }
            if willRetain { throw CLIError.usage("Will retain given, but no will topic given.") }
        } else if let willTopic {
            do {
                try MQTTTopic.validatePublishTopic(willTopic)
            } catch {
                throw CLIError.usage("Invalid will topic '\(willTopic)', does it contain '+' or '#'?")
            }
        }
        if (certFile == nil) != (keyFile == nil) {
            throw CLIError.usage("Both certfile and keyfile must be provided if one of them is set.")
        }
        if keyForm != nil && keyFile == nil {
            throw CLIError.usage("If keyform is set, keyfile must be also specified.")
        }
        if let keyForm, !["pem", "engine"].contains(keyForm.lowercased()) {
            // mosquitto_string_option(MOSQ_OPT_TLS_KEYFORM) refuses it: mosquitto's text.
            throw CLIError.setting("Problem setting key form, it must be one of 'pem' or 'engine'.")
        }
        if let engineOption {
            throw CLIError.setting("\(engineOption): OpenSSL engines are not supported by mqtt (deprecated in OpenSSL 3); use a PEM key file.")
        }
        if psk != nil && pskIdentity == nil {
            throw CLIError.usage("--psk-identity required if --psk used.")
        }
        if psk != nil && (caFile != nil || caPath != nil || useOSCertificates) {
            throw CLIError.usage("Only one of --psk or --cafile/--capath may be used at once.")
        }
        // The library reports an unreadable TLS file as a generic invalid argument; name it.
        let files: [(flag: String, path: String?)] = [("--cafile", caFile), ("--capath", caPath), ("--cert", certFile), ("--key", keyFile)]
        for (flag, path) in files {
            guard let path, access(path, R_OK) != 0 else { continue }
            throw CLIError.setting("Problem setting TLS options: cannot read \(flag) \"\(path)\" (\(systemErrorText(errno))).")
        }
    }
}
