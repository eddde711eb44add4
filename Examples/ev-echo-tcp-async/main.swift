// ev-echo-tcp-async: the TCP echo server written as straight-line async code on EvLoop.
//
// The same service as ev-echo-tcp, without a single callback: the loop is the tasks'
// executor (`LoopExecutor`), the accept loop is a `while` loop around `await accept`, and
// every connection is one child task that reads and writes with `await`. Everything runs on
// one thread, the loop's: a completion's callback resumes the waiting task in place, with
// no hop through the global thread pool.
//
// Shutdown: SIGINT or SIGTERM (read through a signalfd, awaited like any other operation)
// begins the loop's drain (EvExampleSupport's `ConnectionDrain`): accepting stops, and each
// connection's pending read returns end of file once what it received is echoed, so each
// task closes its socket as when its client leaves. What is still echoing after the grace
// period (a client that reads nothing) is cancelled; the task group ends when the last
// connection task has.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

let tool = CommandLineTool(
    name: "ev-echo-tcp-async",
    summary: """
    A TCP echo server built on EvLoop with async/await: one loop, one thread, one child task
    per connection. It prints the backend it runs on, then a line 'listening on HOST:PORT'
    for scripts, echoes every connection until the client shuts down its side, and on
    SIGINT or SIGTERM stops accepting, closes every connection once it has echoed what it
    received (a client that reads nothing is cut off after \(EchoServer.shutdownGrace)) and prints the connections
    served and bytes echoed. Each connection echoes a chunk completely before it reads the
    next one, so a client that sends without reading is throttled (at most
    \(EchoTask.bufferSize / 1024) KiB buffered per connection).
    """,
    options: [
        .host(),
        .listenPort("TCP"),
        .backend,
    ],
    examples: [
        "ev-echo-tcp-async --port 7000",
        "ev-echo-tcp-async --port 7000 --backend epoll",
        "EV_BACKEND=poll ev-echo-tcp-async",
    ]
)

let options = tool.parseSharedOrExit()
let loop = ExampleProcess.startServer(program: tool.name, backend: options.backend)

// TCPSocket makes the socket close-on-exec and in the mode the loop prefers (blocking for
// io_uring, non-blocking for epoll and poll).
let listener = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
    let requested = try SocketAddress(host: options.host, port: options.port)
    let socket = try TCPSocket(for: requested, loop: loop)
    do throws(EvError) {
        try socket.setReuseAddress(true)
        // Serve exactly the address asked for ("::1"), not IPv4 too.
        if requested.family == AF_INET6 { try socket.setIPv6Only(true) }
        try socket.bind(to: requested)
        try socket.listen(backlog: 1024)
    } catch {
        close(socket.fd)
        throw error
    }
    Report.say("listening on \(try socket.localAddress()) (backend \(loop.backend))")
    return socket
}

let stats: TCPEchoStatistics
do {
    stats = try EchoServer.serve(loop: loop, listener: listener)
} catch {
    Report.fail(tool.name, "\(error)")
}
TCPEchoStatistics.printSummary([stats])
exit(0)
