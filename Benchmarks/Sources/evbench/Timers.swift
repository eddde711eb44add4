#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// libxev's million-timers (src/bench/million-timers.zig, after libuv's): arm `count`
/// one-shot timers, 1,000 per millisecond of deadline (the first thousand at 2 ms, the last
/// at count/1000 + 1 ms, relative to the loop's cached `now`), then run until all have
/// fired. The completions are allocated before the clock starts, as libxev allocates its
/// array of completions first. Figures (libxev's): seconds total, init, dispatch; also the
/// CPU time (the wall time can never be below the last deadline, so CPU is what compares),
/// the wall time's excess over the last deadline, and peak RSS.
enum MillionTimers {
    final class Counter {
        var fired = 0
        var failed = 0
    }

    static func run(_ setup: BenchSetup, count: Int) {
        let loop = setup.openLoop()
        let counter = Counter()
        // One callback for every timer, made once.
        let callback: Completion.Callback = { _, result in
            if case .timer(.success) = result { counter.fired += 1 } else { counter.failed += 1 }
            return .disarm
        }
        var completions: [Completion] = []
        completions.reserveCapacity(count)
        for _ in 0..<count { completions.append(Completion(.nop, callback: callback)) }

        let beforeAll = Sample.now()
        // The loop's cached `now` dates from its creation, before the completions were
        // allocated; refresh it so the deadlines count from the start of the window.
        loop.updateNow()
        let base = loop.now
        var timeout: Int64 = 1
        for i in 0..<count {
            if i % 1000 == 0 { timeout += 1 }
            let c = completions[i]
            c.operation = .timer(deadline: base + .milliseconds(timeout))
            check("add timer") { try loop.add(c) }
        }
        let beforeRun = Sample.now()
        check("loop") { try loop.run(.untilDone) }
        let afterRun = Sample.now()
        let afterAll = afterRun
        guard counter.fired == count, counter.failed == 0 else {
            BenchOutput.fail("\(counter.fired) of \(count) timers fired, \(counter.failed) failed")
        }
        let lastDeadlineSeconds = Double(timeout) / 1000
        let total = Window(from: beforeAll, to: afterAll, operations: UInt64(count))
        let initWindow = Window(from: beforeAll, to: beforeRun, operations: UInt64(count))
        let dispatch = Window(from: beforeRun, to: afterRun, operations: UInt64(count))
        // The headline window: the whole run's wall and CPU time, and the allocations made
        // while the timers fire (the steady state: arming grows the heap's array once).
        var window = total
        window.allocations = dispatch.allocations
        let initAllocations = initWindow.allocationsPerOperation.map { BenchOutput.fixed($0, 6) } ?? "na"
        BenchOutput.say("million-timers [\(setup.implementation)]: \(count) timers: \(BenchOutput.fixed(total.seconds, 2)) seconds total, \(BenchOutput.fixed(initWindow.seconds, 2)) seconds init, \(BenchOutput.fixed(dispatch.seconds, 2)) seconds dispatch, 0.00 seconds cleanup")
        BenchOutput.result(bench: "million-timers", impl: setup.implementation, value: total.seconds,
                           unit: "s", window: window, opName: "timer",
                           extra: [("timers", String(count)),
                                   ("cpu_s", BenchOutput.fixed(Double(total.cpuMicroseconds) / 1e6, 3)),
                                   ("init_s", BenchOutput.fixed(initWindow.seconds, 3)),
                                   ("dispatch_s", BenchOutput.fixed(dispatch.seconds, 3)),
                                   ("last_deadline_s", BenchOutput.fixed(lastDeadlineSeconds, 3)),
                                   ("excess_s", BenchOutput.fixed(total.seconds - lastDeadlineSeconds, 3)),
                                   ("init_allocs_per_timer", initAllocations),
                                   ("process_cpu_s", BenchOutput.fixed(Double(processCPUMicroseconds()) / 1e6, 3)),
                                   ("peak_rss_mb", BenchOutput.fixed(Double(peakResidentBytes()) / 1048576, 1))])
        withExtendedLifetime(completions) {}
    }
}

/// EvLoop's own timer benchmark (not in libxev's suite): `timers` timers that each rearm
/// themselves `rounds` times with a deadline of the loop's current `now` (due on the next
/// tick), so every tick pops and re-inserts `timers` heap entries. It measures what a
/// rearmed timer costs (heap work, callback dispatch) and checks that rearming allocates
/// nothing. Figure: rearmed timers/s.
enum TimerRearm {
    final class State {
        var fired = 0
        var start: Sample?
        var end: Sample?
    }

    static func run(_ setup: BenchSetup, timers: Int, rounds: Int) {
        let loop = setup.openLoop()
        let state = State()
        let total = timers * rounds
        let warmup = timers * min(10, rounds / 2)
        let callback: Completion.Callback = { [unowned loop] c, result in
            guard case .timer(.success) = result else { BenchOutput.fail("timer: \(result)") }
            state.fired += 1
            if state.fired == warmup { state.start = Sample.now() }
            if state.fired == total { state.end = Sample.now() }
            if state.fired > total - timers { return .disarm }   // each timer's last round
            c.operation = .timer(deadline: loop.now)
            return .rearm
        }
        let completions = (0..<timers).map { _ in Completion(.timer(deadline: loop.now), callback: callback) }
        for c in completions { check("add") { try loop.add(c) } }
        check("loop") { try loop.run(.untilDone) }
        guard let start = state.start, let end = state.end else { BenchOutput.fail("timer-rearm did not finish") }
        let window = Window(from: start, to: end, operations: UInt64(total - warmup))
        BenchOutput.result(bench: "timer-rearm", impl: setup.implementation, value: window.rate,
                           unit: "timers/s", window: window, opName: "rearm",
                           extra: [("timers", String(timers))])
        withExtendedLifetime(completions) {}
    }
}
