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
    /// The duration in whole nanoseconds, clamped to Int64 (so absurdly long timers saturate).
    package var nanosecondsSaturating: Int64 {
        let (seconds, attoseconds) = self.components
        let (ns, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return seconds < 0 ? .min : .max }
        let (total, o2) = ns.addingReportingOverflow(attoseconds / 1_000_000_000)
        if o2 { return seconds < 0 ? .min : .max }
        return total
    }
}
