/// The interface every EvLoop backend implements, and that watchers are written against.
///
/// A loop runs on one thread. Work is added as caller-owned `Completion`s; their callbacks
/// run on the loop thread, inside `run`, never inside `add` (so a callback never re-enters
/// the code that added the work, and stacks stay flat). The only thing that may be touched
/// from another thread is an `Async` notifier built on the loop.
///
/// Every backend in this package implements this protocol by subclassing `LoopCore`, which
/// holds the shared machinery (timer heap, completed queue, run modes, cancellation rules);
/// so `LoopCore` itself serves as the runtime-chosen loop type with no wrapper cost.
public protocol EventLoop: AnyObject {
    /// The kernel interface this loop is built on.
    var backend: Backend { get }
    /// Runs the loop: see `RunMode`. Throws `.nestedRun` when called from a callback of
    /// the same loop; the loop is left intact.
    func run(_ mode: RunMode) throws(EvError)
    /// Starts `completion.operation`. Throws `.completionActive` if the completion is
    /// still in flight. The callback runs later, from `run`.
    func add(_ completion: Completion) throws(EvError)
    /// Makes the current `run` return as soon as the callback that calls it returns;
    /// callbacks of work that has already finished stay queued for the next `run`, and
    /// pending completions stay active (cancel them, or run again).
    /// Call it on the loop thread (from another thread, use `Async`).
    func stop()
    /// The monotonic time, cached once per tick.
    var now: LoopInstant { get }
    /// Re-reads the clock into `now` (after long work in a callback, before arming a timer).
    func updateNow()
    /// The number of completions that are active (added, callback not yet run).
    var activeCount: Int { get }
    /// Moves a pending timer to `deadline` without allocating: only the new deadline fires,
    /// and the old one gets no callback. A dead completion is armed as a timer. Throws
    /// `.canceled` for a timer that has been cancelled and whose callback (reporting
    /// `.canceled`) has not run yet: the cancel has won; arm it again from that callback.
    func resetTimer(_ completion: Completion, deadline: LoopInstant) throws(EvError)
    /// Cancels every active completion; each callback runs once with `.canceled` (or its
    /// real result, if it had already finished). Follow with `run(.untilDone)` to drain.
    func cancelAll()
    /// True when descriptors used with this loop work best in blocking mode (io_uring
    /// waits inside the kernel); false for readiness backends, which need O_NONBLOCK.
    /// Watchers create their sockets accordingly.
    var prefersBlockingDescriptors: Bool { get }
}

extension EventLoop {
    /// Arms `completion` as a timer that fires at `deadline`.
    public func timer(_ completion: Completion, deadline: LoopInstant,
                      callback: @escaping Completion.Callback) throws(EvError) {
        completion.operation = .timer(deadline: deadline)
        completion.callback = callback
        try add(completion)
    }

    /// Arms `completion` as a timer that fires `after` from the loop's cached `now`.
    public func timer(_ completion: Completion, after: Duration,
                      callback: @escaping Completion.Callback) throws(EvError) {
        try timer(completion, deadline: now + after, callback: callback)
    }

    /// Cancels the current activation of `target`, reporting the outcome through `using`.
    /// The target's callback runs exactly once either way.
    public func cancel(_ target: Completion, using completion: Completion,
                       callback: @escaping Completion.Callback = { _, _ in .disarm }) throws(EvError) {
        completion.operation = .cancel(target: target)
        completion.callback = callback
        try add(completion)
    }
}
