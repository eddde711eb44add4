import Ev
import EvExampleSupport
import EvHTTPSupport

/// One loop's server: accepts on the loop's listener and serves each connection in a child
/// task of its own, until the loop's drain begins (SIGINT or SIGTERM: every connection ends
/// once it has answered what it received, see `ConnectionDrain`) or the loop's task is
/// cancelled (the grace period is over, or the group stopped).
///
/// `serveConnections` (EvExampleSupport) keeps several accepts waiting on the listener, so
/// that a burst of connections (wrk opens 500 at once) is admitted several per loop tick
/// instead of one: with one accept, the last of 500 clients waited hundreds of ticks for
/// its first answer. Its connection tasks live in discarding task groups: a connection's
/// task is released as soon as it ends, so a long-running server does not collect the
/// results of finished connections; and the groups return only once every connection task
/// has closed its socket, which is what makes cancellation a complete shutdown.
enum HTTPServerTask {
    nonisolated(nonsending)
    static func serve(_ listener: TCPSocket, idleTimeout: Duration?, on executor: LoopExecutor,
                      drain: ConnectionDrain) async -> HTTPStatistics {
        let statistics = LoopStatistics<HTTPStatistics>(executor: executor)
        // The connection tasks inherit the loop's executor: they run on this thread.
        await listener.serveConnections(program: "ev-http-async", on: executor, drain: drain) { client in
            await HTTPConnectionTask.serve(client, idleTimeout: idleTimeout, on: executor, statistics: statistics)
        }
        var totals = await statistics.totals
        totals.openAtShutdown = UInt64(await drain.openWhenBegun)
        return totals
    }
}
