/// An intrusive doubly linked list of completions through `Completion.waiterNext` and
/// `waiterPrev`: append and remove never allocate, and a completion can be unlinked in
/// O(1) from the middle (a cancelled waiter, a finished job).
///
/// One list type for every backend: the readiness engine keeps a descriptor's waiters,
/// its pool jobs and its parked closes in it, io_uring its tracked completions. A
/// completion is in at most one such list at a time (the links are shared).
///
/// Not retained: an active completion is kept alive by the core's activation retain.
/// The methods are `@inlinable` so the backends (other modules) link through the
/// completions' fields without exclusivity checks (see `Completion`).
@usableFromInline
package struct IntrusiveList {
    @usableFromInline package unowned(unsafe) var head: Completion? = nil
    @usableFromInline package unowned(unsafe) var tail: Completion? = nil

    @inlinable package init() {}

    /// How many completions are linked.
    @usableFromInline package private(set) var count = 0

    // A count, not `head == nil`: reading an `unowned(unsafe)` link makes a strong
    // reference (a retain and a release) even just to compare it with nil.
    @inlinable package var isEmpty: Bool { count == 0 }

    @inlinable
    package mutating func append(_ c: Completion) {
        c.waiterNext = nil
        c.waiterPrev = tail
        if let t = tail { t.waiterNext = c } else { head = c }
        tail = c
        count += 1
    }

    @inlinable
    package mutating func remove(_ c: Completion) {
        if let p = c.waiterPrev { p.waiterNext = c.waiterNext } else { head = c.waiterNext }
        if let n = c.waiterNext { n.waiterPrev = c.waiterPrev } else { tail = c.waiterPrev }
        c.waiterNext = nil
        c.waiterPrev = nil
        count -= 1
    }
}
