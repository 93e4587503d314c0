#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Spawning

/// A process `posix_spawn` started, with this process's ends of the pipes wired to its standard streams.
struct SpawnedProcess {
    /// The child's process id.
    var pid: pid_t
    /// The write end of the pipe on the child's standard input (``ChildProcess/Input/bytes(_:)``), non-blocking.
    var inputWriter: Int32?
    /// The read end of the pipe on the child's standard output (``ChildProcess/Output/capture``), non-blocking.
    var outputReader: Int32?
    /// The read end of the pipe on the child's standard error (``ChildProcess/Output/capture``), non-blocking.
    var errorReader: Int32?
}

/// Starts child processes with `posix_spawn`: standard streams as asked, no other descriptor of ours,
/// an empty signal mask and default dispositions for the signals the test runner may have changed.
///
/// The only place in the module that calls `posix_spawn`; ``ChildProcess`` owns what it returns.
enum ProcessSpawn {
    /// The signals whose disposition is reset to the default in the child (ignored dispositions survive `exec`).
    private static let defaultedSignals: [Int32] = [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGUSR1]

    #if canImport(Darwin)
    private typealias FileActions = posix_spawn_file_actions_t?
    private typealias Attributes = posix_spawnattr_t?
    #else
    private typealias FileActions = posix_spawn_file_actions_t
    private typealias Attributes = posix_spawnattr_t
    #endif

    /// Spawns `executable` with `arguments` and `environment`.
    /// - Parameters:
    ///   - executable: The program's path (not looked up on `PATH`).
    ///   - arguments: Arguments after `argv[0]` (which is `executable`).
    ///   - environment: The child's whole environment, as `NAME=value` entries.
    ///   - workingDirectory: The child's working directory, or `nil` for ours.
    ///   - input: Where standard input comes from.
    ///   - output: Where standard output goes.
    ///   - error: Where standard error goes.
    /// - Throws: `MosquittoTestingError` when a pipe, a file action or `posix_spawn` fails (nothing is left open).
    /// - Returns: The child and our ends of its pipes.
    static func spawn(
        executable: String,
        arguments: [String],
        environment: [String],
        workingDirectory: String?,
        input: ChildProcess.Input,
        output: ChildProcess.Output,
        error: ChildProcess.Output
    ) throws -> SpawnedProcess {
        var fileActions = FileActions()
        var attributes = Attributes()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // Pipes: our ends stay with us; the child's ends are closed here once it has its copies.
        var ours: [Int32] = []
        var theirs: [Int32] = []
        defer { theirs.forEach { _ = close($0) } }
        var spawned = SpawnedProcess(pid: 0)
        do {
            switch input {
            case .null: posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
            case .file(let path): posix_spawn_file_actions_addopen(&fileActions, 0, path, O_RDONLY, 0)
            case .descriptor(let descriptor): posix_spawn_file_actions_adddup2(&fileActions, descriptor, 0)
            case .bytes:
                let (reader, writer) = try makePipe()
                setNonBlocking(writer)
                ours.append(writer)
                theirs.append(reader)
                spawned.inputWriter = writer
                posix_spawn_file_actions_adddup2(&fileActions, reader, 0)
            }
            spawned.outputReader = try wire(output, to: 1, &fileActions, ours: &ours, theirs: &theirs)
            spawned.errorReader = try wire(error, to: 2, &fileActions, ours: &ours, theirs: &theirs)
            if let workingDirectory {
                try changeDirectory(&fileActions, to: workingDirectory)
            }
            closeInheritedDescriptors(&fileActions)
        } catch {
            ours.forEach { _ = close($0) }
            throw error
        }

        // Signals: empty mask, default dispositions for the signals we care about.
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in defaultedSignals {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // argv and envp, NULL-terminated, owned by us.
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let result = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                posix_spawn(&pid, executable, &fileActions, &attributes, argvBuffer.baseAddress!, envpBuffer.baseAddress!)
            }
        }
        guard result == 0 else {
            ours.forEach { _ = close($0) }
            throw MosquittoTestingError("could not spawn \(executable): \(String(cString: strerror(result)))")
        }
        spawned.pid = pid
        return spawned
    }

    // MARK: Standard streams

    /// Adds the file actions that send descriptor `target` (1 or 2) where `output` says; returns our
    /// read end when it is captured.
    private static func wire(
        _ output: ChildProcess.Output, to target: Int32, _ fileActions: inout FileActions, ours: inout [Int32], theirs: inout [Int32]
    ) throws -> Int32? {
        let flags = O_WRONLY | O_CREAT | O_APPEND
        switch output {
        case .null:
            posix_spawn_file_actions_addopen(&fileActions, target, "/dev/null", O_WRONLY, 0)
        case .file(let path):
            posix_spawn_file_actions_addopen(&fileActions, target, path, flags, 0o644)
        case .inherit:
            break
        case .standardOutput:
            guard target == 2 else {
                throw MosquittoTestingError("`.standardOutput` is a destination for standard error only")
            }
            posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        case .capture:
            let (reader, writer) = try makePipe()
            setNonBlocking(reader)
            ours.append(reader)
            theirs.append(writer)
            posix_spawn_file_actions_adddup2(&fileActions, writer, target)
            return reader
        }
        return nil
    }

    /// A pipe whose ends are both close-on-exec (`dup2` onto 0, 1 or 2 clears that for the child's copy).
    private static func makePipe() throws -> (reader: Int32, writer: Int32) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw MosquittoTestingError("could not create a pipe: \(FileSystem.lastErrorDescription())")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        return (ends[0], ends[1])
    }

    /// Makes our end of a pipe non-blocking, for the output thread's `poll` loop. The child's end stays
    /// blocking: `O_NONBLOCK` belongs to each end's own open file description.
    private static func setNonBlocking(_ descriptor: Int32) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }

    // MARK: glibc extensions

    private typealias AddCloseFrom = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32
    private typealias AddChangeDirectory = @convention(c) (UnsafeMutableRawPointer, UnsafePointer<CChar>) -> Int32

    /// Closes every descriptor above stderr in the child where glibc offers `posix_spawn_file_actions_addclosefrom_np` (2.34+),
    /// so that no child (a leftover broker, say) holds this process's pipes or sockets open.
    private static func closeInheritedDescriptors(_ fileActions: inout FileActions) {
        #if os(Linux)
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        let addCloseFrom = unsafeBitCast(symbol, to: AddCloseFrom.self)
        _ = withUnsafeMutablePointer(to: &fileActions) { addCloseFrom(UnsafeMutableRawPointer($0), 3) }
        #endif
    }

    /// Makes the child start in `directory` (glibc 2.29+'s `posix_spawn_file_actions_addchdir_np`,
    /// declared only with `_GNU_SOURCE`, so looked up at run time).
    private static func changeDirectory(_ fileActions: inout FileActions, to directory: String) throws {
        #if os(Linux)
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") {
            let addChangeDirectory = unsafeBitCast(symbol, to: AddChangeDirectory.self)
            let result = withUnsafeMutablePointer(to: &fileActions) { actions in
                directory.withCString { addChangeDirectory(UnsafeMutableRawPointer(actions), $0) }
            }
            guard result == 0 else {
                throw MosquittoTestingError("could not set the working directory \(directory): \(String(cString: strerror(result)))")
            }
            return
        }
        #endif
        throw MosquittoTestingError("this C library cannot set a spawned process's working directory")
    }
}
