/// Why a `LoopGroup` could not be made, started or finished cleanly.
///
/// Why one error type with a list of failures: a group runs many loops at once, and more than
/// one of them can fail (every loop's set-up may hit the same EMFILE). Reporting only the
/// first would hide the others, and a failure on a loop thread that nobody reports is lost,
/// so the group collects each one, with the loop it happened on, and hands them all to the
/// thread that called `start` or `join`.
public enum LoopGroupError: Error, Sendable, CustomStringConvertible {
    /// The group was asked for zero or a negative number of loops. Nothing was created.
    case invalidLoopCount(Int)
    /// `start` was called on a group that had already been started.
    case alreadyStarted
    /// `join` was called on a group that was never started.
    case notStarted
    /// The eventfd each loop's stop notifier needs could not be created (EMFILE, ENFILE).
    /// The notifiers made before it were closed.
    case notifierUnavailable(EvError)
    /// A convenience that picks the group's backend up front (`makeBestLoopGroup` in `Ev`)
    /// found none it could use; the underlying error (Ev's `BackendSelectionError`) says why.
    case selectionFailed(any Error)
    /// One or more loops failed: starting the thread, making the loop or its set-up (thrown
    /// by `start`, after every loop was stopped, drained and joined), or running or draining
    /// it (thrown by `join`). In the order of the loops' indices.
    case loopsFailed([LoopGroupFailure])
    /// A loop still had active completions after the group drained it (cancelAll and run,
    /// repeated): a callback that keeps starting new work after it has been cancelled. The
    /// group leaks that loop on purpose rather than release it with work in flight (the
    /// kernel could write into freed memory); this is the error of its `.drain` failure.
    case loopNotDrained(activeCount: Int)

    /// One line per failure, for logs and exit messages.
    public var description: String {
        switch self {
        case .invalidLoopCount(let n):
            return "a loop group needs at least one loop (asked for \(n))"
        case .alreadyStarted:
            return "the loop group was already started"
        case .notStarted:
            return "the loop group was never started"
        case .notifierUnavailable(let e):
            return "cannot create the loop group's stop notifiers: \(e)"
        case .selectionFailed(let e):
            return "cannot choose a backend for the loop group: \(e)"
        case .loopsFailed(let failures):
            return failures.map(\.description).joined(separator: "; ")
        case .loopNotDrained(let n):
            return "\(n) completions were still active after draining (the loop was leaked on purpose)"
        }
    }
}

/// One loop's failure in a `LoopGroup`: which loop, at what stage, and the error.
public struct LoopGroupFailure: Error, Sendable, CustomStringConvertible {
    /// Where in a loop's life the failure happened.
    public enum Stage: String, Sendable, Equatable {
        /// The loop's thread could not be created (pthread_create: EAGAIN at the process
        /// or system thread limit); the error is the `EvError` of its errno. The loops
        /// after it were not started.
        case startThread = "starting its thread"
        /// The group's loop factory threw (the backend is unavailable, out of descriptors).
        case makeLoop = "making the loop"
        /// The per-loop set-up closure threw, or the group's own stop wait could not be armed.
        case setUp = "set-up"
        /// `run` threw (the backend's wait failed), or the group's stop wait failed.
        case run = "running"
        /// Draining (cancelAll and run) threw or left completions active.
        case drain = "draining"
    }

    /// The loop's index in the group (0..<count).
    public var index: Int
    /// What the loop was doing.
    public var stage: Stage
    /// What was thrown: the factory's or set-up's own error, an `EvError` from the loop, or
    /// `LoopGroupError.loopNotDrained`.
    public var error: any Error

    /// A failure of loop `index` at `stage` (the group makes these; public for tests and
    /// for code that reports failures of its own the same way).
    public init(index: Int, stage: Stage, error: any Error) {
        self.index = index
        self.stage = stage
        self.error = error
    }

    /// "loop 2: set-up failed: ...".
    public var description: String { "loop \(index): \(stage.rawValue) failed: \(error)" }
}
