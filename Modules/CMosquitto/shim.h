#ifndef SWIFT_MOSQUITTO_SHIM_H
#define SWIFT_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
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

#endif
