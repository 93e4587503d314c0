// An MQTT client as one service among others in a swift-service-lifecycle ServiceGroup, with
// swift-log logging: `MQTTClientService` connects the client and, on shutdown (SIGINT, SIGTERM,
// or here after a few seconds), waits for outstanding QoS 1 acknowledgements and disconnects
// cleanly. A second service publishes sensor readings through the same client.
//
// It starts a local `mosquitto` on a free loopback port (MosquittoTesting), unless MQTT_HOST
// (and MQTT_PORT) name a broker of your own. `DEMO_SECONDS` sets how long it runs (default 3).

import Logging
import Mosquitto
import MosquittoTesting
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Publishes a JSON reading every 250 ms until the group shuts down.
struct SensorService: Service {
    let client: MQTTClient
    let logger: Logger

    func run() async throws {
        var index = 0
        // Wait until the MQTT service has connected (it may not have started connecting yet).
        while !client.isConnected {
            // Before the MQTT service has begun to connect there is nothing to wait for yet.
            if (try? await client.waitUntilConnected(timeout: .seconds(10))) == nil {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let json = #"{"temperature":\#(20.0 + Double(index % 10) / 2),"humidity":\#(40 + index % 7)}"#
            _ = try client.beginPublish(to: "home/office/sensor", payload: Array(json.utf8), qos: .atLeastOnce)
            index += 1
            try? await Task.sleep(for: .milliseconds(250))
        }
        logger.info("sensor stopped", metadata: ["readings": .stringConvertible(index)])
    }
}

/// Ends the group after `seconds`, as a SIGTERM would.
struct TimerService: Service {
    let seconds: Int

    func run() async throws {
        try? await Task.sleep(for: .seconds(seconds))
    }
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardOutput(label: label)
    handler.logLevel = .info
    return handler
}
let logger = Logger(label: "service-demo")

let broker: MosquittoBroker?
let host: String
let port: Int
if let pointer = getenv("MQTT_HOST") {
    broker = nil
    host = String(cString: pointer)
    port = getenv("MQTT_PORT").flatMap { Int(String(cString: $0)) } ?? 1883
} else {
    let started = try await MosquittoBroker.start()
    broker = started
    host = started.host
    port = started.port
    logger.info("started mosquitto", metadata: ["port": .stringConvertible(port)])
}

var configuration = MQTTConfiguration(host: host, port: port, clientID: "demo-service")
configuration.logger = logger
let client = try MQTTClient(configuration: configuration)
let seconds = getenv("DEMO_SECONDS").flatMap { Int(String(cString: $0)) } ?? 3

let group = ServiceGroup(
    configuration: .init(
        services: [
            .init(service: MQTTClientService(client: client)),
            .init(service: SensorService(client: client, logger: logger)),
            // When the timer ends, the whole group shuts down gracefully, in reverse order.
            .init(service: TimerService(seconds: seconds), successTerminationBehavior: .gracefullyShutdownGroup),
        ],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
    )
)
try await group.run()
broker?.stop()
logger.info("done", metadata: ["pending": .stringConvertible(client.pendingPublishCount)])
exit(client.pendingPublishCount == 0 ? 0 : 1)
