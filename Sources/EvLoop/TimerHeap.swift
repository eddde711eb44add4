#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A 4-ary min-heap of timer completions ordered by (deadline, arm order).
///
/// Every backend keeps its timers here, in user space, and asks the kernel for one wait
/// timeout: the nearest deadline. libxev's io_uring backend instead submits one kernel
/// timeout per timer, which the kernel keeps in a sorted list; a million timers cost it
/// 68 times the CPU of a heap (25.3 s against 0.37 s on libxev's epoll backend; November
/// 2026, a 2-vCPU KVM guest, Linux 6.18; see BENCHMARKS.md, "Anchors"). Each completion
/// stores its own index, so cancel and reset are O(log n) and never allocate; the array
/// grows only when more timers are pending than ever before. Equal deadlines fire in the
/// order they were armed.
///
/// Why 4-ary, and why sifting moves a hole instead of swapping: with a million timers the
/// cost is the cache misses of writing each moved completion's `heapIndex`, not the
/// comparisons. Four children per node halve the depth (the four keys sit side by side
/// in the array), and a hole moves each displaced entry once where a swap wrote two
/// completions per level (callgrind, 100,000 timers: siftDown was 31% of the instructions
/// with a binary heap and swaps).
package final class TimerHeap {
    /// One pending timer. The ordering key lives in the entry itself, so sifting compares
    /// plain integers and never touches (or retains) the completions; only a move writes
    /// the completion's `heapIndex`.
    private struct Entry {
        var deadline: UInt64
        var sequence: UInt64
        var completion: Unmanaged<Completion>
    }

    /// The entries, in raw memory grown with realloc(3): a million timers' array moves with
    /// mremap instead of being copied into a second one twice its size (a Swift array's
    /// doubling briefly held both, about 12 MB more peak memory at 1 M timers).
    // `@exclusivity(unchecked)`, as in LoopCore: a class's stored properties are checked
    // at run time on every access otherwise (callgrind: +700 instructions per epoll
    // ping-pong roundtrip when this heap became a class without it).
    @exclusivity(unchecked)
    private var items: UnsafeMutablePointer<Entry>? = nil
    @exclusivity(unchecked)
    private var capacity = 0
    @exclusivity(unchecked)
    package private(set) var count = 0
    @exclusivity(unchecked)
    private var sequence: UInt64 = 0

    package init() {}

    package var isEmpty: Bool { count == 0 }

    /// The earliest deadline, if any timer is pending.
    package var minDeadline: UInt64? { count > 0 ? items.unsafelyUnwrapped[0].deadline : nil }

    package var min: Completion? { count > 0 ? items.unsafelyUnwrapped[0].completion.takeUnretainedValue() : nil }

    deinit { free(items) }

    private func grow() {
        let newCapacity = Swift.max(64, capacity * 2)
        guard let p = realloc(items, newCapacity * MemoryLayout<Entry>.stride) else {
            fatalError("EvLoop: out of memory growing the timer heap to \(newCapacity) entries")
        }
        items = p.assumingMemoryBound(to: Entry.self)
        capacity = newCapacity
    }

    package func insert(_ c: Completion, deadline: UInt64) {
        precondition(c.heapIndex < 0, "EvLoop: timer is already pending")
        sequence &+= 1
        if count == capacity { grow() }
        c.heapIndex = Int32(count)
        let e = Entry(deadline: deadline, sequence: sequence, completion: .passUnretained(c))
        (items.unsafelyUnwrapped + count).initialize(to: e)
        count += 1
        place(e, from: count - 1)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    package func popExpired(now: UInt64) -> Completion? {
        guard count > 0 else { return nil }
        let first = items.unsafelyUnwrapped[0]
        guard first.deadline <= now else { return nil }
        let c = first.completion.takeUnretainedValue()
        remove(c)
        return c
    }

    /// Removes `c` from the heap; returns false if it was not pending.
    @discardableResult
    package func remove(_ c: Completion) -> Bool {
        let i = Int(c.heapIndex)
        guard i >= 0, i < count, items.unsafelyUnwrapped[i].completion.toOpaque() == Unmanaged.passUnretained(c).toOpaque() else {
            return false
        }
        c.heapIndex = -1
        count -= 1
        let last = items.unsafelyUnwrapped[count]
        if i < count {
            // The last entry fills the hole, then moves down or up to its place.
            place(last, from: i)
        }
        return true
    }

    /// Moves a pending timer to a new deadline (it becomes the newest among equals).
    package func update(_ c: Completion, deadline: UInt64) {
        let i = Int(c.heapIndex)
        precondition(i >= 0 && i < count, "EvLoop: timer is not pending")
        sequence &+= 1
        var e = items.unsafelyUnwrapped[i]
        e.deadline = deadline
        e.sequence = sequence
        place(e, from: i)
    }

    /// Removes every timer, returning them (for cancel-all).
    package func removeAll() -> [Completion] {
        var all: [Completion] = []
        all.reserveCapacity(count)
        for i in 0..<count { all.append(items.unsafelyUnwrapped[i].completion.takeUnretainedValue()) }
        for c in all { c.heapIndex = -1 }
        count = 0
        return all
    }

    // MARK: Sifting

    private static let arity = 4

    @inline(__always)
    private static func less(_ x: Entry, _ y: Entry) -> Bool {
        x.deadline != y.deadline ? x.deadline < y.deadline : x.sequence < y.sequence
    }

    /// Puts `e` into the hole at `start` and moves the hole up or down until the heap
    /// order holds; every entry that moves (and `e`) gets its completion's new index.
    private func place(_ e: Entry, from start: Int) {
        do {
            let a = items.unsafelyUnwrapped
            let n = count
            var i = start
            // Up, while the parent is later.
            while i > 0 {
                let parent = (i - 1) / Self.arity
                guard Self.less(e, a[parent]) else { break }
                a[i] = a[parent]
                Self.setIndex(a[i], i)
                i = parent
            }
            if i == start {
                // Down, while the earliest child is earlier.
                while true {
                    let first = Self.arity * i + 1
                    if first >= n { break }
                    var m = first
                    let end = Swift.min(first + Self.arity, n)
                    var k = first + 1
                    while k < end {
                        if Self.less(a[k], a[m]) { m = k }
                        k += 1
                    }
                    guard Self.less(a[m], e) else { break }
                    a[i] = a[m]
                    Self.setIndex(a[i], i)
                    i = m
                }
            }
            a[i] = e
            Self.setIndex(e, i)
        }
    }

    @inline(__always)
    private static func setIndex(_ e: Entry, _ i: Int) {
        e.completion._withUnsafeGuaranteedRef { $0.heapIndex = Int32(truncatingIfNeeded: i) }
    }
}
