// evbench: libxev's benchmark suite on EvLoop.
//
// Each benchmark keeps libxev's definition (src/bench/*.zig: what runs on which thread,
// what one operation is, the figure printed), runs on the backend given with --backend,
// and also prints the CPU time and the heap allocations per operation over a steady-state
// window (after a warm-up). Counts are smaller by default than libxev's so that the whole
// suite fits in a few minutes on a 2-CPU machine; --count restores libxev's.
//
//   evbench ping-pongs        --backend io_uring [--count 100000] [--warmup 2000]
//   evbench ping-pongs-async  --backend io_uring            (EvAsync: awaited operations)
//   evbench ping-udp1         --backend epoll
//   evbench udp_pummel_1v1    --backend poll
//   evbench million-timers    --backend epoll [--count 1000000]
//   evbench timer-rearm       --backend epoll                (EvLoop's own: rearmed timers)
//   evbench async1|async2|async4|async8                 --backend ...
//   evbench async_pummel_1|async_pummel_2|async_pummel_4|async_pummel_8 --backend ...
//   evbench files-randread    --backend io_uring --file PATH [--size-mb 1024] [--depth 32]
//                             [--count 100000] [--warmup 1000]  (4 KiB O_DIRECT random reads)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

let arguments = Arguments()
let backendName = arguments.string("backend") ?? "io_uring"
guard let backend = Backend(name: backendName) else {
    BenchOutput.fail("unknown backend '\(backendName)' (expected io_uring, epoll or poll)")
}

let setup = BenchSetup(backend: backend)
if !AllocationCounter.isAvailable {
    BenchOutput.warn("note: allocation counting shim not preloaded (use run.sh); allocations will read n/a")
}

switch arguments.command {
case "probe":
    // Used by run.sh: exits 0 when a loop on the backend initializes.
    withExtendedLifetime(setup.openLoop()) {}
    BenchOutput.say("backend \(backend) available")
case "ping-pongs":
    PingPongs.run(setup, count: arguments.int("count", default: 100_000), warmup: arguments.int("warmup", default: 2_000))
case "ping-pongs-concrete":
    PingPongs.runConcrete(setup, count: arguments.int("count", default: 100_000), warmup: arguments.int("warmup", default: 2_000))
case "ping-pongs-async":
    AsyncPingPongs.run(setup, count: arguments.int("count", default: 100_000), warmup: arguments.int("warmup", default: 2_000))
case "ping-udp1":
    PingUDP1.run(setup, count: arguments.int("count", default: 500_000), warmup: arguments.int("warmup", default: 5_000))
case "udp_pummel_1v1", "udp-pummel-1v1":
    UDPPummel.run(setup, count: arguments.int("count", default: 1_000_000), warmup: arguments.int("warmup", default: 10_000))
case "million-timers":
    MillionTimers.run(setup, count: arguments.int("count", default: 1_000_000))
case "files-randread":
    guard let path = arguments.string("file") else { BenchOutput.fail("files-randread needs --file PATH (on a file system with O_DIRECT)") }
    FileRandomReads.run(setup, path: path, size: arguments.int("size-mb", default: 1024) << 20,
                        depth: max(1, arguments.int("depth", default: 32)),
                        count: arguments.int("count", default: 100_000), warmup: arguments.int("warmup", default: 1_000))
case "timer-rearm":
    TimerRearm.run(setup, timers: arguments.int("timers", default: 1_000), rounds: arguments.int("rounds", default: 1_000))
case let name? where name.hasPrefix("async_pummel_") || name.hasPrefix("async-pummel-"):
    guard let threads = Int(name.dropFirst("async_pummel_".count)), threads > 0 else {
        BenchOutput.fail("expected async_pummel_1, _2, _4 or _8")
    }
    AsyncPummel.run(setup, threads: threads, count: arguments.int("count", default: 1_000_000),
                    warmup: arguments.int("warmup", default: 10_000))
case let name? where name.hasPrefix("async"):
    guard let threads = Int(name.dropFirst("async".count)), threads > 0 else {
        BenchOutput.fail("expected async1, async2, async4 or async8")
    }
    AsyncPingPong.run(setup, threads: threads, count: arguments.int("count", default: 1_000_000),
                      warmup: arguments.int("warmup", default: 2_000))
default:
    BenchOutput.fail("""
        usage: evbench BENCHMARK --backend io_uring|epoll|poll [--count N] [--warmup N]
        benchmarks: ping-pongs ping-pongs-concrete ping-pongs-async ping-udp1 udp_pummel_1v1 million-timers timer-rearm
                    files-randread --file PATH [--size-mb N] [--depth N]
                    async1 async2 async4 async8 async_pummel_1 async_pummel_2 async_pummel_4 async_pummel_8
        """)
}
