#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A point on CLOCK_MONOTONIC, in nanoseconds.
///
/// Loops cache the current instant once per tick (`EventLoop.now`), so that every timer
/// armed in one batch of callbacks measures from the same moment and reading the clock
/// costs nothing on the hot path; `EventLoop.updateNow()` refreshes it after long work.
/// Arithmetic saturates: a deadline of `now + .seconds(Int64.max)` is `distantFuture`,
/// which never fires and never overflows a backend's timeout.
public struct LoopInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// An instant no timer ever reaches.
    public static let distantFuture = LoopInstant(nanoseconds: .max)

    /// Reads CLOCK_MONOTONIC now (a vDSO call, no syscall).
    public static func now() -> LoopInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return LoopInstant(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    public static func < (a: LoopInstant, b: LoopInstant) -> Bool { a.nanoseconds < b.nanoseconds }

    /// `instant + duration`, saturating at `distantFuture` (negative durations clamp at 0).
    @inlinable
    public static func + (a: LoopInstant, d: Duration) -> LoopInstant {
        let ns = d.nanosecondsSaturating
        if ns <= 0 {
            let back = ns == .min ? UInt64.max : UInt64(-ns)
            return LoopInstant(nanoseconds: a.nanoseconds > back ? a.nanoseconds - back : 0)
        }
        let (sum, overflow) = a.nanoseconds.addingReportingOverflow(UInt64(ns))
        return overflow ? .distantFuture : LoopInstant(nanoseconds: sum)
    }

    /// The duration from `b` to `a` (negative if `a` is earlier).
    public static func - (a: LoopInstant, b: LoopInstant) -> Duration {
        if a.nanoseconds >= b.nanoseconds {
            return .nanoseconds(Int64(clamping: a.nanoseconds - b.nanoseconds))
        }
        return .nanoseconds(-Int64(clamping: b.nanoseconds - a.nanoseconds))
    }

    public var description: String { "LoopInstant(\(nanoseconds) ns)" }
}

extension Duration {
    /// The duration in whole nanoseconds (truncated towards zero), clamped to Int64 (so
    /// absurdly long timers saturate).
    // From the 128-bit attosecond count with one 128-by-64-bit division (`div` on x86-64),
    // valid while the quotient fits in 64 bits (under 584 years). `components`, used
    // before, divides the 128-bit count by 10^18 in software and then multiplies back:
    // about 200 instructions per `now + duration` (callgrind, million-timers), where the
    // arithmetic around it is ten.
    @inlinable
    package var nanosecondsSaturating: Int64 {
        let attoseconds = self.attoseconds
        let negative = attoseconds < 0
        let magnitude = attoseconds.magnitude
        let high = UInt64(truncatingIfNeeded: magnitude >> 64)
        let low = UInt64(truncatingIfNeeded: magnitude)
        guard high < 1_000_000_000 else { return negative ? .min : .max }
        let ns = UInt64(1_000_000_000).dividingFullWidth((high, low)).quotient
        if negative { return ns > UInt64(Int64.max) ? .min : -Int64(ns) }
        return ns > UInt64(Int64.max) ? .max : Int64(ns)
    }
}
