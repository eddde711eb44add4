import EvLoop

extension LoopGroup where Loop: LoopCore {
    /// Starts the group with one task per loop: on each loop's thread, an executor for the
    /// loop and a task preferring it that runs `body` with the loop's index and executor.
    /// The awaited counterpart of `start(setUp:)`, for a server written with async/await
    /// (each loop accepting on its own `SO_REUSEPORT` listener, say).
    ///
    /// ```swift
    /// let group = try LoopGroup(loops: 4) { _ in try EpollLoop() }
    /// try group.start { index, executor in
    ///     for try await client in listeners[index].connections(on: executor) { ... }
    /// }
    /// try group.join()
    /// ```
    ///
    /// - **Stopping.** `stop()` cancels every loop's task (the member's `onStop`): its
    ///   awaits throw `CancellationError`, its sequences end, and the loop runs until the
    ///   task's remaining work (closing its sockets) has finished; then the group drains the
    ///   loop as usual. A task that ends on its own leaves its loop running until the group
    ///   stops.
    /// - **Errors.** An error `body` throws (other than `CancellationError` after the stop)
    ///   is the loop's failure at the `.run` stage, and the group stops, as for a failing
    ///   loop: `join()` throws it in `LoopGroupError.loopsFailed` (or `start` does, when
    ///   the task failed before every loop had started, as for a failed set-up).
    /// - `start` returns once every loop has made its executor and started its task (not
    ///   once the tasks have done anything); an executor that cannot be made (out of
    ///   descriptors) is a `.setUp` failure.
    /// - `body` runs on the loop's thread only (every await in it too, unless it hops to
    ///   another executor on purpose); child tasks inherit the loop.
    public func start(task body: @escaping @Sendable (_ index: Int, _ executor: LoopExecutor) async throws -> Void)
        throws(LoopGroupError) {
        try start { member in
            let executor = try LoopExecutor(member.loop)
            let index = member.index
            let group = member.group
            let task = Task(executorPreference: executor) {
                do {
                    try await body(index, executor)
                } catch is CancellationError where Task.isCancelled {
                    // The group's stop: not a failure.
                } catch {
                    group.record(index, .run, error)
                    group.stop()
                }
            }
            member.onStop { task.cancel() }
        }
    }
}
