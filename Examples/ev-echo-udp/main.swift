// ev-echo-udp: a UDP echo server on EvLoop, one loop per thread.
//
// Each thread owns a loop and its own socket bound to the same port with SO_REUSEPORT;
// every datagram is sent back to its sender unchanged. SIGINT or SIGTERM stops it cleanly
// and it prints how many datagrams and bytes it echoed.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

let tool = CommandLineTool(
    name: "ev-echo-udp",
    summary: """
    A UDP echo server built on EvLoop. It prints the backend it runs on (and why any better
    one was skipped), then a line 'listening on HOST:PORT' for scripts, sends every datagram
    back to its sender unchanged, and on SIGINT or SIGTERM stops and prints the datagrams
    and bytes echoed.
    """,
    options: [
        OptionSpec("host", value: "ADDRESS", default: "127.0.0.1", help: "numeric IPv4 or IPv6 address to listen on"),
        OptionSpec("port", value: "PORT", default: "0", help: "UDP port; 0 lets the kernel pick a free one (printed)"),
        OptionSpec("backend", value: "NAME", default: "auto", help: "auto, io_uring, epoll or poll (auto honours EV_BACKEND)"),
        OptionSpec("threads", value: "N", default: "1", help: "loops, one per thread, each with its own SO_REUSEPORT socket"),
    ],
    examples: [
        "ev-echo-udp --port 7001",
        "echo hello | socat -t 1 - UDP4:127.0.0.1:7001",
    ]
)

let options = tool.parseOrExit()
let host = tool.validate { () throws(OptionError) in try options.host() }
let port = tool.validate { () throws(OptionError) in try options.port() }
let requestedBackend = tool.validate { () throws(OptionError) in try options.backend() }
let threadCount = tool.validate { () throws(OptionError) in try options.int("threads", in: 1...256) }

// Before any thread exists, so that every thread inherits the mask.
ExampleProcess.blockSignals([SIGINT, SIGTERM])

let (mainLoop, selection) = ExampleProcess.openLoop(program: tool.name, backend: requestedBackend)
Report.say("ev-echo-udp: \(ExampleProcess.describe(selection, requested: requestedBackend))")

// The sockets are made before the threads start, so that port 0 resolves to one port that
// every thread's socket then binds (UDPSocket: close-on-exec, blocking mode per backend).
let sockets: [UDPSocket]
let boundAddress: SocketAddress
do {
    (sockets, boundAddress) = try makeReusePortSockets(
        count: threadCount, address: SocketAddress(host: host, port: port),
        make: { address throws(EvError) in try UDPSocket(for: address, loop: mainLoop) })
} catch {
    Report.fail(tool.name, "cannot bind \(host):\(port): \(error)")
}
let socketList = sockets

Report.say("listening on \(boundAddress) (backend \(mainLoop.backend), threads \(threadCount))")

let perThread = ServerThreads.run(program: tool.name, mainLoop: mainLoop, threads: threadCount) { index, loop, stop in
    UDPEchoServer(loop: loop, socket: socketList[index], stop: stop).serve()
}
for socket in sockets { close(socket.fd) }

let total = perThread.reduce(UDPEchoStats(), +)
Report.say("datagrams echoed: \(total.datagrams)")
Report.say("bytes echoed: \(total.bytes)")
Report.say("datagrams truncated: \(total.truncated)")
Report.say("errors: \(total.errors)")
if perThread.count > 1 {
    // How SO_REUSEPORT spread the senders over the threads.
    for (i, t) in perThread.enumerated() {
        Report.say("  thread \(i): \(t.datagrams) datagrams, \(t.bytes) bytes")
    }
}
exit(0)
