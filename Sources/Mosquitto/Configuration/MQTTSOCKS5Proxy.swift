// MARK: - MQTTSOCKS5Proxy

/// A SOCKS5 proxy (RFC 1928) that the client connects through, optionally with a username and
/// password (RFC 1929).
///
/// The client opens its TCP connection to the proxy and asks it to connect to
/// ``MQTTConfiguration/host`` and ``MQTTConfiguration/port``: a host name is passed to the proxy
/// to resolve, an IP address literal as an address. TLS, when configured, runs end to end through
/// the tunnel, and host-name verification checks the broker's name, not the proxy's. Every
/// reconnect goes through the proxy again. libmosquitto does this (`mosquitto_socks5_set`);
/// it offers "no authentication", and also "username/password" when ``username`` is set.
///
/// The password never appears in a ``description``, ``debugDescription``, mirror (`dump`), error
/// or log line.
public struct MQTTSOCKS5Proxy: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The proxy's host name or IP address (at most 256 bytes).
    public var host: String
    /// The proxy's TCP port, 1...65535. Defaults to 1080.
    public var port: Int
    /// The username for RFC 1929 authentication (1 to 255 bytes), or `nil` for none.
    public var username: String?
    /// The password for RFC 1929 authentication (at most 255 bytes); needs ``username``. With a
    /// username and no password, an empty password is sent. Never logged or described.
    public var password: String?

    /// Creates proxy settings.
    ///
    /// - Parameters:
    ///   - host: The proxy's host name or IP address.
    ///   - port: The proxy's port.
    ///   - username: The username, if the proxy requires authentication.
    ///   - password: The password that goes with `username`.
    public init(host: String, port: Int = 1080, username: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// `socks5://[username@]host:port`, with the password redacted.
    public var description: String {
        let user = username.map { "\($0)\(password == nil ? "" : ":<redacted>")@" } ?? ""
        return "MQTTSOCKS5Proxy(socks5://\(user)\(host):\(port))"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }

    /// A mirror that hides the password.
    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "username": username as Any, "password": password == nil ? "nil" : "<redacted>",
        ])
    }
}
