// PITFALLS items about waking the loop: E9 (thread-pool results wake it at once, and
// wake-ups drain), D1 (event descriptors are waited on with a poll, never read by the
// kernel; cross-thread round trips stay fast), B6 (the notifier still works after the
// completion queue overflowed). Every test runs on every backend. See
// docs/PITFALLS.md.
import Testing
import Ev
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@Suite("Pitfall: wake-ups")
struct PitfallWakeupTests {

    /// PITFALLS E9: 50 file reads one after another (on epoll and poll they run on the
    /// thread pool and come back through the loop's eventfd) complete with a median under
    /// 5 ms from add to callback; each costs about one kernel wait, and the loop is idle
    /// afterwards (a wake-up that was not drained would wake it again and again). One
    /// cross-thread notify gives exactly one callback.
    @Test(arguments: conformanceBackends)
    func poolResultsWakeTheLoopAtOnceAndWakeUpsDrain(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let file = h.own(try makeTempFile())
        let reads = 50, size = 4096
        var content = (0..<(reads * size)).map { patternByte($0, seed: 9) }
        #expect(pwrite(file, &content, content.count, 0) == content.count)
        let buffer = h.buffer(size)
        var latencies: [Duration] = []
        var wrong: [String] = []
        let c = Completion()
        let waitsBefore = Pitfall.kernelWaits(loop)
        for i in 0..<reads {
            var result: CompletionResult?
            c.operation = .pread(fd: file, buffer: buffer, offset: UInt64(i * size))
            c.callback = { _, r in result = r; return .disarm }
            let start = LoopInstant.now()
            try loop.add(c)
            #expect(try runUntil(loop) { result != nil })
            latencies.append(LoopInstant.now() - start)
            if result?.count != size || Array(buffer) != Array(content[(i * size)..<((i + 1) * size)]) {
                wrong.append("read \(i): \(String(describing: result))")
            }
        }
        let waits = Pitfall.kernelWaits(loop) - waitsBefore
        latencies.sort()
        let median = latencies[latencies.count / 2]
        print("[\(backend)] E9: pool read latency median \(median.milliseconds) ms, max \(latencies.last!.milliseconds) ms; \(waits) kernel waits for \(reads) reads")
        #expect(wrong.isEmpty, "\(wrong.prefix(3))")
        #expect(median < .milliseconds(5), "median \(median.milliseconds) ms from add to callback")
        #expect(waits <= 3 * reads, "\(waits) kernel waits for \(reads) reads")
        #expect(try Pitfall.kernelWaitsWhileIdle(loop) <= 3, "the loop keeps waking up after the reads")

        // One notify from another thread: one callback, then quiet.
        let async = try Async()
        var callbacks = 0
        let w = Completion()
        try async.wait(loop: loop, completion: w) { _, r in
            guard case .success = r else { return .disarm }
            callbacks += 1
            return .rearm
        }
        try loop.run(.noWait)
        let notifier = async.notifier
        let before = Pitfall.kernelWaits(loop)
        let t = try TestThread { usleep(10_000); notifier.notify() }
        #expect(try runUntil(loop) { callbacks == 1 })
        t.join()
        let wakeWaits = Pitfall.kernelWaits(loop) - before
        try runFor(loop, .milliseconds(20))
        #expect(callbacks == 1)
        #expect(wakeWaits <= 3, "\(wakeWaits) kernel waits for one notify")
    }

    /// PITFALLS D1: every watcher that waits on an event descriptor (Async, LoopStopper,
    /// SignalWatcher, Subprocess with a pidfd or its waiter thread's eventfd) does so with
    /// a `.poll` for readability, and reads the descriptor itself with read(2) on the loop
    /// thread. On io_uring `.poll` is a one-shot IORING_OP_POLL_ADD, and the ring's SQE
    /// counter shows that no READ was submitted at all. The operations are checked while
    /// armed and again after they fired and were rearmed.
    @Test(arguments: conformanceBackends)
    func eventDescriptorsAreWaitedOnWithAPollNeverARead(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var waits: [(String, Completion, String)] = []   // (what, completion, expected link kind)
        let async = try Async()
        let asyncWait = Completion()
        var asyncFired = 0
        try async.wait(loop: loop, completion: asyncWait) { _, r in
            guard case .success = r else { return .disarm }
            asyncFired += 1
            return .rearm
        }
        waits.append(("Async", asyncWait, "eventfd"))
        let stopper = try LoopStopper(loop: loop)
        waits.append(("LoopStopper", stopper.completion, "eventfd"))
        let signals = try SignalWatcher(signals: [SIGUSR2])
        let signalWait = Completion()
        try signals.wait(loop: loop, completion: signalWait) { _, _ in .disarm }
        waits.append(("SignalWatcher", signalWait, "signalfd"))
        var children: [Subprocess] = []
        for (method, kind) in [(ExitWatchMethod.pidfd, "pidfd"), (.waiterThread, "eventfd")] {
            let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, exitWatch: method)
            children.append(child)
            let c = Completion()
            try child.wait(loop: loop, completion: c) { _, _ in }
            waits.append(("Subprocess(\(method))", c, kind))
        }
        defer { for child in children { try? child.signal(SIGKILL) } }
        // On io_uring, count the READ SQEs the whole test submits (none may be).
        let readSQEs = { (loop as? UringLoop)?.sqeCounts[Int(OperationKind.read.rawValue)] ?? 0 }
        let readsBefore = readSQEs()
        try loop.run(.noWait)

        func check(_ phase: String) {
            for (what, c, kind) in waits where c.state == .active {
                guard case .poll(let fd, let events) = c.operation else {
                    Issue.record("\(phase): \(what) waits with \(c.operation.kind), not .poll")
                    continue
                }
                #expect(events == .readable, "\(phase): \(what)")
                let link = Fds.link(fd) ?? "closed"
                #expect(link.contains(kind), "\(phase): \(what) polls descriptor \(fd) -> \(link), expected a \(kind)")
            }
        }
        check("armed")
        #expect(waits.allSatisfy { $0.1.state == .active })

        // Fire the Async (it rearms) and the children (their waits end after a reap).
        async.notify()
        #expect(try runUntil(loop) { asyncFired == 1 })
        check("rearmed")
        #expect(asyncWait.state == .active && asyncWait.operation.kind == .poll)
        for child in children { try child.signal(SIGKILL) }
        #expect(try runUntil(loop) { children.allSatisfy { $0.exitStatus != nil } })
        #expect(readSQEs() == readsBefore, "an io_uring READ was submitted for an event descriptor")
        _ = stopper
    }

    /// PITFALLS D1: 10,000 cross-thread round trips (another thread notifies, the loop's
    /// callback answers, the thread waits for the answer before the next notify): every
    /// one is answered, each within 50 ms, and on io_uring no READ SQE is submitted.
    @Test(arguments: conformanceBackends)
    func crossThreadRoundTripsStayFast(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let rounds = 10_000
        let async = try Async()
        let notifier = async.notifier
        let answered = Atomic<Int>(0)
        let slowest = Atomic<Int>(0)        // nanoseconds
        let overLimit = Atomic<Int>(0)
        let gaveUp = Atomic<Bool>(false)
        var callbacks = 0
        let w = Completion()
        try async.wait(loop: loop, completion: w) { _, r in
            guard case .success = r else { return .disarm }
            callbacks += 1
            answered.store(callbacks, ordering: .releasing)
            return callbacks < rounds ? .rearm : .disarm
        }
        try loop.run(.noWait)
        let readSQEs = { (loop as? UringLoop)?.sqeCounts[Int(OperationKind.read.rawValue)] ?? 0 }
        let readsBefore = readSQEs()
        let pinger = try TestThread {
            for i in 1...rounds {
                let start = LoopInstant.now()
                notifier.notify()
                var spins = 0
                while answered.load(ordering: .acquiring) < i {
                    spins += 1
                    if spins > 64 { sched_yield() }
                    if spins % 1024 == 0 && LoopInstant.now() - start > .seconds(2) {
                        gaveUp.store(true, ordering: .relaxed)
                        return
                    }
                }
                let ns = Int((LoopInstant.now() - start).nanosecondsSaturating)
                if ns > 50_000_000 { overLimit.add(1, ordering: .relaxed) }
                if ns > slowest.load(ordering: .relaxed) { slowest.store(ns, ordering: .relaxed) }
            }
        }
        let done = try runUntil(loop, timeout: .seconds(60)) { callbacks == rounds }
        if !done { gaveUp.store(true, ordering: .relaxed) }
        pinger.join()
        print("[\(backend)] D1: \(callbacks) round trips, slowest \(Double(slowest.load(ordering: .relaxed)) / 1e6) ms")
        #expect(done && !gaveUp.load(ordering: .relaxed), "\(callbacks) of \(rounds) notifications answered")
        #expect(readSQEs() == readsBefore, "an io_uring READ was submitted for the eventfd")
        #expect(overLimit.load(ordering: .relaxed) == 0,
                "\(overLimit.load(ordering: .relaxed)) round trips over 50 ms (slowest \(Double(slowest.load(ordering: .relaxed)) / 1e6) ms)")
    }

    /// PITFALLS B6: the notifier's wait is a one-shot poll, so a completion queue that
    /// overflowed (4x its size finishing at once, through an 8-entry ring on io_uring)
    /// cannot leave it deaf: a notify afterwards still reaches the callback.
    @Test(arguments: conformanceBackends)
    func notifyStillWorksAfterTheCompletionQueueOverflowed(backend: Backend) throws {
        _ = try makeTestLoop(backend)   // skips, loudly, where the backend is unavailable
        let loop: LoopCore = backend == .ioUring ? try UringLoop(entries: 8) : try makeLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let async = try Async()
        var notified = 0
        try async.wait(loop: loop, completion: Completion()) { _, r in
            guard case .success = r else { return .disarm }
            notified += 1
            return .rearm
        }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let n = 4 * Int((loop as? UringLoop)?.completionQueueEntries ?? 16)
        var fired = 0
        var keep: [Completion] = []
        for _ in 0..<n {
            let c = Completion(.poll(fd: a, events: .readable)) { _, _ in fired += 1; return .disarm }
            keep.append(c)
            try loop.add(c)
        }
        for _ in 0..<(n / 4 + 3) { try loop.run(.noWait) }
        try Sock.put(b, [1])
        #expect(try runUntil(loop) { fired == n })
        if let u = loop as? UringLoop { #expect(u.overflowFlushes > 0, "the completion queue did not overflow") }
        let notifier = async.notifier
        let t = try TestThread { usleep(5_000); notifier.notify() }
        #expect(try runUntil(loop) { notified == 1 })
        t.join()
    }
}
