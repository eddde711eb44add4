// niobench: the SwiftNIO peers of evbench, measured the same way.
//
//   niobench ping-pongs      [--count 100000] [--warmup 2000]
//       libxev's ping-pongs on SwiftNIO: a server on one event loop thread echoes every
//       read (writeAndFlush of the buffer it received), a client on another event loop
//       thread sends "PING\n", counts echoes and sends the next. run.sh pins the process
//       to one CPU, as for every ping-pong.
//   niobench million-timers  [--count 1000000] [--api task|callback]
//       libxev's million-timers on one NIO event loop: `count` timers, 1,000 per
//       millisecond of deadline (2 ms ... count/1000 + 1 ms), armed from the loop thread
//       with scheduleTask (or scheduleCallback), run until all have fired.
//   niobench http-server     [--port 0] [--threads 1]
//       ev-http's peer in the http group: an HTTP/1.1 hello server on NIOHTTP1 (see
//       HTTPServer.swift); prints "listening on 127.0.0.1:PORT", serves until SIGINT or
//       SIGTERM. wrk measures it; it prints no RESULT line.
//
// The others print a human line and a RESULT line like evbench's (CPU and allocations per
// operation over a steady-state window).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import NIOCore
import NIOPosix

let arguments = Arguments()
if !AllocationCounter.isAvailable {
    BenchOutput.warn("note: allocation counting shim not preloaded (use run.sh); allocations will read n/a")
}

switch arguments.command {
case "ping-pongs":
    NIOPingPongs.run(count: arguments.int("count", default: 100_000), warmup: arguments.int("warmup", default: 2_000))
case "million-timers":
    let api = arguments.string("api") ?? "task"
    guard api == "task" || api == "callback" else { BenchOutput.fail("--api expects task or callback") }
    NIOMillionTimers.run(count: arguments.int("count", default: 1_000_000), useCallbacks: api == "callback")
case "http-server":
    NIOHTTPServer.run(port: arguments.int("port", default: 0), threads: arguments.int("threads", default: 1))
default:
    BenchOutput.fail("usage: niobench ping-pongs|million-timers|http-server [--count N] [--warmup N] [--api task|callback] [--port N] [--threads N]")
}
