#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - ConfigFile

/// The defaults file of the mosquitto tools, which `mqtt` reads as they do:
/// `$XDG_CONFIG_HOME/mosquitto_pub` (or `mosquitto_sub`, `mosquitto_rr`), else
/// `$HOME/.config/mosquitto_pub`, so that defaults set up for the mosquitto tools apply to
/// `mqtt pub`, `mqtt sub` and `mqtt rr` too.
///
/// As mosquitto 2.0.11 reads it: one option per line, before the command line (which can add to
/// it or override it, and whose checks see both); a line starting with `#` is a comment; trailing
/// CR and LF are dropped; the option is the first word (leading spaces skipped) and its value the
/// rest of the line after the one space that ends the option (`-m hello world` publishes
/// `hello world`), so an option of several values (`-D`) cannot be given there; lines are read
/// 1,023 bytes at a time (`fgets` into 1,024), so a longer line is cut into several. A file that
/// cannot be opened is ignored; an error in a line is reported as on the command line.
enum ConfigFile {
    /// The bytes `fgets` reads at most per call (a 1,024-byte buffer, less the NUL).
    static let lineLimit = 1_023

    /// The defaults file's path for `tool`, or `nil` when neither variable is set.
    static func path(for tool: CommonOptions.Tool) -> String? {
        let name = "mosquitto_" + tool.rawValue
        if let directory = getenv("XDG_CONFIG_HOME") {
            return String(cString: directory) + "/" + name
        }
        if let home = getenv("HOME") {
            return String(cString: home) + "/.config/" + name
        }
        return nil
    }

    /// The defaults file's lines for `tool`, each as the one or two arguments it gives; none
    /// when there is no file or it cannot be read.
    static func lines(for tool: CommonOptions.Tool) -> [[Argument]] {
        guard let path = path(for: tool), let contents = Input.contentsIfReadable(path) else { return [] }
        return lines(in: contents)
    }

    /// The arguments of each line of `contents`, by mosquitto's rules (see ``ConfigFile``).
    static func lines(in contents: [UInt8]) -> [[Argument]] {
        var result: [[Argument]] = []
        var start = contents.startIndex
        while start < contents.endIndex {
            // One fgets: up to and including a newline, at most `lineLimit` bytes.
            let limit = min(contents.endIndex, start + lineLimit)
            let end = contents[start..<limit].firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? limit
            if let arguments = arguments(inLine: contents[start..<end]) {
                result.append(arguments)
            }
            start = end
        }
        return result
    }

    /// The option and its value in one line, or `nil` for a comment or a line without a word.
    private static func arguments(inLine chunk: ArraySlice<UInt8>) -> [Argument]? {
        // C strings end at a NUL byte.
        var line = chunk.prefix { $0 != 0 }
        guard line.first != UInt8(ascii: "#") else { return nil }
        while let last = line.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") {
            line = line.dropLast()
        }
        let space = UInt8(ascii: " ")
        // strtok(line, " "): the first word; strtok(NULL, ""): what follows its delimiter.
        guard let wordStart = line.firstIndex(where: { $0 != space }) else { return nil }
        let wordEnd = line[wordStart...].firstIndex(of: space) ?? line.endIndex
        var arguments = [Argument(Array(line[wordStart..<wordEnd]))]
        if wordEnd < line.endIndex, wordEnd + 1 < line.endIndex {
            arguments.append(Argument(Array(line[(wordEnd + 1)...])))
        }
        return arguments
    }
}
