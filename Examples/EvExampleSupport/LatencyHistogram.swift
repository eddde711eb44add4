/// A fixed-size latency histogram (log-linear buckets) for the load client.
///
/// Why not keep every sample: a client doing 100,000 roundtrips/s for a minute would store
/// six million values and allocate while it measures. This histogram allocates once, records
/// in O(1) without allocating, and reports any percentile with a bounded relative error:
/// values are grouped by power of two, and each power of two is split into
/// `subBuckets` linear steps, so a reported percentile is within 1/`subBuckets` (1.6 %)
/// of the true sample, on the high side. Min, max and mean are exact.
/// Histograms from several threads or connections merge with `merge(_:)`.
public struct LatencyHistogram: Sendable {
    /// Linear steps per power of two (a power of two itself).
    public static let subBuckets = 64
    private static let subBits = 6
    /// Powers of two covered: up to 2^48 ns (about 3 days), far above any timeout used here.
    private static let magnitudes = 48 - subBits + 1

    private var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var min: UInt64 = .max
    public private(set) var max: UInt64 = 0
    private var sum: Double = 0

    public init() {
        counts = [UInt64](repeating: 0, count: (Self.magnitudes + 1) * Self.subBuckets)
    }

    /// The bucket of `value`: values below `subBuckets` each get their own bucket; above,
    /// the top `subBits + 1` significant bits select one.
    @inline(__always)
    private static func index(of value: UInt64) -> Int {
        if value < UInt64(subBuckets) { return Int(value) }
        let magnitude = 63 - value.leadingZeroBitCount - subBits   // >= 0 here
        let m = Swift.min(magnitude, magnitudes - 1)
        let sub = Int(truncatingIfNeeded: value >> UInt64(m)) & (subBuckets - 1)
        return (m + 1) * subBuckets + sub
    }

    /// The largest value that lands in bucket `index` (percentiles report this upper edge,
    /// so they never understate a latency).
    private static func upperEdge(of index: Int) -> UInt64 {
        if index < subBuckets { return UInt64(index) }
        let m = index / subBuckets - 1
        let sub = UInt64(index % subBuckets) | UInt64(subBuckets)
        return ((sub + 1) << UInt64(m)) - 1
    }

    /// Records one sample (nanoseconds). Never allocates.
    public mutating func record(_ nanoseconds: UInt64) {
        counts[Self.index(of: nanoseconds)] += 1
        count += 1
        sum += Double(nanoseconds)
        if nanoseconds < min { min = nanoseconds }
        if nanoseconds > max { max = nanoseconds }
    }

    /// Adds every sample of `other`.
    public mutating func merge(_ other: LatencyHistogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        count += other.count
        sum += other.sum
        if other.min < min { min = other.min }
        if other.max > max { max = other.max }
    }

    /// The mean of the samples, exactly (0 when empty).
    public var mean: Double { count == 0 ? 0 : sum / Double(count) }

    /// The value at or below which `percent` % of the samples lie (0 when empty),
    /// never above the true maximum.
    public func percentile(_ percent: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = Swift.max(1, UInt64((percent / 100 * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank { return Swift.min(Self.upperEdge(of: i), max) }
        }
        return max
    }
}
