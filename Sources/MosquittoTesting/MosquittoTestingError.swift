// MARK: - Error

/// An error thrown by the `MosquittoTesting` fixture, carrying a human-readable message.
public struct MosquittoTestingError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, including relevant broker log lines or tool output where available.
    public let message: String

    /// Creates an error with the given message.
    /// - Parameters:
    ///   - message: What went wrong.
    public init(_ message: String) {
        self.message = message
    }

    /// The error's message.
    public var description: String { message }
}
