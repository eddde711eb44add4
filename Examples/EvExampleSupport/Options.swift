#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// One command-line option an example accepts.
///
/// The examples parse their own options (the package takes no dependencies, not even
/// swift-argument-parser), so this is the whole vocabulary: `--name value`, `--name=value`
/// and value-less flags such as `--help`. Every option has a default, which the help text
/// shows, so `--help` documents exactly what a run without options does.
public struct OptionSpec: Sendable {
    /// The long name without dashes ("port").
    public var name: String
    /// The placeholder shown in help ("PORT"); nil for a flag that takes no value.
    public var valueName: String?
    /// The default value (nil: none; for flags, absent means off).
    public var defaultValue: String?
    /// One line of help.
    public var help: String

    public init(_ name: String, value valueName: String? = nil, default defaultValue: String? = nil, help: String) {
        self.name = name
        self.valueName = valueName
        self.defaultValue = defaultValue
        self.help = help
    }
}

/// What went wrong while parsing a command line.
///
/// A value rather than a printed message, so that `CommandLineTool` reports every problem
/// the same way (the program name, the problem, a hint to try `--help`, exit status 2),
/// which is what scripts and tests rely on to tell a usage error from a runtime failure.
public enum OptionError: Error, Sendable, CustomStringConvertible {
    case unknownOption(String)
    case missingValue(String)
    case unexpectedValue(String)
    case unexpectedArgument(String)
    case invalidValue(option: String, value: String, expected: String)
    /// A program that runs a command (`CommandLineTool.command`) was given none.
    case missingCommand(String)

    public var description: String {
        switch self {
        case .unknownOption(let o): return "unknown option '\(o)'"
        case .missingValue(let o): return "option '--\(o)' needs a value"
        case .unexpectedValue(let o): return "option '--\(o)' takes no value"
        case .unexpectedArgument(let a): return "unexpected argument '\(a)'"
        case .invalidValue(let o, let v, let e): return "invalid value '\(v)' for --\(o): expected \(e)"
        case .missingCommand(let c): return "missing \(c)"
        }
    }
}

/// A parsed command line: the value of every option (given or defaulted) and the flags set.
///
/// Values stay strings until a program asks for them through a typed accessor (`port`,
/// `seconds`, `backend`, ...), which validates them then: each program decides which
/// options it needs and how strict to be, and every invalid value produces the same kind
/// of `OptionError`.
public struct ParsedOptions: Sendable {
    public private(set) var values: [String: String]
    public private(set) var flags: Set<String>
    /// The command after the options, for a tool that takes one (`CommandLineTool.command`):
    /// everything from the first argument that is not an option, or after `--`.
    public private(set) var command: [String]

    init(values: [String: String], flags: Set<String>, command: [String] = []) {
        self.values = values
        self.flags = flags
        self.command = command
    }

    /// Whether a value-less flag such as `--help` was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The string value of `name` (its default when not given).
    public func string(_ name: String) -> String? { values[name] }

    /// An integer option within `range`.
    public func int(_ name: String, in range: ClosedRange<Int>) throws(OptionError) -> Int {
        let raw = values[name] ?? ""
        guard let v = Int(raw), range.contains(v) else {
            throw .invalidValue(option: name, value: raw, expected: "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }

    /// A port number (0 means "let the kernel pick one").
    public func port(_ name: String = "port") throws(OptionError) -> UInt16 {
        UInt16(try int(name, in: 0...65535))
    }

    /// A non-negative number of seconds, possibly fractional ("2", "0.5").
    public func seconds(_ name: String) throws(OptionError) -> Duration {
        let raw = values[name] ?? ""
        guard let v = Double(raw), v.isFinite, v >= 0, v <= 86_400 else {
            throw .invalidValue(option: name, value: raw, expected: "a number of seconds in 0...86400")
        }
        return .nanoseconds(Int64(v * 1e9))
    }

    /// `auto` (nil: let runtime selection decide) or a backend name.
    public func backend(_ name: String = "backend") throws(OptionError) -> Backend? {
        let raw = values[name] ?? "auto"
        do {
            return try parseBackendOption(raw)
        } catch {
            throw .invalidValue(option: name, value: raw, expected: "auto, io_uring, epoll or poll")
        }
    }

    /// A numeric IPv4 or IPv6 host ("127.0.0.1", "::1"), checked by building an address.
    public func host(_ name: String = "host") throws(OptionError) -> String {
        let raw = values[name] ?? ""
        do {
            _ = try SocketAddress(host: raw, port: 0)
        } catch {
            throw .invalidValue(option: name, value: raw, expected: "a numeric IPv4 or IPv6 address such as 127.0.0.1 or ::1")
        }
        return raw
    }
}

// MARK: The options the examples share

extension OptionSpec {
    /// `--host ADDRESS` (default 127.0.0.1, the loopback address, so that a server started
    /// without options is not reachable from the network).
    public static func host(help: String = "numeric IPv4 or IPv6 address to listen on") -> OptionSpec {
        OptionSpec("host", value: "ADDRESS", default: "127.0.0.1", help: help)
    }

    /// `--host NAME` of a client: a host name (resolved through `Resolver`, off the loop
    /// thread) or a numeric address; default 127.0.0.1.
    public static func hostName(help: String = "host name or numeric address of the server (resolved without blocking the loop)") -> OptionSpec {
        OptionSpec("host", value: "NAME", default: "127.0.0.1", help: help)
    }

    /// `--port PORT` of a server (default 0: the kernel picks a free port, which the server
    /// prints in its `listening on` line for scripts to read).
    public static func listenPort(_ transport: String) -> OptionSpec {
        OptionSpec("port", value: "PORT", default: "0", help: "\(transport) port; 0 lets the kernel pick a free one (printed)")
    }

    /// `--port PORT` with no default (a client has no port to guess). `SharedOptions.port`
    /// is 0 when it is not given; the program reports it missing after checking its own
    /// options, so that a wrong value on the command line is named before a missing one.
    public static func requiredPort(help: String) -> OptionSpec {
        OptionSpec("port", value: "PORT", help: help)
    }

    /// `--backend NAME` (default auto: runtime selection, which honours EV_BACKEND).
    public static let backend = OptionSpec("backend", value: "NAME", default: "auto",
                                           help: "auto, io_uring, epoll or poll (auto honours EV_BACKEND)")

    /// `--threads N` (default 1): a server's loops, one per thread.
    public static let threads = OptionSpec("threads", value: "N", default: "1",
                                           help: "loops, one per thread, each with its own SO_REUSEPORT socket")
}

/// The shared options' values (`--host`, `--port`, `--backend`, `--threads`), checked, and
/// the whole parsed command line for the program's own options.
///
/// Each example lists the shared options it takes among its own (`OptionSpec.host()`,
/// `.backend`, ...), in the order its help shows them; `parseSharedOrExit` then checks them
/// the same way in every program, in that order and before the program's own, stopping at
/// the first bad value. One that is neither declared nor given reads as its default here
/// (127.0.0.1, port 0, auto, one thread), so a program never has to ask which exist.
public struct SharedOptions: Sendable {
    public let host: String
    /// 0 for a server: let the kernel pick. Also 0 when a `requiredPort` was not given.
    public let port: UInt16
    /// nil: `auto`, runtime selection decides.
    public let backend: Backend?
    public let threads: Int
    /// Everything parsed, for the options that are the program's own.
    public let parsed: ParsedOptions

    init(_ parsed: ParsedOptions, hostIsName: Bool = false) throws(OptionError) {
        // A value is there when the option was given or has a default (so was declared).
        self.parsed = parsed
        if let raw = parsed.string("host") {
            guard !raw.isEmpty else { throw .invalidValue(option: "host", value: raw, expected: "a host name or address") }
            host = hostIsName ? raw : try parsed.host()
        } else {
            host = "127.0.0.1"
        }
        port = parsed.string("port") == nil ? 0 : try parsed.port()
        backend = try parsed.backend()
        threads = parsed.string("threads") == nil ? 1 : try parsed.int("threads", in: 1...256)
    }
}

/// A program's name, purpose and options: parses its command line and prints its help.
///
/// Declaring the options once gives both the parser and the `--help` text from the same
/// list, so the help can never drift from what the program accepts.
public struct CommandLineTool: Sendable {
    public var name: String
    /// A paragraph or two: what the program does and why it exists.
    public var summary: String
    public var options: [OptionSpec]
    /// Example invocations shown at the end of the help text.
    public var examples: [String]
    /// For a program that runs a command ("COMMAND [ARGUMENT...]", as the usage line shows
    /// it): the options end at the first argument that is not an option, or at `--`, and
    /// the rest is the command (`ParsedOptions.command`), so that the command's own options
    /// are never taken for the program's. Nil: every argument must be an option.
    public var command: String?

    public init(name: String, summary: String, options: [OptionSpec], examples: [String] = [],
                command: String? = nil) {
        self.name = name
        self.summary = summary
        self.options = options + [OptionSpec("help", help: "show this help and exit")]
        self.examples = examples
        self.command = command
    }

    /// The text `--help` prints.
    public var helpText: String {
        let usage = "USAGE: \(name) [options]" + (command.map { " [--] \($0)" } ?? "")
        var s = "\(usage)\n\n\(summary)\n\nOPTIONS:\n"
        let left = options.map { o in "  --\(o.name)" + (o.valueName.map { " \($0)" } ?? "") }
        let width = (left.map(\.count).max() ?? 0) + 2
        for (o, l) in zip(options, left) {
            var line = l + String(repeating: " ", count: width - l.count) + o.help
            if let d = o.defaultValue { line += " (default: \(d))" }
            s += line + "\n"
        }
        if !examples.isEmpty {
            s += "\nEXAMPLES:\n"
            for e in examples { s += "  \(e)\n" }
        }
        return s
    }

    /// Parses `arguments` (without the program name).
    public func parse(_ arguments: [String]) throws(OptionError) -> ParsedOptions {
        var values: [String: String] = [:]
        var flags: Set<String> = []
        for o in options where o.valueName != nil {
            if let d = o.defaultValue { values[o.name] = d }
        }
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if arg == "-h" { flags.insert("help"); continue }
            if command != nil, arg == "--" || !arg.hasPrefix("-") {
                // The command starts here: nothing after it is parsed as an option.
                let first = arg == "--" ? i : i - 1
                return ParsedOptions(values: values, flags: flags, command: Array(arguments[first...]))
            }
            guard arg.hasPrefix("--"), arg.count > 2 else { throw .unexpectedArgument(arg) }
            var name = String(arg.dropFirst(2))
            var inline: String? = nil
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let spec = options.first(where: { $0.name == name }) else { throw .unknownOption(arg) }
            if spec.valueName == nil {
                if inline != nil { throw .unexpectedValue(name) }
                flags.insert(name)
                continue
            }
            if let inline {
                values[name] = inline
            } else {
                guard i < arguments.count else { throw .missingValue(name) }
                values[name] = arguments[i]
                i += 1
            }
        }
        return ParsedOptions(values: values, flags: flags)
    }

    /// Parses the process's command line. `--help` prints the help and exits 0; a bad
    /// command line prints the problem and a hint to stderr and exits 2 (the usual
    /// "usage error" status), so the program body only ever sees valid options.
    public func parseOrExit(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> ParsedOptions {
        do {
            let parsed = try parse(arguments)
            if parsed.flag("help") {
                print(helpText, terminator: "")
                Report.flush()
                exit(0)
            }
            return parsed
        } catch {
            usageError(error)
        }
    }

    /// `parseOrExit`, then the shared options checked (`SharedOptions`): a bad value of one
    /// is a usage error (exit 2) like any other.
    public func parseSharedOrExit(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> SharedOptions {
        let parsed = parseOrExit(arguments)
        // A `--host NAME` (`OptionSpec.hostName`) is any name; `--host ADDRESS` is numeric.
        let hostIsName = options.contains { $0.name == "host" && $0.valueName == "NAME" }
        return validate { () throws(OptionError) in try SharedOptions(parsed, hostIsName: hostIsName) }
    }

    /// Reports a bad option value found after parsing and exits 2.
    public func usageError(_ error: OptionError) -> Never {
        Report.flush()
        Report.warn("\(name): \(error)\nTry '\(name) --help' for more information.")
        exit(2)
    }

    /// Runs `body`, turning an error it throws into a runtime failure: `NAME: CONTEXT: ERROR`
    /// on stderr and exit 1 (not 2: the command line was fine, the machine said no).
    public func orFail<T, E: Error>(_ context: @autoclosure () -> String, _ body: () throws(E) -> T) -> T {
        do {
            return try body()
        } catch {
            Report.fail(name, "\(context()): \(error)")
        }
    }

    /// Runs `body`, turning an `OptionError` it throws into a usage error (exit 2).
    public func validate<T>(_ body: () throws(OptionError) -> T) -> T {
        do {
            return try body()
        } catch {
            usageError(error)
        }
    }
}
