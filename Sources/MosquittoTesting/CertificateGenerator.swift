// MARK: - Certificate generation

/// Generates a throwaway PKI (EC P-256, SHA-256, valid a few days) with the `openssl` command-line tool.
enum CertificateGenerator {
    /// The password protecting `TestCertificates.encryptedClientKey`.
    static let clientKeyPassword = "mosquitto-testing-password"

    /// How many days the generated certificates are valid.
    fileprivate static let validityDays = "3"

    /// The validity period of `TestCertificates.expiredServerCertificate`, in `openssl ca` syntax: a day in 2020.
    fileprivate static let expiredValidity = (start: "20200101000000Z", end: "20200102000000Z")

    /// Extension sections referenced by the `openssl` invocations below, and a minimal `openssl ca`
    /// section (`expired_ca`) whose database lives in `caDatabase`.
    ///
    /// `openssl x509 -req` (OpenSSL 3.0) cannot date a certificate in the past; `openssl ca` can, with
    /// `-startdate`/`-enddate`, but it wants a database (index and serial files) and a policy.
    private static func opensslConfig(caDatabase: String) -> String {
        """
        [req]
        distinguished_name = dn
        prompt = no
        [dn]
        CN = unused

        [ca_ext]
        basicConstraints = critical, CA:TRUE
        keyUsage = critical, keyCertSign, cRLSign
        subjectKeyIdentifier = hash

        [server_ext]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature, keyEncipherment
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:localhost, IP:127.0.0.1
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid

        [mismatched_server_ext]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature, keyEncipherment
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:wrong.example.invalid
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid

        [client_ext]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature, keyEncipherment
        extendedKeyUsage = clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid

        [expired_ca]
        database = \(caDatabase)/index.txt
        serial = \(caDatabase)/serial
        new_certs_dir = \(caDatabase)
        default_md = sha256
        policy = any_policy
        unique_subject = no

        [any_policy]
        commonName = supplied

        """
    }

    /// Writes all certificates and keys into `<directory>/certs`.
    /// - Parameters:
    ///   - directory: The broker's temporary directory.
    /// - Throws: `MosquittoTestingError` if `openssl` is missing or fails.
    /// - Returns: The paths of the generated files.
    static func generate(in directory: String) async throws -> TestCertificates {
        guard let openssl = ExecutableSearch.find(named: "openssl", environmentVariable: "OPENSSL_BINARY") else {
            throw MosquittoTestingError("openssl not found; install the `openssl` package (or set OPENSSL_BINARY)")
        }
        let certs = "\(directory)/certs"
        try FileSystem.makeDirectory(certs)
        let caDirectory = "\(certs)/ca-dir"
        try FileSystem.makeDirectory(caDirectory)
        let caDatabase = "\(certs)/ca-database"
        try FileSystem.makeDirectory(caDatabase)
        try FileSystem.writeText("", to: "\(caDatabase)/index.txt")
        try FileSystem.writeText("01\n", to: "\(caDatabase)/serial")  // a fresh CA: any serial is unique
        let config = "\(certs)/openssl.cnf"
        try FileSystem.writeText(opensslConfig(caDatabase: caDatabase), to: config)
        let tool = OpenSSL(executable: openssl, config: config)

        let certificates = TestCertificates(
            caFile: "\(certs)/ca.crt",
            caDirectory: caDirectory,
            serverCertificate: "\(certs)/server.crt",
            serverKey: "\(certs)/server.key",
            clientCertificate: "\(certs)/client.crt",
            clientKey: "\(certs)/client.key",
            encryptedClientKey: "\(certs)/client-encrypted.key",
            clientKeyPassword: clientKeyPassword,
            otherCAFile: "\(certs)/other-ca.crt",
            otherCAClientCertificate: "\(certs)/other-ca-client.crt",
            otherCAClientKey: "\(certs)/other-ca-client.key",
            mismatchedServerCertificate: "\(certs)/mismatched-server.crt",
            mismatchedServerKey: "\(certs)/mismatched-server.key",
            expiredServerCertificate: "\(certs)/expired-server.crt",
            expiredServerKey: "\(certs)/expired-server.key"
        )
        let caKey = "\(certs)/ca.key"

        // The CA comes first; everything else only depends on it and runs in parallel.
        try await tool.selfSigned(commonName: "MosquittoTesting CA", key: caKey, certificate: certificates.caFile)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let hash = try await tool.run(["x509", "-hash", "-noout", "-in", certificates.caFile]).trimmingWhitespace()
                try FileSystem.copyFile(certificates.caFile, to: "\(caDirectory)/\(hash).0")
            }
            group.addTask {
                try await tool.selfSigned(
                    commonName: "MosquittoTesting Unrelated CA",
                    key: "\(certs)/other-ca.key",
                    certificate: certificates.otherCAFile
                )
                try await tool.signed(
                    commonName: "test-client", extensions: "client_ext",
                    caCertificate: certificates.otherCAFile, caKey: "\(certs)/other-ca.key",
                    key: certificates.otherCAClientKey, certificate: certificates.otherCAClientCertificate
                )
            }
            group.addTask {
                try await tool.signed(
                    commonName: "localhost", extensions: "server_ext", caCertificate: certificates.caFile, caKey: caKey,
                    key: certificates.serverKey, certificate: certificates.serverCertificate
                )
            }
            group.addTask {
                try await tool.signed(
                    commonName: "wrong.example.invalid", extensions: "mismatched_server_ext",
                    caCertificate: certificates.caFile, caKey: caKey,
                    key: certificates.mismatchedServerKey, certificate: certificates.mismatchedServerCertificate
                )
            }
            group.addTask {
                try await tool.signedExpired(
                    commonName: "localhost", extensions: "server_ext", caCertificate: certificates.caFile, caKey: caKey,
                    key: certificates.expiredServerKey, certificate: certificates.expiredServerCertificate
                )
            }
            group.addTask {
                try await tool.signed(
                    commonName: "test-client", extensions: "client_ext", caCertificate: certificates.caFile, caKey: caKey,
                    key: certificates.clientKey, certificate: certificates.clientCertificate
                )
                try await tool.run([
                    "pkey", "-in", certificates.clientKey, "-aes256",
                    "-passout", "pass:\(clientKeyPassword)", "-out", certificates.encryptedClientKey,
                ])
            }
            try await group.waitForAll()
        }
        return certificates
    }
}

// MARK: - openssl invocations

/// One `openssl` binary plus the config file holding the extension sections.
private struct OpenSSL: Sendable {
    let executable: String
    let config: String

    private static let keyArguments = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    /// Runs `openssl` with `arguments` and returns its standard output.
    @discardableResult
    func run(_ arguments: [String]) async throws -> String {
        try await ChildProcess.run(executable: executable, arguments: arguments).standardOutput
    }

    /// Creates a new key and a self-signed CA certificate for it.
    func selfSigned(commonName: String, key: String, certificate: String) async throws {
        try await run(
            ["req", "-x509", "-config", config, "-extensions", "ca_ext"] + Self.keyArguments + [
                "-keyout", key, "-out", certificate, "-days", CertificateGenerator.validityDays,
                "-sha256", "-subj", "/CN=\(commonName)",
            ]
        )
    }

    /// Creates a new key and a certificate signing request for it next to `certificate`; returns the request's path.
    private func newRequest(commonName: String, key: String, certificate: String) async throws -> String {
        let request = certificate + ".csr"
        try await run(
            ["req", "-new", "-config", config] + Self.keyArguments + [
                "-keyout", key, "-out", request, "-subj", "/CN=\(commonName)",
            ]
        )
        return request
    }

    /// Creates a new key and a certificate for it signed by the given CA.
    func signed(
        commonName: String, extensions: String, caCertificate: String, caKey: String, key: String, certificate: String
    ) async throws {
        let request = try await newRequest(commonName: commonName, key: key, certificate: certificate)
        try await run([
            "x509", "-req", "-in", request, "-CA", caCertificate, "-CAkey", caKey,
            "-set_serial", "0x" + String(UInt64.random(in: 1 ... .max), radix: 16),
            "-days", CertificateGenerator.validityDays, "-sha256",
            "-extfile", config, "-extensions", extensions, "-out", certificate,
        ])
    }

    /// Creates a new key and a certificate for it signed by the given CA whose validity ended in the past
    /// (`CertificateGenerator.expiredValidity`), with `openssl ca` and the config's `expired_ca` section.
    func signedExpired(
        commonName: String, extensions: String, caCertificate: String, caKey: String, key: String, certificate: String
    ) async throws {
        let request = try await newRequest(commonName: commonName, key: key, certificate: certificate)
        try await run([
            "ca", "-config", config, "-name", "expired_ca", "-batch", "-notext",
            "-in", request, "-cert", caCertificate, "-keyfile", caKey,
            "-startdate", CertificateGenerator.expiredValidity.start, "-enddate", CertificateGenerator.expiredValidity.end,
            "-extfile", config, "-extensions", extensions, "-out", certificate,
        ])
    }
}
