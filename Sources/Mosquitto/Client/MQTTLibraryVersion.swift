// MARK: - MQTTLibraryVersion

/// The version of the libmosquitto the process has loaded (`mosquitto_lib_version`), which may
/// differ from the one the package was built against: the library is shared, and
/// `LD_LIBRARY_PATH` or the distribution decides which copy runs.
///
/// ```swift
/// print(MQTTClient.libraryVersion)   // "2.0.11" on Debian 12
/// ```
public struct MQTTLibraryVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The major version (2 for libmosquitto 2.0.x).
    public let major: Int
    /// The minor version.
    public let minor: Int
    /// The revision (11 for 2.0.11).
    public let revision: Int

    /// A version.
    public init(major: Int, minor: Int, revision: Int) {
        self.major = major
        self.minor = minor
        self.revision = revision
    }

    /// The oldest libmosquitto the package supports: 2.0.0 (MQTT 5 and the 2.0 API).
    public static let minimumSupported = MQTTLibraryVersion(major: 2, minor: 0, revision: 0)

    /// The first release without the defect by which one malformed MQTT 5 property block from
    /// the broker aborts the process (`log__printf` asserting on a NULL handle; fixed in 2.0.16).
    public static let firstWithoutMalformedPropertyAbort = MQTTLibraryVersion(major: 2, minor: 0, revision: 16)

    /// Orders versions numerically.
    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor, lhs.revision) < (rhs.major, rhs.minor, rhs.revision)
    }

    /// `major.minor.revision`, e.g. `2.0.11`.
    public var description: String { "\(major).\(minor).\(revision)" }
}

extension MQTTClient {
    /// The libmosquitto the process runs with. ``MQTTClient/init(configuration:)`` refuses one older
    /// than ``MQTTLibraryVersion/minimumSupported`` with ``MQTTError/Code/notSupported``; the
    /// client's logger notes the version with its first connection attempt.
    public static var libraryVersion: MQTTLibraryVersion { LibMosquitto.version }
}
