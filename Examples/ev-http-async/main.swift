// ev-http-async: ev-http written with async/await: one task per connection on the loop.
//
// The same server as ev-http (the same options, responses, limits, statistics and
// end-to-end tests, from EvHTTPSupport), without a callback: each loop of a LoopGroup runs
// one task on its LoopExecutor, which accepts in a `while` loop around an await and starts
// one child task per connection; a connection reads with `for try await` over its socket's
// reads, answers what each read completed, and awaits its writes. Everything a connection
// does completes and resumes on the thread that accepted it. SIGINT or SIGTERM stops
// accepting and lets every connection finish what it is answering, then cancels what is
// left after the grace period (as ev-http does).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

let tool = HTTPServerCommand.tool(name: "ev-http-async", summary: """
    A small HTTP/1.1 server built on EvLoop with async/await: one task per connection, on the
    loop that accepted it.
    \(HTTPServerCommand.behaviour)
    A client that does not read its responses is throttled (a connection reads again only
    once its responses are written). On SIGINT or SIGTERM it stops accepting, lets every
    connection finish the responses it is writing and closes it (a client that does not read
    is cut off after \(HTTPLimits.shutdownGrace)), and prints the connections served and
    requests answered.
    """)
let server = HTTPServerCommand.start(tool)
let idleTimeout = server.idleTimeout
let perThread = AsyncServerThreads.run(program: tool.name, backend: server.backend, sockets: server.listeners,
                                       grace: HTTPLimits.shutdownGrace) { listener, executor, drain in
    await HTTPServerTask.serve(listener, idleTimeout: idleTimeout, on: executor, drain: drain)
}
HTTPStatistics.printSummary(perThread)
exit(0)
