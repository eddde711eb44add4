#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import Synchronization

/// Runs an example server written with async/await on N loops, one per thread, until
/// SIGINT or SIGTERM: the async counterpart of `ServerThreads`, with the same sockets, the
/// same signal handling and the same statistics.
///
/// Each loop of a `LoopGroup` runs one task on its own `LoopExecutor` (`start(task:)`),
/// which takes that loop's SO_REUSEPORT socket and awaits `serve` with it and the loop's
/// `ConnectionDrain`; every task `serve` starts as a child inherits the loop, so a
/// connection's reads, writes and deadlines all complete and resume on the thread that
/// accepted it, with no hop. Loop 0's task also awaits SIGINT and SIGTERM (blocked
/// beforehand by `ExampleProcess.startServer`, so that every thread inherits the mask).
///
/// Stopping is graceful, then cancellation. On the signal, loop 0 wakes every loop's drain
/// request (an `AsyncNotifier` each, the one thing that crosses threads), and each loop
/// begins its drain: it stops accepting, and its connections end once they have answered
/// what they received (see `ConnectionDrain`; `serve` passes the drain to
/// `serveConnections`). When every loop's `serve` has returned, or after `grace` (a client
/// that reads nothing would otherwise hold the server for ever), loop 0 stops the group,
/// which cancels every task that is left. After every thread has finished, `run` closes the
/// sockets and returns each loop's statistics, in loop order. A loop that cannot be set up,
/// or whose `serve` throws, ends the program with the reason.
public enum AsyncServerThreads {
    public static func run<Socket: LoopSocket, Statistics: ServerStatistics>(
        program: String,
        backend: Backend,
        sockets: ReusePortSockets<Socket>,
        grace: Duration,
        serve: @escaping @Sendable (_ socket: Socket, _ executor: LoopExecutor, _ drain: ConnectionDrain) async throws -> Statistics
    ) -> [Statistics] {
        let results = Mutex<[(Int, Statistics)]>([])
        let group: LoopGroup<LoopCore>
        let drainRequests: [AsyncNotifier]
        let allServed: AsyncNotifier
        do {
            drainRequests = try (0..<sockets.count).map { _ throws(EvError) in try AsyncNotifier() }
            allServed = try AsyncNotifier()
            group = try LoopGroup(loops: sockets.count, backend: backend)
            let shutdown = Shutdown(group: group, drainRequests: drainRequests, allServed: allServed, grace: grace)
            try group.start { index, executor in
                let socket = try sockets.socket(index, preparedFor: executor.loop)
                let drain = ConnectionDrain(executor: executor)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    if index == 0 {
                        tasks.addTask { try await shutdown.onSignal(on: executor) }
                    }
                    // Ends by cancellation when the group stops without a drain.
                    tasks.addTask {
                        try await drainRequests[index].wait(on: executor)
                        await drain.begin()
                    }
                    let stats = try await serve(socket, executor, drain)
                    let served = results.withLock { $0.append((index, stats)); return $0.count }
                    if served == sockets.count { allServed.notify() }
                    // A `serve` that ended on its own leaves loop 0 waiting for the signal.
                    try await tasks.waitForAll()
                }
            }
        } catch {
            sockets.closeAll()
            Report.fail(program, "cannot start the server: \(error)")
        }
        return ServerThreads.finish(program: program, group: group, sockets: sockets, results: results)
    }

    /// Loop 0's part of the stop: the signal, every loop's drain, the wait, the group's stop.
    private struct Shutdown: Sendable {
        let group: LoopGroup<LoopCore>
        let drainRequests: [AsyncNotifier]
        let allServed: AsyncNotifier
        let grace: Duration

        /// Awaits SIGINT or SIGTERM, asks every loop to drain, waits until every `serve` has
        /// returned or `grace` has passed, and stops the group (returns quietly when the
        /// group was stopped first, by a failing loop).
        func onSignal(on executor: LoopExecutor) async throws {
            let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
            do {
                let info = try await signals.wait(on: executor)
                Report.say("received \(ServerThreads.signalName(info.signal)), shutting down")
                for request in drainRequests { request.notify() }
                do {
                    try await allServed.wait(deadline: .within(grace), on: executor)
                } catch EvError.timedOut {
                    // The grace period is over: the group's stop cancels what is left.
                }
            } catch is CancellationError {
                return
            }
            group.stop()
        }
    }
}
