// MARK: - Scoped broker

/// Runs `body` with a started broker and always stops it afterwards, also when `body` throws.
/// - Parameters:
///   - configuration: How the broker is configured; `.anonymous` by default.
///   - isolation: The caller's actor isolation, inherited so `body` runs where the caller does.
///   - body: The code using the broker.
/// - Throws: `MosquittoTestingError` if the broker cannot be started, or whatever `body` throws.
/// - Returns: The value returned by `body`.
public func withMosquittoBroker<T>(
    _ configuration: MosquittoBrokerConfiguration = .anonymous,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (MosquittoBroker) async throws -> T
) async throws -> T {
    let broker = try await MosquittoBroker.start(configuration)
    do {
        let result = try await body(broker)
        broker.stop()
        return result
    } catch {
        broker.stop()
        throw error
    }
}
