import EvLoop

// Awaitable forms of the Subprocess and SignalWatcher watchers. These are built on the
// watchers' own callback operations (which hide how they wait: a pidfd or a waiter thread,
// a signalfd), so each await allocates a little (a completion and the watcher's callback
// closure); they are events a program sees rarely.

extension Subprocess {
    /// Suspends until the child has exited and returns how it ended (the child is reaped
    /// by then; awaiting again returns the same status).
    ///
    /// Cancelling the task cancels the wait, not the child: the child keeps running and can
    /// be awaited again (send it a signal with `signal(_:)` first to end it).
    nonisolated(nonsending)
    public func exit(on executor: LoopExecutor) async throws -> ExitStatus {
        try await WatcherAwait<ExitStatus>(executor: executor).run { completion, deliver throws(EvError) in
            try self.wait(loop: executor.loopUnchecked, completion: completion) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}

extension SignalWatcher {
    /// Suspends until one of the watched signals arrives and returns it. Signals sent
    /// several times before this runs are reported once (see `SignalWatcher`).
    nonisolated(nonsending)
    public func next(on executor: LoopExecutor) async throws -> SignalInfo {
        try await WatcherAwait<SignalInfo>(executor: executor).run { completion, deliver throws(EvError) in
            try self.wait(loop: executor.loopUnchecked, completion: completion) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}
