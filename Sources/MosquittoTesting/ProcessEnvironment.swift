#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Clock

/// Seconds on the monotonic clock, for deadlines in synchronous code.
enum MonotonicClock {
    /// The current monotonic time in seconds.
    static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1_000_000_000
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (negative durations are kept).
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

// MARK: - Environment

/// Reads environment variables.
enum Environment {
    /// The value of `name`, or `nil` when unset or empty.
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }

    /// This process's environment as `NAME=value` entries, with `overrides` replacing or adding variables.
    static func inherited(overriding overrides: [String: String]) -> [String] {
        var entries: [String] = []
        var cursor: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let current = cursor, let entry = current.pointee {
            let text = String(cString: entry)
            let name = String(text.prefix { $0 != "=" })
            if overrides[name] == nil { entries.append(text) }
            cursor = current + 1
        }
        return entries + Self.entries(overrides)
    }

    /// `variables` as `NAME=value` entries, sorted by name.
    static func entries(_ variables: [String: String]) -> [String] {
        variables.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}

// MARK: - Locating programs

/// Finds executables by name.
enum ExecutableSearch {
    /// Directories searched after `PATH`.
    private static let fallbackDirectories = [
        "/usr/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/sbin", "/opt/homebrew/bin",
    ]

    /// Finds an executable by an environment override, explicit candidates, then `PATH` and common install dirs.
    /// - Parameters:
    ///   - name: The program name, e.g. `openssl`.
    ///   - environmentVariable: A variable whose value, when set, is used as the path (or as the name to look up).
    ///   - preferred: Absolute paths tried before `PATH`.
    /// - Returns: An absolute path of an executable file, or `nil`.
    static func find(named name: String, environmentVariable: String? = nil, preferred: [String] = []) -> String? {
        if let environmentVariable, let override = Environment.value(environmentVariable) {
            return override.contains("/") ? (isExecutable(override) ? override : nil) : find(named: override)
        }
        let pathDirectories = (Environment.value("PATH") ?? "").split(separator: ":").map(String.init)
        let candidates = preferred + (pathDirectories + fallbackDirectories).map { "\($0)/\(name)" }
        return candidates.first(where: isExecutable)
    }

    /// Whether `path` is a regular file this process may execute.
    static func isExecutable(_ path: String) -> Bool {
        var info = stat()
        return access(path, X_OK) == 0 && stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}

// MARK: - Threads

/// What a thread started by ``startDetachedThread(_:)`` runs.
private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body` on a new detached POSIX thread of its own (never a Dispatch or cooperative-pool
/// thread, so blocking in it holds up nothing else); `body` owns what it captures from then on.
///
/// - Returns: `false` if the thread could not be created (`body` is then not run).
func startDetachedThread(_ body: @escaping () -> Void) -> Bool {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    #if canImport(Darwin)
    var thread: pthread_t? = nil
    #else
    var thread = pthread_t()
    #endif
    let rc = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        return false
    }
    #if canImport(Darwin)
    pthread_detach(thread!)
    #else
    pthread_detach(thread)
    #endif
    return true
}
