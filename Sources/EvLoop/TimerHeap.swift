/// A binary min-heap of timer completions ordered by (deadline, arm order).
///
/// Every backend keeps its timers here, in user space, and asks the kernel for one wait
/// timeout: the nearest deadline. libxev's io_uring backend instead submits one kernel
/// timeout per timer, which the kernel keeps in a sorted list; a million timers cost it
/// 68 times the CPU of a heap (25.3 s against 0.37 s on libxev's epoll backend; November
/// 2026, a 2-vCPU KVM guest, Linux 6.18; see BENCHMARKS.md, "Anchors"). Each completion
/// stores its own index, so cancel and reset are O(log n) and never allocate; the array
/// grows only when more timers are pending than ever before. Equal deadlines fire in the
/// order they were armed.
package struct TimerHeap {
    /// One pending timer. The ordering key lives in the entry itself, so sifting compares
    /// plain integers and never touches (or retains) the completions; only a move writes
    /// the completion's `heapIndex`.
    private struct Entry {
        var deadline: UInt64
        var sequence: UInt64
        var completion: Unmanaged<Completion>
    }

    private var items: [Entry] = []
    private var sequence: UInt64 = 0

    package init() {}

    package var count: Int { items.count }
    package var isEmpty: Bool { items.isEmpty }

    /// The earliest deadline, if any timer is pending.
    package var minDeadline: UInt64? { items.first?.deadline }

    package var min: Completion? { items.first?.completion.takeUnretainedValue() }

    package mutating func insert(_ c: Completion, deadline: UInt64) {
        precondition(c.heapIndex < 0, "EvLoop: timer is already pending")
        sequence &+= 1
        c.heapIndex = Int32(items.count)
        items.append(Entry(deadline: deadline, sequence: sequence, completion: .passUnretained(c)))
        siftUp(items.count - 1)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    package mutating func popExpired(now: UInt64) -> Completion? {
        guard let first = items.first, first.deadline <= now else { return nil }
        let c = first.completion.takeUnretainedValue()
        remove(c)
        return c
    }

    /// Removes `c` from the heap; returns false if it was not pending.
    @discardableResult
    package mutating func remove(_ c: Completion) -> Bool {
        let i = Int(c.heapIndex)
        guard i >= 0, i < items.count, items[i].completion.toOpaque() == Unmanaged.passUnretained(c).toOpaque() else {
            return false
        }
        let last = items.count - 1
        if i != last {
            swapAt(i, last)
        }
        items.removeLast()
        c.heapIndex = -1
        if i < items.count {
            siftDown(i)
            siftUp(i)
        }
        return true
    }

    /// Moves a pending timer to a new deadline (it becomes the newest among equals).
    package mutating func update(_ c: Completion, deadline: UInt64) {
        let i = Int(c.heapIndex)
        precondition(i >= 0 && i < items.count, "EvLoop: timer is not pending")
        sequence &+= 1
        items[i].deadline = deadline
        items[i].sequence = sequence
        siftDown(i)
        siftUp(Int(c.heapIndex))
    }

    /// Removes every timer, returning them (for cancel-all).
    package mutating func removeAll() -> [Completion] {
        let all = items.map { $0.completion.takeUnretainedValue() }
        for c in all { c.heapIndex = -1 }
        items.removeAll(keepingCapacity: true)
        return all
    }

    @inline(__always)
    private func less(_ a: Int, _ b: Int) -> Bool {
        let x = items[a], y = items[b]
        if x.deadline != y.deadline { return x.deadline < y.deadline }
        return x.sequence < y.sequence
    }

    @inline(__always)
    private mutating func swapAt(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].completion._withUnsafeGuaranteedRef { $0.heapIndex = Int32(truncatingIfNeeded: a) }
        items[b].completion._withUnsafeGuaranteedRef { $0.heapIndex = Int32(truncatingIfNeeded: b) }
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = items.count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var m = l
            if l + 1 < n && less(l + 1, l) { m = l + 1 }
            guard less(m, i) else { break }
            swapAt(i, m)
            i = m
        }
    }
}
