#ifndef SWIFT_MOSQUITTO_SHIM_H
#define SWIFT_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
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
