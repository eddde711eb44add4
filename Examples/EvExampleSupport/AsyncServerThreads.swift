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
/// which takes that loop's SO_REUSEPORT socket and awaits `serve` with it; every task
/// `serve` starts as a child inherits the loop, so a connection's reads, writes and
/// deadlines all complete and resume on the thread that accepted it, with no hop. Loop 0's
/// task also awaits SIGINT and SIGTERM (blocked beforehand by `ExampleProcess.startServer`,
/// so that every thread inherits the mask) and stops the group.
///
/// Stopping is cancellation: the group cancels every loop's task, so the awaited accept
/// ends, then each connection's pending read or write, and `serve` returns its statistics
/// once its children have closed their sockets. After every thread has finished, `run`
/// closes the sockets and returns each loop's statistics, in loop order. A loop that cannot
/// be set up, or whose `serve` throws, ends the program with the reason.
public enum AsyncServerThreads {
    public static func run<Socket: LoopSocket, Statistics: ServerStatistics>(
        program: String,
        backend: Backend,
        sockets: ReusePortSockets<Socket>,
        serve: @escaping @Sendable (_ socket: Socket, _ executor: LoopExecutor) async throws -> Statistics
    ) -> [Statistics] {
        let results = Mutex<[(Int, Statistics)]>([])
        let group: LoopGroup<LoopCore>
        do {
            group = try LoopGroup(loops: sockets.count, backend: backend)
            try group.start { [group] index, executor in
                let socket = try sockets.socket(index, preparedFor: executor.loop)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    if index == 0 {
                        tasks.addTask { try await stopOnSignals(group, on: executor) }
                    }
                    let stats = try await serve(socket, executor)
                    results.withLock { $0.append((index, stats)) }
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

    /// Awaits SIGINT or SIGTERM and stops the group (returns quietly when the group was
    /// stopped first, by a failing loop).
    private static func stopOnSignals(_ group: LoopGroup<LoopCore>, on executor: LoopExecutor) async throws {
        let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
        let info: SignalInfo
        do {
            info = try await signals.wait(on: executor)
        } catch is CancellationError {
            return
        }
        Report.say("received \(ServerThreads.signalName(info.signal)), shutting down")
        group.stop()
    }
}
