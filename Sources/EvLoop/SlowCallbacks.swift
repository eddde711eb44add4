/// A callback that held the loop thread longer than the budget given to
/// `LoopCore.reportSlowCallbacks(longerThan:_:)`.
///
/// Not `Sendable`: it names the completion, which belongs to the loop's thread.
public struct SlowCallback: CustomStringConvertible {
    /// The completion whose callback it was (compare it with yours, or read its
    /// `userData`, to tell which part of the program ran).
    public let completion: Completion
    /// The operation that had completed (taken before the callback ran: the callback may
    /// have reconfigured the completion since).
    public let operation: OperationKind
    /// How long the callback ran, from just before it was called until it returned
    /// (including every task job it ran, for EvAsync's completions).
    public let duration: Duration
    /// The budget it went over.
    public let budget: Duration

    public var description: String {
        "a .\(operation) callback held the loop thread for \(duration) (budget \(budget))"
    }
}

/// The timing behind `reportSlowCallbacks`: wraps each callback in two clock reads while
/// it is on. Kept in a class of its own so that the loop holds one optional reference
/// (one branch per callback when it is off) and the dispatch loop is untouched otherwise.
final class SlowCallbackWatch {
    let budget: Duration
    let report: (SlowCallback) -> Void

    init(budget: Duration, report: @escaping (SlowCallback) -> Void) {
        self.budget = budget
        self.report = report
    }

    /// Runs `c`'s callback, timing it; reports it when it went over the budget.
    @inline(never)
    func run(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        let operation = c.kind
        let start = LoopInstant.now()
        let action = c.callback(c, result)
        let elapsed = LoopInstant.now() - start
        if elapsed > budget {
            report(SlowCallback(completion: c, operation: operation, duration: elapsed, budget: budget))
        }
        return action
    }
}

extension LoopCore {
    /// Reports every callback that runs longer than `budget`, by calling `report` on the
    /// loop thread right after it (until `stopReportingSlowCallbacks()`).
    ///
    /// **Why.** A loop serves every connection from one thread, so one callback that
    /// computes for 50 ms delays every other callback, timer and task by 50 ms, and
    /// nothing else says which one it was (io2's preempt budget, as a diagnostic). With
    /// the report on, each callback is timed with two reads of the monotonic clock (a vDSO
    /// call each); off, which is the default, it costs one predictable branch per callback.
    /// The loop cannot interrupt a callback: the report names it after the fact, so that
    /// the code can be split up, moved to another thread, or made to yield.
    ///
    /// `report` runs like a callback (on the loop thread, between callbacks); it must not
    /// add the reported completion again (its callback has already decided between
    /// `.rearm` and `.disarm`). Calling this again replaces the budget and the report.
    /// `budget` must not be negative (a precondition); `.zero` reports every callback.
    ///
    /// ```swift
    /// loop.reportSlowCallbacks(longerThan: .milliseconds(10)) { slow in
    ///     print("slow:", slow)      // "a .recv callback held the loop thread for 0.0213 seconds ..."
    /// }
    /// ```
    ///
    /// EvAsync's `LoopExecutor.reportSlowJobs(longerThan:_:)` names the task jobs that
    /// the executor runs inside its callbacks.
    public final func reportSlowCallbacks(longerThan budget: Duration, _ report: @escaping (SlowCallback) -> Void) {
        precondition(budget >= .zero, "EvLoop: the slow-callback budget must not be negative (got \(budget))")
        slowCallbacks = SlowCallbackWatch(budget: budget, report: report)
    }

    /// Stops the reports of `reportSlowCallbacks(longerThan:_:)`; callbacks are no longer
    /// timed.
    public final func stopReportingSlowCallbacks() {
        slowCallbacks = nil
    }
}
