#ifndef SWIFT_MOSQUITTO_SHIM_H
#define SWIFT_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

/// Milliseconds since the kernel last received data (not a bare ACK) on the TCP socket `fd`,
/// from `TCP_INFO`; -1 if `fd` is not a TCP socket (a Unix socket, or closed).
///
/// The Swift layer's dead-link watchdog reads this: libmosquitto does the reading itself and does
/// not say when it last heard from the broker.
static inline long long swift_mosquitto_milliseconds_since_receive(int fd) {
    struct tcp_info info;
    socklen_t length = sizeof(info);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) {
        return -1;
    }
    return (long long)info.tcpi_last_data_recv;
}

/// Closes the socket pair that libmosquitto opens in every handle to wake its own `select()`
/// loop (`mosquitto_loop`), for a handle that an event loop drives instead: there the pair is
/// never read, so it only costs two descriptors per client and a wasted `write()` per packet.
///
/// The pair is private to libmosquitto: the client library's `struct mosquitto` begins with
/// `sock, sockpairR, sockpairW` (libmosquitto 2.0, `mosquitto_internal.h`), and libmosquitto
/// supports a handle without the pair (`socketpair()` may fail; it then skips the wake-up
/// writes). Because that layout is not public, it is verified first, on the handle itself: the
/// first field must be the (still closed) socket, and the next two must be a connected pair of
/// Unix sockets (a byte written to the one is read from the other). Only then are both closed
/// and marked absent. Call it before the handle is shared with another thread.
///
/// Returns 1 if the pair was closed, 0 if the layout did not match (the handle is unchanged).
static inline int swift_mosquitto_close_wakeup_pair(struct mosquitto *mosq) {
    int *fields = (int *)mosq;
    if (fields[0] != -1 || mosquitto_socket(mosq) != -1) {
        return 0;
    }
    int reader = fields[1], writer = fields[2];
    if (reader < 0 || writer < 0 || reader == writer) {
        return 0;
    }
    int domain = 0;
    socklen_t length = sizeof(domain);
    if (getsockopt(writer, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_UNIX) {
        return 0;
    }
    length = sizeof(domain);
    if (getsockopt(reader, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_UNIX) {
        return 0;
    }
    char probe = 0x5a, echo = 0;
    if (send(writer, &probe, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        return 0;
    }
    if (recv(reader, &echo, 1, MSG_DONTWAIT) != 1 || echo != probe) {
        return 0;
    }
    fields[1] = -1;
    fields[2] = -1;
    close(reader);
    close(writer);
    return 1;
}

/// Wakes a `mosquitto_loop` that waits in `select()` on the handle's own socket pair, as
/// libmosquitto does itself whenever a command queues a packet; for a stop that queues nothing
/// yet (the driver drains, then sends DISCONNECT from its own thread).
///
/// The pair is private (see `swift_mosquitto_close_wakeup_pair`): the layout is checked on every
/// call, cheaply: the first field must be the handle's socket, and the third an `AF_UNIX` socket.
/// Returns 1 if a byte was written, 0 otherwise (the loop then notices within its timeout).
static inline int swift_mosquitto_wake_loop(struct mosquitto *mosq) {
    int *fields = (int *)mosq;
    if (fields[0] != mosquitto_socket(mosq)) {
        return 0;
    }
    int writer = fields[2];
    if (writer < 0 || writer == fields[0]) {
        return 0;
    }
    int domain = 0;
    socklen_t length = sizeof(domain);
    if (getsockopt(writer, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_UNIX) {
        return 0;
    }
    char byte = 0;
    return send(writer, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 1 : 0;
}

/// Names the calling thread (15 bytes at most), as `top -H` and debuggers show it.
static inline void swift_mosquitto_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/// `epoll_ctl` with the event's data set to `token` (the C union and the packed struct stay here).
static inline int swift_mosquitto_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &event);
}

/// `epoll_wait` for at most 256 events, copied out as parallel arrays of tokens and event bits.
static inline int swift_mosquitto_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int capacity, int timeout) {
    struct epoll_event ready[256];
    if (capacity > 256) {
        capacity = 256;
    }
    int count = epoll_wait(epfd, ready, capacity, timeout);
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}

// MARK: - TLS credentials from memory (an SSL_CTX handed to libmosquitto, MOSQ_OPT_SSL_CTX)

/// A client `SSL_CTX` with the settings libmosquitto would apply to its own (2.0, `net_mosq.c`
/// `net__init_ssl_ctx`): at least `minimum_version` (`TLS1_2_VERSION` or `TLS1_3_VERSION`), no
/// compression, released buffers, and the peer's certificate verified. NULL on failure (OpenSSL's
/// error queue says why). Trust, identity, host name and ALPN are added by the functions below.
static inline SSL_CTX *swift_mosquitto_tls_context_new(int minimum_version) {
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (!context) {
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(context, minimum_version) != 1) {
        SSL_CTX_free(context);
        return NULL;
    }
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    return context;
}

/// Whether the newest error on OpenSSL's queue is PEM's "no start line": what reading a PEM block
/// past the last one (or from data without any) leaves behind.
static inline int swift_mosquitto_tls_last_error_is_no_start_line(void) {
    unsigned long code = ERR_peek_last_error();
    return ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE;
}

/// Adds every PEM certificate in `data` to the context's trust store (other PEM blocks are skipped).
///
/// Returns how many were added (1 or more); 0 when `data` holds no PEM certificate at all; -1 when
/// a certificate is malformed or refused (OpenSSL's error queue says why).
static inline int swift_mosquitto_tls_add_ca_pem(SSL_CTX *context, const void *data, int length) {
    BIO *bio = BIO_new_mem_buf(data, length);
    if (!bio) {
        return -1;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(context);
    int count = 0;
    X509 *certificate;
    while ((certificate = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int added = X509_STORE_add_cert(store, certificate);
        X509_free(certificate);
        if (added != 1) {
            BIO_free(bio);
            return -1;
        }
        count++;
    }
    BIO_free(bio);
    if (!swift_mosquitto_tls_last_error_is_no_start_line()) {
        return -1;
    }
    ERR_clear_error();
    return count;
}

/// Uses the first PEM certificate in `data` as the client certificate and the ones after it as its
/// chain (intermediate CAs), as `SSL_CTX_use_certificate_chain_file` does for a file.
///
/// Returns 1 on success; 0 when `data` holds no PEM certificate; -1 when a certificate is
/// malformed or refused (OpenSSL's error queue says why).
static inline int swift_mosquitto_tls_use_certificate_pem(SSL_CTX *context, const void *data, int length) {
    BIO *bio = BIO_new_mem_buf(data, length);
    if (!bio) {
        return -1;
    }
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (!leaf) {
        BIO_free(bio);
        if (swift_mosquitto_tls_last_error_is_no_start_line()) {
            return 0;
        }
        return -1;
    }
    int used = SSL_CTX_use_certificate(context, leaf);
    X509_free(leaf);
    if (used != 1 || SSL_CTX_clear_chain_certs(context) != 1) {
        BIO_free(bio);
        return -1;
    }
    X509 *intermediate;
    while ((intermediate = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(context, intermediate) != 1) {
            X509_free(intermediate);
            BIO_free(bio);
            return -1;
        }
    }
    BIO_free(bio);
    if (!swift_mosquitto_tls_last_error_is_no_start_line()) {
        return -1;
    }
    ERR_clear_error();
    return 1;
}

/// The passphrase OpenSSL asks for while decoding an encrypted key, and whether it asked.
typedef struct swift_mosquitto_tls_passphrase {
    const char *passphrase;
    int asked;
} swift_mosquitto_tls_passphrase;

/// OpenSSL's `pem_password_cb`: copies the passphrase in, and never prompts on the terminal
/// (OpenSSL's default without a callback). Refuses (returns -1) without a passphrase or with one
/// longer than OpenSSL's buffer, rather than truncating it.
static inline int swift_mosquitto_tls_passphrase_callback(char *buffer, int size, int rwflag, void *userdata) {
    (void)rwflag;
    swift_mosquitto_tls_passphrase *state = (swift_mosquitto_tls_passphrase *)userdata;
    state->asked = 1;
    if (!state->passphrase || size <= 0) {
        return -1;
    }
    size_t length = strlen(state->passphrase);
    if (length > (size_t)size) {
        return -1;
    }
    memcpy(buffer, state->passphrase, length);
    return (int)length;
}

/// Decodes a PEM private key, from `path` when it is not NULL, else from `length` bytes at `data`,
/// decrypting it with `passphrase` (NULL for none) if it is encrypted, and makes it the context's key.
///
/// Returns 1 on success; 0 when no PEM private key was found (OpenSSL never asked for a
/// passphrase); -1 when the key is encrypted and `passphrase` is NULL; -2 when decoding failed after
/// OpenSSL asked for the passphrase (a wrong one, or a damaged encrypted key); -3 when OpenSSL
/// refused the decoded key; -4 when the file cannot be opened; -5 when the key does not match the
/// certificate already in the context. OpenSSL's error queue says why.
static inline int swift_mosquitto_tls_use_private_key(
    SSL_CTX *context, const char *path, const void *data, int length, const char *passphrase
) {
    BIO *bio = path ? BIO_new_file(path, "r") : BIO_new_mem_buf(data, length);
    if (!bio) {
        return path ? -4 : -3;
    }
    swift_mosquitto_tls_passphrase state = { passphrase, 0 };
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, swift_mosquitto_tls_passphrase_callback, &state);
    BIO_free(bio);
    if (!key) {
        if (!state.asked) {
            return 0;
        }
        return passphrase ? -2 : -1;
    }
    int used = SSL_CTX_use_PrivateKey(context, key);
    EVP_PKEY_free(key);
    if (used == 1) {
        return 1;
    }
    unsigned long code = ERR_peek_last_error();
    return ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH ? -5 : -3;
}

/// Makes the handshake check that the server's certificate names `host` (`X509_check_host`, no
/// partial wildcards like `f*.example.com`), or, for an IPv4 or IPv6 literal, carries it as an IP
/// address (`X509_check_ip`). libmosquitto does this in its own verify callback, which a context
/// used without its defaults does not get. Returns 1 on success.
static inline int swift_mosquitto_tls_verify_host(SSL_CTX *context, const char *host) {
    X509_VERIFY_PARAM *parameters = SSL_CTX_get0_param(context);
    unsigned char address[16];
    if (inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1) {
        return X509_VERIFY_PARAM_set1_ip_asc(parameters, host);
    }
    X509_VERIFY_PARAM_set_hostflags(parameters, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(parameters, host, 0);
}

/// Offers the one ALPN protocol `protocol` (1 to 255 bytes), as `MOSQ_OPT_TLS_ALPN` does.
/// Returns 1 on success.
static inline int swift_mosquitto_tls_set_alpn(SSL_CTX *context, const char *protocol) {
    size_t length = strlen(protocol);
    if (length == 0 || length > 255) {
        return 0;
    }
    unsigned char wire[256];
    wire[0] = (unsigned char)length;
    memcpy(wire + 1, protocol, length);
    return SSL_CTX_set_alpn_protos(context, wire, (unsigned int)length + 1) == 0 ? 1 : 0;
}

#endif
