// ev-http-async: ev-http written with async/await: one task per connection on the loop.
//
// The same server as ev-http (the same options, responses, limits, statistics and
// end-to-end tests), without a callback: each loop of a LoopGroup runs one task on its
// LoopExecutor, which accepts in a `while` loop around an await and starts one child task
// per connection; a connection reads with `for try await` over its socket's reads, answers
// what each read completed, and awaits its writes. Everything a connection does completes
// and resumes on the thread that accepted it. SIGINT or SIGTERM cancels every task.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

let tool = CommandLineTool(
    name: "ev-http-async",
    summary: """
    A small HTTP/1.1 server built on EvLoop with async/await: one task per connection, on the
    loop that accepted it. It prints the backend it runs on, then a line 'listening on
    HOST:PORT' for scripts, and serves GET and HEAD with keep-alive and pipelining: '/'
    answers "Hello, World!", '/bytes/N' answers N bytes (0 <= N <= \(HTTPResponse.maxBytes)),
    anything else 404. A malformed request head is answered with 400, a head over
    \(HTTPRequestParser.defaultHeadLimit / 1024) KiB with 431, a Transfer-Encoding with 501, and the connection is closed.
    A client that does not read its responses is throttled (a connection reads again only
    once its responses are written). On SIGINT or SIGTERM it cancels its tasks, closes every
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
        "ev-http-async --port 8080",
        "ev-http-async --port 8080 --threads 2 --backend epoll",
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
// every thread's socket then binds (each loop's task puts its own in the mode it wants).
let listeners = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
    try ReusePortSockets.listeners(count: options.threads,
                                   address: SocketAddress(host: options.host, port: options.port),
                                   backlog: Int32(backlog))
}
let idleNote = idleTimeout.map { "idle timeout \(Report.fixed(Report.seconds($0), 1)) s" } ?? "no idle timeout"
Report.say("listening on \(listeners.address) (backend \(mainLoop.backend), threads \(options.threads), backlog \(backlog), \(idleNote))")
let perThread = AsyncServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: listeners) { listener, executor in
    await HTTPServerTask.serve(listener, idleTimeout: idleTimeout, on: executor)
}
HTTPStatistics.printSummary(perThread)
exit(0)
