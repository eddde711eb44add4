// Watchers: Async (eventfd notifier) and the cross-thread stop built on it (PITFALLS G1,
// G2, D2). Every test runs on every backend.
import Testing
import Ev
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@Suite("Watcher: Async")
struct WatcherAsyncTests {

    /// Notifications made before the wait is armed are not lost, and several of them
    /// coalesce into one callback; a later notification gives another callback.
    @Test(arguments: conformanceBackends)
    func notifyBeforeWaitCoalesces(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let async = try Async()
        async.notify()
        async.notifier.notify()
        async.notify()

        var callbacks = 0
        let c = Completion()
        try async.wait(loop: loop, completion: c) { _, result in
            guard case .success = result else { return .disarm }
            callbacks += 1
            return .rearm
        }
        #expect(try runUntil(loop) { callbacks == 1 })
        // Coalesced: nothing more arrives for the three early notifications.
        try runFor(loop, .milliseconds(30))
        #expect(callbacks == 1)
        // A notification after the callback produces another one.
        async.notify()
        #expect(try runUntil(loop) { callbacks == 2 })
        try runFor(loop, .milliseconds(10))
        #expect(callbacks == 2)
    }

    /// 4 threads × 100,000 notify() while the loop consumes: callbacks are between 1 and
    /// the number of notifications, and the last notification is always followed by a
    /// callback that sees it (the sequence number is read inside the callback, after the
    /// eventfd was reset, so it covers every notify that came before the reset).
    @Test(arguments: conformanceBackends)
    func manyThreadsNoLostWakeUp(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let async = try Async()
        let notifier = async.notifier
        let threads = 4, perThread = 100_000
        let total = threads * perThread
        let sequence = Atomic<Int>(0)
        let finished = Atomic<Int>(0)

        var callbacks = 0
        var lastSeen = 0
        let c = Completion()
        try async.wait(loop: loop, completion: c) { _, result in
            guard case .success = result else { return .disarm }
            callbacks += 1
            lastSeen = sequence.load(ordering: .sequentiallyConsistent)
            return .rearm
        }

        var workers: [TestThread] = []
        for _ in 0..<threads {
            workers.append(try TestThread {
                for _ in 0..<perThread {
                    sequence.add(1, ordering: .sequentiallyConsistent)
                    notifier.notify()
                }
                finished.add(1, ordering: .sequentiallyConsistent)
            })
        }
        // Only callbacks end a blocking tick, so the condition is one a callback makes
        // true: a callback has seen the final count (the threads' last step, counting
        // themselves finished, wakes nobody).
        let done = try runUntil(loop, timeout: .seconds(30)) { lastSeen == total }
        for w in workers { w.join() }
        #expect(finished.load(ordering: .sequentiallyConsistent) == threads)
        #expect(done, "last notification not followed by a callback: saw \(lastSeen) of \(total)")
        #expect(callbacks >= 1 && callbacks <= total)
        // A notify that landed after the callback that saw the final count was already
        // running may still give one more callback (correctly: it came after that
        // callback began). Once that has run, nothing more arrives without a new notify.
        try runFor(loop, .milliseconds(20))
        let before = callbacks
        try runFor(loop, .milliseconds(20))
        #expect(callbacks == before)
    }

    /// A spurious wake-up (the poll fires but another reader already emptied the
    /// eventfd) re-arms the wait silently instead of reporting a notification
    /// (PITFALLS D2): two waiters on one notifier both wake for one notify, and exactly
    /// one of them reports it.
    @Test(arguments: conformanceBackends)
    func spuriousWakeUpIsNotReported(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let first = try Async()
        let second = Async(notifier: first.notifier)
        var callbacks = [0, 0]
        let c0 = Completion(), c1 = Completion()
        try first.wait(loop: loop, completion: c0) { _, result in
            guard case .success = result else { return .disarm }
            callbacks[0] += 1
            return .rearm
        }
        try second.wait(loop: loop, completion: c1) { _, result in
            guard case .success = result else { return .disarm }
            callbacks[1] += 1
            return .rearm
        }
        first.notify()
        #expect(try runUntil(loop) { callbacks[0] + callbacks[1] == 1 })
        try runFor(loop, .milliseconds(30))
        #expect(callbacks[0] + callbacks[1] == 1, "one notification reported \(callbacks) times")
        first.notify()
        #expect(try runUntil(loop) { callbacks[0] + callbacks[1] == 2 })
        try runFor(loop, .milliseconds(10))
        #expect(callbacks[0] + callbacks[1] == 2)
        #expect(c0.state == .active && c1.state == .active)
    }

    /// Another thread stops a loop blocked in accept (no timers armed): run returns within
    /// 50 ms of the request (PITFALLS G2, libxev#173), the accept stays active and can be
    /// cancelled by a later run (J3).
    @Test(arguments: conformanceBackends)
    func crossThreadStopWhileBlockedInAccept(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let listener = try TCPSocket(family: AF_INET, loop: loop)
        h.own(listener.fd)
        try listener.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
        try listener.listen(backlog: 8)
        let accepting = Completion()
        var acceptResult: Result<TCPSocket, EvError>?
        try listener.accept(loop: loop, completion: accepting) { _, r in acceptResult = r; return .disarm }

        let stopper = try LoopStopper(loop: loop)
        let requester = stopper.requester
        let requestedAt = Atomic<UInt64>(0)
        let thread = try TestThread {
            usleep(100_000)
            requestedAt.store(LoopInstant.now().nanoseconds, ordering: .sequentiallyConsistent)
            requester.requestStop()
        }
        try loop.run(.untilDone)   // blocks in the kernel: only the stopper can end it
        let returnedAt = LoopInstant.now().nanoseconds
        thread.join()
        let requested = requestedAt.load(ordering: .sequentiallyConsistent)
        #expect(requested > 0, "run returned before the stop was requested")
        let latencyMs = Double(returnedAt &- requested) / 1_000_000
        #expect(latencyMs < 50, "run returned \(latencyMs) ms after the stop request")
        #expect(stopper.stops == 1)
        #expect(accepting.state == .active && acceptResult == nil)

        // The stopper stays armed: a second request stops the next run too.
        requester.requestStop()
        try loop.run(.untilDone)
        #expect(stopper.stops == 2)
        #expect(accepting.state == .active)
    }

    /// The same watcher code compiles and works on a concrete backend type (generic code
    /// specialized for it) and on the runtime-chosen `LoopCore`.
    @Test func worksOnConcreteAndRuntimeLoops() throws {
        func roundTrip<L: EventLoop>(_ loop: L) throws -> Int {
            let async = try Async()
            var callbacks = 0
            let c = Completion()
            try async.wait(loop: loop, completion: c) { _, result in
                if case .success = result { callbacks += 1 }
                return .disarm
            }
            let notifier = async.notifier
            let t = try TestThread { notifier.notify() }
            try loop.run(.untilDone)
            t.join()
            return callbacks
        }
        let epoll = try EpollLoop()
        #expect(try roundTrip(epoll) == 1)
        let poll = try PollLoop()
        #expect(try roundTrip(poll) == 1)
        if let uring = try? UringLoop() {   // where io_uring is available
            #expect(try roundTrip(uring) == 1)
        }
        for backend in conformanceBackends {
            let loop = try makeTestLoop(backend)
            #expect(try roundTrip(loop) == 1)
        }
    }
}
