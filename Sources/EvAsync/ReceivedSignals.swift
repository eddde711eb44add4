import EvLoop

extension SignalWatcher {
    /// The signals this watcher receives, one `wait(deadline:on:)` per element, as an asynchronous
    /// sequence.
    ///
    /// ```swift
    /// try SignalWatcher.block([SIGHUP, SIGTERM])          // first thing in main
    /// let watcher = try SignalWatcher(signals: [SIGHUP, SIGTERM])
    /// for try await info in watcher.signals(on: executor) {
    ///     if info.signal == SIGTERM { break }              // shut down
    ///     reloadConfiguration()                            // SIGHUP
    /// }
    /// ```
    ///
    /// Why a sequence: a program that reacts to signals (reload on SIGHUP, stop on
    /// SIGTERM) does so in a loop for as long as it runs.
    ///
    /// - **Deliveries coalesce**, as for the watcher: a signal sent several times before
    ///   the next element is read is reported once. Count events with your own state.
    /// - **Cancelling the consuming task ends the sequence** (the pending wait is
    ///   cancelled through the loop). Errors are thrown as `EvError` (`.canceled` when the
    ///   loop cancelled the wait, `loop.cancelAll()`).
    /// - The signals must be blocked in every thread (`SignalWatcher.block(_:)`), and the
    ///   watcher must outlive the iteration (it owns the signalfd).
    /// - Each element costs what `wait(deadline:on:)` costs: a small await object, a completion and
    ///   the watcher's callback closure (signals are rare events).
    ///
    /// Iterate on the loop's executor.
    public func signals(on executor: LoopExecutor) -> ReceivedSignals {
        ReceivedSignals(watcher: self, executor: executor)
    }
}

/// The signals a `SignalWatcher` receives: see `SignalWatcher.signals(on:)`.
///
/// Not `Sendable`: the watcher belongs to the loop's thread.
public struct ReceivedSignals: AsyncSequence {
    public typealias Element = SignalInfo
    public typealias Failure = EvError

    /// The watcher read from.
    public let watcher: SignalWatcher
    @usableFromInline let executor: LoopExecutor

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    /// Waits for one signal per `next()`; nil once the consuming task is cancelled.
    /// Both `next` methods are inlined into the consuming loop (see `sequenceStep`).
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let sequence: ReceivedSignals
        @usableFromInline var finished = false

        @usableFromInline init(sequence: ReceivedSignals) { self.sequence = sequence }

        /// The next signal; nil when the task has been cancelled.
        @inlinable @inline(__always) nonisolated(nonsending)
        public mutating func next() async throws(EvError) -> SignalInfo? {
            let s = sequence
            return try await sequenceStep(&finished) {
                try await s.watcher.wait(on: s.executor)
            }
        }

        @inlinable @inline(__always)
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvError) -> SignalInfo? {
            try await next()
        }
    }
}
