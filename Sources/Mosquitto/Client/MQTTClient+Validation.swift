// MARK: - Configuration checks

extension MQTTClient {
    /// Generates a client ID: `swift-mqtt-` and 12 random hex digits (23 bytes, valid for 3.1).
    static func generateClientID() -> String {
        let digits = (0..<12).map { _ in String(UInt8.random(in: 0..<16), radix: 16) }
        return "swift-mqtt-" + digits.joined()
    }

    /// Refuses a libmosquitto older than ``MQTTLibraryVersion/minimumSupported``.
    static func checkLibrary(_ version: MQTTLibraryVersion) throws(MQTTError) {
        guard version >= .minimumSupported else {
            throw MQTTError(
                .notSupported, operation: .configure,
                detail: "libmosquitto \(version) is loaded; swift-mosquitto needs \(MQTTLibraryVersion.minimumSupported) or later"
            )
        }
    }

    /// The limits `mosquitto_socks5_set` and the SOCKS5 messages impose (RFC 1928, RFC 1929), checked
    /// here so that each has its own message (libmosquitto answers all with `MOSQ_ERR_INVAL`).
    static func validate(_ proxy: MQTTSOCKS5Proxy, brokerHost: String, brokerPort: Int) throws(MQTTError) {
        func invalid(_ detail: String) -> MQTTError {
            MQTTError(.invalidConfiguration, operation: .configure, detail: "socksProxy: \(detail)")
        }
        guard !proxy.host.isEmpty, proxy.host.utf8.count <= 256 else { throw invalid("the proxy host must be 1 to 256 bytes") }
        guard (1...65_535).contains(proxy.port) else { throw invalid("port \(proxy.port) is out of range (1...65535)") }
        if let username = proxy.username {
            guard (1...255).contains(username.utf8.count) else { throw invalid("the username must be 1 to 255 bytes") }
        } else if proxy.password != nil {
            throw invalid("a password needs a username")
        }
        if let password = proxy.password, password.utf8.count > 255 { throw invalid("the password must be at most 255 bytes") }
        guard brokerPort != 0 else { throw invalid("a Unix socket (port 0) cannot be reached through a proxy") }
        guard brokerHost.utf8.count <= 255 else { throw invalid("the broker host must be at most 255 bytes to be sent to the proxy") }
    }

    static func validate(_ configuration: inout MQTTConfiguration) throws(MQTTError) {
        func invalid(_ detail: String) -> MQTTError {
            MQTTError(.invalidConfiguration, operation: .configure, detail: detail)
        }
        try checkLibrary(libraryVersion)
        let keepAlive = configuration.keepAlive
        guard keepAlive == .zero || (keepAlive >= .seconds(5) && keepAlive <= .seconds(65_535)) else {
            throw invalid("keepalive must be 0 or 5...65535 seconds")
        }
        guard (0...65_535).contains(configuration.port) else { throw invalid("port \(configuration.port) is out of range") }
        guard !configuration.host.isEmpty else { throw invalid("empty host") }
        if configuration.clientID.isEmpty {
            guard configuration.cleanSession else {
                throw invalid("a persistent session (cleanSession false) needs a client ID")
            }
            if !configuration.brokerAssignsClientID {
                configuration.clientID = generateClientID()
            }
        }
        if configuration.clientID.utf8.contains(0) { throw invalid("client ID contains NUL") }
        if configuration.clientID.utf8.count > 65_535 { throw invalid("client ID longer than 65535 bytes") }
        if configuration.protocolVersion == .v3_1, configuration.clientID.utf8.count > 23 {
            throw invalid("MQTT 3.1 allows client IDs of 1 to 23 bytes")
        }
        if let password = configuration.credentials?.passwordBytes {
            // libmosquitto takes the password as a C string: a NUL would cut it short.
            if password.contains(0) { throw invalid("the password contains a NUL byte") }
            if password.count > 65_535 { throw invalid("the password is longer than 65535 bytes") }
        }
        if configuration.tls != nil, configuration.psk != nil { throw invalid("TLS certificates and TLS-PSK are mutually exclusive") }
        if let proxy = configuration.socksProxy {
            try validate(proxy, brokerHost: configuration.host, brokerPort: configuration.port)
        }
        if configuration.protocolVersion != .v5, !configuration.connectProperties.isEmpty || !(configuration.will?.properties.isEmpty ?? true) {
            throw invalid("MQTT 5 properties need protocolVersion .v5")
        }
        // Packet identifiers are 16 bits: more pending publishes than IDs would reuse one.
        guard (1...65_535).contains(configuration.maxPendingPublishes) else { throw invalid("maxPendingPublishes must be 1...65535") }
        guard configuration.messageBufferSize >= 1 else { throw invalid("messageBufferSize must be at least 1") }
        guard (1...1_024).contains(configuration.packetsPerRead) else { throw invalid("packetsPerRead must be 1...1024") }
        guard configuration.maxInflightMessages >= 0 else { throw invalid("maxInflightMessages must not be negative") }
        if let will = configuration.will {
            do {
                try MQTTTopic.validatePublishTopic(will.topic)
            } catch {
                throw invalid("will topic: \(error.detail ?? "invalid")")
            }
            guard will.payload.count <= maximumPayloadSize else { throw invalid("will payload too large") }
        }
    }
}
