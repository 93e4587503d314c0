// MARK: - External broker

/// An already running broker named by `MQTT_TEST_BROKER_HOST` / `MQTT_TEST_BROKER_PORT`.
struct ExternalBroker: Sendable, Equatable {
    /// The variable naming the external broker's host; when set, `MosquittoBroker.start(.anonymous)` uses it.
    static let hostVariable = "MQTT_TEST_BROKER_HOST"
    /// The variable naming the external broker's port (default 1883).
    static let portVariable = "MQTT_TEST_BROKER_PORT"
    /// The MQTT port used when `MQTT_TEST_BROKER_PORT` is unset.
    static let defaultPort = 1883

    let host: String
    let port: Int

    /// Reads the external broker from the environment.
    /// - Throws: `MosquittoTestingError` if `MQTT_TEST_BROKER_PORT` is not a valid port number.
    /// - Returns: The external broker, or `nil` when `MQTT_TEST_BROKER_HOST` is unset or empty.
    static func fromEnvironment() throws -> ExternalBroker? {
        guard let host = Environment.value(hostVariable) else { return nil }
        guard let portText = Environment.value(portVariable) else {
            return ExternalBroker(host: host, port: defaultPort)
        }
        guard let port = Int(portText.trimmingWhitespace()), (1 ... 65535).contains(port) else {
            throw MosquittoTestingError("\(portVariable)=\(portText) is not a valid TCP port")
        }
        return ExternalBroker(host: host, port: port)
    }
}
