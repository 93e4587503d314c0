// The README's demo: a sensor publisher and a subscriber, against a broker started here.
//
// By default it starts a local `mosquitto` on a free loopback port through MosquittoTesting.
// Set MQTT_HOST (and MQTT_PORT) to use a broker of your own instead, e.g. the one from
// docker-compose.yml.

import Mosquitto
import MosquittoTesting

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Demo

/// Runs the demo; returns whether every published reading was received. The broker (if one is
/// started here) is a local, so it is stopped and its files removed when this returns.
func runDemo() async throws -> Bool {
    let environment = ProcessInfoLite.environment
    var broker: MosquittoBroker?
    let host: String
    let port: Int
    if let externalHost = environment["MQTT_HOST"] {
        host = externalHost
        let text = environment["MQTT_PORT"] ?? "1883"
        guard let number = Int(text), (1...65_535).contains(number) else {
            throw DemoError("MQTT_PORT must be a port number (1 to 65535), not \"\(text)\"")
        }
        port = number
        print("Using the broker at \(host):\(port)")
    } else {
        let started = try await MosquittoBroker.start()
        broker = started
        host = started.host
        port = started.port
        print("Started mosquitto on \(host):\(port)")
    }
    defer { broker?.stop() }

    // Subscriber
    let subscriber = try MQTTClient(configuration: .init(host: host, port: port, clientID: "demo-subscriber"))
    try await subscriber.connect()
    let readings = try await subscriber.subscribe(to: "home/+/sensor", qos: .atLeastOnce)
    print("Subscribed to home/+/sensor (granted \(readings.results[0].grantedQoS.map { "\($0)" } ?? "nothing"))")
    let printer = Task {
        var count = 0
        for try await message in readings {
            count += 1
            print("received  \(message.topic)  \(message.payloadString ?? "<binary>")  [\(message.qos)]")
        }
        return count
    }

    // Publisher
    let publisher = try MQTTClient(configuration: .init(host: host, port: port, clientID: "demo-livingroom-sensor"))
    try await publisher.connect()
    let readingCount = 8
    for index in 0..<readingCount {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let temperature = 21.0 + Double(index % 5) * 0.3
        let humidity = 45.0 + Double(index % 3) * 1.5
        let json = #"{"temperature":\#(temperature),"humidity":\#(humidity),"timestamp":\#(now.tv_sec)}"#
        let receipt = try await publisher.publish(to: "home/livingroom/sensor", payload: json, qos: .atLeastOnce)
        print("published message \(receipt.messageID): \(json)")
        try await Task.sleep(for: .milliseconds(400))
    }

    // Shutdown: the subscriber's sequence ends when it disconnects.
    try await publisher.disconnect()
    try await Task.sleep(for: .milliseconds(300))
    try await subscriber.disconnect()
    let received = try await printer.value
    print("Done: \(readingCount) published, \(received) received.")
    return received == readingCount
}

/// A failure the demo reports in one line.
struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// One line on standard error and a non-zero status for any failure (a wrong port, a broker that
// refuses, a missing mosquitto), not a backtrace.
do {
    let succeeded = try await runDemo()
    exit(succeeded ? 0 : 1)
} catch {
    var line = "mqtt-sensor-demo: \(error)\n"
    line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    exit(1)
}

/// The process environment, read without Foundation.
enum ProcessInfoLite {
    static var environment: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
