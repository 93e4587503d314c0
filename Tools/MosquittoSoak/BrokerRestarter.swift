import MosquittoTesting

// MARK: - BrokerRestarter

/// Restarts the soak's broker on a schedule while the load runs.
///
/// A graceful restart (`restart()`: SIGTERM, which makes mosquitto save its database, then a new
/// process on the same port) must lose nothing. A kill (`kill()`: SIGKILL, then `restart()`)
/// loses whatever mosquitto acknowledged but had not saved yet; how much depends on the autosave
/// setting (see ``SoakOptions/Autosave``).
struct BrokerRestarter {
    /// The broker to restart.
    let broker: MosquittoBroker
    /// The time from one restart's completion to the next restart.
    let interval: Duration
    /// Whether to kill the broker (SIGKILL) instead of stopping it (SIGTERM).
    let kills: Bool

    /// Restarts the broker every ``interval`` as long as the next restart begins before `deadline`.
    /// A restart in progress is always completed, so the broker is running when this returns
    /// normally; cancellation stops the schedule between restarts.
    /// - Parameter deadline: When the load stops; no restart starts at or after it.
    /// - Returns: How many restarts completed.
    /// - Throws: `MosquittoTestingError` when the broker could not be started again.
    func run(until deadline: ContinuousClock.Instant) async throws -> Int {
        let clock = ContinuousClock()
        var restarts = 0
        while clock.now + interval < deadline {
            do {
                try await Task.sleep(until: clock.now + interval, clock: clock)
            } catch {
                break  // cancelled
            }
            if kills { broker.kill() }
            try await broker.restart()
            restarts += 1
        }
        return restarts
    }
}
