import EvLoop

// The primitive every awaitable form is built on: perform one loop `Operation` and suspend
// until its callback has run, with task cancellation mapped onto the loop's cancellation.

extension LoopExecutor {
    /// Starts `operation` on the loop and suspends the calling task until it has finished;
    /// returns its result (errors are in the result, as for a callback).
    ///
    /// Call it from code that runs on this executor (a task with this executor as its
    /// preference, or an actor bound to it); anything else stops the program with a
    /// precondition message, because the loop may only be touched on its thread.
    ///
    /// **Resumption.** The operation's completion callback resumes the task on the loop
    /// thread, inside the same callback, without a thread switch or an extra loop tick. An
    /// operation that finishes as it is started (on epoll and poll, a send into a socket
    /// with room, a read of data already queued) returns at once without suspending, up to
    /// `immediateResultBudget` times per job; then the await suspends until its callback on
    /// a later tick, so that a task cannot keep the loop from its other work (docs/ASYNC.md,
    /// "Awaitable operations").
    ///
    /// **Cancellation.** If the task is cancelled while the operation is in flight, the
    /// operation is cancelled through the loop (the request hops to the loop thread through
    /// the executor when the task is cancelled from another thread). The operation's
    /// callback still runs exactly once; when it reports `.canceled`, this throws
    /// `CancellationError`. If the operation won the race and finished, its real result is
    /// returned (an accepted descriptor or received bytes are never lost), and the next
    /// await in the task throws `CancellationError` at once. A task that is already
    /// cancelled throws `CancellationError` without starting the operation.
    ///
    /// Buffers named by `operation` need only outlive this call: it returns after the
    /// callback, when neither the kernel nor the loop will touch them again.
    ///
    /// **Deadline.** `deadline` is the operation's (`Completion.deadline`): when it passes
    /// first, the result is `.timedOut` (and the operation did nothing).
    ///
    /// Allocation: none in steady state (the completion comes from the executor's pool of
    /// slots; the continuation lives in the task's frame).
    ///
    /// A `.recvmsg`'s sender stays in the pooled completion and is not part of the result;
    /// `DatagramSocket.receive(into:deadline:on:)` returns it with the message.
    nonisolated(nonsending)
    public func perform(_ operation: Operation, deadline: Deadline = .none) async throws -> CompletionResult {
        preconditionOnLoopThread("an awaited loop operation")
        // No `Task.checkCancellation()` first: the slot looks at the flag itself just
        // before it starts the operation, and an up-front check cost another look-up of the
        // current task (with a retain and a release) on every await.
        return try await performChecked(operation, cancellable: true, deadline: deadline)
    }

    /// `perform` after the thread check. With `cancellable == false` task cancellation is
    /// ignored (for operations that must happen, such as closing a descriptor).
    @inline(__always) nonisolated(nonsending)
    func performChecked(_ operation: Operation, cancellable: Bool,
                        deadline: Deadline = .none) async throws -> CompletionResult {
        try await performChecked(operation, cancellable: cancellable, deadline: deadline) { _, result in result }
    }

    /// `performChecked`, handing `view` the completion as well as its result, before the
    /// completion goes back to the pool: for what the completion keeps (a datagram's sender).
    @inline(__always) nonisolated(nonsending)
    func performChecked<Value>(_ operation: Operation, cancellable: Bool, deadline: Deadline = .none,
                               view: (Completion, CompletionResult) -> Value) async throws -> Value {
        // Here, before anything can suspend: see `noteSuspension`.
        noteSuspension(.operation(operation.kind))
        let slot = takeSlot()
        defer { putSlot(slot) }
        // The setter (a call into EvLoop) only when there is a deadline to set or to clear:
        // almost every await has none (7 instructions per await, callgrind).
        switch deadline {
        case .none: if slot.completion.hasDeadline { slot.completion.deadline = .none }
        default: slot.completion.deadline = deadline
        }
        // Stored before the await, so the operation (150 bytes) is not kept across it.
        slot.completion.operation = operation
        let outcome = cancellable ? await slot.perform() : await slot.performIgnoringCancellation()
        guard let result = outcome else { throw CancellationError() }
        // The raw result first: `.canceled` comes from -ECANCELED, or from a `.work` job's
        // own outcome; `error` is a call into EvLoop, with a copy of the result, which
        // every await paid (about 40 instructions).
        if slot.completion.rawResult < 0 || slot.completion.kind == .work,
           result.error == .canceled, Task.isCancelled { throw CancellationError() }
        return view(slot.completion, result)
    }

    /// Suspends the task until `duration` has passed on the loop's clock, measured from this
    /// call: never less, as with `Task.sleep`.
    ///
    /// The loop's clock is read afresh here (`updateNow()`), not taken from the `now` cached
    /// at the start of the tick: a task can start after a whole batch of other jobs has run
    /// in that tick, and a sleep measured from the cached time ended early (PITFALLS F2;
    /// `tenThousandConcurrentTimers` in a release build: 122–373 of 10,000 sleeps more
    /// than 1 ms short). One clock read is nothing next to a suspension. The callback API
    /// (`EventLoop.timer(_:after:callback:)`) keeps the cached `now`, as libuv and libxev
    /// do, and documents it.
    ///
    /// Unlike `Task.sleep`, the wait is a timer in the loop's heap, and the task resumes on
    /// the loop thread. Throws `CancellationError` when the task is cancelled first.
    nonisolated(nonsending)
    public func sleep(for duration: Duration) async throws {
        preconditionOnLoopThread("LoopExecutor.sleep(for:)")
        let loop = loopUnchecked
        loop.updateNow()
        try await sleep(until: loop.now + duration)
    }

    /// Suspends the task until the loop's clock reaches `deadline` (never earlier).
    nonisolated(nonsending)
    public func sleep(until deadline: LoopInstant) async throws {
        preconditionOnLoopThread("LoopExecutor.sleep(until:)")
        try Task.checkCancellation()
        let result = try await performChecked(.timer(deadline: deadline), cancellable: true)
        guard case .timer(let r) = result else { unexpected(result) }
        try r.get()
    }
}

extension LoopExecutor {
    /// Suspends the task until the loop has looked for I/O at least once and run the
    /// callbacks (and resumed the tasks) of what it found: the way for long work on the
    /// loop thread to give way to I/O.
    ///
    /// ```swift
    /// for (i, row) in rows.enumerated() {
    ///     process(row)
    ///     if i % 1000 == 999 { await executor.yield() }   // let the connections be served
    /// }
    /// ```
    ///
    /// **Why not `Task.yield()`.** `Task.yield()` puts the task at the back of the
    /// executor's queue of runnable jobs, and the loop runs a whole batch of those (up to
    /// 1,024) before it polls the kernel again, so a task that yields that way can still
    /// run for a long time while a reply waits in a socket. This await instead goes through
    /// the loop's own tick, like a timer that is already due (io2's preempt budget, as a
    /// call): the task resumes only after the loop's next look at I/O, and after the
    /// callbacks of everything that look completed.
    ///
    /// **How.** Two zero-duration timers, one after the other. A due timer fires after the
    /// tick's poll for I/O and after the callbacks that poll produced; two are needed
    /// because a readiness backend (epoll, poll) skips one zero-timeout poll in two when
    /// callbacks are already queued (saving a system call per request), and never two in a
    /// row. No allocation in steady state (the executor's pooled operation slots).
    ///
    /// Like `Task.yield()` it does not throw: a cancelled task yields all the same (check
    /// `Task.isCancelled` or call `Task.checkCancellation()` in the loop), and cancelling
    /// the task does not cut the yield short. Call it on the loop thread.
    nonisolated(nonsending)
    public func yield() async {
        preconditionOnLoopThread("LoopExecutor.yield()")
        noteSuspension("LoopExecutor.yield()")
        for _ in 0..<2 {
            // Ignoring cancellation, a due timer always fires on the next tick; a
            // `cancelAll()` that cancels it only ends the yield early.
            _ = try? await performChecked(.timer(deadline: loopUnchecked.now), cancellable: false)
        }
    }
}

/// The loop reported a result of another kind than the operation it was given.
@inline(never) @usableFromInline
func unexpected(_ result: CompletionResult, file: StaticString = #fileID, line: UInt = #line) -> Never {
    preconditionFailure("EvAsync: unexpected result \(result)", file: file, line: line)
}
