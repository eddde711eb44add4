// ev-echo-tcp-async: the TCP echo server written as straight-line async code on EvLoop.
//
// The same service as ev-echo-tcp, without a single callback: the loop is the tasks'
// executor (`LoopExecutor`), the accept loop is a `while` loop around `await accept`, and
// every connection is one child task that reads and writes with `await`. Everything runs on
// one thread, the loop's: a completion's callback resumes the waiting task in place, with
// no hop through the global thread pool.
//
// Shutdown is structured concurrency: SIGINT or SIGTERM (read through a signalfd, awaited
// like any other operation) cancels the task group; cancellation reaches every pending
// accept and read through the loop, each connection task closes its socket, and the
// group ends when the last one has.
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
    SIGINT or SIGTERM cancels its tasks, closes every connection and prints the connections
    served and bytes echoed. Each connection echoes a chunk completely before it reads the
    next one, so a client that sends without reading is throttled (at most
    \(EchoTask.bufferSize / 1024) KiB buffered per connection).
    """,
    options: [
        OptionSpec("host", value: "ADDRESS", default: "127.0.0.1", help: "numeric IPv4 or IPv6 address to listen on"),
        OptionSpec("port", value: "PORT", default: "0", help: "TCP port; 0 lets the kernel pick a free one (printed)"),
        OptionSpec("backend", value: "NAME", default: "auto", help: "auto, io_uring, epoll or poll (auto honours EV_BACKEND)"),
    ],
    examples: [
        "ev-echo-tcp-async --port 7000",
        "ev-echo-tcp-async --port 7000 --backend epoll",
        "EV_BACKEND=poll ev-echo-tcp-async",
    ]
)

let options = tool.parseOrExit()
let host = tool.validate { () throws(OptionError) in try options.host() }
let port = tool.validate { () throws(OptionError) in try options.port() }
let requestedBackend = tool.validate { () throws(OptionError) in try options.backend() }

// Block the signals before any thread exists (the loop's file thread pool included), so
// that they are only ever read from the signalfd (see SignalWatcher).
ExampleProcess.blockSignals([SIGINT, SIGTERM])
ExampleProcess.raiseDescriptorLimit()

let (loop, selection) = ExampleProcess.openLoop(program: tool.name, backend: requestedBackend)
Report.say("\(tool.name): \(ExampleProcess.describe(selection, requested: requestedBackend))")

// TCPSocket makes the socket close-on-exec and in the mode the loop prefers (blocking for
// io_uring, non-blocking for epoll and poll).
let listener: TCPSocket
do {
    let requested = try SocketAddress(host: host, port: port)
    listener = try TCPSocket(for: requested, loop: loop)
    do {
        try listener.setReuseAddress(true)
        // Serve exactly the address asked for ("::1"), not IPv4 too.
        if requested.family == AF_INET6 { try listener.setIPv6Only(true) }
        try listener.bind(to: requested)
        try listener.listen(backlog: 1024)
    } catch {
        close(listener.fd)
        throw error
    }
    Report.say("listening on \(try listener.localAddress()) (backend \(loop.backend))")
} catch {
    Report.fail(tool.name, "cannot listen on \(host):\(port): \(error)")
}

let stats: EchoTotals
do {
    stats = try EchoServer.serve(loop: loop, listener: listener)
} catch {
    Report.fail(tool.name, "\(error)")
}
Report.say("connections served: \(stats.served)")
Report.say("connections ended by an error: \(stats.failed)")
Report.say("connections open at shutdown: \(stats.openAtShutdown)")
Report.say("bytes echoed: \(stats.bytesEchoed)")
exit(0)
