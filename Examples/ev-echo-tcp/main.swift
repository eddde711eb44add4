// ev-echo-tcp: a TCP echo server on EvLoop, one loop per thread.
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
        OptionSpec("host", value: "ADDRESS", default: "127.0.0.1", help: "numeric IPv4 or IPv6 address to listen on"),
        OptionSpec("port", value: "PORT", default: "0", help: "TCP port; 0 lets the kernel pick a free one (printed)"),
        OptionSpec("backend", value: "NAME", default: "auto", help: "auto, io_uring, epoll or poll (auto honours EV_BACKEND)"),
        OptionSpec("threads", value: "N", default: "1", help: "loops, one per thread, each with its own SO_REUSEPORT socket"),
        OptionSpec("backlog", value: "N", default: "1024", help: "listen(2) backlog of each socket"),
    ],
    examples: [
        "ev-echo-tcp --port 7000",
        "ev-echo-tcp --port 7000 --threads 2 --backend epoll",
        "EV_BACKEND=poll ev-echo-tcp",
    ]
)

let options = tool.parseOrExit()
let host = tool.validate { () throws(OptionError) in try options.host() }
let port = tool.validate { () throws(OptionError) in try options.port() }
let requestedBackend = tool.validate { () throws(OptionError) in try options.backend() }
let threadCount = tool.validate { () throws(OptionError) in try options.int("threads", in: 1...256) }
let backlog = tool.validate { () throws(OptionError) in try options.int("backlog", in: 1...65535) }

// Before any thread exists, so that every thread inherits the mask (see blockSignals).
ExampleProcess.blockSignals([SIGINT, SIGTERM])
ExampleProcess.raiseDescriptorLimit()

let (mainLoop, selection) = ExampleProcess.openLoop(program: tool.name, backend: requestedBackend)
Report.say("ev-echo-tcp: \(ExampleProcess.describe(selection, requested: requestedBackend))")

// The sockets are made here, before the threads start, so that port 0 resolves to one
// port that every thread's socket then binds. TCPSocket makes each close-on-exec and in the
// blocking mode the backend wants (blocking for io_uring, non-blocking for epoll/poll).
let listeners: [TCPSocket]
let boundAddress: SocketAddress
do {
    (listeners, boundAddress) = try makeReusePortSockets(
        count: threadCount, address: SocketAddress(host: host, port: port),
        make: { address throws(EvError) in try TCPSocket(for: address, loop: mainLoop) },
        prepare: { socket throws(EvError) in try socket.listen(backlog: Int32(backlog)) })
} catch {
    Report.fail(tool.name, "cannot listen on \(host):\(port): \(error)")
}
let listenerList = listeners

Report.say("listening on \(boundAddress) (backend \(mainLoop.backend), threads \(threadCount), backlog \(backlog))")

let perThread = ServerThreads.run(program: tool.name, mainLoop: mainLoop, threads: threadCount) { index, loop, stop in
    EchoServer(loop: loop, listener: listenerList[index], stop: stop).serve()
}
for socket in listeners { close(socket.fd) }

let total = perThread.reduce(EchoStats(), +)
Report.say("connections served: \(total.connectionsServed)")
Report.say("connections ended by an error: \(total.connectionsFailed)")
Report.say("connections open at shutdown: \(total.openAtShutdown)")
Report.say("bytes echoed: \(total.bytesEchoed)")
if perThread.count > 1 {
    // How SO_REUSEPORT spread the connections over the threads.
    for (i, t) in perThread.enumerated() {
        Report.say("  thread \(i): \(t.connectionsServed) connections, \(t.bytesEchoed) bytes")
    }
}
exit(0)
