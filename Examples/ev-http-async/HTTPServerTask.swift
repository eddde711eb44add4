import Ev
import EvExampleSupport
import EvHTTPSupport

/// One loop's server: accepts on the loop's listener and serves each connection in a child
/// task of its own, until the loop's task is cancelled (the group stops).
///
/// A discarding task group: a connection's task is released as soon as it ends, so a
/// long-running server does not collect the results of finished connections; and the group
/// returns only once every connection task has closed its socket, which is what makes
/// cancellation a complete shutdown.
enum HTTPServerTask {
    nonisolated(nonsending)
    static func serve(_ listener: TCPSocket, idleTimeout: Duration?, on executor: LoopExecutor) async -> HTTPStatistics {
        let statistics = LoopStatistics<HTTPStatistics>(executor: executor)
        await withDiscardingTaskGroup { connections in
            while let client = await listener.acceptNextConnection(program: "ev-http-async", on: executor) {
                // The child task inherits the loop's executor: it runs on this thread.
                connections.addTask {
                    await HTTPConnectionTask.serve(client, idleTimeout: idleTimeout, on: executor, statistics: statistics)
                }
            }
        }
        return await statistics.totals
    }
}
