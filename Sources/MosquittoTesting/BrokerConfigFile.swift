// MARK: - Broker directory layout

/// Where a local broker's files live inside its temporary directory.
struct BrokerLayout: Sendable {
    /// The broker's private temporary directory (no trailing slash).
    let directory: String

    var configFile: String { "\(directory)/mosquitto.conf" }
    var logFile: String { "\(directory)/mosquitto.log" }
    /// The broker process's redirected stdout and stderr (errors printed before logging is set up land here).
    var outputFile: String { "\(directory)/mosquitto.out" }
    var passwordFile: String { "\(directory)/passwd" }
    var aclFile: String { "\(directory)/acl" }
    var dynamicSecurityFile: String { "\(directory)/dynamic-security.json" }
    var pskFile: String { "\(directory)/psk" }
    /// The OpenSSL config named by `OPENSSL_CONF` when the configuration limits the TLS version.
    var openSSLConfigFile: String { "\(directory)/openssl-broker.cnf" }
    /// mosquitto requires `persistence_location` to end with a slash.
    var persistenceLocation: String { "\(directory)/" }
    var persistenceFile: String { "mosquitto.db" }
}

// MARK: - Config file

/// Writes the mosquitto 2.0 config file and the password and ACL files it refers to.
enum BrokerConfigFile {
    /// Writes the password file (with `mosquitto_passwd`) and the ACL file when the configuration asks for them.
    /// - Parameters:
    ///   - configuration: The broker configuration.
    ///   - layout: Where the files go.
    /// - Throws: `MosquittoTestingError` if `mosquitto_passwd` is missing or fails, or a file cannot be written.
    static func writeSupportFiles(for configuration: MosquittoBrokerConfiguration, layout: BrokerLayout) async throws {
        if let patterns = configuration.allowedSubscriptions {
            _ = try DynamicSecurity.pluginPath()
            try await DynamicSecurity.writeConfiguration(
                users: configuration.users, patterns: patterns, to: layout.dynamicSecurityFile, scratchDirectory: layout.directory
            )
        } else if !configuration.users.isEmpty {
            guard
                let passwd = ExecutableSearch.find(
                    named: "mosquitto_passwd",
                    environmentVariable: "MOSQUITTO_PASSWD_BINARY",
                    preferred: ["/usr/bin/mosquitto_passwd"]
                )
            else {
                throw MosquittoTestingError("mosquitto_passwd not found; install the `mosquitto` package")
            }
            // `-c` creates the file with the first user; `mosquitto_passwd` rewrites it, so runs are sequential.
            for (index, user) in configuration.users.keys.sorted().enumerated() {
                let create = index == 0 ? ["-c"] : []
                try await ChildProcess.run(
                    executable: passwd, arguments: create + ["-b", layout.passwordFile, user, configuration.users[user] ?? ""]
                )
            }
        }
        if case .preSharedKey(let identity, let hexKey) = configuration.tls {
            try FileSystem.writeText("\(identity):\(hexKey)\n", to: layout.pskFile)
        }
        if let aclRules = configuration.aclRules {
            try FileSystem.writeText(aclRules.hasSuffix("\n") ? aclRules : aclRules + "\n", to: layout.aclFile)
        }
        if let maximum = configuration.maximumTLSVersion {
            try FileSystem.writeText(maximum.openSSLConfigLimitingMaximum, to: layout.openSSLConfigFile)
        }
    }

    /// The environment variables the broker process needs on top of ours (the same for every launch, restarts included).
    /// - Parameters:
    ///   - configuration: The broker configuration.
    ///   - layout: Where the files go.
    /// - Returns: `OPENSSL_CONF` when the configuration limits the TLS version, else nothing.
    static func environment(for configuration: MosquittoBrokerConfiguration, layout: BrokerLayout) -> [String: String] {
        configuration.maximumTLSVersion == nil ? [:] : ["OPENSSL_CONF": layout.openSSLConfigFile]
    }

    /// Writes the config file for a listener on 127.0.0.1:`port`.
    /// - Parameters:
    ///   - configuration: The broker configuration.
    ///   - port: The listener's port.
    ///   - layout: Where the files go.
    ///   - certificates: The generated certificates, required when `configuration.tls` is set.
    /// - Throws: `MosquittoTestingError` if the file cannot be written.
    static func write(
        _ configuration: MosquittoBrokerConfiguration,
        port: Int,
        layout: BrokerLayout,
        certificates: TestCertificates?
    ) throws {
        let text = render(configuration, port: port, layout: layout, certificates: certificates)
        try FileSystem.writeText(text, to: layout.configFile)
    }

    /// The config file text (mosquitto 2.0 syntax).
    static func render(
        _ configuration: MosquittoBrokerConfiguration,
        port: Int,
        layout: BrokerLayout,
        certificates: TestCertificates?
    ) -> String {
        var lines = [
            "# Generated by MosquittoTesting.",
            "per_listener_settings false",
            // Without this, mosquitto 2.0 started as root drops to user `mosquitto`, which cannot read our files.
            // It has no effect when not started as root.
            "user root",
            "",
            "# Authentication and authorization",
            "allow_anonymous \(configuration.allowAnonymous)",
        ]
        if configuration.allowedSubscriptions != nil, let plugin = try? DynamicSecurity.pluginPath() {
            lines += ["plugin \(plugin)", "plugin_opt_config_file \(layout.dynamicSecurityFile)"]
        } else if !configuration.users.isEmpty {
            lines.append("password_file \(layout.passwordFile)")
        }
        if configuration.aclRules != nil {
            lines.append("acl_file \(layout.aclFile)")
        }

        lines += ["", "# Persistence"]
        if configuration.persistence {
            lines += [
                "persistence true",
                "persistence_location \(layout.persistenceLocation)",
                "persistence_file \(layout.persistenceFile)",
                // Save every second so that even kill() loses at most a second of state.
                "autosave_interval 1",
            ]
        } else {
            lines.append("persistence false")
        }

        lines += [
            "",
            "# Logging",
            "log_dest file \(layout.logFile)",
            "log_type all",
            "log_timestamp true",
            "connection_messages true",
            "",
            "# Limits: let tests queue many QoS 1/2 messages for offline clients.",
            "max_queued_messages 100000",
            "",
            "# Listener (loopback only)",
            "listener \(port) \(LoopbackNetwork.host)",
            // mosquitto 2.0's default, spelled out: the only limit on connections is the process's
            // open-file limit (`MosquittoBrokerConfiguration.maximumOpenFiles`).
            "max_connections -1",
        ]

        if case .preSharedKey = configuration.tls {
            lines += ["psk_hint swift-mosquitto-tests", "psk_file \(layout.pskFile)", "use_identity_as_username false"]
        } else if let tls = configuration.tls, let certificates {
            let server: (certificate: String, key: String) =
                switch tls {
                case .serverAuthenticationWithMismatchedHostname:
                    (certificates.mismatchedServerCertificate, certificates.mismatchedServerKey)
                case .serverAuthenticationWithExpiredCertificate:
                    (certificates.expiredServerCertificate, certificates.expiredServerKey)
                default:
                    (certificates.serverCertificate, certificates.serverKey)
                }
            lines += [
                "cafile \(certificates.caFile)",
                "certfile \(server.certificate)",
                "keyfile \(server.key)",
                "tls_version \(configuration.minimumTLSVersion.mosquittoName)",
            ]
            if tls == .mutual {
                lines += ["require_certificate true", "use_identity_as_username false"]
            }
        }

        if !configuration.extraConfigLines.isEmpty {
            lines += ["", "# Extra lines"] + configuration.extraConfigLines
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
