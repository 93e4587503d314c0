#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - File system helpers

/// Small POSIX file helpers, so the fixture needs no Foundation.
enum FileSystem {
    // MARK: Temporary directory

    /// Creates a fresh private directory named `mosquitto-test-XXXXXX` under `$TMPDIR` (or `/tmp`).
    /// - Throws: `MosquittoTestingError` if `mkdtemp` fails.
    /// - Returns: The directory's absolute path, without a trailing slash.
    static func makeTemporaryDirectory() throws -> String {
        var base = Environment.value("TMPDIR") ?? "/tmp"
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array("\(base)/mosquitto-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard created != nil else {
            throw MosquittoTestingError("could not create a temporary directory under \(base): \(lastErrorDescription())")
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Creates a directory (mode 0700).
    /// - Parameters:
    ///   - path: The directory to create; its parent must exist.
    /// - Throws: `MosquittoTestingError` if `mkdir` fails.
    static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o700) == 0 else {
            throw MosquittoTestingError("could not create directory \(path): \(lastErrorDescription())")
        }
    }

    /// Whether something exists at `path`.
    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Removes `path` and everything below it; missing paths are ignored and symlinks are not followed.
    /// - Parameters:
    ///   - path: A file or directory.
    static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in directoryEntries(path) {
                removeTree("\(path)/\(name)")
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    private static func directoryEntries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    // MARK: Reading and writing

    /// Writes `text` to `path`, replacing any existing file.
    /// - Parameters:
    ///   - text: The contents.
    ///   - path: The file to write.
    ///   - mode: Permission bits for a newly created file.
    /// - Throws: `MosquittoTestingError` if the file cannot be written.
    static func writeText(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw MosquittoTestingError("could not open \(path) for writing: \(lastErrorDescription())")
        }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                throw MosquittoTestingError("could not write \(path): \(lastErrorDescription())")
            }
            written += result
        }
    }

    /// Reads a file as UTF-8 text, starting at byte `offset`.
    /// - Parameters:
    ///   - path: The file to read.
    ///   - offset: The first byte to read.
    /// - Returns: The contents (invalid UTF-8 repaired), or `""` if the file cannot be read.
    static func readText(_ path: String, from offset: Int = 0) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return "" }
        defer { close(descriptor) }
        if offset > 0 && lseek(descriptor, off_t(offset), SEEK_SET) < 0 { return "" }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The size of a file in bytes, or 0 if it does not exist.
    /// - Parameters:
    ///   - path: The file to inspect.
    static func size(of path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// Copies a regular file's contents.
    /// - Parameters:
    ///   - source: The file to read.
    ///   - destination: The file to create or replace.
    /// - Throws: `MosquittoTestingError` if the destination cannot be written.
    static func copyFile(_ source: String, to destination: String) throws {
        try writeText(readText(source), to: destination, mode: 0o644)
    }

    /// The text of the current `errno`.
    static func lastErrorDescription() -> String {
        String(cString: strerror(errno))
    }
}

// MARK: - String helpers

extension String {
    /// The string without leading and trailing whitespace and newlines.
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }

    /// The last `count` lines of the string, joined with newlines.
    func lastLines(_ count: Int) -> String {
        trimmingWhitespace()
            .split(separator: "\n", omittingEmptySubsequences: false)
            .suffix(count)
            .joined(separator: "\n")
    }
}
