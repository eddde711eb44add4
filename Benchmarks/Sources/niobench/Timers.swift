#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import NIOCore
import NIOPosix

/// State of the timer run, touched only on the event loop's thread.
/// @unchecked Sendable: every access happens on that one thread (scheduleTask's closures
/// run there, and the arming happens in a `submit` to it).
final class TimerRun: @unchecked Sendable {
    let count: Int
    let done: EventLoopPromise<Void>
    var fired = 0
    var beforeAll: Sample?
    var beforeRun: Sample?
    var afterRun: Sample?

    init(count: Int, done: EventLoopPromise<Void>) {
        self.count = count
        self.done = done
    }

    func fire() {
        fired += 1
        if fired == count {
            afterRun = Sample.now()
            done.succeed(())
        }
    }
}

/// The handler for the scheduleCallback variant (one instance serves every timer).
struct FireHandler: NIOScheduledCallbackHandler, Sendable {
    let run: TimerRun
    func handleScheduledCallback(eventLoop: some EventLoop) { run.fire() }
}

enum NIOMillionTimers {
    static func run(count: Int, useCallbacks: Bool) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let state = TimerRun(count: count, done: loop.makePromise(of: Void.self))
        var lastTimeout: Int64 = 1
        do {
            lastTimeout = try loop.submit { () throws -> Int64 in
                state.beforeAll = Sample.now()
                var timeout: Int64 = 1
                let handler = FireHandler(run: state)
                for i in 0..<count {
                    if i % 1000 == 0 { timeout += 1 }
                    if useCallbacks {
                        try loop.scheduleCallback(in: .milliseconds(timeout), handler: handler)
                    } else {
                        loop.scheduleTask(in: .milliseconds(timeout)) { state.fire() }
                    }
                }
                state.beforeRun = Sample.now()
                return timeout
            }.wait()
            try state.done.futureResult.wait()
        } catch {
            BenchOutput.fail("SwiftNIO timers: \(error)")
        }
        // Read the samples on the loop thread (they were written there).
        let samples = try? loop.submit { [state] in (state.beforeAll!, state.beforeRun!, state.afterRun!) }.wait()
        guard let (beforeAll, beforeRun, afterRun) = samples else { BenchOutput.fail("no samples") }
        let impl = useCallbacks ? "swiftnio/scheduleCallback" : "swiftnio"
        let total = Window(from: beforeAll, to: afterRun, operations: UInt64(count))
        let initWindow = Window(from: beforeAll, to: beforeRun, operations: UInt64(count))
        let dispatch = Window(from: beforeRun, to: afterRun, operations: UInt64(count))
        var window = total
        window.allocations = dispatch.allocations
        let lastDeadline = Double(lastTimeout) / 1000
        let initAllocations = initWindow.allocationsPerOperation.map { BenchOutput.fixed($0, 6) } ?? "na"
        BenchOutput.result(bench: "million-timers", impl: impl, value: total.seconds,
                           unit: "s", window: window, opName: "timer",
                           extra: [("timers", String(count)),
                                   ("cpu_s", BenchOutput.fixed(Double(total.cpuMicroseconds) / 1e6, 3)),
                                   ("init_s", BenchOutput.fixed(initWindow.seconds, 3)),
                                   ("dispatch_s", BenchOutput.fixed(dispatch.seconds, 3)),
                                   ("last_deadline_s", BenchOutput.fixed(lastDeadline, 3)),
                                   ("excess_s", BenchOutput.fixed(total.seconds - lastDeadline, 3)),
                                   ("init_allocs_per_timer", initAllocations),
                                   ("process_cpu_s", BenchOutput.fixed(Double(processCPUMicroseconds()) / 1e6, 3)),
                                   ("peak_rss_mb", BenchOutput.fixed(Double(peakResidentBytes()) / 1048576, 1))])
        try? group.syncShutdownGracefully()
    }
}
