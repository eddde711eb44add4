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
// every thread's socket then binds (UDPSocket: close-on-exec, blocking mode per backend).
let (sockets, boundAddress) = tool.orFail("cannot bind \(options.host):\(options.port)") { () throws(EvError) in
    try makeReusePortSockets(
        count: options.threads, address: SocketAddress(host: options.host, port: options.port),
        make: { address throws(EvError) in try UDPSocket(for: address, loop: mainLoop) })
}
Report.say("listening on \(boundAddress) (backend \(mainLoop.backend), threads \(options.threads))")

let perThread = ServerThreads.run(program: tool.name, mainLoop: mainLoop, sockets: sockets) { loop, socket, stop in
    UDPEchoServer(loop: loop, socket: socket, stop: stop).serve()
}
UDPEchoStatistics.printSummary(perThread)
exit(0)
