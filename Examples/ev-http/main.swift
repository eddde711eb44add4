// ev-http: a small HTTP/1.1 server on EvLoop, one loop per thread (a LoopGroup).
//
// Keep-alive and pipelining (every complete request in a read is answered, in order, and
// the answers go out as one write), fixed responses (`/`, `/bytes/N`), 400/431 for
// malformed or oversized heads, an idle timeout, backpressure through the write queue's
// water marks, and a clean shutdown on SIGINT or SIGTERM with a summary.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

let tool = CommandLineTool(
    name: "ev-http",
    summary: """
    A small HTTP/1.1 server built on EvLoop. It prints the backend it runs on, then a line
    'listening on HOST:PORT' for scripts, and serves GET and HEAD with keep-alive and
    pipelining: '/' answers "Hello, World!", '/bytes/N' answers N bytes (0 <= N <= \(HTTPResponse.maxBytes)),
    anything else 404. A malformed request head is answered with 400, a head over
    \(HTTPRequestParser.defaultHeadLimit / 1024) KiB with 431, a Transfer-Encoding with 501, and the connection is closed.
    A client that does not read its responses is throttled (reading from it stops once
    \(HTTPConnection.waterMark.high / 1024) KiB wait to be sent). On SIGINT or SIGTERM it finishes and closes every
    connection and prints the connections served and requests answered.
    """,
    options: [
        .host(),
        .listenPort("TCP"),
        .backend,
        .threads,
        OptionSpec("backlog", value: "N", default: "1024", help: "listen(2) backlog of each socket"),
        OptionSpec("idle-timeout", value: "SECONDS", default: "60",
                   help: "close a connection that sends nothing (or takes no response bytes) for this long; 0: never"),
    ],
    examples: [
        "ev-http --port 8080",
        "ev-http --port 8080 --threads 2 --backend epoll",
        "curl http://127.0.0.1:8080/bytes/1000",
    ]
)

let options = tool.parseSharedOrExit()
let backlog = tool.validate { () throws(OptionError) in try options.parsed.int("backlog", in: 1...65535) }
let idleTimeout: Duration? = tool.validate { () throws(OptionError) -> Duration? in
    let d = try options.parsed.seconds("idle-timeout")
    return d == .zero ? nil : d
}
let mainLoop = ExampleProcess.startServer(program: tool.name, backend: options.backend)

// The sockets are made before the threads start, so that port 0 resolves to one port that
// every thread's socket then binds (each loop's set-up puts its own in the mode it wants).
let listeners = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
    try ReusePortSockets.listeners(count: options.threads,
                                   address: SocketAddress(host: options.host, port: options.port),
                                   backlog: Int32(backlog))
}
let idleNote = idleTimeout.map { "idle timeout \(Report.fixed(Report.seconds($0), 1)) s" } ?? "no idle timeout"
Report.say("listening on \(listeners.address) (backend \(mainLoop.backend), threads \(options.threads), backlog \(backlog), \(idleNote))")
let perThread = ServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: listeners) { loop, listener in
    HTTPServer(loop: loop, listener: listener, idleTimeout: idleTimeout)
}
HTTPStatistics.printSummary(perThread)
exit(0)
