// Conformance: the loop as a TaskExecutor and SerialExecutor (EvAsync). Every test runs
// unchanged on every backend.
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An actor whose code runs on a loop's thread: its executor is the loop's.
actor LoopCounter {
    let executor: LoopExecutor
    var value = 0
    var threads: Set<Int32> = []

    init(executor: LoopExecutor) { self.executor = executor }

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    func increment() {
        value += 1
        threads.insert(currentThreadID())
    }

    /// Awaits a loop timer inside the actor: the actor's code resumes on the loop thread.
    func incrementAfter(_ delay: Duration) async throws {
        try await executor.sleep(for: delay)
        increment()
    }
}

@Suite("Conformance: async executor")
struct AsyncExecutorTests {

#if DEBUG
    /// An awaited operation resumes its task with one executor job (issue 13 item 1): the
    /// completion's callback enqueues the task on the task executor, and the task's
    /// nonisolated code then carries on in place. (With the serial and task executors as one
    /// object, every job ran isolated to the loop, and each await took five jobs: the
    /// runtime saw every step of nonisolated code as a hop off an actor.) Actor code on the
    /// loop still works, and hops between it and the task stay on the loop thread.
    @Test(arguments: conformanceBackends)
    func oneJobPerAwait(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let awaits = 200
            let jobs = try runAsync(executor) { () async throws -> Int in
                let before = executor.jobsRun
                for _ in 0..<awaits { _ = try await executor.perform(.nop) }
                return executor.jobsRun - before
            }
            #expect(jobs <= awaits + 2, "\(jobs) executor jobs for \(awaits) awaits")
            let counter = LoopCounter(executor: executor)
            let (total, threads) = try runAsync(executor) { () async throws -> (Int, Set<Int32>) in
                var threads: Set<Int32> = [currentThreadID()]
                for _ in 0..<10 {
                    await counter.increment()
                    _ = try await executor.perform(.nop)
                    threads.insert(currentThreadID())
                }
                return (await counter.value, threads)
            }
            #expect(total == 10)
            #expect(threads == [executor.loopThreadID])
        }
    }
#endif

    /// A task created on another thread with the loop's executor as its preference runs on
    /// the loop thread; remote enqueues made while the loop is not looking coalesce into one
    /// eventfd write.
    @Test(arguments: conformanceBackends)
    func remoteJobRunsOnLoopThread(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let loopThread = currentThreadID()
            #expect(executor.loopThreadID == loopThread)
            let ranOn = Locked<[Int32]>([])
            let enqueuedFrom = Locked<Int32>(0)
            let count = 100
            // The loop thread is blocked in join() while the other thread creates the tasks,
            // so every enqueue after the first finds the wake-up already pending.
            let thread = try TestThread {
                enqueuedFrom.withLock { $0 = currentThreadID() }
                for _ in 0..<count {
                    Task(executorPreference: executor) {
                        ranOn.withLock { $0.append(currentThreadID()) }
                    }
                }
            }
            thread.join()
            #expect(ranOn.withLock { $0.isEmpty }, "nothing runs before the loop runs")
            #expect(executor.remoteWakeWrites == 1, "\(count) remote jobs before the loop looked: one eventfd write")
            #expect(try runUntilHeld(loop) { ranOn.withLock { $0.count } == count })
            let threads = Set(ranOn.withLock { $0 })
            #expect(threads == [loopThread])
            #expect(enqueuedFrom.withLock { $0 } != loopThread)
            _ = h
        }
    }

    /// The same from inside `executor.run`: the body awaits a continuation that a task
    /// started from another thread resumes; the loop wakes for it (no polling loop).
    @Test(arguments: conformanceBackends)
    func runWaitsForWorkFromAnotherThread(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let loopThread = currentThreadID()
            let threadHolder = Locked<TestThread?>(nil)
            defer { threadHolder.value?.join() }
            let (bodyThread, jobThread, starterThread) = try runAsync(executor) {
                let bodyThread = currentThreadID()
                let starter = Locked<Int32>(0)
                let jobThread: Int32 = await withCheckedContinuation { continuation in
                    do {
                        let t = try TestThread {
                            starter.withLock { $0 = currentThreadID() }
                            usleep(20_000)   // the loop is blocked in the kernel by now
                            Task(executorPreference: executor) {
                                continuation.resume(returning: currentThreadID())
                            }
                        }
                        threadHolder.withLock { $0 = t }
                    } catch {
                        continuation.resume(returning: -1)
                    }
                }
                return (bodyThread, jobThread, starter.withLock { $0 })
            }
            #expect(bodyThread == loopThread)
            #expect(jobThread == loopThread)
            #expect(starterThread != loopThread && starterThread != 0)
        }
    }

    /// Tasks preferring the executor, their child tasks, and `withTaskExecutorPreference`
    /// bodies all run on the loop thread; `run(.untilDone)` stays up while a task is
    /// suspended on a loop operation (its timer is active) and returns once it is done.
    @Test(arguments: conformanceBackends)
    func untilDoneHoldsForAwaitedOperations(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let loopThread = currentThreadID()
            let log = Locked<[String]>([])
            let onLoop = Locked<Bool>(true)
            func note(_ s: String) {
                log.withLock { $0.append(s) }
                if currentThreadID() != loopThread { onLoop.withLock { $0 = false } }
            }
            loop.updateNow()
            let start = LoopInstant.now()
            Task(executorPreference: executor) {
                note("start")
                try await executor.sleep(for: .milliseconds(30))
                note("slept")
                await withTaskGroup(of: Void.self) { group in
                    for i in 0..<3 {
                        group.addTask {
                            try? await executor.sleep(for: .milliseconds(5 * i))
                            note("child")
                        }
                    }
                }
                await withTaskExecutorPreference(executor) { note("preference") }
                note("end")
            }
            #expect(log.withLock { $0.isEmpty }, "a task does not run inside Task.init")
            let drained = try runUntilDone(loop)
            #expect(drained)
            #expect(log.withLock { $0 } == ["start", "slept", "child", "child", "child", "preference", "end"])
            #expect(onLoop.withLock { $0 })
            #expect(LoopInstant.now() - start >= .milliseconds(30))
        }
    }

    /// A task suspended on something outside the loop does not hold `run(.untilDone)`
    /// (the wake-up poll is a background completion); it continues when the loop runs again.
    @Test(arguments: conformanceBackends)
    func untilDoneDoesNotWaitForOffLoopSuspensions(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let resumed = Locked<Bool>(false)
            let box = Locked<CheckedContinuation<Void, Never>?>(nil)
            Task(executorPreference: executor) {
                await withCheckedContinuation { c in box.withLock { $0 = c } }
                resumed.withLock { $0 = true }
            }
            let start = LoopInstant.now()
            #expect(try runUntilDone(loop, timeout: .seconds(5)))
            #expect(LoopInstant.now() - start < .seconds(2), "run(.untilDone) returned without waiting")
            #expect(box.withLock { $0 } != nil, "the task ran up to its suspension")
            #expect(!resumed.withLock { $0 })
            let thread = try TestThread { box.withLock { $0 }?.resume() }
            thread.join()
            #expect(try runUntilHeld(loop) { resumed.withLock { $0 } })
        }
    }

    /// An actor bound to the loop: loop callbacks mutate its state with `assumeIsolated`,
    /// tasks call it with `await`, and all of it runs on the loop thread.
    @Test(arguments: conformanceBackends)
    func actorBoundToLoop(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let counter = LoopCounter(executor: executor)
            let loopThread = currentThreadID()
            // A rearmed nop: a plain loop callback, ten times.
            var ticks = 0
            let nop = Completion(.nop) { _, _ in
                counter.assumeIsolated { $0.value += 1 }
                ticks += 1
                return ticks < 10 ? .rearm : .disarm
            }
            try loop.add(nop)
            #expect(try runUntil(loop) { ticks == 10 })
            #expect(counter.assumeIsolated { $0.value } == 10, "assumeIsolated from the loop thread, outside any task")

            let value = try runAsync(executor) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<20 {
                        group.addTask {
                            if i % 2 == 0 { await counter.increment() } else { try await counter.incrementAfter(.milliseconds(2)) }
                        }
                    }
                    try await group.waitForAll()
                }
                return await counter.value
            }
            #expect(value == 30)
            #expect(counter.assumeIsolated { $0.threads } == [loopThread])
            executor.checkIsolated()   // passes on the loop thread
        }
    }

    /// An actor bound to the loop, called from another thread: the call hops to the loop.
    @Test(arguments: conformanceBackends)
    func actorCalledFromAnotherThreadRunsOnLoop(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let counter = LoopCounter(executor: executor)
            let done = Locked<Int>(0)
            let thread = try TestThread {
                for _ in 0..<5 {
                    // The task's own code runs on the other thread's enqueue path; the actor
                    // method runs on the loop.
                    Task(executorPreference: executor) {
                        await counter.increment()
                        done.withLock { $0 += 1 }
                    }
                }
            }
            thread.join()
            #expect(try runUntilHeld(loop) { done.withLock { $0 } == 5 })
            #expect(counter.assumeIsolated { $0.value } == 5)
            #expect(counter.assumeIsolated { $0.threads } == [currentThreadID()])
        }
    }

    /// `cancelAll()` withdraws the executor's wake-up poll (so the loop can drain) and the
    /// executor re-arms it on its next use; a remote job enqueued meanwhile is not lost.
    @Test(arguments: conformanceBackends)
    func cancelAllParksAndResumes(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            #expect(executor.isWakeArmed)
            loop.cancelAll()
            #expect(try runUntilDone(loop))
            #expect(loop.activeCount == 0, "cancelAll + run(.untilDone) drains the loop, executor included")
            #expect(!executor.isWakeArmed)
            let ran = Locked<Bool>(false)
            let thread = try TestThread {
                Task(executorPreference: executor) { ran.withLock { $0 = true } }
            }
            thread.join()
            executor.resume()
            #expect(executor.isWakeArmed)
            #expect(try runUntilHeld(loop) { ran.withLock { $0 } })
        }
    }

    /// Jobs enqueued on the loop thread run in FIFO order, none inside the enqueue, and a
    /// task that keeps yielding does not starve loop callbacks.
    @Test(arguments: conformanceBackends)
    func localJobsAreFIFOAndFair(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let order = Locked<[Int]>([])
            for i in 0..<50 {
                Task(executorPreference: executor) { order.withLock { $0.append(i) } }
            }
            #expect(order.withLock { $0.isEmpty })
            #expect(try runUntil(loop) { order.withLock { $0.count } == 50 })
            #expect(order.withLock { $0 } == Array(0..<50))

            // A spinning task (yields forever until told to stop) and a timer callback: the
            // timer still fires on time.
            let stop = Locked<Bool>(false)
            let spins = Locked<Int>(0)
            Task(executorPreference: executor) {
                while !stop.withLock({ $0 }) {
                    spins.withLock { $0 += 1 }
                    await Task.yield()
                }
            }
            var fired = false
            let timer = Completion()
            try loop.timer(timer, after: .milliseconds(10)) { _, _ in
                fired = true
                stop.withLock { $0 = true }
                return .disarm
            }
            #expect(try runUntil(loop) { fired })
            #expect(try runUntilDone(loop))
            #expect(spins.withLock { $0 } > 0)
        }
    }

    /// `run(_:)` from inside the loop (here: a task on the executor) throws `.nestedRun`
    /// and adds nothing; the outer run goes on.
    @Test(arguments: conformanceBackends)
    func nestedRunIsRefused(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let outcome = try runAsync(executor) { () async -> String in
                do {
                    _ = try executor.run { 1 }
                    return "ran"
                } catch let e as EvError {
                    return "\(e == .nestedRun)"
                } catch {
                    return "\(error)"
                }
            }
            #expect(outcome == "true")
            #expect(loop.activeCount == 1, "only the executor's wake-up poll")
        }
    }

    /// `shutdown()` called by a job that arrived from another thread (so inside the wake-up
    /// poll's own callback) closes the eventfd once and leaves nothing active.
    @Test(arguments: conformanceBackends)
    func shutdownFromARemoteJob(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let executor = try LoopExecutor(loop)
        let thread = try TestThread {
            Task(executorPreference: executor) { executor.shutdown() }
        }
        thread.join()
        let closed = try runUntilHeld(loop) { executor.isClosed }
        #expect(closed)
        #expect(try runUntilDone(loop))
        #expect(loop.activeCount == 0)
    }

    /// Shutdown closes the eventfd through the loop and leaves nothing active.
    @Test(arguments: conformanceBackends)
    func shutdownLeavesNothingBehind(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let executor = try LoopExecutor(loop)
        #expect(loop.activeCount == 1, "the background wake-up poll")
        #expect(try runUntilDone(loop, timeout: .seconds(1)), "the wake-up poll does not hold run(.untilDone)")
        executor.shutdown()
        #expect(try runUntilDone(loop))
        #expect(executor.isClosed)
        #expect(loop.activeCount == 0)
        // After the close, a job from another thread is not announced through the closed
        // descriptor number (which the kernel may have given to another test by now).
        let writes = executor.remoteWakeWrites
        let thread = try TestThread { Task(executorPreference: executor) {} }
        thread.join()
        #expect(executor.remoteWakeWrites == writes)
        // That task can never run now: it stays queued (`shutdown()` documents it), and
        // holds the executor, which holds the loop. Kept reachable on purpose, so that
        // LeakSanitizer does not report it (docs/TESTING.md, "Sanitizers").
        KeptAlive.keep(executor)
    }
}

/// What a test leaves alive on purpose until the process exits (a task scheduled on an
/// executor after its shutdown, which can never run): reachable from this global, so
/// LeakSanitizer does not count it, and named here instead of hidden by a suppression.
enum KeptAlive {
    private static let objects = Mutex<[any AnyObject & Sendable]>([])
    static func keep(_ object: any AnyObject & Sendable) { objects.withLock { $0.append(object) } }
}

@Suite("Conformance: async executor, outside the loop")
struct AsyncOffLoopTests {
    /// `Task.sleep` waits on the global executor's timer, not on the loop's: the task still
    /// resumes on the loop thread (its preference), but through the cross-thread path
    /// (an eventfd write), which docs/ASYNC.md describes.
    @Test(arguments: conformanceBackends)
    func taskSleepResumesThroughTheRemotePath(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let thread = Locked<Int32>(0)
            let writesBefore = executor.remoteWakeWrites
            Task(executorPreference: executor) {
                try? await Task.sleep(for: .milliseconds(5))
                thread.withLock { $0 = currentThreadID() }
            }
            let resumed = try runUntilHeld(loop) { thread.value != 0 }
            #expect(resumed)
            #expect(thread.value == currentThreadID())
            #expect(executor.remoteWakeWrites > writesBefore)
        }
    }
}
