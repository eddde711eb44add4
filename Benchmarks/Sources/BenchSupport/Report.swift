#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Output shared by every benchmark program.
///
/// Each result is printed twice: a line for people, in the words libxev's benchmark prints
/// ("41234.56 roundtrips/s"), and a `RESULT key=value ...` line that `bench-report`
/// collects from a run (medians, ranges, ratios against the peers of the same run).
public enum BenchOutput {
    /// Writes a line to standard output and flushes it (runs are piped into files).
    public static func say(_ line: String) {
        writeAll(1, line + "\n")
    }

    /// Writes a line to standard error.
    public static func warn(_ line: String) {
        writeAll(2, line + "\n")
    }

    /// write(2) of the whole text (unbuffered, so lines from several threads and processes
    /// never interleave mid-line, and nothing is lost when a program exits).
    private static func writeAll(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// Prints a failure and exits 1.
    public static func fail(_ line: String) -> Never {
        warn("error: \(line)")
        exit(1)
    }

    /// `value` with `digits` decimals (no Foundation).
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value > 0 ? "inf" : "-inf" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let negative = value < 0
        let rounded = (abs(value) * scale).rounded()
        guard rounded < 9.0e18 else { return String(value) }
        let scaled = UInt64(rounded)
        let whole = scaled / UInt64(scale)
        var text = (negative && scaled != 0 ? "-" : "") + String(whole)
        if digits > 0 {
            var fraction = String(scaled % UInt64(scale))
            while fraction.count < digits { fraction = "0" + fraction }
            text += "." + fraction
        }
        return text
    }

    /// A count with thousands separators: 1234567 -> "1,234,567".
    public static func grouped(_ value: Double) -> String {
        let n = Int64(value.rounded())
        var digits = Array(String(abs(n)))
        var out: [Character] = []
        while digits.count > 3 {
            out.insert(contentsOf: [","] + digits.suffix(3), at: 0)
            digits.removeLast(3)
        }
        out.insert(contentsOf: digits, at: 0)
        return (n < 0 ? "-" : "") + String(out)
    }

    /// Emits one result: the human line and the machine line.
    ///
    /// - `bench`: the benchmark's name (libxev's: "ping-pongs", "async1", ...).
    /// - `impl`: what ran it ("evloop/io_uring", "swiftnio", "c/epoll").
    /// - `value`, `unit`: the headline figure, in libxev's unit.
    /// - `window`: the measured steady-state window, for CPU time and allocations.
    /// - `opName`: what one operation is ("roundtrip", "notification", "timer").
    /// - `extra`: further key/value pairs (printed in both lines).
    public static func result(bench: String, impl: String, value: Double, unit: String,
                              window: Window, opName: String, extra: [(String, String)] = []) {
        var human = "\(bench) [\(impl)]: \(fixed(value, 2)) \(unit)"
        human += ", \(fixed(window.seconds, 3)) s window of \(window.operations) \(opName)s"
        human += ", CPU \(fixed(window.cpuMicrosecondsPerOperation, 3)) µs/\(opName)"
        if let a = window.allocationsPerOperation {
            human += ", \(fixed(a, 4)) allocations/\(opName)"
        } else {
            human += ", allocations n/a (run through run.sh to count them)"
        }
        for (k, v) in extra { human += ", \(k) \(v)" }
        say(human)

        var line = "RESULT bench=\(bench) impl=\(impl) value=\(fixed(value, 3)) unit=\(unit)"
        line += " op=\(opName) ops=\(window.operations) seconds=\(fixed(window.seconds, 6))"
        line += " cpu_us_per_op=\(fixed(window.cpuMicrosecondsPerOperation, 4))"
        if let a = window.allocationsPerOperation {
            line += " allocs_per_op=\(fixed(a, 6)) allocs=\(window.allocations ?? 0)"
        } else {
            line += " allocs_per_op=na"
        }
        for (k, v) in extra { line += " \(k)=\(v)" }
        say(line)
    }
}

/// A minimal `--name value` command line (the benchmarks take a handful of numbers).
public struct Arguments {
    public let command: String?
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    public init(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) {
        var rest = arguments[...]
        if let first = rest.first, !first.hasPrefix("--") {
            command = first
            rest = rest.dropFirst()
        } else {
            command = nil
        }
        while let arg = rest.first {
            rest = rest.dropFirst()
            guard arg.hasPrefix("--") else { BenchOutput.fail("unexpected argument '\(arg)'") }
            var name = String(arg.dropFirst(2))
            if let eq = name.firstIndex(of: "=") {
                values[String(name[..<eq])] = String(name[name.index(after: eq)...])
                continue
            }
            if let next = rest.first, !next.hasPrefix("--") {
                values[name] = next
                rest = rest.dropFirst()
            } else {
                flags.insert(name)
                name = ""
            }
        }
    }

    public func string(_ name: String) -> String? { values[name] }

    public func flag(_ name: String) -> Bool { flags.contains(name) }

    public func int(_ name: String, default value: Int) -> Int {
        guard let text = values[name] else { return value }
        // Accept 1_000_000 and 1e6 forms.
        let cleaned = text.replacingUnderscores()
        if let n = Int(cleaned) { return n }
        if let d = Double(cleaned), d >= 0, d < 9e18 { return Int(d) }
        BenchOutput.fail("--\(name) expects a number, got '\(text)'")
    }

    public func double(_ name: String, default value: Double) -> Double {
        guard let text = values[name] else { return value }
        guard let d = Double(text.replacingUnderscores()) else {
            BenchOutput.fail("--\(name) expects a number, got '\(text)'")
        }
        return d
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
