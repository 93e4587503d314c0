import Mosquitto
import MosquittoTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Network faults", .timeLimit(.minutes(1)))
struct NetworkFaultTests {
    // MARK: Cut

    @Test("after a cut, a persistent-session subscriber reconnects with its session and loses no QoS 1 message")
    func cutSubscriberResumesSession() async throws {
        try await withFaultProxy { broker, proxy in
            let subscriber = try proxiedClient(proxy, clientID: uniqueClientID("cut")) { $0.cleanSession = false }
            let events = EventRecorder(subscriber.connectionEvents)
            try await subscriber.connect()
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))

            let publisher = try await connectedClient(broker)
            let count = 60
            for number in 0..<count {
                if number == count / 2 { proxy.cut() }
                try await publisher.publish(to: topic, payload: "\(number)", qos: .atLeastOnce)
                try await Task.sleep(for: .milliseconds(5))
            }

            let disconnected = try #require(await events.next(after: 0) { if case .disconnected = $0 { true } else { false } })
            let reconnecting = try #require(await events.next(after: disconnected.index) { if case .reconnecting = $0 { true } else { false } })
            let connected = try #require(await events.next(after: reconnecting.index) { if case .connected = $0 { true } else { false } })
            #expect(connected.event == .connected(sessionPresent: true))
            #expect(proxy.acceptedConnectionCount == 2)

            let payloads = try await received.waitForDistinct(count).compactMap(\.payloadString)
            #expect(Set(payloads) == Set((0..<count).map { "\($0)" }), "missing: \(Set((0..<count).map { "\($0)" }).subtracting(payloads).sorted())")
            print("cut: \(payloads.count - Set(payloads).count) duplicate(s) among \(payloads.count) deliveries of \(count) messages")
            try await subscriber.disconnect()
            try await publisher.disconnect()
        }
    }

    @Test("QoS 1 publishes through a cut connection are all acknowledged and delivered")
    func cutPublisherGetsEveryAcknowledgement() async throws {
        try await withFaultProxy { broker, proxy in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))

            let publisher = try proxiedClient(proxy, clientID: uniqueClientID("pub")) { $0.cleanSession = false }
            let events = EventRecorder(publisher.connectionEvents)
            try await publisher.connect()
            let count = 40
            var pending: [MQTTPendingPublish] = []
            for number in 0..<count {
                if number == count / 2 { proxy.cut() }
                pending.append(try publisher.beginPublish(to: topic, payload: Array("\(number)".utf8), qos: .atLeastOnce))
                try await Task.sleep(for: .milliseconds(5))
            }
            for publish in pending {
                try await publish.acknowledgement(timeout: .seconds(10))
            }
            #expect(await events.next(after: 0) { if case .disconnected = $0 { true } else { false } } != nil)
            #expect(proxy.acceptedConnectionCount == 2)

            let payloads = try await received.waitForDistinct(count).compactMap(\.payloadString)
            #expect(Set(payloads) == Set((0..<count).map { "\($0)" }))
            // And after the cut, an awaited publish goes straight through.
            try await publisher.publish(to: topic, payload: "after", qos: .atLeastOnce)
            #expect(try await received.waitForDistinct(count + 1).contains { $0.payloadString == "after" })
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    /// Publishes written into a black-holed connection are sent but lost: the broker never saw
    /// them and nobody acknowledged them. After the cut they must be sent again on the new
    /// connection, all of them and in order, whether the session is clean or persistent.
    @Test("QoS 1/2 publishes sent into a dead connection are sent again after the reconnect: all acknowledged and delivered, in order",
          arguments: [MQTTQoS.atLeastOnce, .exactlyOnce], [true, false])
    func inFlightPublishesSurviveAReconnect(qos: MQTTQoS, cleanSession: Bool) async throws {
        try await withFaultProxy { broker, proxy in
            let subscriber = try await connectedClient(broker)
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: qos))

            let publisher = try proxiedClient(proxy, clientID: uniqueClientID("flight")) { $0.cleanSession = cleanSession }
            let events = EventRecorder(publisher.connectionEvents)
            try await publisher.connect()
            for number in 0..<10 {
                try await publisher.publish(to: topic, payload: "\(number)", qos: qos)
            }
            proxy.blackHole()
            let count = 60
            var pending: [MQTTPendingPublish] = []
            for number in 10..<count {
                pending.append(try publisher.beginPublish(to: topic, payload: Array("\(number)".utf8), qos: qos))
            }
            // Written into the void (20 in flight, the rest queued behind them), unacknowledged.
            try await Task.sleep(for: .milliseconds(300))
            #expect(publisher.pendingPublishCount == count - 10)
            #expect(received.messages.count == 10, "nothing got through the black hole")
            proxy.cut()
            for publish in pending {
                let receipt = try await publish.acknowledgement(timeout: .seconds(15))
                #expect(receipt.messageID == publish.messageID)
            }
            #expect(await events.next(after: 0) { if case .disconnected = $0 { true } else { false } } != nil)
            #expect(proxy.acceptedConnectionCount == 2)
            #expect(publisher.pendingPublishCount == 0)

            let deliveries = try await received.waitForDistinct(count).compactMap(\.payloadString)
            var firstArrivals: [String] = []
            for payload in deliveries where !firstArrivals.contains(payload) { firstArrivals.append(payload) }
            #expect(firstArrivals == (0..<count).map { "\($0)" })
            if qos == .exactlyOnce { #expect(deliveries.count == count, "QoS 2: no duplicates") }
            try await publisher.disconnect()
            try await subscriber.disconnect()
        }
    }

    // MARK: Black hole

    @Test("a black-holed connection is detected within 1.5 × keepalive and the client reconnects")
    func blackHoleDetectedWithinKeepalive() async throws {
        // 5 s is the smallest keepalive libmosquitto accepts (0 or 5...65535).
        let keepAlive = Duration.seconds(5)
        try await withFaultProxy { broker, proxy in
            let subscriber = try proxiedClient(proxy, clientID: uniqueClientID("hole")) {
                $0.cleanSession = false
                $0.keepAlive = keepAlive
            }
            let events = EventRecorder(subscriber.connectionEvents)
            try await subscriber.connect()
            let topic = uniqueTopic()
            let received = MessageCollector(try await subscriber.subscribe(to: topic, qos: .atLeastOnce))

            // Right after the SUBACK: the watchdog counts from the last byte received.
            let blackHoledAt = ContinuousClock.now
            proxy.blackHole()
            #expect(proxy.connectionCount == 1)  // Still open: no FIN, no RST.
            let disconnected = try #require(
                await events.next(after: 0, timeout: .seconds(20)) { if case .disconnected = $0 { true } else { false } }
            )
            let detection = disconnected.at - blackHoledAt
            guard case .disconnected(let cause) = disconnected.event else { return }
            let error = try #require(cause, "an unexpected disconnection carries an MQTTError")
            print("black hole: detected after \(detection.milliseconds) ms (limit \((keepAlive * 1.5).milliseconds) ms); \(error.code): \(error)")
            #expect(detection <= keepAlive * 1.5, "detected after \(detection)")
            #expect(error.code == .connectionLost)
            #expect(error.description.contains("dead link"), "\(error)")

            let connected = try #require(
                await events.next(after: disconnected.index) { if case .connected = $0 { true } else { false } }
            )
            #expect(connected.event == .connected(sessionPresent: true))
            let publisher = try await connectedClient(broker)
            try await publisher.publish(to: topic, payload: "after the black hole", qos: .atLeastOnce)
            #expect(try await received.waitForDistinct(1).map(\.payloadString) == ["after the black hole"])
            try await subscriber.disconnect()
            try await publisher.disconnect()
        }
    }

    @Test("an idle, healthy connection with a 5 s keepalive stays up for 12 s: the dead-link watchdog does not fire")
    func idleHealthyLinkStaysUp() async throws {
        try await withMosquittoBroker { broker in
            let client = try makeClient(broker) {
                $0.keepAlive = .seconds(5)
                $0.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(300))
            }
            let events = client.connectionEvents
            try await client.connect()
            let watcher = Task { await nextDisconnection(on: events) }
            try await Task.sleep(for: .seconds(12))
            #expect(client.isConnected)
            try await client.disconnect()
            #expect(await watcher.value == nil, "the only disconnection is the requested one")
        }
    }

    // MARK: The proxy itself

    @Test("the proxy forwards both ways, cuts, black-holes current or new connections, heals, and stops")
    func proxySemantics() async throws {
        let upstream = try LoopbackListener()
        let proxy = try TCPFaultProxy(upstreamPort: upstream.port)
        defer { proxy.stop() }
        #expect(proxy.host == "127.0.0.1")

        // Forwarding both ways.
        let first = try RawConnection(through: proxy, upstream: upstream)
        #expect(first.client.exchange("ping", with: first.server) == "ping")
        let firstServer = try #require(first.server)
        #expect(firstServer.exchange("pong", with: first.client) == "pong")
        #expect(proxy.connectionCount == 1)

        // A black hole: both ends stay open, nothing passes either way.
        proxy.blackHole()
        #expect(first.client.exchange("lost", with: first.server) == .timedOut)
        #expect(firstServer.exchange("lost", with: first.client) == .timedOut)
        #expect(proxy.connectionCount == 1)

        // A new connection forwards; black-holing new connections too stops that until heal().
        let second = try RawConnection(through: proxy, upstream: upstream)
        #expect(second.client.exchange("new", with: second.server) == "new")
        proxy.blackHole(includingNewConnections: true)
        #expect(try RawConnection(through: proxy, upstream: upstream, expectUpstream: false).server == nil)
        proxy.heal()
        let third = try RawConnection(through: proxy, upstream: upstream)
        #expect(third.client.exchange("healed", with: third.server) == "healed")
        #expect(proxy.acceptedConnectionCount == 4)

        // A cut closes every connection on both sides.
        proxy.cut()
        #expect(proxy.connectionCount == 0)
        #expect(third.client.receive() == .closed)
        #expect(third.server?.receive() == .closed)
        #expect(first.client.receive() == .closed)

        // After stop() the proxy accepts nothing any more. (The port itself may already belong to
        // a broker of a test running in parallel, so a connection attempt alone proves nothing.)
        proxy.stop()
        proxy.stop()
        let late = try? RawConnection(through: proxy, upstream: upstream, expectUpstream: false)
        #expect(late?.server == nil, "nothing is forwarded after stop()")
        #expect(proxy.acceptedConnectionCount == 4)
        #expect(proxy.connectionCount == 0)
    }

    @Test("a muted upstream: the client hears nothing, while its bytes and its close still reach the upstream")
    func proxyMutesUpstreamOnly() async throws {
        let upstream = try LoopbackListener()
        let proxy = try TCPFaultProxy(upstreamPort: upstream.port)
        defer { proxy.stop() }
        let connection = try RawConnection(through: proxy, upstream: upstream)
        let server = try #require(connection.server)
        #expect(server.exchange("before", with: connection.client) == "before")

        proxy.muteUpstream()
        #expect(server.exchange("lost", with: connection.client) == .timedOut)
        #expect(connection.client.exchange("heard", with: server) == "heard")
        #expect(proxy.connectionCount == 1)
        // The client closes: the upstream sees it.
        _ = shutdown(connection.client.descriptor, Int32(SHUT_RDWR))
        #expect(server.receive(milliseconds: 2_000) == .closed)
        // Then the upstream closes too, and the proxy drops the connection.
        _ = shutdown(server.descriptor, Int32(SHUT_RDWR))
        let deadline = ContinuousClock.now + .seconds(5)
        while proxy.connectionCount > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(proxy.connectionCount == 0)

        // A new connection forwards both ways.
        let next = try RawConnection(through: proxy, upstream: upstream)
        #expect(next.client.exchange("again", with: next.server) == "again")
        #expect(try #require(next.server).exchange("back", with: next.client) == "back")
    }
}

// MARK: - Helpers

extension NetworkFaultTests {
    /// Runs `body` with a broker and a fault proxy in front of it, stopping both afterwards.
    private func withFaultProxy(_ body: (MosquittoBroker, TCPFaultProxy) async throws -> Void) async throws {
        try await withMosquittoBroker { broker in
            let proxy = try TCPFaultProxy(forwardingTo: broker)
            defer { proxy.stop() }
            try await body(broker, proxy)
        }
    }

    /// A client that connects through `proxy` and reconnects quickly.
    private func proxiedClient(
        _ proxy: TCPFaultProxy, clientID: String, _ configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) throws -> MQTTClient {
        var configuration = MQTTConfiguration(host: proxy.host, port: proxy.port, clientID: clientID)
        configuration.reconnect = .exponentialBackoff(minimumDelay: .milliseconds(100), maximumDelay: .milliseconds(300))
        configuration.connectTimeout = .seconds(10)
        configuration.operationTimeout = .seconds(10)
        configuration.eventLoopGroup = testEventLoopGroup
        configure(&configuration)
        return try MQTTClient(configuration: configuration)
    }
}

extension Duration {
    /// The duration in whole milliseconds, for messages.
    fileprivate var milliseconds: Int64 {
        components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension MessageCollector {
    /// Waits (at most `timeout`) until `count` different payloads arrived, then returns every delivery.
    func waitForDistinct(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [MQTTMessage] {
        let deadline = ContinuousClock.now + timeout
        while Set(messages.map(\.payload)).count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        return messages
    }
}

// MARK: - Raw sockets

/// The outcome of reading from a raw test socket.
private enum RawReceive: Equatable, ExpressibleByStringLiteral {
    case data(String)
    case closed
    case timedOut

    init(stringLiteral value: String) { self = .data(value) }
}

/// A blocking loopback socket with a receive timeout.
private struct RawSocket {
    let descriptor: Int32

    /// Sends `text` on this socket and reads what arrives on `peer`.
    func exchange(_ text: String, with peer: RawSocket?) -> RawReceive {
        guard let peer else { return .closed }
        _ = Array(text.utf8).withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return peer.receive()
    }

    /// Reads once, waiting at most `milliseconds`.
    func receive(milliseconds: Int32 = 300) -> RawReceive {
        var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, milliseconds) == 1 else { return .timedOut }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count > 0 ? .data(String(decoding: buffer[..<count], as: UTF8.self)) : .closed
    }
}

/// A client socket connected through the proxy and, when the proxy forwards, the upstream's accepted end.
private final class RawConnection {
    let client: RawSocket
    let server: RawSocket?

    init(through proxy: TCPFaultProxy, upstream listener: LoopbackListener, expectUpstream: Bool = true) throws {
        client = RawSocket(descriptor: try LoopbackNetwork.connect(port: proxy.port))
        server = try listener.accept(timeout: .milliseconds(expectUpstream ? 2_000 : 300)).map(RawSocket.init(descriptor:))
    }

    deinit {
        close(client.descriptor)
        if let server { close(server.descriptor) }
    }
}
