// MARK: - Certificates

/// Paths of the PEM files generated for a TLS broker (all inside the broker's temp dir).
public struct TestCertificates: Sendable, Equatable {
    /// The CA certificate that signed the server and client certificates.
    public let caFile: String

    /// A directory holding `caFile` under its OpenSSL hash name (`<hash>.0`), usable as a CA path.
    public let caDirectory: String

    /// The server certificate (CN `localhost`, subjectAltName `DNS:localhost,IP:127.0.0.1`).
    public let serverCertificate: String

    /// The server certificate's unencrypted private key.
    public let serverKey: String

    /// A client certificate (CN `test-client`) signed by the CA.
    public let clientCertificate: String

    /// The client certificate's private key, not encrypted.
    public let clientKey: String

    /// The same client key encrypted with `clientKeyPassword` (PKCS#8, AES-256).
    public let encryptedClientKey: String

    /// The password that decrypts `encryptedClientKey`.
    public let clientKeyPassword: String

    /// An unrelated CA certificate, for "wrong CA" tests.
    public let otherCAFile: String

    /// A client certificate (CN `test-client`) signed by the unrelated CA of `otherCAFile`, not by `caFile`:
    /// a broker requiring client certificates refuses it.
    public let otherCAClientCertificate: String

    /// The private key of `otherCAClientCertificate`, not encrypted.
    public let otherCAClientKey: String

    /// A server certificate signed by the CA whose only name is `wrong.example.invalid`, for hostname-mismatch tests.
    public let mismatchedServerCertificate: String

    /// The private key of `mismatchedServerCertificate`, not encrypted.
    public let mismatchedServerKey: String

    /// A server certificate signed by the CA for `localhost` and `127.0.0.1` (like `serverCertificate`) whose
    /// validity ended long ago (2020-01-01 to 2020-01-02), for expired-certificate tests.
    public let expiredServerCertificate: String

    /// The private key of `expiredServerCertificate`, not encrypted.
    public let expiredServerKey: String
}
