/// An intrusive FIFO of completions, linked through `Completion.queueNext`.
///
/// Push and pop never allocate. A completion can sit in at most one such queue at a time;
/// pushing one that is already queued is a programming error caught by a precondition
/// (libxev#169 shipped exactly that bug: a completion on two queues at once).
@usableFromInline
package struct CompletionQueue {
    // Not retained (an active completion is kept alive by the loop's activation retain):
    // strong links cost a retain and a release on every push and pop.
    @usableFromInline package private(set) unowned(unsafe) var head: Completion? = nil
    package private(set) unowned(unsafe) var tail: Completion? = nil
    @usableFromInline package private(set) var count = 0

    package init() {}

    // A count, not `head == nil`: reading an `unowned(unsafe)` link makes a strong
    // reference (a retain and a release) even just to compare it with nil.
    @inlinable package var isEmpty: Bool { count == 0 }

    package mutating func push(_ c: Completion) {
        precondition(!c.isQueued, "EvLoop: completion is already in a queue")
        c.isQueued = true
        c.queueNext = nil
        if let t = tail {
            t.queueNext = c
        } else {
            head = c
        }
        tail = c
        count += 1
    }

    package mutating func pop() -> Completion? {
        guard let h = head else { return nil }
        head = h.queueNext
        if head == nil { tail = nil }
        h.queueNext = nil
        h.isQueued = false
        count -= 1
        return h
    }

    /// Removes `c` if it is in this queue (O(n)); returns whether it was found.
    package mutating func remove(_ c: Completion) -> Bool {
        guard c.isQueued else { return false }
        var prev: Completion? = nil
        var cur = head
        while let x = cur {
            if x === c {
                if let p = prev { p.queueNext = x.queueNext } else { head = x.queueNext }
                if tail === x { tail = prev }
                x.queueNext = nil
                x.isQueued = false
                count -= 1
                return true
            }
            prev = x
            cur = x.queueNext
        }
        return false
    }
}
