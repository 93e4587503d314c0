import Mosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `mqtt-soak exit-on-message`: subscribes, and on the first message prints its topic and exits
/// the process immediately (no DISCONNECT, no flush of the client). What reaches the peer is
/// what the library had written by the time the message was handed to the application: the
/// acknowledgement of a QoS 1/2 message must be among it.
///
/// - Throws: `MQTTError` when connecting or subscribing fails. If no message arrives within
///   30 s, SIGALRM ends the process.
func exitOnFirstMessage(_ options: ExitOnMessageOptions) async throws {
    alarm(30)
    var configuration = MQTTConfiguration(host: "127.0.0.1", port: options.port, clientID: "mqtt-soak-exit-\(getpid())")
    configuration.reconnect = .disabled
    if options.ownThread { configuration.eventLoopGroup = nil }
    let client = try MQTTClient(configuration: configuration)
    try await client.connect()
    let subscription = try await client.subscribe(to: options.topic, qos: MQTTQoS(rawValue: options.qos) ?? .atLeastOnce)
    for try await message in subscription {
        var line = message.topic + "\n"
        line.withUTF8 { bytes in _ = write(STDOUT_FILENO, bytes.baseAddress, bytes.count) }
        exit(0)
    }
    throw SoakFailure("the message sequence ended before a message arrived")
}
