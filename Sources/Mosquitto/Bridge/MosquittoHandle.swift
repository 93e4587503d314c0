internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - MosquittoHandle

/// A `struct mosquitto *` and every libmosquitto call that takes it.
///
/// `@unchecked Sendable` is safe here because the handle is switched to threaded mode
/// (`mosquitto_threaded_set(true)`) before it is shared: libmosquitto then guards its own state
/// with its internal mutexes (`callback_mutex`, `out_packet_mutex`, `msgs_out.mutex`, ...), so the
/// commands below may be called from any thread while the driver thread runs the network loop.
/// The exceptions are serialised by ``MosquittoBridge`` and ``EventLoop``:
/// ``connect(host:port:keepAlive:bindAddress:properties:)``, ``reconnect()`` and
/// ``loop(timeoutMilliseconds:)`` run only on the thread driving the session at that moment; the
/// event-loop calls (``read(maxPackets:)``, ``write()``, ``keepAlive()``) run only under the
/// connection's I/O lock (``MosquittoBridge/loopSocket``), held by the event loop or by a
/// publishing thread writing directly; and ``destroy()`` runs exactly once, after the session has
/// ended.
struct MosquittoHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    // MARK: Creation

    /// `mosquitto_new` with `userdata`, then threaded mode and the callbacks.
    ///
    /// - Parameter forEventLoop: Whether an ``EventLoop`` will drive the handle: then the socket
    ///   pair that wakes libmosquitto's own loop is closed (one descriptor per client instead
    ///   of three, and no wasted `write()` per packet).
    /// An empty `clientID` is passed as `NULL`: the broker assigns one (libmosquitto makes one up
    /// under MQTT 3.1).
    ///
    /// - Throws: ``MQTTError`` for an invalid ID or no memory.
    static func create(
        clientID: String, cleanSession: Bool, userdata: UnsafeMutableRawPointer, forEventLoop: Bool
    ) throws(MQTTError) -> MosquittoHandle {
        LibMosquitto.ensureInitialized()
        guard let pointer = mosquitto_new(clientID.isEmpty ? nil : clientID, cleanSession, userdata) else {
            let code: MQTTError.Code = errno == ENOMEM ? .outOfMemory : .invalidConfiguration
            throw MQTTError(code, operation: .configure, detail: "mosquitto_new rejected the client ID or session settings")
        }
        if forEventLoop {
            // If libmosquitto's private layout is not the expected one, the pair stays: it only
            // costs descriptors and a write per packet.
            _ = swift_mosquitto_close_wakeup_pair(pointer)
        }
        let handle = MosquittoHandle(pointer: pointer)
        _ = mosquitto_threaded_set(pointer, true)
        BridgeCallbacks.install(on: pointer)
        return handle
    }

    /// Hands libmosquitto the userdata its callbacks receive (the bridge, retained).
    func setUserdata(_ userdata: UnsafeMutableRawPointer) {
        mosquitto_user_data_set(pointer, userdata)
    }

    /// `mosquitto_destroy`. Call exactly once, when no thread uses the handle any more.
    func destroy() {
        mosquitto_destroy(pointer)
    }

    // MARK: Options

    /// Applies everything in `configuration` that libmosquitto stores on the handle.
    ///
    /// - Throws: ``MQTTError`` naming the setting libmosquitto rejected.
    func apply(_ configuration: MQTTConfiguration) throws(MQTTError) {
        try check(mosquitto_int_option(pointer, MOSQ_OPT_PROTOCOL_VERSION, configuration.protocolVersion.rawValue), "protocol version")
        try check(mosquitto_int_option(pointer, MOSQ_OPT_TCP_NODELAY, configuration.tcpNoDelay ? 1 : 0), "TCP_NODELAY")
        try check(mosquitto_max_inflight_messages_set(pointer, UInt32(clamping: configuration.maxInflightMessages)), "max in-flight messages")
        if let credentials = configuration.credentials {
            // The password's bytes as given, NUL-terminated (validation refused a NUL inside).
            let rc = credentials.passwordBytes.map { bytes in
                (bytes + [0]).withUnsafeBufferPointer { terminated in
                    terminated.withMemoryRebound(to: CChar.self) { mosquitto_username_pw_set(pointer, credentials.username, $0.baseAddress) }
                }
            } ?? mosquitto_username_pw_set(pointer, credentials.username, nil)
            try check(rc, "username and password")
        }
        if let will = configuration.will {
            let properties = try PropertyList(will.properties, for: .will, operation: .configure)
            let list = properties.release()
            let rc = will.payload.withUnsafeBytes { bytes in
                mosquitto_will_set_v5(pointer, will.topic, Int32(bytes.count), bytes.baseAddress, Int32(will.qos.rawValue), will.retain, list)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                // libmosquitto owns the list only on success.
                var owned = list
                mosquitto_property_free_all(&owned)
            }
            try check(rc, "will")
        }
        if let tls = configuration.tls {
            try apply(tls, host: configuration.host, port: configuration.port)
        }
        if let psk = configuration.psk {
            try check(mosquitto_tls_psk_set(pointer, psk.hexKey, psk.identity, psk.ciphers), "TLS-PSK")
        }
        if let proxy = configuration.socksProxy {
            try applyProxy(proxy)
        }
    }

    private func apply(_ tls: MQTTTLSConfiguration, host: String, port: Int) throws(MQTTError) {
        let caDirectory = (tls.caCertificates == nil && tls.caDirectory == nil) ? "/etc/ssl/certs" : tls.caDirectory
        // libmosquitto answers an unreadable file with a bare MOSQ_ERR_INVAL, and takes a directory
        // given as a file without complaint (the connect then fails in OpenSSL): name the setting.
        let files: [(String, String?, Int32, isDirectory: Bool)] = [
            ("caFile", tls.caFile, R_OK, false), ("caDirectory", caDirectory, R_OK | X_OK, true),
            ("certificateFile", tls.certificateFile, R_OK, false), ("keyFile", tls.keyFile, R_OK, false),
        ]
        for case let (name, path?, mode, isDirectory) in files {
            guard access(path, mode) == 0 else {
                let reason = LibMosquitto.systemErrorString(errno)
                throw MQTTError(.invalidConfiguration, operation: .configure, detail: "cannot read \(name) \"\(path)\": \(reason)")
            }
            var status = stat()
            if stat(path, &status) == 0, ((status.st_mode & S_IFMT) == S_IFDIR) != isDirectory {
                let expected = isDirectory ? "a directory" : "a file, not a directory"
                throw MQTTError(.invalidConfiguration, operation: .configure, detail: "\(name) \"\(path)\" must be \(expected)")
            }
        }
        if tls.hasInMemoryCredential {
            try applyContext(TLSContext.make(for: tls, host: host, port: port))
            return
        }
        let passwordCallback: (@convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32)? =
            tls.keyPassword == nil ? nil : BridgeCallbacks.keyPassword
        try check(
            mosquitto_tls_set(pointer, tls.caFile, caDirectory, tls.certificateFile, tls.keyFile, passwordCallback),
            "TLS files (check that the CA, certificate and key paths exist and are readable)"
        )
        try check(mosquitto_tls_opts_set(pointer, 1, tls.minimumVersion.rawValue, tls.ciphers), "TLS options")
        try check(mosquitto_tls_insecure_set(pointer, tls.insecureSkipHostnameVerification), "TLS hostname verification")
        if let alpn = tls.alpn {
            try check(mosquitto_string_option(pointer, MOSQ_OPT_TLS_ALPN, alpn), "ALPN")
        }
    }

    /// `mosquitto_socks5_set`: every connect and reconnect then goes through the proxy.
    ///
    /// A username without a password is given an empty one: libmosquitto 2.0 (`socks5__send`)
    /// calls `strlen` on the password when the proxy picks username/password authentication, and
    /// crashes on NULL.
    private func applyProxy(_ proxy: MQTTSOCKS5Proxy) throws(MQTTError) {
        let password = proxy.username == nil ? nil : (proxy.password ?? "")
        let rc = mosquitto_socks5_set(pointer, proxy.host, Int32(proxy.port), proxy.username, password)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw Self.proxyError(rc) }
    }

    /// The error for a failed `mosquitto_socks5_set` (never naming the password).
    static func proxyError(_ rc: Int32) -> MQTTError {
        let detail = rc == MOSQ_ERR_NOT_SUPPORTED.rawValue
            ? "socksProxy: this libmosquitto was built without SOCKS5 support (WITH_SOCKS)"
            : "socksProxy"
        return MQTTError(mosquittoCode: rc, operation: .configure, detail: detail)
    }

    /// Hands libmosquitto a prepared `SSL_CTX` to use as it is (see ``TLSContext``), and releases
    /// the caller's reference: libmosquitto holds its own from here until `mosquitto_destroy`.
    private func applyContext(_ context: OpaquePointer) throws(MQTTError) {
        defer { SSL_CTX_free(context) }
        try check(mosquitto_int_option(pointer, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0), "TLS context without libmosquitto's defaults")
        try check(mosquitto_void_option(pointer, MOSQ_OPT_SSL_CTX, UnsafeMutableRawPointer(context)), "TLS context")
    }

    private func check(_ rc: Int32, _ setting: String) throws(MQTTError) {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError(mosquittoCode: rc, operation: .configure, errno: errno, detail: setting)
        }
    }

    // MARK: Connection (driver thread only)

    /// `mosquitto_connect_bind_v5`: blocks on DNS, TCP and the TLS handshake, then queues CONNECT.
    /// libmosquitto keeps a copy of `properties` for reconnects.
    func connect(host: String, port: Int, keepAlive: Int, bindAddress: String?, properties: borrowing PropertyList) -> (status: MosquittoStatus, errno: Int32) {
        errno = 0
        let rc = mosquitto_connect_bind_v5(pointer, host, Int32(port), Int32(keepAlive), bindAddress, properties.pointer)
        return (MosquittoStatus(rc), errno)
    }

    /// `mosquitto_reconnect`: blocking, like ``connect(host:port:keepAlive:bindAddress:)``.
    @discardableResult
    func reconnect() -> (status: MosquittoStatus, errno: Int32) {
        errno = 0
        let rc = mosquitto_reconnect(pointer)
        return (MosquittoStatus(rc), errno)
    }

    /// `mosquitto_loop`: waits up to `timeoutMilliseconds` for socket activity (or a wake-up from
    /// a command queued on another thread), then reads, writes and handles keepalive.
    func loop(timeoutMilliseconds: Int32) -> MosquittoStatus {
        MosquittoStatus(mosquitto_loop(pointer, timeoutMilliseconds, 1))
    }

    // MARK: Event-loop driving (the driver's thread only)

    /// The connection's socket, or -1 without one.
    var socket: Int32 {
        mosquitto_socket(pointer)
    }

    /// Whether libmosquitto has bytes queued for the socket (or TLS wants to write).
    var wantsWrite: Bool {
        mosquitto_want_write(pointer)
    }

    /// Reads and handles what has arrived: `mosquitto_loop_read` (one packet per call for QoS 0)
    /// repeated until the socket has nothing more (`EAGAIN`), the connection ended, or
    /// `maxPackets` were read (the rest waits for the next readiness, so that one busy connection
    /// cannot starve the others on its event loop).
    ///
    /// - Returns: ``MosquittoStatus/success``, or the error with which libmosquitto closed the connection.
    @discardableResult
    func read(maxPackets: Int) -> MosquittoStatus {
        for _ in 0..<maxPackets {
            errno = 0
            let rc = mosquitto_loop_read(pointer, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return MosquittoStatus(rc) }
            if errno == EAGAIN || errno == EWOULDBLOCK || mosquitto_socket(pointer) < 0 { break }
        }
        return .success
    }

    /// `mosquitto_loop_write`: writes queued packets until done or the socket is full.
    func write() -> MosquittoStatus {
        MosquittoStatus(mosquitto_loop_write(pointer, 1))
    }

    /// `mosquitto_loop_misc`: sends PINGREQ when due, or closes a connection whose PINGRESP
    /// never came.
    func keepAlive() -> MosquittoStatus {
        MosquittoStatus(mosquitto_loop_misc(pointer))
    }

    /// Writes what is queued once the socket takes it: waits up to `timeoutMilliseconds` for it to
    /// be writable, then `mosquitto_loop_write`. Never reads (a stopping session's last steps).
    ///
    /// - Returns: ``MosquittoStatus/success`` (written, or not writable yet), or libmosquitto's error.
    func writeWhenWritable(timeoutMilliseconds: Int32) -> MosquittoStatus {
        var descriptor = pollfd(fd: mosquitto_socket(pointer), events: Int16(POLLOUT), revents: 0)
        guard descriptor.fd >= 0 else { return .noConnection }
        guard poll(&descriptor, 1, timeoutMilliseconds) > 0 else { return .success }
        return MosquittoStatus(mosquitto_loop_write(pointer, 1))
    }

    /// Wakes a ``loop(timeoutMilliseconds:)`` waiting on another thread (thread-per-client handles).
    func wakeLoop() {
        _ = swift_mosquitto_wake_loop(pointer)
    }

    /// Installs or removes libmosquitto's log callback (driver thread, between loop iterations).
    func setLogging(_ enabled: Bool) {
        BridgeCallbacks.setLogging(enabled, on: pointer)
    }

    /// Whether the handle has an open socket.
    var hasSocket: Bool {
        mosquitto_socket(pointer) >= 0
    }

    /// Milliseconds since data last arrived on the connection's TCP socket (the kernel's
    /// `TCP_INFO`), or `nil` without one (no socket, or a Unix socket).
    var millisecondsSinceReceive: Int? {
        let milliseconds = swift_mosquitto_milliseconds_since_receive(mosquitto_socket(pointer))
        return milliseconds < 0 ? nil : Int(milliseconds)
    }

    /// Shuts the socket down in both directions without closing it, for a link found dead: the
    /// next ``loop(timeoutMilliseconds:)`` fails with `MOSQ_ERR_CONN_LOST`, and libmosquitto
    /// closes the descriptor as it does after any lost connection (so it cannot be reused early).
    func abortConnection() {
        let descriptor = mosquitto_socket(pointer)
        if descriptor >= 0 {
            _ = shutdown(descriptor, Int32(SHUT_RDWR))
        }
    }

    // MARK: Commands (any thread)

    /// `mosquitto_disconnect_v5`: queues DISCONNECT with `reasonCode` and wakes the loop.
    @discardableResult
    func disconnect(reasonCode: MQTTReasonCode = .success, properties: borrowing PropertyList = PropertyList()) -> MosquittoStatus {
        MosquittoStatus(mosquitto_disconnect_v5(pointer, Int32(reasonCode.rawValue), properties.pointer))
    }

    /// `mosquitto_publish_v5`: copies the payload and queues PUBLISH. An empty `topic` publishes
    /// through the topic alias in `properties`.
    func publish(
        topic: String, payload: UnsafeRawBufferPointer, qos: MQTTQoS, retain: Bool, properties: borrowing PropertyList
    ) -> (status: MosquittoStatus, mid: Int32) {
        var mid: Int32 = 0
        let rc = mosquitto_publish_v5(
            pointer, &mid, topic.isEmpty ? nil : topic, Int32(payload.count), payload.baseAddress, Int32(qos.rawValue), retain, properties.pointer
        )
        return (MosquittoStatus(rc), mid)
    }

    /// `mosquitto_subscribe_multiple`: one SUBSCRIBE carrying every filter with the same QoS and
    /// options (`MQTT_SUB_OPT_*` bits).
    func subscribe(filters: [String], qos: MQTTQoS, options: Int32, properties: borrowing PropertyList) -> (status: MosquittoStatus, mid: Int32) {
        var mid: Int32 = 0
        let rc = withCStringArray(filters) { array in
            mosquitto_subscribe_multiple(pointer, &mid, Int32(filters.count), array, Int32(qos.rawValue), options, properties.pointer)
        }
        return (MosquittoStatus(rc), mid)
    }

    /// `mosquitto_unsubscribe_multiple`: one UNSUBSCRIBE carrying every filter.
    func unsubscribe(filters: [String], properties: borrowing PropertyList) -> (status: MosquittoStatus, mid: Int32) {
        var mid: Int32 = 0
        let rc = withCStringArray(filters) { array in
            mosquitto_unsubscribe_multiple(pointer, &mid, Int32(filters.count), array, properties.pointer)
        }
        return (MosquittoStatus(rc), mid)
    }
}

// MARK: - C string arrays

/// Calls `body` with a C array of NUL-terminated copies of `strings`, freed afterwards.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    return copies.withUnsafeBufferPointer { body($0.baseAddress!) }
}
