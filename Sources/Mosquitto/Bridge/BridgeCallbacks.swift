internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - BridgeCallbacks

/// The `@convention(c)` trampolines libmosquitto calls, registered once when a handle is created.
///
/// Only the `_v5` variants are registered: libmosquitto calls them for every protocol version
/// (with NULL properties before MQTT 5); registering both variants would make it call both.
/// Each thunk runs on the driver thread while libmosquitto holds its `callback_mutex`: it copies
/// what it needs out of the C pointers (valid only during the call) and hands Swift values to
/// ``MosquittoBridge`` without blocking and without calling back into libmosquitto.
enum BridgeCallbacks {
    /// Registers every callback on `handle`.
    static func install(on handle: OpaquePointer) {
        mosquitto_connect_v5_callback_set(handle, onConnect)
        mosquitto_disconnect_v5_callback_set(handle, onDisconnect)
        mosquitto_publish_v5_callback_set(handle, onPublish)
        mosquitto_message_v5_callback_set(handle, onMessage)
        mosquitto_subscribe_v5_callback_set(handle, onSubscribe)
        mosquitto_unsubscribe_v5_callback_set(handle, onUnsubscribe)
        mosquitto_log_callback_set(handle, onLog)
    }

    /// Installs or removes the log callback. libmosquitto formats a line for every packet while
    /// one is installed (a measurable share of the per-message cost), so the driver removes it
    /// while connected and nobody wants log lines. Call only from the driver thread, between loop
    /// iterations (never inside a callback: libmosquitto holds its log mutex while calling it).
    static func setLogging(_ enabled: Bool, on handle: OpaquePointer) {
        mosquitto_log_callback_set(handle, enabled ? onLog : nil)
    }

    /// OpenSSL's passphrase callback for an encrypted client key. OpenSSL passes the `mosq`
    /// handle as its userdata, so the bridge is found through `mosquitto_userdata`.
    static let keyPassword: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
        buffer, size, _, mosq in
        guard let buffer, size > 0, let mosq,
              let userdata = mosquitto_userdata(OpaquePointer(mosq)),
              let password = bridge(from: userdata).configuration.tls?.keyPassword
        else { return 0 }
        let bytes = Array(password.utf8.prefix(Int(size) - 1))
        for (index, byte) in bytes.enumerated() {
            buffer[index] = CChar(bitPattern: byte)
        }
        buffer[bytes.count] = 0
        return Int32(bytes.count)
    }

    fileprivate static func bridge(from userdata: UnsafeMutableRawPointer) -> MosquittoBridge {
        Unmanaged<MosquittoBridge>.fromOpaque(userdata).takeUnretainedValue()
    }
}

// MARK: - Thunks

private func onConnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32, _ flags: Int32, _ properties: OpaquePointer?) {
    guard let userdata else { return }
    BridgeCallbacks.bridge(from: userdata).didConnect(returnCode: rc, sessionPresent: flags & 1 == 1, properties: MQTTProperties(copying: properties))
}

private func onDisconnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32, _ properties: OpaquePointer?) {
    guard let userdata else { return }
    BridgeCallbacks.bridge(from: userdata).didDisconnect(returnCode: rc, properties: MQTTProperties(copying: properties))
}

private func onPublish(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32, _ reason: Int32, _ properties: OpaquePointer?) {
    guard let userdata else { return }
    BridgeCallbacks.bridge(from: userdata).didPublish(
        mid: mid, reasonCode: MQTTReasonCode(rawValue: UInt8(truncatingIfNeeded: reason)), properties: MQTTProperties(copying: properties)
    )
}

private func onMessage(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ message: UnsafePointer<mosquitto_message>?, _ properties: OpaquePointer?) {
    guard let userdata, let message, let topic = message.pointee.topic else { return }
    let count = Int(message.pointee.payloadlen)
    let payload: [UInt8]
    if let bytes = message.pointee.payload, count > 0 {
        payload = Array(UnsafeRawBufferPointer(start: bytes, count: count))
    } else {
        payload = []
    }
    let copy = MQTTMessage(
        topic: String(cString: topic),
        payload: payload,
        qos: MQTTQoS(rawValue: Int(message.pointee.qos)) ?? .atMostOnce,
        retain: message.pointee.retain,
        messageID: UInt16(truncatingIfNeeded: message.pointee.mid),
        properties: properties == nil ? MQTTProperties() : MQTTProperties(copying: properties)
    )
    BridgeCallbacks.bridge(from: userdata).didReceive(copy)
}

private func onSubscribe(
    _ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32, _ count: Int32,
    _ granted: UnsafePointer<Int32>?, _ properties: OpaquePointer?
) {
    guard let userdata else { return }
    var codes: [MQTTReasonCode] = []
    if let granted, count > 0 {
        codes = UnsafeBufferPointer(start: granted, count: Int(count)).map { MQTTReasonCode(rawValue: UInt8(truncatingIfNeeded: $0)) }
    }
    BridgeCallbacks.bridge(from: userdata).didSubscribe(mid: mid, reasonCodes: codes, properties: MQTTProperties(copying: properties))
}

private func onUnsubscribe(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32, _ properties: OpaquePointer?) {
    guard let userdata else { return }
    BridgeCallbacks.bridge(from: userdata).didUnsubscribe(mid: mid, properties: MQTTProperties(copying: properties))
}

private func onLog(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ level: Int32, _ text: UnsafePointer<CChar>?) {
    guard let userdata, let text else { return }
    BridgeCallbacks.bridge(from: userdata).didLog(level: MQTTLogLevel(mosquittoLevel: level), text: text)
}

// MARK: - Log levels

extension MQTTLogLevel {
    init(mosquittoLevel level: Int32) {
        let bits = UInt32(level)
        if bits & UInt32(MOSQ_LOG_ERR) != 0 {
            self = .error
        } else if bits & UInt32(MOSQ_LOG_WARNING) != 0 {
            self = .warning
        } else if bits & UInt32(MOSQ_LOG_DEBUG) != 0 {
            self = .debug
        } else {
            self = .info
        }
    }
}
