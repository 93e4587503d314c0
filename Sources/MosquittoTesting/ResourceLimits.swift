#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Resource limits of a child process

/// Sets another process's open-file limit (`RLIMIT_NOFILE`) with Linux's `prlimit`.
///
/// `posix_spawn` cannot set a child's resource limits, and changing our own limit around the spawn
/// would race with other tests spawning at the same time; so the limit is applied to the broker
/// right after it is spawned, before it accepts its first connection. That is enough for
/// `RLIMIT_NOFILE`: the kernel checks it whenever a descriptor is allocated, and mosquitto 2.0
/// (epoll build) never reads it at start-up.
enum ResourceLimits {
    private typealias PrlimitFunction = @convention(c) (pid_t, Int32, UnsafePointer<rlimit>?, UnsafeMutablePointer<rlimit>?) -> Int32

    /// glibc's `prlimit` (declared only with `_GNU_SOURCE`, so Swift's Glibc module does not import it).
    private static let prlimitFunction: PrlimitFunction? = {
        #if os(Linux)
        guard let symbol = dlsym(nil, "prlimit") else { return nil }
        return unsafeBitCast(symbol, to: PrlimitFunction.self)
        #else
        return nil
        #endif
    }()

    #if os(Linux)
    private static let openFiles = Int32(RLIMIT_NOFILE.rawValue)
    #else
    private static let openFiles = Int32(RLIMIT_NOFILE)
    #endif

    /// Sets the soft open-file limit of `pid` to `limit`, raising the hard limit to `limit` too
    /// when it is lower (which needs `CAP_SYS_RESOURCE`).
    /// - Parameters:
    ///   - limit: The new soft limit, at least 1.
    ///   - pid: The process (normally a child just spawned).
    /// - Throws: `MosquittoTestingError` when the limit cannot be set: not Linux, the hard limit is
    ///   lower and may not be raised (the message names it), or the process is gone.
    static func setOpenFileLimit(_ limit: Int, of pid: pid_t) throws {
        guard limit > 0 else {
            throw MosquittoTestingError("maximumOpenFiles must be positive, not \(limit)")
        }
        guard let prlimit = prlimitFunction else {
            throw MosquittoTestingError("maximumOpenFiles needs Linux's prlimit, which this system does not have")
        }
        var current = rlimit()
        guard prlimit(pid, openFiles, nil, &current) == 0 else {
            throw MosquittoTestingError("cannot read the open-file limit of process \(pid): \(String(cString: strerror(errno)))")
        }
        let wanted = rlim_t(limit)
        var new = rlimit(rlim_cur: wanted, rlim_max: max(current.rlim_max, wanted))
        guard prlimit(pid, openFiles, &new, nil) == 0 else {
            let reason = errno
            let hint = reason == EPERM && wanted > current.rlim_max
                ? " (the hard limit is \(current.rlim_max); raising it needs CAP_SYS_RESOURCE, and fs.nr_open caps it)"
                : ""
            throw MosquittoTestingError(
                "cannot set the open-file limit of process \(pid) to \(limit): \(String(cString: strerror(reason)))\(hint)"
            )
        }
    }
}
