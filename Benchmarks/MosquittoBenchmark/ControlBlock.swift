import CMosquittoBaseline

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - RoleFailure

/// A role or a run that failed outright (as opposed to a target that was missed).
struct RoleFailure: Error, Sendable, CustomStringConvertible {
    /// What failed.
    let description: String

    /// Creates a failure described by `description`.
    init(_ description: String) {
        self.description = description
    }
}

// MARK: - ControlBlock

/// The page a publisher process and a subscriber process share (see `bench_control` in
/// CMosquittoBaseline.h): the received count, timestamps, the window's futex, "publisher done".
///
/// `@unchecked Sendable` is safe: the pointee is shared with another process anyway, and it is
/// only ever read and written through CMosquittoBaseline's functions, which use atomic builtins
/// for every field.
struct ControlBlock: @unchecked Sendable {
    /// The mapped block.
    let pointer: UnsafeMutablePointer<bench_control>

    /// Maps the block stored in the file at `path`.
    /// - Parameters:
    ///   - path: The file (under `/dev/shm` normally).
    ///   - create: Whether to create (and zero) the file first.
    /// - Throws: ``RoleFailure`` when the file cannot be opened or mapped.
    static func map(path: String, create: Bool) throws(RoleFailure) -> ControlBlock {
        guard let pointer = bench_control_map(path, create ? 1 : 0) else {
            throw RoleFailure("cannot map the control block \(path): \(String(cString: strerror(errno)))")
        }
        return ControlBlock(pointer: pointer)
    }

    /// Unmaps the block; the value must not be used afterwards.
    func unmap() {
        bench_control_unmap(pointer)
    }

    /// Messages the subscriber received so far.
    var received: UInt64 { bench_control_received(pointer) }

    /// Every field of the block, each read atomically (read once both roles have finished).
    var snapshot: bench_control {
        var copy = bench_control()
        bench_control_snapshot(pointer, &copy)
        return copy
    }
}

// MARK: - Measurements

/// The clock the orchestrator's deadlines use.
enum Measurements {
    /// `CLOCK_MONOTONIC`, ns.
    static var now: UInt64 { bench_now_ns() }
}
