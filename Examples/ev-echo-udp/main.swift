// ev-echo-udp: a UDP echo server on EvLoop, one loop per thread (a LoopGroup).
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
        .host(),
        .listenPort("UDP"),
        .backend,
        .threads,
    ],
    examples: [
        "ev-echo-udp --port 7001",
        "echo hello | socat -t 1 - UDP4:127.0.0.1:7001",
    ]
)

let options = tool.parseSharedOrExit()
let mainLoop = ExampleProcess.startServer(program: tool.name, backend: options.backend)

// The sockets are made before the threads start, so that port 0 resolves to one port that
// every thread's socket then binds (close-on-exec; each loop's set-up puts its own in the
// blocking mode its backend wants).
let sockets = tool.orFail("cannot bind \(options.host):\(options.port)") { () throws(EvError) in
    try ReusePortSockets.datagramSockets(count: options.threads,
                                         address: SocketAddress(host: options.host, port: options.port))
}
Report.say("listening on \(sockets.address) (backend \(mainLoop.backend), threads \(options.threads))")

let perThread = ServerThreads.run(program: tool.name, backend: mainLoop.backend, sockets: sockets) { loop, socket in
    UDPEchoServer(loop: loop, socket: socket)
}
UDPEchoStatistics.printSummary(perThread)
exit(0)
