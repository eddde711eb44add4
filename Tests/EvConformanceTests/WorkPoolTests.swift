// Services: WorkPool (closures off the loop, results on the loop thread), on every backend.
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@Suite("Service: WorkPool")
struct WorkPoolTests {

    /// Pool threads carry their pool's name (what `top -H` and debuggers show), cut to the
    /// 15 bytes Linux keeps.
    @Test(arguments: conformanceBackends)
    func poolThreadsAreNamed(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pools = [try WorkPool(threads: 1), try WorkPool(threads: 1, name: "db-queries-and-more")]
        defer { for p in pools { p.shutdown() } }
        var names: [String] = []
        for pool in pools {
            try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> String in currentThreadName() }) { _, r in
                if case .success(let name) = r { names.append(name) }
                return .disarm
            }
        }
        #expect(try runUntil(loop) { names.count == 2 })
        #expect(Set(names) == ["ev-work", "db-queries-and-"])
    }

    /// The closure runs on a pool thread; its value reaches the callback, typed, on the
    /// loop thread; the completion is active (and counted) until then.
    @Test(arguments: conformanceBackends)
    func workCompletesOnTheLoopThreadWithItsValue(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 2)
        defer { pool.shutdown() }
        let loopThread = cevsys_gettid()
        let c = Completion()
        // By identity: the callback capturing `c` itself would be a cycle (c holds its callback).
        let cID = ObjectIdentifier(c)
        var result: Result<(Int32, String), EvError>?
        var callbackThread: Int32 = 0
        try pool.run(loop: loop, completion: c, { () throws(EvError) -> (Int32, String) in
            (cevsys_gettid(), "forty-two")
        }) { completion, r in
            result = r
            callbackThread = cevsys_gettid()
            #expect(ObjectIdentifier(completion) == cID && completion.state == .dead)
            return .disarm
        }
        #expect(c.state == .active && loop.activeCount >= 1)
        #expect(try runUntil(loop) { result != nil })
        guard case .success(let (workerThread, value))? = result else {
            Issue.record("no value: \(String(describing: result))")
            return
        }
        #expect(value == "forty-two")
        #expect(workerThread != loopThread, "the closure ran on the loop thread")
        #expect(callbackThread == loopThread, "the callback ran off the loop thread")
        #expect(loop.activeCount == 0, "the inbox's wait ends with the last job")
    }

    /// The value a job delivered is its callback's: once the callback has let go of it, the
    /// job (still held by the completion) keeps no reference to it until its next run.
    @Test(arguments: conformanceBackends)
    func aDeliveredValueIsNotKeptByTheJob(backend: Backend) throws {
        final class Payload: Sendable {}
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let c = Completion()
        weak var delivered: Payload?
        var ran = false
        try pool.run(loop: loop, completion: c, { () throws(EvError) -> Payload in Payload() }) { _, r in
            if case .success(let p) = r { delivered = p }
            ran = true
            return .disarm
        }
        #expect(try runUntil(loop) { ran })
        #expect(c.state == .dead)
        #expect(delivered == nil, "the job kept the value after its callback")
    }

    /// An `EvError` thrown by the closure arrives as the callback's typed failure.
    @Test(arguments: conformanceBackends)
    func aThrownErrorArrivesTyped(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        var result: Result<Int, EvError>?
        try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in
            throw .connectionReset
        }) { _, r in result = r; return .disarm }
        #expect(try runUntil(loop) { result != nil })
        #expect(result == .failure(.connectionReset))
    }

    /// A thousand jobs on three threads: each callback runs exactly once, with its own value.
    @Test(arguments: conformanceBackends)
    func aThousandJobs(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 3)
        defer { pool.shutdown() }
        let n = 1000
        var seen = [Int](repeating: 0, count: n)
        var wrong: [String] = []
        var delivered = 0
        let completions = (0..<n).map { _ in Completion() }
        for (i, c) in completions.enumerated() {
            try pool.run(loop: loop, completion: c, { () throws(EvError) -> Int in i * 3 }) { _, r in
                delivered += 1
                if case .success(let v) = r, v == i * 3 { seen[i] += 1 } else { wrong.append("\(i): \(r)") }
                return .disarm
            }
        }
        #expect(loop.activeCount >= n)
        #expect(try runUntilDone(loop, timeout: .seconds(30)))
        #expect(delivered == n)
        #expect(seen.allSatisfy { $0 == 1 }, "callbacks per job: \(Set(seen))")
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect(loop.activeCount == 0)
        #expect(pool.threads.jobsInFlight == 0)
    }

    /// A cancel before the job starts withdraws it: `.canceled`, the cancel succeeds, and
    /// the closure never runs.
    @Test(arguments: conformanceBackends)
    func cancelBeforeStart(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let gate = Gate(), ran = Counter()
        let blocker = Outcomes<Int>(), queuedResults = Outcomes<Int>()
        try pool.runHeld(loop: loop, by: gate, returning: 1, into: blocker)
        // The only thread is busy: this one waits in the queue.
        let queued = Completion()
        try pool.runCounted(loop: loop, completion: queued, ran: ran, returning: 2, into: queuedResults)
        #expect(gate.awaitWaiters(1))
        let cancelResult = try cancelAndRun(queued, on: loop) { queuedResults.count > 0 }
        #expect(queuedResults.all == [.failure(.canceled)])
        #expect(cancelResult?.error == nil, "the cancel reported \(String(describing: cancelResult))")
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(blocker.all == [.success(1)])
        #expect(ran.count == 0, "the withdrawn closure ran")
        #expect(queuedResults.count == 1)
    }

    /// A cancel after the job started is too late: it reports `.inProgress`, and the
    /// callback gets the real result once the closure returns.
    @Test(arguments: conformanceBackends)
    func cancelAfterStartReportsInProgressAndTheRealResult(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let gate = Gate()
        let c = Completion()
        let results = Outcomes<String>()
        try pool.runHeld(loop: loop, completion: c, by: gate, returning: "done", into: results)
        #expect(gate.awaitWaiters(1))
        let cancelResult = try cancelAndRun(c, on: loop)
        #expect(cancelResult?.error == .inProgress)
        #expect(results.count == 0 && c.state == .active, "the running job was reported before it finished")
        gate.open()
        #expect(try runUntil(loop) { results.count > 0 })
        #expect(results.all == [.success("done")])
        #expect(try runUntilDone(loop))
        #expect(results.count == 1)
    }

    /// `cancelAll()` withdraws every queued job (`.canceled`, the closures never run) and
    /// leaves the running one to deliver its real result; `run(.untilDone)` then drains.
    @Test(arguments: conformanceBackends)
    func cancelAllWithdrawsQueuedJobs(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let gate = Gate(), ran = Counter()
        let running = Outcomes<Int>(), queuedResults = Outcomes<Int>()
        try pool.runHeld(loop: loop, by: gate, returning: 7, into: running)
        for i in 0..<10 {
            try pool.runCounted(loop: loop, ran: ran, returning: i, into: queuedResults)
        }
        #expect(gate.awaitWaiters(1))
        loop.cancelAll()
        #expect(try runUntil(loop) { queuedResults.count == 10 })
        #expect(queuedResults.all.allSatisfy { $0 == .failure(.canceled) }, "\(queuedResults.all)")
        #expect(running.count == 0 && loop.activeCount >= 1, "the running job is still in flight")
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(running.all == [.success(7)])
        #expect(ran.count == 0)
        #expect(loop.activeCount == 0)
    }

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// A deadline on pool work (kept in the core's heap on every backend): a job still
    /// queued when it passes is withdrawn with `.timedOut` and never runs; a running one
    /// cannot be stopped and reports its real result; a lookup is abandoned at once.
    @Test(arguments: conformanceBackends)
    func aDeadlineWithdrawsWorkThatHasNotStarted(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let gate = Gate(), ran = Counter()
        let running = Outcomes<Int>(), queued = Outcomes<Int>()
        let held = Completion()
        held.deadline = .within(.milliseconds(20))
        try pool.runHeld(loop: loop, completion: held, by: gate, returning: 1, into: running)
        #expect(gate.awaitWaiters(1))
        let late = Completion()
        late.deadline = .within(.milliseconds(50))
        // The deadline counts from the loop's cached `now`, which the wait for the gate
        // left behind (by more than 5 ms in a sanitized build under load).
        loop.updateNow()
        let started = LoopInstant.now()
        // `.within` counts from the loop's cached time, which is as old as the last tick
        // (the wait for the held job above can take long on a loaded machine).
        loop.updateNow()
        try pool.runCounted(loop: loop, completion: late, ran: ran, returning: 2, into: queued)
        #expect(try runUntil(loop) { queued.count > 0 })
        #expect(queued.all == [.failure(.timedOut)])
        #expect(LoopInstant.now() - started >= .milliseconds(45))
        #expect(running.count == 0, "the running job's deadline passed, but it cannot be stopped")
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(running.all == [.success(1)])
        #expect(ran.count == 0, "the withdrawn closure ran")

        let resolver = try Resolver(threads: 1)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .seconds(2)
        let lookup = Completion()
        lookup.deadline = .within(.milliseconds(50))
        let addresses = Outcomes<[SocketAddress]>()
        let lookupStarted = LoopInstant.now()
        try resolver.resolve(loop: loop, completion: lookup, host: "127.0.0.1", callback: addresses.record)
        #expect(try runUntil(loop) { addresses.count > 0 })
        #expect(addresses.all == [.failure(.timedOut)])
        #expect(LoopInstant.now() - lookupStarted < .seconds(1), "the deadline waited for the lookup")
        #expect(try runUntilDone(loop, timeout: .seconds(1)))
        #expect(loop.activeCount == 0)
    }
    #endif

    /// `run(.untilDone)` does not return while a job is in flight (the inbox's own wait
    /// does not hold the loop, the work does).
    @Test(arguments: conformanceBackends)
    func runUntilDoneWaitsForWork(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        var result: Result<Int, EvError>?
        try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in
            usleep(100_000)
            return 5
        }) { _, r in result = r; return .disarm }
        let started = LoopInstant.now()
        #expect(try runUntilDone(loop))
        #expect(result == .success(5), "run(.untilDone) returned before the work was delivered")
        #expect(LoopInstant.now() - started >= .milliseconds(90))
        // An idle loop has nothing of its own active, so it does not hold run open.
        #expect(loop.activeCount == 0)
        try loop.run(.untilDone)
    }

    /// `.rearm` runs the same closure again, without a new call.
    @Test(arguments: conformanceBackends)
    func rearmRunsTheClosureAgain(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 2)
        defer { pool.shutdown() }
        let runs = Counter()
        var values: [Int] = []
        try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in
            runs.add()
            return runs.count
        }) { _, r in
            if case .success(let v) = r { values.append(v) }
            return values.count < 4 ? .rearm : .disarm
        }
        #expect(try runUntilDone(loop))
        #expect(values == [1, 2, 3, 4])
        #expect(runs.count == 4)
    }

    /// Bad input: no threads is refused; a completion in flight is refused and left as it
    /// is; a job copied into a second completion while it runs fails that one, typed.
    @Test(arguments: conformanceBackends)
    func badInputIsATypedError(backend: Backend) throws {
        #expect(throws: EvError.invalidArgument) { _ = try WorkPool(threads: 0) }
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        let gate = Gate()
        let c = Completion()
        let first = Outcomes<Int>()
        try pool.runHeld(loop: loop, completion: c, by: gate, returning: 1, into: first)
        #expect(throws: EvError.completionActive) {
            try pool.run(loop: loop, completion: c, { () throws(EvError) -> Int in 2 }) { _, _ in .disarm }
        }
        let copy = Completion(c.operation)
        var copyResult: CompletionResult?
        copy.callback = { _, r in copyResult = r; return .disarm }
        try loop.add(copy)
        #expect(try runUntil(loop) { copyResult != nil })
        #expect(copyResult?.error == .invalidArgument, "\(String(describing: copyResult))")
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(first.all == [.success(1)])
    }

    /// Shutdown cancels what is queued (delivered as `.canceled` on the loop), lets the
    /// running job deliver its real result, joins, and refuses later jobs with `.canceled`.
    @Test(arguments: conformanceBackends)
    func shutdownCancelsQueuedJobsAndFinishesRunningOnes(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let pool = try WorkPool(threads: 1)
        let gate = Gate(), ran = Counter()
        let running = Outcomes<Int>(), queued = Outcomes<Int>()
        try pool.runHeld(loop: loop, by: gate, returning: 9, into: running)
        for i in 0..<3 {
            try pool.runCounted(loop: loop, ran: ran, returning: i, into: queued)
        }
        #expect(gate.awaitWaiters(1))
        // shutdown() joins, and the running job waits for the gate: call it elsewhere.
        let joined = Gate()
        let shutter = try TestThread { [pool] in
            pool.shutdown()
            joined.open()
        }
        #expect(try runUntil(loop) { queued.count == 3 })
        #expect(queued.all.allSatisfy { $0 == .failure(.canceled) }, "\(queued.all)")
        #expect(!joined.isOpen, "shutdown returned while a job was running")
        gate.open()
        #expect(try runUntil(loop) { running.count > 0 })
        #expect(running.all == [.success(9)])
        shutter.join()
        #expect(joined.isOpen)
        #expect(ran.count == 0)
        let late = Outcomes<Int>()
        try pool.runCounted(loop: loop, ran: ran, returning: 0, into: late)
        #expect(try runUntil(loop) { late.count > 0 })
        #expect(late.all == [.failure(.canceled)])
        #expect(ran.count == 0)
        #expect(try runUntilDone(loop))
        #expect(loop.activeCount == 0)
    }

    /// Threads start on demand, up to the limit, and `shutdown()` joins every one of them.
    /// Each closure records the kernel id of its thread; after the shutdown none of those
    /// threads exists any more. (Other threads of the process come and go meanwhile, so
    /// the pool's own are followed by id; in a child process all the same, where no other
    /// test's threads take their ids.)
    @Test(arguments: conformanceBackends)
    func threadsStartOnDemandAndShutdownJoinsThem(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let pool = try WorkPool(threads: 3)
            #expect(pool.threads.threadCount == 0, "a pool that was never used started threads")
            let gate = Gate()
            let workers = Locked<Set<Int32>>([])
            var done = 0
            for _ in 0..<6 {
                try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in
                    _ = workers.withLock { $0.insert(cevsys_gettid()) }
                    gate.wait()
                    return 0
                }) { _, _ in done += 1; return .disarm }
            }
            #expect(gate.awaitWaiters(3), "waiters: \(gate.waiters)")
            #expect(pool.threads.threadCount == 3)
            gate.open()
            #expect(try runUntilDone(loop))
            #expect(done == 6)
            let ids = workers.withLock { $0 }
            #expect(ids.count == 3, "the six jobs ran on \(ids.count) threads")
            func alive(_ tid: Int32) -> Bool { access("/proc/self/task/\(tid)", F_OK) == 0 }
            #expect(ids.allSatisfy(alive), "idle threads stay until shutdown")
            // Shut down while a job still runs: shutdown() waits for it, then for its thread.
            var last: Result<Int, EvError>?
            try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in
                usleep(200_000)
                return 1
            }) { _, r in last = r; return .disarm }
            spinUntil { pool.threads.jobsRunning > 0 }
            pool.shutdown()
            #expect(pool.threads.threadCount == 0)
            #expect(!ids.contains(where: alive), "shutdown() returned before its threads exited")
            #expect(try runUntilDone(loop))
            #expect(last == .success(1), "the job running at shutdown delivers its result")
        }
    }

    /// One eventfd per loop that runs pool work, opened on first use and closed with the
    /// loop; nothing else is left open or active. (Counts the whole descriptor table: in a
    /// child process of its own.)
    @Test(arguments: conformanceBackends)
    func descriptorsAndActiveCountReturnToTheBaseline(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let before = Fds.count()
            do {
                let loop = try makeTestLoop(backend)
                let h = Harness(loop)
                defer { h.finish() }
                let withLoop = Fds.count()
                let pool = try WorkPool(threads: 2)
                defer { pool.shutdown() }
                for round in 0..<3 {
                    var done = 0
                    for i in 0..<50 {
                        try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in i }) { _, _ in
                            done += 1
                            return .disarm
                        }
                    }
                    #expect(try runUntilDone(loop))
                    #expect(done == 50)
                    #expect(loop.activeCount == 0, "round \(round)")
                    #expect(Fds.count() == withLoop + 1, "round \(round): the loop's work inbox is one eventfd")
                }
            }
            #expect(Fds.count() == before, "descriptors left after the loop went away")
        }
    }
}
