internal import CMosquitto

// MARK: - TLSContext

/// The OpenSSL context (`SSL_CTX`) for a TLS configuration with a credential in memory, built with
/// the C functions in `shim.h` and handed to libmosquitto as `MOSQ_OPT_SSL_CTX`.
///
/// libmosquitto 2.0 uses such a context in one of two ways (`net__init_ssl_ctx`):
/// - with `MOSQ_OPT_SSL_CTX_WITH_DEFAULTS` on (its default), it still requires a CA file or path
///   set through `mosquitto_tls_set`, fails the connect with `MOSQ_ERR_INVAL` without one, and on
///   every connect adds its own settings to the context (CA, certificate and key files, TLS
///   version, ciphers, ALPN, its host-name checking verify callback). In-memory CAs have no path,
///   and 2.0.11 has a bug in that mode (#2463, fixed in 2.0.15: its verify callback cannot find
///   the handle, so every verification fails);
/// - with it off, it uses the context as it is: it only creates the `SSL` from it, sets the host
///   name for SNI and runs the handshake. `mosquitto_tls_insecure_set`, `mosquitto_tls_opts_set`
///   and `MOSQ_OPT_TLS_ALPN` then do nothing.
///
/// This uses the second way, so everything libmosquitto would add is set here, from the same
/// ``MQTTTLSConfiguration`` fields: TLS version, no compression, peer verification, the host-name
/// check (OpenSSL's `X509_check_host` / `X509_check_ip`, skipped only by
/// ``MQTTTLSConfiguration/insecureSkipHostnameVerification`` and, as libmosquitto does, for a Unix
/// socket), ciphers, ALPN. File sources mixed in are read here too (`SSL_CTX_load_verify_locations`,
/// `SSL_CTX_use_certificate_chain_file`, the key through a file BIO), so every credential fails
/// the same way, when the client is created.
///
/// Ownership: `mosquitto_void_option(MOSQ_OPT_SSL_CTX)` takes a reference of its own
/// (`SSL_CTX_up_ref`, 2.0.11 and 2.0.21 alike) and releases it in `mosquitto_destroy`; the
/// reference made here is released right after handing the context over. The context is reused
/// for every reconnect.
enum TLSContext {
    /// Builds the context for `tls`, verifying the broker as `host` (`port` 0: a Unix socket).
    ///
    /// - Returns: An `SSL_CTX *` holding one reference, which the caller releases with `SSL_CTX_free`.
    /// - Throws: ``MQTTError/Code/invalidConfiguration`` naming the setting OpenSSL refused and why;
    ///   never a secret.
    static func make(for tls: MQTTTLSConfiguration, host: String, port: Int) throws(MQTTError) -> OpaquePointer {
        ERR_clear_error()
        defer { ERR_clear_error() }
        let version = tls.minimumVersion == .v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard let context = swift_mosquitto_tls_context_new(Int32(version)) else {
            throw failure("cannot create an OpenSSL TLS context")
        }
        do {
            try loadTrust(tls, into: context)
            try loadIdentity(tls, into: context)
            try applyOptions(tls, host: host, port: port, to: context)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return context
    }

    // MARK: Trust

    private static func loadTrust(_ tls: MQTTTLSConfiguration, into context: OpaquePointer) throws(MQTTError) {
        switch tls.caCertificates?.storage {
        case .file(let path):
            guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                throw failure("caFile \"\(path)\": cannot load CA certificates")
            }
        case .pem(let bytes):
            let name = "caCertificates (in-memory PEM)"
            let added = try withPEM(bytes, name) { swift_mosquitto_tls_add_ca_pem(context, $0, $1) }
            if added == 0 { throw failure("\(name): no PEM certificate found, expected -----BEGIN CERTIFICATE-----") }
            if added < 0 { throw failure("\(name): a certificate is malformed") }
        case nil:
            break
        }
        let directory = tls.caDirectory ?? (tls.caCertificates == nil ? "/etc/ssl/certs" : nil)
        if let directory, SSL_CTX_load_verify_locations(context, nil, directory) != 1 {
            throw failure("caDirectory \"\(directory)\": cannot load CA certificates")
        }
    }

    // MARK: Identity

    private static func loadIdentity(_ tls: MQTTTLSConfiguration, into context: OpaquePointer) throws(MQTTError) {
        guard let certificate = tls.certificate, let key = tls.privateKey else {
            if tls.certificate != nil || tls.privateKey != nil {
                throw MQTTError(
                    .invalidConfiguration, operation: .configure,
                    detail: "a client certificate and its private key go together: set both or neither"
                )
            }
            return
        }
        let certificateName = label(certificate, file: "certificateFile", memory: "certificate")
        switch certificate.storage {
        case .file(let path):
            guard SSL_CTX_use_certificate_chain_file(context, path) == 1 else {
                throw failure("\(certificateName): cannot load the certificate")
            }
        case .pem(let bytes):
            let used = try withPEM(bytes, certificateName) { swift_mosquitto_tls_use_certificate_pem(context, $0, $1) }
            if used == 0 { throw failure("\(certificateName): no PEM certificate found, expected -----BEGIN CERTIFICATE-----") }
            if used < 0 { throw failure("\(certificateName): the certificate is malformed") }
        }

        let keyName = label(key, file: "keyFile", memory: "privateKey")
        let used: Int32
        switch key.storage {
        case .file(let path):
            used = withOptionalCString(tls.keyPassword) { swift_mosquitto_tls_use_private_key(context, path, nil, 0, $0) }
        case .pem(let bytes):
            used = try withPEM(bytes, keyName) { data, length in
                withOptionalCString(tls.keyPassword) { swift_mosquitto_tls_use_private_key(context, nil, data, length, $0) }
            }
        }
        switch used {
        case 1: break
        case 0: throw failure("\(keyName): no PEM private key found, expected -----BEGIN ... PRIVATE KEY-----")
        case -1:
            ERR_clear_error()
            throw failure("\(keyName) is encrypted and no keyPassword is set")
        case -2: throw failure("\(keyName) cannot be decrypted: wrong keyPassword, or a damaged key")
        case -4: throw failure("\(keyName): cannot open the file")
        case -5: throw failure("\(keyName) does not match \(certificateName)")
        default: throw failure("\(keyName): OpenSSL refused the key")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw failure("\(keyName) does not match \(certificateName)")
        }
    }

    // MARK: Options libmosquitto would set

    private static func applyOptions(_ tls: MQTTTLSConfiguration, host: String, port: Int, to context: OpaquePointer) throws(MQTTError) {
        if let ciphers = tls.ciphers, SSL_CTX_set_cipher_list(context, ciphers) != 1 {
            throw failure("ciphers \"\(ciphers)\": no usable cipher")
        }
        if let alpn = tls.alpn, swift_mosquitto_tls_set_alpn(context, alpn) != 1 {
            throw failure("alpn must be 1 to 255 bytes")
        }
        // libmosquitto does not check the host name of a Unix socket (port 0) either.
        if !tls.insecureSkipHostnameVerification, port != 0, swift_mosquitto_tls_verify_host(context, host) != 1 {
            throw failure("host \"\(host)\": cannot be set for certificate verification")
        }
    }

    // MARK: Helpers

    /// `name` for a file source (with its path) or an in-memory one.
    private static func label(_ source: MQTTTLSSource, file: String, memory: String) -> String {
        if let path = source.path { "\(file) \"\(path)\"" } else { "\(memory) (in-memory PEM)" }
    }

    /// Calls `body` with the PEM bytes' address and length; refuses empty or oversized data.
    private static func withPEM(
        _ bytes: [UInt8], _ name: String, _ body: (UnsafeRawPointer, Int32) -> Int32
    ) throws(MQTTError) -> Int32 {
        guard !bytes.isEmpty else { throw MQTTError(.invalidConfiguration, operation: .configure, detail: "\(name) is empty") }
        guard bytes.count <= Int(Int32.max) else { throw MQTTError(.invalidConfiguration, operation: .configure, detail: "\(name) is too large") }
        return bytes.withUnsafeBytes { body($0.baseAddress!, Int32($0.count)) }
    }

    private static func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let string else { return body(nil) }
        return string.withCString { body($0) }
    }

    /// An ``MQTTError/Code/invalidConfiguration`` error with `detail` and what OpenSSL's error
    /// queue says, each distinct reason once (OpenSSL often queues the same one several times).
    private static func failure(_ detail: String) -> MQTTError {
        let reasons = openSSLErrors()
        let text = reasons.isEmpty ? detail : "\(detail) (OpenSSL: \(reasons.joined(separator: "; ")))"
        return MQTTError(.invalidConfiguration, operation: .configure, detail: text)
    }

    /// Drains the calling thread's OpenSSL error queue: `library: reason` per error, oldest first,
    /// duplicates dropped.
    static func openSSLErrors() -> [String] {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? "error \(String(code, radix: 16))"
            let text = ERR_lib_error_string(code).map { "\(String(cString: $0)): \(reason)" } ?? reason
            if !reasons.contains(text) { reasons.append(text) }
        }
        return reasons
    }
}
