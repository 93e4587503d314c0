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
            configuration.clientID = generateClientID()
        }
        if configuration.clientID.utf8.contains(0) { throw invalid("client ID contains NUL") }
        if configuration.clientID.utf8.count > 65_535 { throw invalid("client ID longer than 65535 bytes") }
        if configuration.protocolVersion == .v3_1, configuration.clientID.utf8.count > 23 {
            throw invalid("MQTT 3.1 allows client IDs of 1 to 23 bytes")
        }
        if configuration.tls != nil, configuration.psk != nil { throw invalid("TLS certificates and TLS-PSK are mutually exclusive") }
        if configuration.protocolVersion != .v5, !configuration.connectProperties.isEmpty || !(configuration.will?.properties.isEmpty ?? true) {
            throw invalid("MQTT 5 properties need protocolVersion .v5")
        }
        // Packet identifiers are 16 bits: more pending publishes than IDs would reuse one.
        guard (1...65_535).contains(configuration.maxPendingPublishes) else { throw invalid("maxPendingPublishes must be 1...65535") }
        guard configuration.messageBufferSize >= 1 else { throw invalid("messageBufferSize must be at least 1") }
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
