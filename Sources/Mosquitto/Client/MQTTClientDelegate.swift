// MARK: - MQTTClientDelegate

/// Callback-style events of an ``MQTTClient``, for users who prefer a delegate to
/// `AsyncSequence`s. Every method has an empty default implementation.
///
/// Threading: methods are called one at a time, in the order the events happened, from a task
/// of the client's own (never from libmosquitto's network thread), so a slow delegate does not
/// stall keepalive. A delegate may `await` the client, e.g. publish a reply or disconnect, without
/// deadlocking. Events queue up without bound while a delegate method runs. The client holds its
/// delegate weakly.
public protocol MQTTClientDelegate: AnyObject, Sendable {
    /// The broker accepted the connection.
    func mqttClient(_ client: MQTTClient, didConnect result: MQTTConnectResult) async
    /// The connection ended: `error` is `nil` after a requested disconnect.
    func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async
    /// A message arrived.
    func mqttClient(_ client: MQTTClient, didReceive message: MQTTMessage) async
    /// The broker acknowledged a QoS 1/2 publish (PUBACK / PUBCOMP).
    func mqttClient(_ client: MQTTClient, didPublish messageID: UInt16, reasonCode: MQTTReasonCode) async
    /// A SUBACK arrived: one code per filter (granted QoS, or 0x80 and above for a refusal).
    func mqttClient(_ client: MQTTClient, didSubscribe messageID: UInt16, reasonCodes: [MQTTReasonCode]) async
    /// An UNSUBACK arrived.
    func mqttClient(_ client: MQTTClient, didUnsubscribe messageID: UInt16) async
    /// libmosquitto wrote a log line.
    func mqttClient(_ client: MQTTClient, didLog message: String, level: MQTTLogLevel) async
}

extension MQTTClientDelegate {
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didConnect result: MQTTConnectResult) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didDisconnect error: MQTTError?) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didReceive message: MQTTMessage) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didPublish messageID: UInt16, reasonCode: MQTTReasonCode) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didSubscribe messageID: UInt16, reasonCodes: [MQTTReasonCode]) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didUnsubscribe messageID: UInt16) async {}
    /// Does nothing.
    public func mqttClient(_ client: MQTTClient, didLog message: String, level: MQTTLogLevel) async {}
}
