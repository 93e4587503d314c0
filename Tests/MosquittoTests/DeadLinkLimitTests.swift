import Testing
@testable import Mosquitto

@Suite("Dead-link watchdog limit", .timeLimit(.minutes(1)))
struct DeadLinkLimitTests {
    @Test("the limit lies between a healthy link's longest silence and 1.5 x keepalive", arguments: [5, 6, 10, 30, 60, 300, 65_535])
    func limitBounds(keepAlive: Int) {
        let limit = MosquittoBridge.deadLinkLimit(keepAliveSeconds: keepAlive)
        #expect(limit >= keepAlive * 1_000 + 1_500, "a healthy link pings after one keepalive, at most a second late")
        #expect(limit < keepAlive * 1_500, "the disconnection must be reported within 1.5 x keepalive")
    }

    @Test("known values")
    func knownValues() {
        #expect(MosquittoBridge.deadLinkLimit(keepAliveSeconds: 5) == 6_750)
        #expect(MosquittoBridge.deadLinkLimit(keepAliveSeconds: 60) == 84_000)
    }
}
