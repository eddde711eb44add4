import Ev

/// An async example server's counters on one loop, in an actor bound to the loop's
/// executor: connection tasks add what they did with `await`, and because the actor's
/// executor is the loop's (the tasks' own executor), those calls run in place, with no
/// thread switch and no lock.
///
/// Each connection counts into a `Statistics` value of its own while it runs and adds it
/// once, when it ends (`add`): one await per connection, none per request.
public actor LoopStatistics<Statistics: ServerStatistics> {
    let executor: LoopExecutor
    /// The sum of every connection's statistics added so far.
    public private(set) var totals = Statistics()

    public init(executor: LoopExecutor) { self.executor = executor }

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Adds one connection's counters.
    public func add(_ connection: Statistics) {
        totals = totals + connection
    }
}
