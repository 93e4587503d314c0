// A request/response pair over MQTT 5: a responder answers `svc/temperature/convert` requests
// (Celsius in, Fahrenheit out), and a requester sends a few and prints the answers. Correlation
// data and the response topic are handled by `MQTTClient.request` / `respond(to:handler:)`.
//
// It starts a local `mosquitto` on a free loopback port (MosquittoTesting), unless MQTT_HOST
// (and MQTT_PORT) name a broker of your own.

import Mosquitto
import MosquittoTesting

#if canImport(Glibc)
import Glibc
#endif

/// Runs the pair; returns whether every request got the right answer.
func runRequestResponse() async throws -> Bool {
    let (host, port, broker) = try await demoBroker()
    defer { broker?.stop() }

    let responder = try MQTTClient(configuration: .init(host: host, port: port, clientID: "demo-converter", protocolVersion: .v5))
    try await responder.connect()
    let serving = Task {
        try await responder.respond(to: "svc/temperature/convert") { request in
            guard let celsius = request.payloadString.flatMap(Double.init) else { return Array("error: not a number".utf8) }
            return Array(String(celsius * 9 / 5 + 32).utf8)
        }
    }
    // The responder's subscription is in place once respond(to:) has subscribed; give it a moment.
    try await Task.sleep(for: .milliseconds(200))

    let requester = try MQTTClient(configuration: .init(host: host, port: port, clientID: "demo-requester", protocolVersion: .v5))
    try await requester.connect()
    var correct = 0
    let inputs = [-40.0, 0, 21.5, 100]
    for celsius in inputs {
        let response = try await requester.request(topic: "svc/temperature/convert", payload: Array(String(celsius).utf8), timeout: .seconds(5))
        let fahrenheit = response.payloadString ?? "<binary>"
        print("\(celsius) °C = \(fahrenheit) °F")
        if Double(fahrenheit) == celsius * 9 / 5 + 32 { correct += 1 }
    }
    try await requester.disconnect()
    serving.cancel()
    try await responder.disconnect()
    print("Done: \(correct) of \(inputs.count) answers correct.")
    return correct == inputs.count
}

/// The broker to use: MQTT_HOST/MQTT_PORT, or a local mosquitto started here.
func demoBroker() async throws -> (host: String, port: Int, broker: MosquittoBroker?) {
    if let pointer = getenv("MQTT_HOST") {
        let port = getenv("MQTT_PORT").flatMap { Int(String(cString: $0)) } ?? 1883
        return (String(cString: pointer), port, nil)
    }
    let broker = try await MosquittoBroker.start()
    print("Started mosquitto on \(broker.host):\(broker.port)")
    return (broker.host, broker.port, broker)
}

exit(try await runRequestResponse() ? 0 : 1)
