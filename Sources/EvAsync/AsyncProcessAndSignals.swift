import EvLoop

// Awaitable forms of the Subprocess and SignalWatcher watchers, named as their callback
// forms (`wait`). These are built on the watchers' own callback operations (which hide how
// they wait: a pidfd or a waiter thread, a signalfd), so each await allocates a little (a
// completion and the watcher's callback closure); they are events a program sees rarely.

extension Subprocess {
    /// Suspends until the child has exited and returns how it ended (the child is reaped
    /// by then; waiting again returns the same status): the awaited
    /// `wait(loop:completion:callback:)`.
    ///
    /// Cancelling the task cancels the wait, not the child: the child keeps running and can
    /// be waited for again (send it a signal with `signal(_:)` first to end it). Likewise
    /// `deadline` (`EvError.timedOut` when the child is still running then) ends only the
    /// wait.
    nonisolated(nonsending)
    public func wait(deadline: Deadline = .none, on executor: LoopExecutor) async throws -> ExitStatus {
        try await WatcherAwait<ExitStatus>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try self.wait(loop: executor.loopUnchecked, completion: completion) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}

extension SignalWatcher {
    /// Suspends until one of the watched signals arrives and returns it: the awaited
    /// `wait(loop:completion:callback:)`. Signals sent several times before this runs are
    /// reported once (see `SignalWatcher`). `deadline`: `EvError.timedOut` when no signal
    /// came before it.
    nonisolated(nonsending)
    public func wait(deadline: Deadline = .none, on executor: LoopExecutor) async throws -> SignalInfo {
        try await WatcherAwait<SignalInfo>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try self.wait(loop: executor.loopUnchecked, completion: completion) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}
