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
    A TCP (or Unix-socket) echo server built on EvLoop. It prints the backend it runs on
    (and why any better one was skipped), then a line 'listening on HOST:PORT' (or
    'listening on unix:PATH') for scripts, echoes every
    connection until the client shuts down its side, and on SIGINT or SIGTERM closes all
    connections and prints the connections served and bytes echoed.
    A connection that sends without reading is throttled (at most \(EchoLimits.capacity / 1024) KiB
    buffered per connection); a client that resets mid-stream affects only itself.
    """,
    options: [
        .host(),
        .listenPort("TCP"),
        .backend,
        .threads,
        OptionSpec("backlog", value: "N", default: "1024", help: "listen(2) backlog of each socket"),
        OptionSpec("unix", value: "PATH", help: "listen on a Unix stream socket at PATH (@NAME: an abstract name) instead of TCP; one thread"),
        OptionSpec("idle-timeout", value: "SECONDS", help: "close a connection that sends nothing for this long (a deadline on each receive)"),
    ],
    examples: [
        "ev-echo-tcp --port 7000",
        "ev-echo-tcp --port 7000 --threads 2 --backend epoll",
        "EV_BACKEND=poll ev-echo-tcp",
        "ev-echo-tcp --unix echo.sock --idle-timeout 30",
    ]
)

let options = tool.parseSharedOrExit()
let backlog = tool.validate { () throws(OptionError) in try options.parsed.int("backlog", in: 1...65535) }
let mainLoop = ExampleProcess.startServer(program: tool.name, backend: options.backend)

let idleTimeout: Duration? = tool.validate { () throws(OptionError) -> Duration? in
    options.parsed.string("idle-timeout") == nil ? nil : try options.parsed.seconds("idle-timeout")
}
let unixPath = options.parsed.string("unix")
if unixPath != nil && options.threads != 1 {
    // AF_UNIX has no SO_REUSEPORT (EOPNOTSUPP): one listener, one loop.
    tool.usageError(.invalidValue(option: "threads", value: "\(options.threads)", expected: "1 with --unix (Unix sockets have no SO_REUSEPORT)"))
}
let idleNote = idleTimeout.map { ", idle timeout \(Report.fixed(Report.seconds($0), 1)) s" } ?? ""

let perThread: [TCPEchoStatistics]
if let unixPath {
    let listener = tool.orFail("cannot listen on \(unixPath)") { () throws(EvError) in
        try ReusePortSockets.unixListener(
            address: unixPath.hasPrefix("@") ? SocketAddress(abstractUnixName: String(unixPath.dropFirst()))
                                             : SocketAddress(unixPath: unixPath),
            backlog: Int32(backlog))
    }
    Report.say("listening on \(listener.address) (backend \(mainLoop.backend), backlog \(backlog)\(idleNote))")
    perThread = ServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: listener) { loop, socket in
        EchoServer(loop: loop, listener: socket, idleTimeout: idleTimeout)
    }
    // The socket file stays after the close (Unix sockets are not removed by the kernel).
    if !unixPath.hasPrefix("@") { unlink(unixPath) }
} else {
    // The sockets are made here, before the threads start, so that port 0 resolves to one
    // port that every thread's socket then binds (close-on-exec; each loop's set-up puts
    // its own in the blocking mode its backend wants: blocking for io_uring, non-blocking
    // for epoll/poll).
    let listeners = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
        try ReusePortSockets.listeners(count: options.threads,
                                       address: SocketAddress(host: options.host, port: options.port),
                                       backlog: Int32(backlog))
    }
    Report.say("listening on \(listeners.address) (backend \(mainLoop.backend), threads \(options.threads), backlog \(backlog)\(idleNote))")
    perThread = ServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: listeners) { loop, listener in
        EchoServer(loop: loop, listener: listener, idleTimeout: idleTimeout)
    }
}
TCPEchoStatistics.printSummary(perThread)
exit(0)
