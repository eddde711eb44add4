// Conformance: EvAsync's channels. `LoopChannel` between tasks on one loop (capacity,
// FIFO order, close, cancellation of suspended waiters, a long run through a capacity-1
// channel) and `LoopInbox` from other threads to the loop's tasks (many producers, close,
// cancellation, loop cancellation). Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: channels")
struct ChannelTests {

    /// A sender suspends once `capacity` elements wait, and resumes when a receiver takes
    /// one; `trySend` refuses while full.
    @Test(arguments: conformanceBackends)
    func capacityIsRespected(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let log = Locked<[String]>([])
            @Sendable func note(_ s: String) { log.withLock { $0.append(s) } }
            try runAsync(executor) {
                let channel = LoopChannel<Int>(capacity: 2, on: executor)
                #expect(channel.capacity == 2)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for i in 0..<4 {
                            try await channel.send(i)
                            note("sent \(i)")
                        }
                    }
                    // `yield()` lets every runnable job run first: the sender runs until it
                    // suspends on the full channel.
                    await executor.yield()
                    note("count \(channel.count)")
                    note("trySend \(try channel.trySend(99))")
                    for _ in 0..<4 {
                        note("received \(try await channel.receive() ?? -1)")
                        await executor.yield()
                        note("count \(channel.count)")
                    }
                    try await group.waitForAll()
                }
                channel.close()
                note("after close \(try await channel.receive() ?? -1)")
            }
            #expect(log.value == [
                "sent 0", "sent 1", "count 2", "trySend false",
                "received 0", "sent 2", "count 2",
                "received 1", "sent 3", "count 2",
                "received 2", "count 1",
                "received 3", "count 0",
                "after close -1",
            ])
        }
    }

    /// Elements come out in the order they went in: buffered ones first, then those of the
    /// suspended senders in the order the senders suspended; `trySend` hands an element
    /// straight to a waiting receiver.
    @Test(arguments: conformanceBackends)
    func fifoOrderThroughBufferAndWaitingSenders(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let (received, handedOver) = try runAsync(executor) {
                let channel = LoopChannel<String>(capacity: 2, on: executor)
                try await channel.send("b0")
                try await channel.send("b1")
                return try await withThrowingTaskGroup(of: Void.self) { group in
                    for name in ["A", "B", "C"] {
                        group.addTask { try await channel.send(name) }
                        await executor.yield()   // each suspends before the next starts
                    }
                    var received: [String] = []
                    for _ in 0..<5 { received.append(try await channel.receive() ?? "nil") }
                    try await group.waitForAll()
                    // A receiver waiting on the empty channel gets what `trySend` offers.
                    group.addTask {
                        let got = try await channel.receive()
                        #expect(got == "direct")
                    }
                    await executor.yield()
                    let handedOver = try channel.trySend("direct") && channel.count == 0
                    try await group.waitForAll()
                    return (received, handedOver)
                }
            }
            #expect(received == ["b0", "b1", "A", "B", "C"])
            #expect(handedOver)
        }
    }

    /// `tryReceive()` takes a buffered element without waiting (and lets a waiting sender's
    /// element take its place), returns nil on an empty channel, and works in a cancelled
    /// task, where `receive()` throws: the way to close what is left after a shutdown.
    @Test(arguments: conformanceBackends)
    func tryReceiveTakesWithoutWaiting(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let log = try runAsync(executor) { () async throws -> [String] in
                let channel = LoopChannel<Int>(capacity: 2, on: executor)
                var log = ["empty \(channel.tryReceive() ?? -1)"]
                try await channel.send(1)
                try await channel.send(2)
                let sender = outcomeTask(executor) {
                    try await channel.send(3)
                    return "sender resumed"
                }
                await executor.yield()
                log.append("took \(channel.tryReceive() ?? -1), count \(channel.count)")
                log.append(await value(of: sender, on: executor) ?? "sender still waiting")
                let drainer = Task(executorPreference: executor) { () async -> [String] in
                    withUnsafeCurrentTask { $0?.cancel() }
                    var log: [String] = []
                    do { _ = try await channel.receive() } catch { log.append("receive: \(type(of: error))") }
                    while let element = channel.tryReceive() { log.append("drained \(element)") }
                    return log
                }
                log += await drainer.value
                channel.close()
                log.append("closed \(channel.tryReceive() ?? -1)")
                return log
            }
            #expect(log == ["empty -1", "took 1, count 2", "sender resumed", "receive: CancellationError",
                            "drained 2", "drained 3", "closed -1"])
        }
    }

    /// `close()` wakes every suspended sender (each throws `ChannelClosedError`) and every
    /// suspended receiver (each gets nil); the buffered element is still received, then nil;
    /// a send after the close throws at once.
    @Test(arguments: conformanceBackends)
    func closeWakesEveryWaiter(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let (senders, drained, lateSend, receivers) = try runAsync(executor) {
                let full = LoopChannel<Int>(capacity: 1, on: executor)
                try await full.send(0)
                let senders = try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 1...3 {
                        group.addTask {
                            do {
                                try await full.send(i)
                                return "sent"
                            } catch is ChannelClosedError {
                                return "closed"
                            }
                        }
                    }
                    await executor.yield()
                    full.close()
                    var outcomes: [String] = []
                    for try await outcome in group { outcomes.append(outcome) }
                    return outcomes
                }
                let drained = [try await full.receive(), try await full.receive()]
                var lateSend = "sent"
                do { try await full.send(9) } catch is ChannelClosedError { lateSend = "closed" }

                let empty = LoopChannel<Int>(capacity: 4, on: executor)
                let receivers = try await withThrowingTaskGroup(of: Int?.self) { group in
                    for _ in 0..<3 { group.addTask { try await empty.receive() } }
                    await executor.yield()
                    empty.close()
                    var outcomes: [Int?] = []
                    for try await outcome in group { outcomes.append(outcome) }
                    return outcomes
                }
                return (senders, drained, lateSend, receivers)
            }
            #expect(senders == ["closed", "closed", "closed"])
            #expect(drained == [0, nil])
            #expect(lateSend == "closed")
            #expect(receivers == [nil, nil, nil])
        }
    }

    /// Cancelling a suspended sender or receiver (from the loop thread and from another
    /// thread) removes it from its wait list and makes it throw `CancellationError`: the
    /// cancelled sender's element is never received, and a send after a receiver was
    /// cancelled goes into the buffer rather than to it. An already-cancelled task does not
    /// touch the channel.
    @Test(arguments: conformanceBackends)
    func cancellingASuspendedWaiter(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let outcomes = try runAsync(executor) { () async throws -> [String] in
                var outcomes: [String] = []
                for fromAnotherThread in [false, true] {
                    let channel = LoopChannel<Int>(capacity: 1, on: executor)
                    try await channel.send(1)
                    let sender = outcomeTask(executor) {
                        try await channel.send(2)
                        return "sent"
                    }
                    await executor.yield()
                    try await cancel(sender, fromAnotherThread: fromAnotherThread)
                    outcomes.append(await value(of: sender, on: executor) ?? "still waiting")
                    outcomes.append("count \(channel.count)")
                    _ = try await channel.receive()
                    outcomes.append("then trySend \(try channel.trySend(3))")   // room again: the 2 is gone
                    outcomes.append("then received \(try await channel.receive() ?? -1)")

                    let receiver = outcomeTask(executor) {
                        return "received \(try await channel.receive() ?? -1)"
                    }
                    await executor.yield()
                    try await cancel(receiver, fromAnotherThread: fromAnotherThread)
                    outcomes.append(await value(of: receiver, on: executor) ?? "still waiting")
                    outcomes.append("sent to nobody \(try channel.trySend(4)), count \(channel.count)")
                }
                let channel = LoopChannel<Int>(capacity: 1, on: executor)
                let early = Task(executorPreference: executor) { () async -> String in
                    withUnsafeCurrentTask { $0?.cancel() }
                    do {
                        try await channel.send(5)
                        return "sent"
                    } catch {
                        return "\(type(of: error))"
                    }
                }
                outcomes.append(await value(of: early, on: executor) ?? "still waiting")
                outcomes.append("count \(channel.count)")
                return outcomes
            }
            let round = ["CancellationError", "count 1", "then trySend true", "then received 3",
                         "CancellationError", "sent to nobody true, count 1"]
            #expect(outcomes == round + round + ["CancellationError", "count 0"])
        }
    }

    /// 10,000 elements through a capacity-1 channel, every one a hand-over between two
    /// tasks (each of which pauses now and then, so that both a waiting receiver and a
    /// waiting sender occur): all arrive, in order, and the iteration ends at the close.
    @Test(arguments: conformanceBackends)
    func tenThousandElementsThroughCapacityOne(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let baseline = loop.activeCount
            let elementCount = 10_000
            let received = try runAsync(executor, limit: .seconds(30)) {
                let channel = LoopChannel<Int>(capacity: 1, on: executor)
                return try await withThrowingTaskGroup(of: [Int].self) { group in
                    group.addTask {
                        for i in 0..<elementCount {
                            try await channel.send(i)
                            if i % 97 == 0 { await executor.yield() }   // now and then, the receiver waits
                        }
                        channel.close()
                        return []
                    }
                    group.addTask {
                        var received: [Int] = []
                        received.reserveCapacity(elementCount)
                        for await element in channel {
                            received.append(element)
                            if element % 89 == 0 { await executor.yield() }   // ... and the sender waits
                        }
                        return received
                    }
                    var all: [Int] = []
                    for try await part in group { all += part }
                    return all
                }
            }
            #expect(received == Array(0..<elementCount))
            #expect(loop.activeCount == baseline, "waiting on a channel holds no completion")
        }
    }

    // MARK: LoopInbox

    /// Four producer threads send 10,000 elements each into one inbox; two consumer tasks
    /// on the loop receive every element exactly once, each consumer seeing every
    /// producer's elements in the order they were sent; the close (from another thread,
    /// after the producers) ends both iterations.
    @Test(arguments: conformanceBackends)
    func inboxFromFourProducerThreads(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let inbox = try LoopInbox<Int>(on: executor)
            let producers = 4, perProducer = 10_000
            let baseline = loop.activeCount
            let parts = try runAsync(executor, limit: .seconds(60)) {
                try await withThrowingTaskGroup(of: [Int].self) { group in
                    for _ in 0..<2 {
                        group.addTask {
                            var got: [Int] = []
                            for try await element in inbox { got.append(element) }
                            return got
                        }
                    }
                    let closer = try TestThread {
                        var threads: [TestThread] = []
                        for p in 0..<producers {
                            if let t = try? TestThread({
                                for i in 0..<perProducer {
                                    try? inbox.send(p * perProducer + i)
                                    // Bursts with pauses: the consumers keep running dry
                                    // and waiting on the notifier.
                                    if i % 100 == 99 { usleep(200) }
                                }
                            }) {
                                threads.append(t)
                            }
                        }
                        for t in threads { t.join() }
                        inbox.close()
                    }
                    var parts: [[Int]] = []
                    for try await part in group { parts.append(part) }
                    closer.join()
                    return parts
                }
            }
            let all = parts.flatMap { $0 }
            #expect(all.count == producers * perProducer)
            #expect(Set(all).count == producers * perProducer, "no element twice")
            for part in parts {
                for p in 0..<producers {
                    let mine = part.filter { $0 / perProducer == p }
                    #expect(mine == mine.sorted(), "producer \(p)'s elements in order")
                }
            }
            #expect(throws: ChannelClosedError.self) { try inbox.send(0) }
            #expect(try runUntil(loop) { loop.activeCount == baseline })
        }
    }

    /// Receivers waiting on an empty inbox (one on the notifier, two behind it) get the
    /// elements sent from another thread in order, and nil once it is closed there; a
    /// receive after the close gets what is left, then nil.
    @Test(arguments: conformanceBackends)
    func inboxCloseWakesEveryReceiver(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let inbox = try LoopInbox<String>(on: executor)
            let (first, woken, after) = try runAsync(executor) {
                try await withThrowingTaskGroup(of: String?.self) { group in
                    for _ in 0..<3 { group.addTask { try await inbox.receive() } }
                    await executor.yield()
                    let sender = try TestThread {
                        try? inbox.send("one")
                        try? inbox.send("two")
                    }
                    var first: [String?] = []
                    for _ in 0..<2 { first.append(try await group.next() ?? "none") }
                    sender.join()
                    let closer = try TestThread {
                        try? inbox.send("left over")   // sent before the close: received after it
                        inbox.close()
                    }
                    var woken: [String?] = []
                    for try await outcome in group { woken.append(outcome) }
                    closer.join()
                    let after = [try await inbox.receive(), try await inbox.receive()]
                    return (first, woken, after)
                }
            }
            #expect(first == ["one", "two"])
            // Sent before the close, so received before the end.
            #expect(woken == ["left over"])
            #expect(after == [nil, nil])
        }
    }

    /// Cancelling receivers (one behind the one waiting on the notifier, then that one,
    /// from the loop thread and from another thread) makes them throw `CancellationError`,
    /// and nothing is lost: an element sent afterwards goes to the receiver still waiting.
    @Test(arguments: conformanceBackends)
    func inboxCancellationLosesNothing(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let inbox = try LoopInbox<Int>(on: executor)
            let baseline = loop.activeCount
            let outcomes = try runAsync(executor) { () async throws -> [String] in
                func receiver() -> Task<String, Never> {
                    outcomeTask(executor) {
                        return "received \(try await inbox.receive() ?? -1)"
                    }
                }
                var outcomes: [String] = []
                for fromAnotherThread in [false, true] {
                    let leader = receiver()
                    await executor.yield()
                    let follower = receiver()
                    let survivor = receiver()
                    await executor.yield()
                    try await cancel(follower, fromAnotherThread: fromAnotherThread)   // leaves the wait list
                    outcomes.append(await value(of: follower, on: executor) ?? "still waiting")
                    try await cancel(leader, fromAnotherThread: fromAnotherThread)     // hands the waiting on
                    outcomes.append(await value(of: leader, on: executor) ?? "still waiting")
                    let sender = try TestThread { try? inbox.send(7) }
                    sender.join()
                    outcomes.append(await value(of: survivor, on: executor) ?? "still waiting")
                }
                return outcomes
            }
            let round = ["CancellationError", "CancellationError", "received 7"]
            #expect(outcomes == round + round)
            #expect(try runUntil(loop) { loop.activeCount == baseline }, "the cancelled notifier wait left the loop")
        }
    }

    /// Loop cancellation (`cancelAll()`) reaches the receivers waiting on an inbox as
    /// `EvError.canceled`, and the loop drains.
    @Test(arguments: conformanceBackends)
    func inboxLoopCancellationIsAnEvError(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let inbox = try LoopInbox<Int>(on: executor)
            let outcomes = Locked<[String]>([])
            for _ in 0..<2 {
                Task(executorPreference: executor) {
                    do {
                        _ = try await inbox.receive()
                        outcomes.withLock { $0.append("received") }
                    } catch let error as EvError {
                        outcomes.withLock { $0.append("ev \(error == .canceled)") }
                    } catch {
                        outcomes.withLock { $0.append("other \(error)") }
                    }
                }
            }
            try loop.run(.noWait)   // both receivers start waiting
            loop.cancelAll()
            #expect(try runUntilDone(loop))
            #expect(outcomes.value == ["ev true", "ev true"])
            #expect(loop.activeCount == 0)
            executor.resume()
        }
    }
}

/// The value of `task`, or nil if it has not finished within `limit`: a waiter that a
/// broken channel never resumes fails the test instead of hanging it (an unstructured
/// task's value cannot be cancelled, so the wait is raced against a loop timer; the stuck
/// task is left behind, holding nothing of the loop's).
func value<T: Sendable>(of task: Task<T, Never>, within limit: Duration = .seconds(5),
                        on executor: LoopExecutor) async -> T? {
    let waiting = Locked<CheckedContinuation<T?, Never>?>(nil)
    let timer = Locked<Task<Void, Never>?>(nil)
    return await withCheckedContinuation { continuation in
        waiting.withLock { $0 = continuation }
        timer.withLock {
            $0 = Task(executorPreference: executor) {
                try? await executor.sleep(for: limit)
                waiting.withLock { $0.take() }?.resume(returning: nil)
            }
        }
        Task(executorPreference: executor) {
            let result = await task.value
            waiting.withLock { $0.take() }?.resume(returning: result)
            timer.value?.cancel()
        }
    }
}

/// A task on the loop that returns what `body` returns, or the name of the error's type
/// when it throws ("CancellationError", "ChannelClosedError").
func outcomeTask(_ executor: LoopExecutor, _ body: @escaping @Sendable () async throws -> String) -> Task<String, Never> {
    Task(executorPreference: executor) {
        do {
            return try await body()
        } catch {
            return "\(type(of: error))"
        }
    }
}

/// Cancels `task` from this (the loop) thread, or from a thread of its own.
func cancel<T: Sendable>(_ task: Task<T, Never>, fromAnotherThread: Bool) async throws {
    if fromAnotherThread {
        let canceller = try TestThread { task.cancel() }
        canceller.join()
    } else {
        task.cancel()
    }
}
