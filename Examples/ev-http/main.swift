// ev-http: a small HTTP/1.1 server on EvLoop, one loop per thread (a LoopGroup).
//
// Keep-alive and pipelining (every complete request in a read is answered, in order, and
// the answers go out as one write), fixed responses (`/`, `/bytes/N`), 400/431 for
// malformed or oversized heads, an idle timeout, backpressure through the write queue's
// water marks, and a clean shutdown on SIGINT or SIGTERM with a summary. The command line
// and the protocol are shared with ev-http-async (EvHTTPSupport).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

let tool = HTTPServerCommand.tool(name: "ev-http", summary: """
    A small HTTP/1.1 server built on EvLoop, in callback style.
    \(HTTPServerCommand.behaviour)
    A client that does not read its responses is throttled (reading from it stops once
    \(HTTPConnection.waterMark.high / 1024) KiB wait to be sent). On SIGINT or SIGTERM it finishes and closes every
    connection and prints the connections served and requests answered.
    """)
let server = HTTPServerCommand.start(tool)
let idleTimeout = server.idleTimeout
let perThread = ServerThreads.run(program: tool.name, backend: server.backend, sockets: server.listeners) { loop, listener in
    HTTPServer(loop: loop, listener: listener, idleTimeout: idleTimeout)
}
HTTPStatistics.printSummary(perThread)
exit(0)
