/// A pool of threads that runs closures off the loop and delivers their results on the loop
/// thread (libuv's `uv_queue_work`, SwiftNIO's `NIOThreadPool`).
///
/// Why: a callback must never block the loop (every other connection waits meanwhile), yet
/// programs have work that blocks or takes long: hashing a password, compressing a file, a
/// library call without a non-blocking form. `run` moves such a closure to a pool thread
/// and brings its value back as an ordinary operation: a caller-owned `Completion` that is
/// active until its callback runs on the loop thread, counted in `activeCount`, waited for
/// by `run(.untilDone)`, cancellable through `loop.cancel(_:using:)`, and withdrawn by
/// `cancelAll()`. It works the same on every backend (the core runs it, not the backend).
///
/// **Cancellation.** A job that has not started is withdrawn: its closure never runs, the
/// callback gets `.canceled` and the cancel reports success. A job that has started runs to
/// the end (a thread cannot be interrupted safely): the cancel reports `.inProgress` and
/// the callback gets the real result, as with any operation that won its race.
///
/// **Threads** start when jobs are queued and none is idle, up to `threads`, and then stay
/// until `shutdown()`: a pool that is never used costs nothing. One pool may serve many
/// loops on many threads (each job comes back to the loop that started it).
///
/// **Shutdown.** `shutdown()` cancels the queued jobs (each callback gets `.canceled`, on its
/// loop, when that loop runs), lets the running ones finish and deliver their results, and
/// joins every thread; later jobs are refused with `.canceled`. Releasing the last
/// reference to the pool does the same. Do not call it from a loop thread whose loop must
/// run for a running closure to finish: the join would wait for that closure forever.
///
/// Ownership: the pool owns its threads and joins them; it opens no descriptor. Each loop
/// that runs pool work opens one eventfd of its own the first time (closed with the loop),
/// through which the pool's threads wake it.
///
/// ```swift
/// let pool = try WorkPool(threads: 4)
/// let hashing = Completion()
/// try pool.run(loop: loop, completion: hashing, { () throws(EvError) -> [UInt8] in
///     try slowHash(password)              // on a pool thread
/// }) { _, result in
///     switch result {                     // on the loop thread
///     case .success(let digest): store(digest)
///     case .failure(let error): report(error)   // thrown by the closure, or .canceled
///     }
///     return .disarm
/// }
/// try loop.run(.untilDone)
/// pool.shutdown()
/// ```
public final class WorkPool: Sendable {
    /// A callback of `run`: the closure's value or the `EvError` it threw (`.canceled` when
    /// the job was withdrawn before it started, or its pool shut down first).
    public typealias ValueCallback<Value> = (Completion, Result<Value, EvError>) -> CallbackAction

    /// The threads and their queue (kept apart so that they never keep this handle alive).
    package let threads: WorkThreads

    /// Creates a pool of at most `threads` threads, started on demand, each named `name`
    /// (what `top -H` and debuggers show; Linux keeps its first 15 bytes). Throws
    /// `.invalidArgument` when `threads` is less than 1.
    public init(threads: Int, name: String = "ev-work") throws(EvError) {
        guard threads >= 1 else { throw .invalidArgument }
        self.threads = WorkThreads(maxThreads: threads, threadName: name)
    }

    /// Shuts the pool down when the last reference goes (see `shutdown()`).
    deinit { threads.shutdown() }

    /// Cancels the queued jobs, waits for the running ones and joins the threads (see
    /// "Shutdown"). Safe to call more than once, from any thread; a call while another is
    /// shutting down returns at once, and a call from one of the pool's own threads (inside
    /// a closure) does not wait for that thread.
    public func shutdown() { threads.shutdown() }

    /// Runs `work` on a pool thread, then `callback` with its value on `loop`'s thread.
    ///
    /// `work` must not touch the loop or its completions (they belong to the loop thread;
    /// Swift's `@Sendable` checks what it captures). It may throw an `EvError`, which the
    /// callback receives as `.failure`. `.rearm` from the callback runs `work` again.
    ///
    /// Throws `.completionActive` (leaving `completion` untouched) while `completion` is in
    /// flight. Everything else arrives in the callback, exactly once.
    public func run<Value: Sendable>(loop: some EventLoop, completion: Completion,
                                     _ work: @escaping @Sendable () throws(EvError) -> Value,
                                     callback: @escaping ValueCallback<Value>) throws(EvError) {
        // Checked before anything changes: an active completion keeps its operation.
        guard completion.state == .dead else { throw .completionActive }
        let job = Job(threads: threads) { () throws(EvError) -> any Sendable in try work() }
        try completion.start(.work(job: job), on: loop, viewing: { $1.workValue(Value.self, of: $0) }, callback: callback)
    }
}

extension CompletionResult {
    /// A work job's value in the type its closure returns, taken from `completion`'s job.
    @inline(__always)
    package func workValue<Value>(_: Value.Type, of completion: Completion) -> Result<Value, EvError> {
        guard case .work(let r) = self else { return .failure(.invalidArgument) }
        switch r {
        case .success:
            // Another type (or none) only when the operation was replaced while in flight.
            guard let typed = completion.takeWorkValue() as? Value else { return .failure(.invalidArgument) }
            return .success(typed)
        case .failure(let e):
            return .failure(e)
        }
    }
}
