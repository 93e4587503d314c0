// MARK: - MQTTTLSSource

/// Where a TLS credential comes from: a PEM file, or PEM data in memory (from a secrets manager,
/// an environment variable, a keychain, ...).
///
/// ```swift
/// tls.caCertificates = .file("/etc/mqtt/ca.pem")
/// tls.privateKey = .pem(keyBytes)          // [UInt8]
/// tls.certificate = .pem(certificateText)  // String
/// ```
///
/// PEM data never appears in a ``description``, ``debugDescription`` or mirror (`dump`): only
/// its length does. A file source shows its path.
public struct MQTTTLSSource: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    enum Storage: Sendable, Hashable {
        case file(String)
        case pem([UInt8])
    }

    let storage: Storage

    private init(_ storage: Storage) {
        self.storage = storage
    }

    // MARK: Creating

    /// A PEM file, read when the client is created (in-memory sources) or by libmosquitto when it
    /// connects (when every source is a file).
    ///
    /// - Parameter path: The file's path.
    /// - Returns: A source that reads `path`.
    public static func file(_ path: String) -> MQTTTLSSource {
        MQTTTLSSource(.file(path))
    }

    /// PEM data in memory: one or more `-----BEGIN ...-----` blocks.
    ///
    /// - Parameter bytes: The PEM text's bytes (ASCII).
    /// - Returns: A source holding a copy of `bytes`.
    public static func pem(_ bytes: [UInt8]) -> MQTTTLSSource {
        MQTTTLSSource(.pem(bytes))
    }

    /// PEM text in memory: one or more `-----BEGIN ...-----` blocks.
    ///
    /// - Parameter text: The PEM text.
    /// - Returns: A source holding the text's UTF-8 bytes.
    public static func pem(_ text: String) -> MQTTTLSSource {
        MQTTTLSSource(.pem(Array(text.utf8)))
    }

    // MARK: Reading

    /// The file's path, or `nil` for PEM data in memory.
    public var path: String? {
        if case .file(let path) = storage { path } else { nil }
    }

    /// Whether the source is PEM data in memory rather than a file.
    public var isInMemory: Bool {
        if case .pem = storage { true } else { false }
    }

    /// `file "<path>"`, or `in-memory PEM (<n> bytes)`: never the data itself.
    public var description: String {
        switch storage {
        case .file(let path): "file \"\(path)\""
        case .pem(let bytes): "in-memory PEM (\(bytes.count) bytes)"
        }
    }

    /// The same as ``description``: never the data itself.
    public var debugDescription: String { description }

    /// A mirror that shows the ``description`` only, never the data.
    public var customMirror: Mirror { Mirror(self, children: ["source": description]) }
}
