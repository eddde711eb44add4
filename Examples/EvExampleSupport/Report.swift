#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Printing and number formatting shared by the examples.
///
/// Scripts and tests read the examples' output (`listening on HOST:PORT`, the summary),
/// and a pipe makes stdout fully buffered, so every line the examples print goes through
/// `say`, which flushes at once: a line a script waits for must not sit in a buffer.
public enum Report {
    /// Prints one line to stdout and flushes it.
    public static func say(_ line: String) {
        print(line)
        flush()
    }

    /// Flushes stdout (fflush(NULL) flushes every stdio stream, and needs no reference to
    /// the C global `stdout`, which Swift 6 rejects as shared mutable state).
    public static func flush() {
        fflush(nil)
    }

    /// Writes one line to stderr, unbuffered (write(2) on descriptor 2).
    public static func warn(_ line: String) {
        writeAll(2, line + "\n")
    }

    /// Writes all of `text` to `fd`, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 { offset += n; continue }
                // EINTR: a signal arrived before anything was written; try again.
                if n < 0 && errno == EINTR { continue }
                return
            }
        }
    }

    /// Prints `program: message` to stderr and exits with `status`.
    public static func fail(_ program: String, _ message: String, status: Int32 = 1) -> Never {
        flush()
        warn("\(program): \(message)")
        exit(status)
    }

    /// A fixed-point rendering with `digits` decimals ("12.35"), without Foundation.
    public static func fixed(_ value: Double, _ digits: Int = 2) -> String {
        guard value.isFinite else { return value.description }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = UInt64(scaled / scale)
        let frac = UInt64(scaled - Double(whole) * scale)
        var s = (value < 0 && scaled > 0 ? "-" : "") + String(whole)
        if digits > 0 {
            let f = String(frac)
            s += "." + String(repeating: "0", count: Swift.max(0, digits - f.count)) + f
        }
        return s
    }

    /// A duration in the most readable unit ("850 ns", "12.3 µs", "4.56 ms", "1.20 s").
    public static func duration(nanoseconds ns: UInt64) -> String {
        let v = Double(ns)
        if ns < 1_000 { return "\(ns) ns" }
        if ns < 1_000_000 { return fixed(v / 1e3, 1) + " µs" }
        if ns < 1_000_000_000 { return fixed(v / 1e6, 2) + " ms" }
        return fixed(v / 1e9, 2) + " s"
    }

    /// Seconds as a Double, from a Duration.
    public static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) / 1e18
    }

    /// Monotonic nanoseconds now (CLOCK_MONOTONIC; a vDSO call, no syscall), for latency
    /// samples finer than the loop's per-tick cached `now`.
    @inline(__always)
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
