// ev-echo-tcp: a TCP echo server on EvLoop, one loop per thread (a LoopGroup).
//
// Each thread owns a loop and its own listening socket bound to the same port with
// SO_REUSEPORT, so the kernel spreads new connections across the threads and they share
// nothing while serving. Every connection is echoed until the client shuts down its side;
// the server then finishes echoing and closes. SIGINT or SIGTERM stops it cleanly: it
// closes everything and prints how many connections it served and how many bytes it echoed.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

let tool = CommandLineTool(
    name: "ev-echo-tcp",
    summary: """
    A TCP echo server built on EvLoop. It prints the backend it runs on (and why any better
    one was skipped), then a line 'listening on HOST:PORT' for scripts, echoes every
    connection until the client shuts down its side, and on SIGINT or SIGTERM closes all
    connections and prints the connections served and bytes echoed.
    A connection that sends without reading is throttled (at most \(EchoConnection.capacity / 1024) KiB
    buffered per connection); a client that resets mid-stream affects only itself.
    """,
    options: [
        .host(),
        .listenPort("TCP"),
        .backend,
        .threads,
        OptionSpec("backlog", value: "N", default: "1024", help: "listen(2) backlog of each socket"),
    ],
    examples: [
        "ev-echo-tcp --port 7000",
        "ev-echo-tcp --port 7000 --threads 2 --backend epoll",
        "EV_BACKEND=poll ev-echo-tcp",
    ]
)

let options = tool.parseSharedOrExit()
let backlog = tool.validate { () throws(OptionError) in try options.parsed.int("backlog", in: 1...65535) }
let mainLoop = ExampleProcess.startServer(program: tool.name, backend: options.backend)

// The sockets are made here, before the threads start, so that port 0 resolves to one
// port that every thread's socket then binds (close-on-exec; each loop's set-up puts its
// own in the blocking mode its backend wants: blocking for io_uring, non-blocking for
// epoll/poll).
let listeners = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
    try ReusePortSockets.listeners(count: options.threads,
                                   address: SocketAddress(host: options.host, port: options.port),
                                   backlog: Int32(backlog))
}
Report.say("listening on \(listeners.address) (backend \(mainLoop.backend), threads \(options.threads), backlog \(backlog))")

let perThread = ServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: listeners) { loop, listener in
    EchoServer(loop: loop, listener: listener)
}
TCPEchoStatistics.printSummary(perThread)
exit(0)
