/// An intrusive FIFO of completions, linked through `Completion.queueNext`.
///
/// Push and pop never allocate. A completion can sit in at most one such queue at a time;
/// pushing one that is already queued is a programming error caught by a precondition
/// (libxev#169 shipped exactly that bug: a completion on two queues at once).
@usableFromInline
package struct CompletionQueue {
    // `Unmanaged` links, not retained (an active completion is kept alive by the loop's
    // activation retain): strong links cost a retain and a release on every push and pop,
    // and so did reading `unowned(unsafe)` ones.
    @usableFromInline package var _head: Unmanaged<Completion>? = nil
    @usableFromInline package var _tail: Unmanaged<Completion>? = nil
    @usableFromInline package private(set) var count = 0

    package init() {}

    /// The first completion, for walking the queue (through `queueNext`).
    @inlinable package var head: Completion? { _head?.takeUnretainedValue() }
    /// The last completion (for tests).
    package var tail: Completion? { _tail?.takeUnretainedValue() }

    @inlinable package var isEmpty: Bool { count == 0 }

    // Inlined: a call cost about 8 instructions on each of the four pushes per epoll
    // ping-pong roundtrip (callgrind), for a body of a dozen.
    // Inlinable too: `LoopCore.complete`, inlined into the backends, pushes.
    @inlinable @inline(__always)
    package mutating func push(_ c: Completion) {
        precondition(!c.isQueued, "EvLoop: completion is already in a queue")
        c.isQueued = true
        c._queueNext = nil
        let u = Unmanaged.passUnretained(c)
        if let t = _tail { t._withUnsafeGuaranteedRef { $0._queueNext = u } } else { _head = u }
        _tail = u
        count += 1
    }

    package mutating func pop() -> Completion? {
        popUnretained()?.takeUnretainedValue()
    }

    /// Pops without taking a reference, for a caller that knows the completion stays alive
    /// while it uses it (the dispatch loop: the activation's retain holds it) and so can
    /// skip the retain and release a `Completion` value costs.
    @inline(__always)
    package mutating func popUnretained() -> Unmanaged<Completion>? {
        guard let h = _head else { return nil }
        h._withUnsafeGuaranteedRef { c in
            _head = c._queueNext
            if _head == nil { _tail = nil }
            c._queueNext = nil
            c.isQueued = false
        }
        count -= 1
        return h
    }

    /// Removes `c` if it is in this queue (O(n)); returns whether it was found.
    /// Removes `c` if it is the last element and directly follows `previousTail` (the tail
    /// before `c` was pushed; nil for an empty queue then): O(1), where `remove` walks the
    /// queue. False, and nothing changes, otherwise.
    @inline(__always)
    package mutating func removeLast(_ c: Completion, after previousTail: Unmanaged<Completion>?) -> Bool {
        let u = Unmanaged.passUnretained(c)
        guard let t = _tail, t.toOpaque() == u.toOpaque() else { return false }
        if let p = previousTail {
            guard p._withUnsafeGuaranteedRef({ $0._queueNext?.toOpaque() == u.toOpaque() }) else { return false }
            p._withUnsafeGuaranteedRef { $0._queueNext = nil }
        } else {
            guard _head?.toOpaque() == u.toOpaque() else { return false }
            _head = nil
        }
        _tail = previousTail
        c._queueNext = nil
        c.isQueued = false
        count -= 1
        return true
    }

    package mutating func remove(_ c: Completion) -> Bool {
        guard c.isQueued else { return false }
        let target = Unmanaged.passUnretained(c)
        var prev: Unmanaged<Completion>? = nil
        var cur = _head
        while let x = cur {
            let next = x._withUnsafeGuaranteedRef { $0._queueNext }
            if x.toOpaque() == target.toOpaque() {
                if let p = prev { p._withUnsafeGuaranteedRef { $0._queueNext = next } } else { _head = next }
                if _tail?.toOpaque() == target.toOpaque() { _tail = prev }
                c._queueNext = nil
                c.isQueued = false
                count -= 1
                return true
            }
            prev = x
            cur = next
        }
        return false
    }
}
