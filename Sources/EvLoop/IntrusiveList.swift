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
    @usableFromInline package var _head: Unmanaged<Completion>? = nil
    @usableFromInline package var _tail: Unmanaged<Completion>? = nil

    /// The first completion, for walking the list (through `waiterNext`).
    @inlinable package var head: Completion? { _head?.takeUnretainedValue() }

    /// How many completions are linked.
    @usableFromInline package private(set) var count = 0

    @inlinable package init() {}

    @inlinable package var isEmpty: Bool { count == 0 }

    /// Calls `body` with each completion linked from `first` on, in order, without
    /// retaining them (a `Completion` value per step cost a retain and a release). The next
    /// link is read before `body` runs, so `body` may remove the completion it is given;
    /// it must not remove others. Static, taking the head by value, so that `body` may
    /// change the list it walks.
    @inlinable
    package static func walk(from first: Unmanaged<Completion>?, _ body: (Completion) -> Void) {
        var next = first
        while let u = next {
            next = u._withUnsafeGuaranteedRef { $0._waiterNext }
            u._withUnsafeGuaranteedRef(body)
        }
    }

    // Always inlined: the readiness engine's `addWaiter` (another module) called it out of
    // line, a call and a frame around a few stores on every wait.
    @inlinable @inline(__always)
    package mutating func append(_ c: Completion) {
        let u = Unmanaged.passUnretained(c)
        c._waiterNext = nil
        c._waiterPrev = _tail
        if let t = _tail { t._withUnsafeGuaranteedRef { $0._waiterNext = u } } else { _head = u }
        _tail = u
        count += 1
    }

    @inlinable
    package mutating func remove(_ c: Completion) {
        let p = c._waiterPrev, n = c._waiterNext
        if let p { p._withUnsafeGuaranteedRef { $0._waiterNext = n } } else { _head = n }
        if let n { n._withUnsafeGuaranteedRef { $0._waiterPrev = p } } else { _tail = p }
        c._waiterNext = nil
        c._waiterPrev = nil
        count -= 1
    }
}
