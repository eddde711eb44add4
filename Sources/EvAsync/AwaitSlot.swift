import CEvTask
import EvLoop

/// One reusable awaitable operation: a `Completion` whose callback resumes the task that
/// awaits it.
///
/// Slots come from the executor's pool and go back to it after the await, so in steady
/// state an await allocates nothing: the continuation lives in the task's own frame; the
/// completion, its callback closure (which captures only the slot) and the cancellation
/// handler are made once per slot.
///
/// A slot is used by one await at a time. Each await gets a new `awaitID`; a cancellation
/// request carries the id it was made for, so a request that arrives late (from another
/// thread, through the executor's queue) is ignored once the slot serves another await.
final class AwaitSlot: LoopCancellable {
    /// The executor's lifetime covers every await on the slot: `LoopExecutor.perform` keeps
    /// the executor alive for as long as it is suspended, and the completion's callback
    /// runs only while it is suspended. (A strong reference would make a cycle through the
    /// executor's pool.)
    unowned(unsafe) let executor: LoopExecutor
    let completion = Completion()
    /// Reused for the cancels this slot issues (a fresh one when it is still in flight).
    /// Unchecked exclusivity: read on every await (`prepareForReuse`), on the loop thread.
    @exclusivity(unchecked) fileprivate var cancelCompletion: Completion?
    // Unchecked exclusivity (read on every await, loop thread only, never overlapping): a
    // checked access is a runtime call and a thread-local lookup.
    /// Set while an operation is in flight and its task is suspended.
    @exclusivity(unchecked) private var continuation: UnsafeContinuation<CompletionResult?, Never>?
    @exclusivity(unchecked) private(set) var awaitID: UInt64 = 0
    /// Set by the cancellation handler when it runs for the current await before the
    /// operation has started (see `perform`).
    @exclusivity(unchecked) private var cancelledBeforeStart = false
    /// The next free slot while this one is in the executor's pool (a retained link: the
    /// pool owns its slots through it; see `LoopExecutor.takeSlot`).
    @exclusivity(unchecked) var nextFree: Unmanaged<AwaitSlot>?
    /// The cancellation handler of every await on this slot, made once: the runtime keeps
    /// its address. It runs on the cancelling thread while `perform`'s record is installed,
    /// under the task's status-record lock, which `perform` took (adding the record) after
    /// setting `awaitID`: so the id it reads is the current await's.
    private let onCancel: UnsafeMutablePointer<cevtask_cancel_handler>

    init(executor: LoopExecutor) {
        self.executor = executor
        onCancel = .allocate(capacity: 1)
        onCancel.initialize(to: cevtask_cancel_handler(function: { argument in
            let slot = Unmanaged<AwaitSlot>.fromOpaque(argument.unsafelyUnwrapped).takeUnretainedValue()
            // On the loop thread this cancels at once; elsewhere it queues the request.
            slot.executor.requestCancel(CancelTicket(target: slot, id: slot.awaitID))
        }, argument: nil))
        // Unretained: the slot owns the handler (freed in deinit).
        onCancel.pointee.argument = Unmanaged.passUnretained(self).toOpaque()
        // The callback finds its slot through its own (unowned) capture rather than
        // `userData`: `userData` belongs to another module, where every access to it pays a
        // runtime exclusivity check (two per await). While the operation is in flight the
        // awaiting task's frame holds the slot (`performChecked`), so the capture is valid
        // whenever the callback runs; unowned, because the slot owns the completion.
        completion.callback = { [unowned(unsafe) self] _, result in
            self.fire(result)
            return .disarm
        }
    }

    deinit {
        onCancel.deallocate()
    }

    private func fire(_ result: CompletionResult) {
        guard let continuation else {
            preconditionFailure("EvAsync: a completion finished with no task awaiting it")
        }
        self.continuation = nil
        executor.resumeInCallback { continuation.resume(returning: result) }
    }

    /// Starts the completion's operation (the caller set it) and suspends until its
    /// callback has run. Runs on the loop thread (the caller checked). Returns nil when the
    /// task was cancelled before the operation could start (nothing was added to the loop
    /// then).
    ///
    /// `nonisolated(nonsending)`: it runs on the caller's executor, which is the loop's, so
    /// there is no hop on the way in or out. Two task switches that would do nothing are
    /// avoided (each costs a look-up of the task's executor preference under its
    /// status-record lock): the cancellation handler is installed with the runtime's own
    /// entry points rather than `withTaskCancellationHandler`, whose `isolated` parameter
    /// costs three switches (see CEvTask.h), and the continuation is made with
    /// `_unsafeInheritExecutor_withUnsafeContinuation`, the form of `withUnsafeContinuation`
    /// without an `isolation` parameter, which would hop to the caller's isolation on entry
    /// (where the task already is). The hop back after the task resumes stays: it is this
    /// function's own, and it is what puts an actor-isolated caller back on its actor.
    @inline(__always) nonisolated(nonsending)
    func perform() async -> CompletionResult? {
        awaitID &+= 1
        cancelledBeforeStart = false
        if executor.mayTakeImmediateResult() {
            // The operation may finish as it starts (epoll, poll): then no cancellation
            // record is needed at all (adding and removing one is about 590 instructions of
            // the runtime's, under the task's status-record lock), only a look at the flag,
            // so that an already-cancelled task starts nothing.
            if Self.currentTaskIsCancelled { return nil }
            if let raw = add(takingImmediateResult: true) { return completion.makeResult(raw: raw) }
            // In flight: from here on a cancel must reach it. The record's handler runs at
            // once, on this thread, if the task was cancelled since the look above (from
            // another thread); the operation has started, so it is cancelled through the
            // loop, and its callback reports how that went.
#if DEBUG
            executor.beforeCancellationRecord?(completion)
#endif
            let record = cevtask_add_cancellation_handler(onCancel)
            defer { cevtask_remove_cancellation_handler(record) }
            if cancelledBeforeStart {
                cancelInFlight(completion, reusing: &cancelCompletion, on: executor.loopUnchecked)
            }
            return await suspendUntilCallback()
        }
        // Runs `onCancel` at once, on this thread, when the task is already cancelled:
        // it then finds no operation in flight and sets `cancelledBeforeStart`.
        let record = cevtask_add_cancellation_handler(onCancel)
        defer { cevtask_remove_cancellation_handler(record) }
        // The slot's flag rather than `Task.isCancelled` (a look-up of the current task
        // through a thread-local, with a retain and a release: about 85 instructions per
        // await): nothing else can have cancelled the task in between. A cancel on this
        // thread before the record was added ran the handler just above; one on another
        // thread after it runs the handler there, which queues the request for the loop
        // thread, where it can only be handled once this job has suspended, and then
        // cancels the operation through the loop.
        if cancelledBeforeStart { return nil }
        _ = add(takingImmediateResult: false)
        return await suspendUntilCallback()
    }

    /// `perform` without a cancellation handler, for operations that must happen whatever
    /// the task's state (closing a descriptor). Never returns nil.
    nonisolated(nonsending)
    func performIgnoringCancellation() async -> CompletionResult? {
        awaitID &+= 1
        if let raw = add(takingImmediateResult: executor.mayTakeImmediateResult()) {
            return completion.makeResult(raw: raw)
        }
        return await suspendUntilCallback()
    }

    /// Whether the running task is cancelled: two runtime calls through CEvTask, where
    /// `Task.isCancelled` retains and releases the task and `withUnsafeCurrentTask` is a
    /// generic call with a closure (about 150 instructions a look, callgrind).
    @inline(__always)
    private static var currentTaskIsCancelled: Bool { cevtask_current_is_cancelled() }

    /// Adds the completion to the loop. With `takingImmediateResult`, an operation that
    /// finished as it started comes back as its raw result (`LoopCore.addTakingImmediateResult`);
    /// otherwise, and when it is in flight, nil: its callback will resume the task
    /// (`suspendUntilCallback`).
    @inline(__always)
    private func add(takingImmediateResult: Bool) -> Int? {
        let loop = executor.loopUnchecked
        do {
            if takingImmediateResult { return try loop.addTakingImmediateResult(completion) }
            try loop.add(completion)
            return nil
        } catch {
            preconditionFailure("EvAsync: an operation slot was still in flight: \(error)")
        }
    }

    /// Suspends until the completion's callback (`fire`) resumes the task. The operation
    /// has been added; its callback cannot run before this returns to the runtime (it runs
    /// from the loop's dispatch, on this thread, after this job has suspended).
    @inline(__always) nonisolated(nonsending)
    private func suspendUntilCallback() async -> CompletionResult? {
        await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<CompletionResult?, Never>) in
            self.continuation = continuation
        }
    }

    /// Cancels the operation of await `id` if it is still in flight (loop thread only). Its
    /// callback then runs once, with `.canceled` or with its real result.
    func cancelOnLoop(_ id: UInt64) {
        guard id == awaitID else { return }
        guard continuation != nil, completion.state == .active else {
            // Not started (the handler ran inside `perform`, which then starts nothing),
            // started but not suspended yet (the handler ran as `perform` added the record
            // after the operation; `perform` then cancels it itself), or already finished
            // (then the next await resets the flag before it looks).
            cancelledBeforeStart = true
            return
        }
        cancelInFlight(completion, reusing: &cancelCompletion, on: executor.loopUnchecked)
    }

    /// Makes the slot ready for the pool: drops a cancel completion that is still in flight
    /// (the loop keeps it alive until its callback, which does nothing).
    func prepareForReuse() {
        if let c = cancelCompletion, c.state == .active { cancelCompletion = nil }
    }
}

/// Cancels `target` (in flight) through `loop`, with `spare` as the cancel completion when it
/// is free (a fresh one, kept as the new spare, when the previous cancel is still in flight).
func cancelInFlight(_ target: Completion, reusing spare: inout Completion?, on loop: LoopCore) {
    let cancel: Completion
    if let c = spare, c.state == .dead {
        cancel = c
    } else {
        cancel = Completion()
        spare = cancel
    }
    // add() only throws for an active completion, and `cancel` is dead.
    try? loop.cancel(target, using: cancel)
}

/// An await of a watcher's own operation (a process exit, a signal): the watcher configures
/// the completion and its callback, and the callback hands the typed result to the task.
///
/// One per await (these are rare events: a few allocations each is fine), with the same
/// cancellation path as `AwaitSlot`.
final class WatcherAwait<Value: Sendable>: LoopCancellable {
    let executor: LoopExecutor
    let completion = Completion()
    private var cancelCompletion: Completion?
    private var continuation: UnsafeContinuation<Result<Value, EvError>?, Never>?
    /// How to cancel the operation when it is not `completion`'s (a `WriteQueue` write):
    /// called on the loop thread, instead of cancelling `completion`.
    private let cancelling: (() -> Void)?

    init(executor: LoopExecutor, cancelling: (() -> Void)? = nil) {
        self.executor = executor
        self.cancelling = cancelling
    }

    /// Calls `start` with the completion and a function the watcher's callback must call
    /// exactly once with the result, then suspends until it has. Throws `CancellationError`
    /// when the task is cancelled and the watcher reports `.canceled`.
    nonisolated(nonsending)
    func run(_ start: (Completion, @escaping (Result<Value, EvError>) -> Void) throws(EvError) -> Void) async throws -> Value {
        executor.preconditionOnLoopThread("an awaited watcher operation")
        try Task.checkCancellation()
        executor.noteSuspension(.watcherWait(Value.self))
        let ticket = CancelTicket(target: self, id: 0)
        let executor = self.executor
        let outcome = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Value, EvError>?, Never>) in
                if Task.isCancelled {
                    continuation.resume(returning: nil)
                    return
                }
                self.continuation = continuation
                do throws(EvError) {
                    // Unowned: the watcher stores this function in the completion's callback,
                    // which the await object holds, so a strong capture would be a cycle that
                    // keeps the await, its completion and the watcher (with its descriptor)
                    // alive forever. The function is only called while `run` is suspended,
                    // that is while the await object is alive.
                    try start(self.completion) { [unowned self] result in self.deliver(result) }
                } catch {
                    self.continuation = nil
                    continuation.resume(returning: .failure(error))
                }
            }
        } onCancel: {
            executor.requestCancel(ticket)
        }
        guard let outcome else { throw CancellationError() }
        if case .failure(.canceled) = outcome, Task.isCancelled { throw CancellationError() }
        return try outcome.get()
    }

    private func deliver(_ result: Result<Value, EvError>) {
        guard let continuation else {
            preconditionFailure("EvAsync: a watcher reported a result twice")
        }
        self.continuation = nil
        executor.resumeInCallback { continuation.resume(returning: result) }
    }

    func cancelOnLoop(_ id: UInt64) {
        guard continuation != nil else { return }
        if let cancelling {
            cancelling()
            return
        }
        guard completion.state == .active else { return }
        cancelInFlight(completion, reusing: &cancelCompletion, on: executor.loopUnchecked)
    }
}
