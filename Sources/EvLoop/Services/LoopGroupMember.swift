extension LoopGroup {
    /// One loop of a `LoopGroup`, as its set-up closure sees it, on that loop's own thread.
    ///
    /// Why a type of its own: the set-up needs the loop (to arm its work), the loop's index
    /// (to pick its listener, or to name it in logs), the group (to stop every loop from a
    /// callback, such as a signal handler on loop 0) and a way to say what this loop does
    /// when the group stops and when it has finished. Those belong together and to this
    /// one thread, so the member, like the loop it holds, is not `Sendable`.
    ///
    /// What happens when the group stops, on this loop's thread:
    /// 1. The handlers given to `onStop` run, in the order they were added. They should end
    ///    the loop's long-lived work gracefully (stop accepting, close connections through
    ///    the loop); the loop then keeps running until that work has finished. Without any
    ///    `onStop` handler the group calls `loop.cancelAll()` instead, so every operation in
    ///    flight calls back once with `.canceled`.
    /// 2. The loop is drained: `cancelAll()` and `run` until no completion is active, so the
    ///    loop is never released with work in flight (whatever the handlers left, such as
    ///    background waits, is cancelled here).
    /// 3. The handlers given to `onFinish` run, in order, with the loop idle: the place to
    ///    hand results (statistics) to other threads before the loop is released.
    ///
    /// If the set-up throws, step 1 is skipped (the set-up did not finish, so the handlers
    /// may find half-made state); steps 2 and 3 still run. Handlers may capture the member
    /// (to reach the loop): the group lets go of all of them once step 3 is done.
    ///
    /// ```swift
    /// try group.start { member in
    ///     let server = try EchoServer(loop: member.loop, listener: listeners[member.index])
    ///     member.onStop { server.stop() }             // close connections, stop accepting
    ///     member.onFinish { totals.add(server.stats) } // after the loop has drained
    /// }
    /// ```
    public final class Member {
        /// The loop, created on this thread by the group's factory. Use it on this thread only.
        public let loop: Loop
        /// The loop's index in the group, 0..<group.count.
        public let index: Int
        /// The group (`Sendable`): `group.stop()` from a callback stops every loop.
        public let group: LoopGroup<Loop>
        /// True once the group's stop has reached this loop (from the first `onStop` handler on).
        public internal(set) var isStopping = false
        /// Set before the group drains the loop: the stop wait, cancelled then, stays ended.
        var isDraining = false

        var stopHandlers: [() -> Void] = []
        var finishHandlers: [() -> Void] = []

        init(loop: Loop, index: Int, group: LoopGroup<Loop>) {
            self.loop = loop
            self.index = index
            self.group = group
        }

        /// Adds a handler that runs on this loop's thread when the group stops (see the type's
        /// comment). Handlers run in the order they were added, each once.
        public func onStop(_ handler: @escaping () -> Void) {
            stopHandlers.append(handler)
        }

        /// Adds a handler that runs on this loop's thread once the loop has drained, just
        /// before the group releases it. Handlers run in the order they were added, each once.
        public func onFinish(_ handler: @escaping () -> Void) {
            finishHandlers.append(handler)
        }

        /// Runs the stop handlers (or, without any, cancels everything in flight).
        func runStopHandlers() {
            isStopping = true
            let handlers = stopHandlers
            stopHandlers.removeAll()
            if handlers.isEmpty {
                loop.cancelAll()
            } else {
                for h in handlers { h() }
            }
        }

        /// Runs the finish handlers, then lets go of every handler: they usually capture the
        /// member (to reach the loop), and the cycle must not outlive the loop's thread.
        func runFinishHandlers() {
            let handlers = finishHandlers
            finishHandlers.removeAll()
            for h in handlers { h() }
            stopHandlers.removeAll()
        }
    }
}
