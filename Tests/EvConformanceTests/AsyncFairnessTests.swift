// Conformance: fairness on the loop thread. The opt-in reports of slow task jobs
// (`LoopExecutor.reportSlowJobs`) and slow callbacks (`LoopCore.reportSlowCallbacks`)
// name what held the thread and leave fast work alone; `executor.yield()` lets I/O run
// before the yielding task continues. Every test runs unchanged on every backend.
//
// The slow work here is a deliberate busy wait of 100 ms against a budget of 40 ms: far
// enough apart that a loaded machine (a fast job descheduled for a while) does not blur
// the difference, and the fast work is checked by name only.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the calling thread busy for `duration` (the monotonic clock, no sleeping).
func busyWait(_ duration: Duration) {
    let end = LoopInstant.now() + duration
    while LoopInstant.now() < end {}
}

@Suite("Conformance: fairness")
struct AsyncFairnessTests {

    /// Each job that computes for 100 ms is reported with its task's name, its duration
    /// and the await it went on to (a timer, a yield, a channel send that had to wait);
    /// the jobs of a task that only awaits are not; once the report is stopped, a slow
    /// job goes unreported.
    @Test(arguments: conformanceBackends)
    func slowJobIsReportedFastOneIsNot(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let reports = Locked<[SlowJob]>([])
            executor.reportSlowJobs(longerThan: .milliseconds(40)) { slow in reports.withLock { $0.append(slow) } }
            try runAsync(executor) {
                let channel = LoopChannel<Int>(capacity: 1, on: executor)
                let slow = Task(name: "slow one", executorPreference: executor) {
                    busyWait(.milliseconds(100))
                    try? await executor.sleep(for: .milliseconds(1))
                    busyWait(.milliseconds(100))
                    await executor.yield()
                    try? await channel.send(1)        // into the buffer: no suspension
                    busyWait(.milliseconds(100))
                    try? await channel.send(2)        // the channel is full: suspends
                }
                let fast = Task(name: "fast one", executorPreference: executor) {
                    for _ in 0..<20 { try? await executor.sleep(for: .milliseconds(1)) }
                }
                while channel.count == 0 { try await executor.sleep(for: .milliseconds(1)) }
                _ = try await channel.receive()
                _ = try await channel.receive()
                await slow.value
                await fast.value
            }
            executor.stopReportingSlowJobs()
            try runAsync(executor) {
                await Task(name: "unwatched", executorPreference: executor) {
                    busyWait(.milliseconds(100))
                }.value
            }
            let named = reports.value.filter { $0.taskName == "slow one" }
            #expect(named.map(\.suspendedIn) == ["timer", "LoopExecutor.yield()", "LoopChannel.send(_:)"])
            #expect(named.allSatisfy { $0.duration >= .milliseconds(100) && $0.budget == .milliseconds(40) })
            #expect(named.first.map { "\($0)".contains("task \"slow one\" held the loop thread") } == true)
            #expect(!reports.value.contains { $0.taskName == "fast one" })
            #expect(!reports.value.contains { $0.taskName == "unwatched" }, "nothing is reported once stopped")
        }
    }

    /// A callback that computes for 100 ms is reported with its completion and operation
    /// kind; a fast timer callback is not; once stopped, nothing is reported.
    @Test(arguments: conformanceBackends)
    func slowCallbackIsReportedFastOneIsNot(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var reports: [SlowCallback] = []
        loop.reportSlowCallbacks(longerThan: .milliseconds(40)) { reports.append($0) }
        var done = 0
        let slow = Completion(.nop) { _, _ in
            busyWait(.milliseconds(100))
            done += 1
            return .disarm
        }
        let fast = Completion()
        try loop.add(slow)
        try loop.timer(fast, after: .milliseconds(1)) { _, _ in
            done += 1
            return .disarm
        }
        #expect(try runUntil(loop) { done == 2 })
        #expect(reports.count == 1)
        #expect(reports.first?.completion === slow)
        #expect(reports.first?.operation == .nop)
        #expect((reports.first?.duration ?? .zero) >= .milliseconds(100))
        #expect(!reports.contains { $0.completion === fast })

        loop.stopReportingSlowCallbacks()
        try loop.add(slow)
        #expect(try runUntil(loop) { done == 3 })
        #expect(reports.count == 1, "nothing is reported once stopped")
    }

    /// `yield()` resumes the task only after the loop has polled for I/O and run what it
    /// found: a read whose data is already waiting completes during the first yield of a
    /// task that was started after it. (`Task.yield()` would run the whole loop of yields
    /// before the loop polls.)
    @Test(arguments: conformanceBackends)
    func yieldLetsPendingIOCompleteFirst(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            try Sock.put(b, "ready")
            let yields = try runAsync(executor) { () async throws -> Int in
                let readDone = Locked<Bool>(false)
                let reader = Task(executorPreference: executor) {
                    let buffer = TestBuffer(16)
                    _ = try await socket.read(into: buffer.raw, on: executor)
                    readDone.withLock { $0 = true }
                }
                let spinner = Task(executorPreference: executor) { () async -> Int in
                    var yields = 0
                    while !readDone.value && yields < 100 {
                        await executor.yield()
                        yields += 1
                    }
                    return yields
                }
                let yields = await spinner.value
                try await reader.value
                return yields
            }
            #expect(yields == 1, "the read completed during the first yield")
        }
    }

    /// A task that computes in slices with `yield()` between them lets a concurrent read
    /// (its data sent by another thread while the task works) complete in between: within
    /// a few slices of the data's arrival, long before the work is over, and the task sees
    /// it done at the end of that slice.
    @Test(arguments: conformanceBackends)
    func longWorkWithYieldsLetsIOThrough(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            let slices = Locked<Int>(0)
            let slicesAtRead = Locked<Int>(-1)
            let slicesAtSend = Locked<Int>(-1)
            let (total, seenAfter) = try runAsync(executor) { () async throws -> (Int, Int) in
                let reader = Task(executorPreference: executor) {
                    let buffer = TestBuffer(16)
                    _ = try await socket.read(into: buffer.raw, on: executor)
                    slicesAtRead.withLock { $0 = slices.value }
                }
                let writer = try TestThread {
                    usleep(20_000)
                    try? Sock.put(b, "data")
                    slicesAtSend.withLock { $0 = slices.value }
                }
                defer { writer.join() }
                // At most 3 s of work in 1 ms slices; stop two slices after the read is seen.
                var seenAt = -1
                for slice in 1...3000 {
                    busyWait(.milliseconds(1))
                    slices.withLock { $0 = slice }
                    await executor.yield()
                    if slicesAtRead.value >= 0 && seenAt < 0 { seenAt = slice }
                    if seenAt >= 0 && slice >= seenAt + 2 { break }
                }
                try await reader.value
                return (slices.value, seenAt - slicesAtRead.value)
            }
            // In slices, not in time: on a loaded machine 20 ms may be only a few slices.
            #expect(slicesAtSend.value >= 1, "the task was working while the data came")
            #expect(total < 3000, "the read completed while the task was still working")
            #expect(seenAfter >= 0 && seenAfter <= 1, "the read completed during a yield")
            // Counted in slices, not in time, so that a slow machine cannot blur it: with
            // `Task.yield()` the loop would poll only every few hundred slices.
            #expect(slicesAtRead.value - slicesAtSend.value <= 3,
                    "the read completed within a few slices of the data's arrival (\(slicesAtSend.value) -> \(slicesAtRead.value))")
        }
    }
}
