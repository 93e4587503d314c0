#ifndef SWIFT_MOSQUITTO_SHIM_H
#define SWIFT_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
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

#endif
