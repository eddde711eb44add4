/// The two thresholds of a `WriteQueue`'s writability (SwiftNIO's `WriteBufferWaterMark`):
/// the queue becomes *unwritable* when more than `high` bytes wait to be written, and
/// *writable* again only once fewer than `low` do.
///
/// Why two marks and not one: with a single threshold a queue hovering around it would flip
/// between writable and unwritable on every write, and a server that pauses and resumes
/// reading on each flip would thrash. The gap between `low` and `high` is the hysteresis
/// that makes each transition mean something: the peer has fallen `high` bytes behind, or
/// has caught up to within `low` bytes.
///
/// ```swift
/// let marks = try WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)
/// queue.setWaterMark(marks) { queue, writable in
///     writable ? try? reader.resume(loop: loop) : try? reader.pause(loop: loop)
///     return .rearm
/// }
/// ```
public struct WriteBufferWaterMark: Sendable, Hashable, CustomStringConvertible {
    /// Writable again once `bytesQueued` falls below this.
    public let low: Int
    /// Unwritable once `bytesQueued` rises above this.
    public let high: Int

    /// Marks with `1 <= low <= high`. Throws `.invalidArgument` otherwise: a low mark above
    /// the high one would make the queue writable again before it stopped being unwritable,
    /// and a low mark of 0 (or less) could never be undercut, so the queue would stay
    /// unwritable for ever.
    public init(low: Int, high: Int) throws(EvError) {
        guard low >= 1, low <= high else { throw .invalidArgument }
        self.low = low
        self.high = high
    }

    /// "WriteBufferWaterMark(low: 16384, high: 65536)".
    public var description: String { "WriteBufferWaterMark(low: \(low), high: \(high))" }
}
