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
    /// thread, inside the same callback, without a thread switch or an extra loop tick.
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
    nonisolated(nonsending)
    public func perform(_ operation: Operation, deadline: Deadline = .none) async throws -> CompletionResult {
        preconditionOnLoopThread("an awaited loop operation")
        try Task.checkCancellation()
        return try await performChecked(operation, cancellable: true, deadline: deadline)
    }

    /// `perform` after the thread check. With `cancellable == false` task cancellation is
    /// ignored (for operations that must happen, such as closing a descriptor).
    nonisolated(nonsending)
    func performChecked(_ operation: Operation, cancellable: Bool,
                        deadline: Deadline = .none) async throws -> CompletionResult {
        let slot = takeSlot()
        defer { putSlot(slot) }
        slot.completion.deadline = deadline
        let outcome = cancellable ? await slot.perform(operation) : await slot.performIgnoringCancellation(operation)
        guard let result = outcome else { throw CancellationError() }
        if result.error == .canceled, Task.isCancelled { throw CancellationError() }
        return result
    }

    /// Suspends the task until `duration` has passed on the loop's clock, measured from the
    /// loop's cached `now` (like `EventLoop.timer(_:after:callback:)`).
    ///
    /// Unlike `Task.sleep`, the wait is a timer in the loop's heap, and the task resumes on
    /// the loop thread. Throws `CancellationError` when the task is cancelled first.
    nonisolated(nonsending)
    public func sleep(for duration: Duration) async throws {
        preconditionOnLoopThread("LoopExecutor.sleep(for:)")
        try await sleep(until: loopUnchecked.now + duration)
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

/// The loop reported a result of another kind than the operation it was given.
@inline(never)
func unexpected(_ result: CompletionResult, file: StaticString = #fileID, line: UInt = #line) -> Never {
    preconditionFailure("EvAsync: unexpected result \(result)", file: file, line: line)
}
