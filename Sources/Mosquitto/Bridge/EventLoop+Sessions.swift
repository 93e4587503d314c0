internal import CMosquitto
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The loop thread's work on each session: take a (re)connected socket over, serve readiness,
// sweep for keepalive, watchdog, backoff and stop deadlines, end the session.

extension EventLoop {
    /// Takes over the socket of a session the executor has just (re)connected.
    func attach(_ token: UInt64, in driver: inout Driver) {
        guard var entry = driver.entries[token] else { return }
        let bridge = entry.bridge
        let interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        let socket = bridge.loopSocket.withLock { attached -> Int32? in
            let socket = bridge.handle.socket
            guard socket >= 0 else { return nil }
            guard swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_ADD, socket, interest, token) == 0 else {
                // Out of kernel memory for epoll: treat it as a lost connection (the reconnect
                // policy may try again) rather than leave the session undriven.
                bridge.handle.abortConnection()
                return nil
            }
            attached = socket
            return socket
        }
        guard let socket else {
            // The reconnect failed; the policy decides what follows.
            connectionEnded(token, .noConnection, in: &driver)
            return
        }
        entry.interest = interest
        entry.phase = .active(socket: socket)
        entry.nextCheck = ContinuousClock.now
        driver.entries[token] = entry
        bridge.sendDisconnectIfStopping()
        // CONNECT (and anything published meanwhile) is queued: write it now.
        service(token, readable: false, in: &driver)
        checkStop(token, in: &driver)
    }

    /// Reads (when the socket is readable), writes what is queued, and lets the bridge complete
    /// the pass, for one active session. Everything that touches the connection happens under
    /// its ``MosquittoBridge/loopSocket`` lock, which a publishing thread may hold instead to
    /// write directly (and which tells whether the socket is still the one registered here: a
    /// failed write on that thread closes it, and its number may then be reused by another
    /// connection, which epoll_ctl must never touch).
    func service(_ token: UInt64, readable: Bool, keepAlive: Bool = false, in driver: inout Driver) {
        guard var entry = driver.entries[token], case .active(let socket) = entry.phase else { return }
        let bridge = entry.bridge
        let handle = bridge.handle
        let stopping = entry.stopping
        var gaveUp = false
        let failure = bridge.loopSocket.withLock { attached -> MosquittoStatus? in
            guard attached == socket, handle.socket == socket else { return .noConnection }
            bridge.prepareForPass(&entry.pass, stopping: stopping)
            var status = MosquittoStatus.success
            // A stop: drain, then DISCONNECT, then only write (a read in libmosquitto's
            // "disconnecting" state would close the socket, DISCONNECT unwritten).
            var progress = stopping ? bridge.advanceStop() : .running
            if progress == .giveUp {
                gaveUp = true
                return nil
            }
            if keepAlive, progress == .running {
                status = handle.keepAlive()
            }
            if status.isSuccess, readable, progress == .running, handle.socket == socket {
                status = handle.read(maxPackets: bridge.configuration.packetsPerRead)
            }
            // Reading may have queued acknowledgements (PUBACK, PUBREC, ...): write them too.
            if status.isSuccess, handle.socket == socket, handle.wantsWrite {
                status = handle.write()
            }
            // The queue may be written now: DISCONNECT follows at once.
            if stopping, progress == .running, status.isSuccess, handle.socket == socket {
                progress = bridge.advanceStop()
                if progress == .writeOnly, handle.wantsWrite {
                    status = handle.write()
                }
            }
            guard status.isSuccess, handle.socket == socket else {
                // libmosquitto closed the socket (which also took it out of epoll): the
                // connection was lost, or the DISCONNECT was written.
                attached = -1
                return status.isSuccess ? .noConnection : status
            }
            // Writing only: readiness to read would wake the loop again and again for nothing.
            let interest = progress == .writeOnly
                ? EPOLLOUT.rawValue
                : EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (handle.wantsWrite ? EPOLLOUT.rawValue : 0)
            if interest != entry.interest, swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_MOD, socket, interest, token) == 0 {
                entry.interest = interest
            }
            // Re-subscription and the dead-link watchdog (which may shut the socket down: only
            // while it is surely this connection's).
            let wait = bridge.completePass(&entry.pass)
            entry.nextCheck = min(entry.nextCheck, ContinuousClock.now + .milliseconds(Int(wait)))
            return nil
        }
        driver.entries[token] = entry
        // Outside the I/O lock: a consumer woken here may publish at once, and then finds the
        // connection free to write to directly.
        bridge.didFinishPass()
        if gaveUp {
            end(token, in: &driver)
        } else if let failure {
            connectionEnded(token, failure, in: &driver)
        }
    }

    /// The session's connection is gone (libmosquitto has closed the socket): reconnect per the
    /// policy, or end the session.
    func connectionEnded(_ token: UInt64, _ status: MosquittoStatus, in driver: inout Driver) {
        guard var entry = driver.entries[token] else { return }
        if let delay = entry.bridge.connectionFailed(status, &entry.pass), !entry.stopping {
            entry.phase = .backingOff(until: ContinuousClock.now + delay)
            driver.entries[token] = entry
            // A stop requested meanwhile ends the backoff at once.
            checkStop(token, in: &driver)
        } else {
            end(token, in: &driver)
        }
    }

    /// Removes the session and ends it in the bridge (which may then destroy the handle).
    func end(_ token: UInt64, in driver: inout Driver) {
        guard let entry = driver.entries.removeValue(forKey: token) else { return }
        let bridge = entry.bridge
        bridge.loopSocket.withLock { attached in
            if case .active(let socket) = entry.phase, attached == socket, bridge.handle.socket == socket {
                // Still open (a DISCONNECT that could not be written in time): unregister it
                // before the handle is destroyed and the number reused.
                _ = swift_mosquitto_epoll_ctl(epoll, EPOLL_CTL_DEL, socket, 0, token)
            }
            attached = -1
        }
        bridge.closeSession()
    }

    /// Acts on a requested stop: ends a backoff at once; has an active connection drain its queue
    /// and write DISCONNECT (by the session's deadline).
    func checkStop(_ token: UInt64, in driver: inout Driver) {
        guard var entry = driver.entries[token], entry.bridge.isStopRequested else { return }
        switch entry.phase {
        case .connecting:
            return  // the executor's call returns first
        case .backingOff:
            end(token, in: &driver)
        case .active:
            if !entry.stopping {
                entry.stopping = true
                driver.entries[token] = entry
            }
            service(token, readable: false, in: &driver)
        }
    }

    /// Keepalive, watchdog, backoff ends and stop deadlines, for every session that is due.
    func sweep(_ driver: inout Driver) {
        let now = ContinuousClock.now
        for token in Array(driver.entries.keys) {
            guard let entry = driver.entries[token] else { continue }
            switch entry.phase {
            case .connecting:
                continue
            case .backingOff(let until):
                if entry.bridge.isStopRequested {
                    end(token, in: &driver)
                } else if now >= until {
                    driver.entries[token]?.phase = .connecting
                    let bridge = entry.bridge
                    executor.submit { [self] in
                        bridge.reconnectSocket()
                        post(.connectReturned(token, sessionGoesOn: true))
                    }
                }
            case .active:
                if entry.stopping {
                    // Drain, DISCONNECT, or the deadline: the pass asks the bridge.
                    service(token, readable: false, in: &driver)
                    continue
                }
                guard now >= entry.nextCheck else { continue }
                driver.entries[token]?.nextCheck = now + Self.checkInterval
                // Keepalive (a PINGREQ, or closing a link whose PINGRESP never came), then the
                // watchdog; and a stop that is due.
                service(token, readable: false, keepAlive: true, in: &driver)
                checkStop(token, in: &driver)
            }
        }
    }
}
