/// A one-shot or repeating timer on the loop's monotonic clock, backed by the caller's
/// `Completion`.
///
/// Why a watcher at all, when `EventLoop.timer(_:after:callback:)` exists: it gives the
/// timer a typed callback (`Result<Void, EvError>`, where `.failure(.canceled)` means the
/// timer was cancelled or drained), names the three things programs do with timers (start,
/// move, cancel), and documents how repetition works, which users of other loops often get
/// wrong (PITFALLS F4):
///
/// - **Repeat = set the next deadline, then return `.rearm`.** `.rearm` repeats the
///   operation exactly as it is configured when the callback returns, so returning `.rearm`
///   without changing the deadline would fire again at once (the old deadline has passed).
///   Choose the drift policy in the callback: `loop.now + interval` (no catch-up: the next
///   tick is an interval after this callback ran) or `previousDeadline + interval` (fixed
///   rate: late ticks are caught up). `LoopTimer.setDeadline(_:_:)` does either without
///   allocating.
/// - **Reset moves a pending timer without allocating**: only the new deadline fires, the
///   old one gets no callback (`EventLoop.resetTimer`). Resetting a dead timer starts it.
/// - **Deadlines are never early.** `now` is cached per loop tick; after long work in a
///   callback call `loop.updateNow()` before arming a relative timer (PITFALLS F2).
///
/// The struct holds nothing; it exists to group the operations (like libxev's `xev.Timer`).
///
/// ```swift
/// let tick = Completion()
/// var count = 0
/// try LoopTimer.start(loop: loop, completion: tick, after: .milliseconds(100)) { c, result in
///     guard case .success = result else { return .disarm }   // cancelled
///     count += 1
///     if count == 10 { return .disarm }
///     LoopTimer.setDeadline(c, loop.now + .milliseconds(100))   // the next tick
///     return .rearm
/// }
/// try loop.run(.untilDone)   // ten ticks, about a second
/// ```
public struct LoopTimer: Sendable {
    /// The timer's callback: `.success` when the deadline passed, `.failure(.canceled)` when
    /// the timer was cancelled (or drained by `cancelAll`).
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction

    public init() {}

    /// Arms `completion` to fire at `deadline` (an absolute instant on the loop's clock).
    public static func start(loop: some EventLoop, completion: Completion, deadline: LoopInstant,
                             callback: @escaping VoidCallback) throws(EvError) {
        try loop.timer(completion, deadline: deadline) { c, result in callback(c, result.voidResult) }
    }

    /// Arms `completion` to fire `after` from the loop's cached `now`.
    public static func start(loop: some EventLoop, completion: Completion, after: Duration,
                             callback: @escaping VoidCallback) throws(EvError) {
        try start(loop: loop, completion: completion, deadline: loop.now + after, callback: callback)
    }

    /// Moves a pending timer to `deadline` (only the new deadline fires; the old one gets no
    /// callback), or starts a dead one with the callback it already has. Allocates nothing.
    /// Throws `.canceled` when the timer has been cancelled and its callback has not run
    /// yet (the cancel has won: the callback reports `.canceled`; arm the timer again there).
    public static func reset(loop: some EventLoop, completion: Completion,
                             deadline: LoopInstant) throws(EvError) {
        try loop.resetTimer(completion, deadline: deadline)
    }

    /// `reset(loop:completion:deadline:)` to `after` from the loop's cached `now`.
    public static func reset(loop: some EventLoop, completion: Completion, after: Duration) throws(EvError) {
        try loop.resetTimer(completion, deadline: loop.now + after)
    }

    /// Cancels the timer's current activation. Its callback then runs once with
    /// `.failure(.canceled)` (unless it had already expired, in which case it reports
    /// `.success` and the cancel reports `.notFound`). `using` is a second completion that
    /// carries the cancel; its callback reports the outcome.
    public static func cancel(loop: some EventLoop, completion: Completion, using cancel: Completion,
                              callback: @escaping VoidCallback = { _, _ in .disarm }) throws(EvError) {
        try loop.cancel(completion, using: cancel) { c, result in callback(c, result.voidResult) }
    }

    /// Sets the deadline a completion's next activation uses: call it in a timer callback
    /// before returning `.rearm`. Allocates nothing.
    @inline(__always)
    public static func setDeadline(_ completion: Completion, _ deadline: LoopInstant) {
        completion.operation = .timer(deadline: deadline)
    }

    /// The deadline of a timer completion (for fixed-rate repetition:
    /// `setDeadline(c, deadline(of: c)! + interval)`), or nil if it is not a timer.
    public static func deadline(of completion: Completion) -> LoopInstant? {
        if case .timer(let deadline) = completion.operation { return deadline }
        return nil
    }
}
