import FoundationEssentials

// MARK: - Dynamic security

/// Writes the JSON configuration of mosquitto's dynamic-security plugin for
/// ``MosquittoBrokerConfiguration/allowedSubscriptions``.
///
/// Mosquitto 2.0's `acl_file` never refuses a SUBSCRIBE (it only filters deliveries), so a test of
/// "the broker refused this subscription" needs the dynamic-security plugin, which checks
/// `subscribePattern` ACLs when the SUBSCRIBE arrives and answers 0x80 (MQTT 3.1.1) or 0x87 (MQTT 5).
enum DynamicSecurity {
    /// The plugin's usual install locations (Debian's `mosquitto` package ships it).
    static let pluginCandidates = [
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
    ]

    /// The plugin's path.
    ///
    /// - Throws: `MosquittoTestingError` when the plugin is not installed.
    static func pluginPath() throws -> String {
        guard let path = pluginCandidates.first(where: FileSystem.exists) else {
            throw MosquittoTestingError("mosquitto_dynamic_security.so not found; install the `mosquitto` package")
        }
        return path
    }

    /// Writes the plugin's configuration: every user in `users` may subscribe only to `patterns`,
    /// and publish and receive anything.
    ///
    /// Password hashes come from `mosquitto_ctrl dynsec init`, run once per user on a scratch file.
    /// - Throws: `MosquittoTestingError` when `mosquitto_ctrl` is missing or fails.
    static func writeConfiguration(users: [String: String], patterns: [String], to path: String, scratchDirectory: String) async throws {
        guard let control = ExecutableSearch.find(named: "mosquitto_ctrl", preferred: ["/usr/bin/mosquitto_ctrl"]) else {
            throw MosquittoTestingError("mosquitto_ctrl not found; install the `mosquitto-clients` package")
        }
        var clients: [Client] = []
        for (index, username) in users.keys.sorted().enumerated() {
            let scratch = "\(scratchDirectory)/dynsec-user-\(index).json"
            try await ChildProcess.run(executable: control, arguments: ["dynsec", "init", scratch, username, users[username] ?? ""])
            let generated = try JSONDecoder().decode(File.self, from: Data(FileSystem.readText(scratch).utf8))
            FileSystem.removeTree(scratch)
            for var client in generated.clients {
                client.roles = [Role.Reference(rolename: "tests")]
                clients.append(client)
            }
        }
        let file = File(
            clients: clients,
            roles: [Role(rolename: "tests", acls: patterns.map { ACL(acltype: "subscribePattern", topic: $0, allow: true) })],
            defaultACLAccess: ["publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true]
        )
        let data = try JSONEncoder().encode(file)
        try FileSystem.writeText(String(decoding: data, as: UTF8.self), to: path)
    }

    // MARK: File format

    private struct File: Codable {
        var clients: [Client]
        var roles: [Role]
        var defaultACLAccess: [String: Bool]
    }

    private struct Client: Codable {
        var username: String
        var password: String
        var salt: String
        var iterations: Int
        var roles: [Role.Reference]
    }

    private struct Role: Codable {
        struct Reference: Codable {
            var rolename: String
        }

        var rolename: String
        var acls: [ACL]

        init(rolename: String, acls: [ACL]) {
            self.rolename = rolename
            self.acls = acls
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            rolename = try container.decode(String.self, forKey: .rolename)
            acls = try container.decodeIfPresent([ACL].self, forKey: .acls) ?? []
        }
    }

    private struct ACL: Codable {
        var acltype: String
        var topic: String
        var allow: Bool
    }
}
