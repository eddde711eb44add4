#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The loop's timers (and operation deadlines): a 4-ary min-heap plus a sorted run, ordered
/// by (deadline, arm order).
///
/// Every backend keeps its timers here, in user space, and asks the kernel for one wait
/// timeout: the nearest deadline. libxev's io_uring backend instead submits one kernel
/// timeout per timer, which the kernel keeps in a sorted list; a million timers cost it
/// 68 times the CPU of a heap (25.3 s against 0.37 s on libxev's epoll backend; November
/// 2026, a 2-vCPU KVM guest, Linux 6.18; see BENCHMARKS.md, "Anchors"). Each completion
/// stores its own position, so cancel and reset never search and never allocate; the
/// arrays grow only when more timers are pending than ever before. Equal deadlines fire in
/// the order they were armed.
///
/// Why a sorted run next to the heap: most deadlines are armed in deadline order, because
/// they are `now` plus one fixed duration (an idle timeout reset on every request, a
/// request deadline, libxev's and libuv's million-timers benchmark). A timer whose deadline
/// is not earlier than the last one appended joins the back of the run, a FIFO ring, in
/// O(1); leaving it from the front is O(1) too. Only a timer that would break the order
/// goes to the heap, and the earliest timer is the earlier of the two fronts. With a
/// million timers armed in order, a pop from the heap was a sift over ten levels, each a
/// cache miss on a moved completion (callgrind: 835 of the 2,650 instructions each timer
/// cost, the largest single item). A timer removed from the middle of the run (cancelled,
/// or reset to a new deadline) leaves a hole that is skipped when it reaches the front;
/// when holes outnumber the live entries the run is compacted, so a server that resets
/// every connection's idle timer on each request keeps the run at most twice its size.
///
/// Arm order among equal deadlines without a sequence number in the run: the run accepts
/// only deadlines at or after the latest it ever accepted (`runBack`, which goes back to 0
/// only when both parts are empty), and everything in the heap went there because it was
/// earlier than `runBack` at the time. So a run entry is never tied with a later-armed
/// heap entry, and on a tie the run's front goes first. A run entry is 16 bytes where a
/// heap entry, with its sequence number, is 24 (8 MB less for a million timers armed in
/// order). Moving a heap timer to a new deadline (`update`) therefore removes and
/// re-inserts it, so that it too lands where its new deadline belongs.
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

    /// One timer in the sorted run (its position is its arm order), or a hole
    /// (`completion == nil`) where a removed one was.
    private struct RunEntry {
        var deadline: UInt64
        var completion: Unmanaged<Completion>?
    }

    /// The heap's entries, in raw memory grown with realloc(3): a million timers' array
    /// moves with mremap instead of being copied into a second one twice its size (a Swift
    /// array's doubling briefly held both, about 12 MB more peak memory at 1 M timers).
    // `@exclusivity(unchecked)`, as in LoopCore: a class's stored properties are checked
    // at run time on every access otherwise (callgrind: +700 instructions per epoll
    // ping-pong roundtrip when this heap became a class without it).
    @exclusivity(unchecked)
    private var items: UnsafeMutablePointer<Entry>? = nil
    @exclusivity(unchecked)
    private var capacity = 0
    /// Entries in the heap.
    @exclusivity(unchecked)
    private var heapCount = 0
    @exclusivity(unchecked)
    private var sequence: UInt64 = 0

    /// The sorted run: a ring of `runCapacity` (a power of two) entries, `runLength` of
    /// them in use from `runHead`, holes included; `runLive` are timers. The front entry
    /// is never a hole.
    @exclusivity(unchecked)
    private var run: UnsafeMutablePointer<RunEntry>? = nil
    @exclusivity(unchecked)
    private var runCapacity = 0
    @exclusivity(unchecked)
    private var runHead = 0
    @exclusivity(unchecked)
    private var runLength = 0
    @exclusivity(unchecked)
    private var runLive = 0
    /// The latest deadline the run has accepted (see the type's comment on arm order).
    @exclusivity(unchecked)
    private var runBack: UInt64 = 0

    package init() {}

    /// How many timers are pending.
    package var count: Int { heapCount + runLive }

    package var isEmpty: Bool { heapCount == 0 && runLive == 0 }

    /// The earliest deadline, if any timer is pending.
    package var minDeadline: UInt64? { front.map { $0.deadline } }

    package var min: Completion? { front.map { $0.completion.takeUnretainedValue() } }

    /// The earliest timer: the earlier of the heap's top and the run's front (the run's on
    /// a tie).
    @inline(__always)
    private var front: (deadline: UInt64, completion: Unmanaged<Completion>)? {
        if runLive == 0 {
            guard heapCount > 0 else { return nil }
            let h = items.unsafelyUnwrapped[0]
            return (h.deadline, h.completion)
        }
        let r = run.unsafelyUnwrapped[runHead]
        if heapCount > 0 {
            let h = items.unsafelyUnwrapped[0]
            if h.deadline < r.deadline { return (h.deadline, h.completion) }
        }
        return (r.deadline, r.completion.unsafelyUnwrapped)
    }

    deinit {
        free(items)
        free(run)
    }

    package func insert(_ c: Completion, deadline: UInt64) {
        precondition(c.heapIndex == -1, "EvLoop: timer is already pending")
        if deadline >= runBack || (heapCount == 0 && runLive == 0) {
            append(RunEntry(deadline: deadline, completion: .passUnretained(c)))
            return
        }
        sequence &+= 1
        if heapCount == capacity { grow() }
        c.heapIndex = Int32(heapCount)
        let e = Entry(deadline: deadline, sequence: sequence, completion: .passUnretained(c))
        (items.unsafelyUnwrapped + heapCount).initialize(to: e)
        heapCount += 1
        place(e, from: heapCount - 1)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    package func popExpired(now: UInt64) -> Completion? {
        if runLive > 0 {
            let r = run.unsafelyUnwrapped[runHead]
            if heapCount == 0 || r.deadline <= items.unsafelyUnwrapped[0].deadline {
                guard r.deadline <= now else { return nil }
                let c = r.completion.unsafelyUnwrapped.takeUnretainedValue()
                c.heapIndex = -1
                dropRunFront()
                return c
            }
        }
        guard heapCount > 0 else { return nil }
        let first = items.unsafelyUnwrapped[0]
        guard first.deadline <= now else { return nil }
        let c = first.completion.takeUnretainedValue()
        removeFromHeap(c, at: 0)
        return c
    }

    /// Removes `c`; returns false if it was not pending here.
    @discardableResult
    package func remove(_ c: Completion) -> Bool {
        let p = Int(c.heapIndex)
        if p >= 0 {
            guard p < heapCount, items.unsafelyUnwrapped[p].completion.toOpaque() == Unmanaged.passUnretained(c).toOpaque() else {
                return false
            }
            removeFromHeap(c, at: p)
            return true
        }
        let slot = Self.runSlot(p)
        guard slot >= 0, slot < runCapacity, run.unsafelyUnwrapped[slot].completion?.toOpaque() == Unmanaged.passUnretained(c).toOpaque() else {
            return false
        }
        c.heapIndex = -1
        if slot == runHead {
            dropRunFront()
        } else {
            run.unsafelyUnwrapped[slot].completion = nil
            runLive -= 1
            // Holes are skipped at the front; compacted once they outnumber the timers, so
            // the ring stays within twice the pending count (the 64 keeps small runs from
            // compacting on every other cancel).
            if runLength - runLive > Swift.max(64, runLive) { compactRun() }
        }
        return true
    }

    /// Moves a pending timer to a new deadline (it becomes the newest among equals).
    package func update(_ c: Completion, deadline: UInt64) {
        // Removed and inserted again, wherever it is: a heap timer must not stay in the
        // heap with a deadline the run could tie (see the type's comment on arm order).
        // The removal is not inside the precondition: -Ounchecked drops the condition,
        // and the timer would then be inserted a second time.
        let wasPending = remove(c)
        precondition(wasPending, "EvLoop: timer is not pending")
        insert(c, deadline: deadline)
    }

    /// Removes every timer, returning them (for cancel-all).
    package func removeAll() -> [Completion] {
        var all: [Completion] = []
        all.reserveCapacity(count)
        for i in 0..<heapCount { all.append(items.unsafelyUnwrapped[i].completion.takeUnretainedValue()) }
        for k in 0..<runLength {
            if let u = run.unsafelyUnwrapped[(runHead + k) & (runCapacity - 1)].completion { all.append(u.takeUnretainedValue()) }
        }
        for c in all { c.heapIndex = -1 }
        heapCount = 0
        runHead = 0
        runLength = 0
        runLive = 0
        runBack = 0
        return all
    }

    // MARK: The heap

    private func grow() {
        let newCapacity = Swift.max(64, capacity * 2)
        guard let p = realloc(items, newCapacity * MemoryLayout<Entry>.stride) else {
            fatalError("EvLoop: out of memory growing the timer heap to \(newCapacity) entries")
        }
        items = p.assumingMemoryBound(to: Entry.self)
        capacity = newCapacity
    }

    private func removeFromHeap(_ c: Completion, at i: Int) {
        c.heapIndex = -1
        heapCount -= 1
        let last = items.unsafelyUnwrapped[heapCount]
        if i < heapCount {
            // The last entry fills the hole, then moves down or up to its place.
            place(last, from: i)
        }
    }

    // MARK: The sorted run

    /// A run slot as a completion stores it: -2 is slot 0, -3 slot 1, and so on (-1 is
    /// "not pending", 0 and up are heap positions).
    @inline(__always)
    private static func runSlot(_ position: Int) -> Int { -2 - position }

    @inline(__always)
    private static func setRunSlot(_ e: RunEntry, _ slot: Int) {
        e.completion.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.heapIndex = Int32(truncatingIfNeeded: -2 - slot) }
    }

    private func append(_ e: RunEntry) {
        if runLive == 0 {
            // Empty (holes only, if any): start over at slot 0.
            runHead = 0
            runLength = 0
        }
        if runLength == runCapacity { growRun() }
        let slot = (runHead + runLength) & (runCapacity - 1)
        (run.unsafelyUnwrapped + slot).initialize(to: e)
        Self.setRunSlot(e, slot)
        runLength += 1
        runLive += 1
        runBack = e.deadline
    }

    /// Drops the front entry (a timer) and any holes behind it.
    @inline(__always)
    private func dropRunFront() {
        runLive -= 1
        let mask = runCapacity - 1
        let r = run.unsafelyUnwrapped
        repeat {
            runHead = (runHead + 1) & mask
            runLength -= 1
        } while runLength > 0 && r[runHead].completion == nil
    }

    /// Doubles the ring. realloc keeps slots below the old capacity where they are; the
    /// entries that had wrapped around to the start move to just past the old end, the
    /// only completions whose stored slot changes.
    private func growRun() {
        let old = runCapacity
        let newCapacity = Swift.max(64, old * 2)
        guard let p = realloc(run, newCapacity * MemoryLayout<RunEntry>.stride) else {
            fatalError("EvLoop: out of memory growing the timer run to \(newCapacity) entries")
        }
        let r = p.assumingMemoryBound(to: RunEntry.self)
        let wrapped = runHead + runLength - old
        if old > 0, wrapped > 0 {
            (r + old).moveInitialize(from: r, count: wrapped)
            for slot in old..<(old + wrapped) where r[slot].completion != nil { Self.setRunSlot(r[slot], slot) }
        }
        run = r
        runCapacity = newCapacity
    }

    /// Closes the holes: live entries move towards the front, in order.
    private func compactRun() {
        let mask = runCapacity - 1
        let r = run.unsafelyUnwrapped
        var write = runHead
        for k in 0..<runLength {
            let slot = (runHead + k) & mask
            let e = r[slot]
            guard e.completion != nil else { continue }
            if slot != write {
                r[write] = e
                Self.setRunSlot(e, write)
            }
            write = (write + 1) & mask
        }
        runLength = runLive
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
            let n = heapCount
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
