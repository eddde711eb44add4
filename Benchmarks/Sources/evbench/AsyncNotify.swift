#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport
import Synchronization

/// libxev's async1/2/4/8 (src/bench/async1.zig, after libuv's): the main loop and each of
/// N worker threads (each with its own loop) bounce a notification back and forth through
/// two `Async`s (the main loop waits on one, the worker's loop on the other), `count`
/// times per worker. Figure (libxev's): count / elapsed seconds, i.e. notifications
/// delivered to the main loop per second *per worker* (so async2's figure is half its
/// total). run.sh pins the process to one CPU, like the anchors.
enum AsyncPingPong {
    /// The main loop's side of one worker.
    ///
    /// The counters are `@exclusivity(unchecked)` and the callbacks capture their state
    /// strongly (no cycle: the completions are not the state's), so that the harness costs
    /// what libxev's does -- a field increment through a pointer -- and not dynamic
    /// exclusivity checks and retains at every access (callgrind, epoll: about 280
    /// user-space instructions per round trip, none of them the library's; an
    /// `unowned(unsafe)` capture still cost a retain and a release per callback, about 40
    /// instructions per notification, as in PingPongs.swift).
    final class Pair {
        let toWorker: AsyncNotifier
        let fromWorker: Async
        @exclusivity(unchecked) var seen = 0
        let count: Int
        init(toWorker: AsyncNotifier, fromWorker: Async, count: Int) {
            self.toWorker = toWorker
            self.fromWorker = fromWorker
            self.count = count
        }

        /// One notification from the worker: answer it and count it.
        @inline(__always)
        func delivered() -> CallbackAction {
            toWorker.notify()
            seen += 1
            return seen >= count ? .disarm : .rearm
        }
    }

    /// The worker's side: the notifier it answers through and how many it has sent.
    final class WorkerSide {
        let toMain: AsyncNotifier
        @exclusivity(unchecked) var sent = 0
        let count: Int
        init(toMain: AsyncNotifier, count: Int) {
            self.toMain = toMain
            self.count = count
        }

        @inline(__always)
        func answered() -> CallbackAction {
            toMain.notify()
            sent += 1
            return sent >= count ? .disarm : .rearm
        }
    }

    static func run(_ setup: BenchSetup, threads: Int, count: Int, warmup: Int) {
        let loop = setup.openLoop()
        var pairs: [Pair] = []
        // The main loop's waits, one per worker (not the pairs': a pair's completion holding
        // the callback that captures the pair would be a cycle).
        var completions: [Completion] = []
        var workers: [BenchThread] = []
        let name = "async\(threads)"
        let warmup = min(warmup, count / 4)
        var startSample: Sample?
        var seenAtStart = 0
        var endSample: Sample?
        var seenAtEnd = 0
        // The steady-state window: while the first worker's count runs from `warmup` to
        // `count - warmup` (all workers progress at the same pace, on one CPU).
        func totalSeen() -> Int { pairs.reduce(0) { $0 + $1.seen } }

        for _ in 0..<threads {
            let mainNotifier = check("async") { try AsyncNotifier() }
            let workerNotifier = check("async") { try AsyncNotifier() }
            let pair = Pair(toWorker: workerNotifier, fromWorker: Async(notifier: mainNotifier), count: count)
            let first = pairs.isEmpty
            let completion = Completion()
            completions.append(completion)
            check("wait") {
                try pair.fromWorker.wait(loop: loop, completion: completion) { [pair] _, result in
                    guard case .success = result else { BenchOutput.fail("async wait: \(result)") }
                    let action = pair.delivered()
                    if first {
                        if pair.seen == warmup {
                            startSample = Sample.now()
                            seenAtStart = totalSeen()
                        } else if pair.seen == count - warmup {
                            endSample = Sample.now()
                            seenAtEnd = totalSeen()
                        }
                    }
                    return action
                }
            }
            pairs.append(pair)
            workers.append(BenchThread {
                let workerLoop = setup.openLoop()
                let waiter = Async(notifier: workerNotifier)
                let completion = Completion()
                let side = WorkerSide(toMain: mainNotifier, count: count)
                // Kick off the exchange, then answer every notification with one.
                mainNotifier.notify()
                check("worker wait") {
                    try waiter.wait(loop: workerLoop, completion: completion) { [side] _, result in
                        guard case .success = result else { BenchOutput.fail("worker wait: \(result)") }
                        return side.answered()
                    }
                }
                check("worker loop") { try workerLoop.run(.untilDone) }
                if side.sent < count { BenchOutput.fail("worker sent \(side.sent) of \(count)") }
                drain(workerLoop)
            })
        }

        let startAll = Sample.now()
        check("loop") { try loop.run(.untilDone) }
        for w in workers { w.join() }
        let endAll = Sample.now()
        drain(loop)
        guard let start = startSample, let end = endSample else { BenchOutput.fail("\(name) did not reach its window") }
        let elapsed = Double(endAll.wallNanoseconds - startAll.wallNanoseconds) / 1e9
        // Operations in the window: every notification delivered, on both sides (the worker
        // answers each one, so it delivers as many as the main loop).
        let window = Window(from: start, to: end, operations: UInt64(2 * (seenAtEnd - seenAtStart)))
        BenchOutput.say("\(name): \(BenchOutput.fixed(elapsed, 2)) seconds (\(BenchOutput.fixed(Double(count) / elapsed, 2))/sec)")
        BenchOutput.result(bench: name, impl: setup.implementation, value: Double(count) / elapsed,
                           unit: "notifications/s", window: window, opName: "notification",
                           extra: [("threads", String(threads)), ("seconds_total", BenchOutput.fixed(elapsed, 3))])
        withExtendedLifetime(completions) {}
    }
}

/// libxev's async_pummel_1/2/4/8 (src/bench/async_pummel_1.zig, after libuv's): N threads
/// call `notify()` on one `Async` in a tight loop; the main loop counts its callbacks
/// (notifications coalesce, so a callback stands for one or more notifies) until `count`.
/// Figure: callbacks/s.
enum AsyncPummel {
    static func run(_ setup: BenchSetup, threads: Int, count: Int, warmup: Int) {
        let loop = setup.openLoop()
        let async = check("async") { try Async() }
        let notifier = async.notifier
        let running = Atomic<Bool>(true)
        let stopped = Atomic<Int>(0)
        let name = "async_pummel_\(threads)"
        let warmup = min(warmup, count / 4)
        var callbacks = 0
        var startSample: Sample?
        var endSample: Sample?
        let completion = Completion()
        check("wait") {
            try async.wait(loop: loop, completion: completion) { _, result in
                guard case .success = result else { BenchOutput.fail("async wait: \(result)") }
                callbacks += 1
                if callbacks == warmup { startSample = Sample.now() }
                if callbacks < count { return .rearm }
                endSample = Sample.now()
                // Done: stop the notifying threads and wait for them (libxev spins here too).
                running.store(false, ordering: .relaxed)
                while stopped.load(ordering: .acquiring) < threads { sched_yield() }
                return .disarm
            }
        }
        let startAll = Sample.now()
        let workers = (0..<threads).map { _ in
            BenchThread {
                while running.load(ordering: .relaxed) { notifier.notify() }
                stopped.add(1, ordering: .releasing)
            }
        }
        check("loop") { try loop.run(.untilDone) }
        for w in workers { w.join() }
        let endAll = Sample.now()
        drain(loop)
        guard let start = startSample, let end = endSample else { BenchOutput.fail("\(name) did not reach its window") }
        let elapsed = Double(endAll.wallNanoseconds - startAll.wallNanoseconds) / 1e9
        let window = Window(from: start, to: end, operations: UInt64(count - warmup))
        BenchOutput.say("\(name): \(callbacks) callbacks in \(BenchOutput.fixed(elapsed, 2)) seconds (\(BenchOutput.fixed(Double(callbacks) / elapsed, 2))/sec)")
        BenchOutput.result(bench: name, impl: setup.implementation, value: Double(callbacks) / elapsed,
                           unit: "callbacks/s", window: window, opName: "callback",
                           extra: [("threads", String(threads)), ("seconds_total", BenchOutput.fixed(elapsed, 3))])
    }
}
