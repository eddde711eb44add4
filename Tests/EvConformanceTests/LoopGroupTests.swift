// Services: LoopGroup (N loops on N threads, started and stopped together) and
// ReusePortSockets (one SO_REUSEPORT listener per loop). Every test runs on every backend;
// the ones that count threads or descriptors run in a child process (ProcessIsolation).
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An error a test's set-up throws on purpose.
private struct PlannedFailure: Error, Equatable {
    var index: Int
}

/// What the loops of a group saw, gathered across their threads.
private final class GroupLog: Sendable {
    let setUpThreads = Locked<[Int: Int32]>([:])
    let stopped = Locked<[Int]>([])
    let finished = Locked<[Int: Int]>([:])   // index -> activeCount when the finish handler ran
    let timerResults = Locked<[Int: [String]]>([:])
    let waitResults = Locked<[Int: [String]]>([:])

    func note(timer index: Int, _ result: CompletionResult) {
        let text: String
        switch result {
        case .timer(.success): text = "fired"
        case _ where result.isCanceled: text = "canceled"
        default: text = "\(result)"
        }
        timerResults.withLock { $0[index, default: []].append(text) }
    }
}

@Suite("Services: LoopGroup and ReusePortSockets")
struct LoopGroupTests {

    /// A group of three loops, stopped from another thread: `start` returns once every
    /// set-up ran (each on a thread of its own, none the caller's); `stop()` wakes every
    /// loop out of its kernel wait; each runs its stop handler (or, without one, cancels
    /// what it has in flight), is drained (background work the handler left included) and
    /// runs its finish handler with nothing active;
    /// `join()` returns once every thread has finished, and again with the same outcome.
    @Test(arguments: conformanceBackends)
    func stopFromAnotherThreadAndJoin(backend: Backend) throws {
        _ = try makeTestLoop(backend)   // skips the backend where it cannot run
        let group = try LoopGroup(loops: 3, backend: backend)
        let log = GroupLog()
        let caller = currentThreadID()
        try group.start { member in
            let i = member.index
            log.setUpThreads.withLock { $0[i] = currentThreadID() }
            #expect(currentThreadName() == "ev-loop-\(i)")
            // A timer far away: only the stop can end it.
            let timer = Completion()
            try member.loop.timer(timer, after: .seconds(3600)) { _, result in
                log.note(timer: i, result)
                return .disarm
            }
            // Background work (it does not hold the loop open): the stop handler below
            // leaves it alone, so the group's drain must cancel it. On io_uring its
            // cancellation arrives after `run(.untilDone)` has returned.
            let async = try Async()
            let wait = Completion()
            wait.keepsLoopAlive = false
            try async.wait(loop: member.loop, completion: wait) { _, result in
                log.waitResults.withLock { $0[i, default: []].append(result.errorValue == .canceled ? "canceled" : "\(result)") }
                return .disarm
            }
            if i == 0 {
                // A graceful stop handler: it ends the loop's work itself.
                member.onStop {
                    log.stopped.withLock { $0.append(i) }
                    try? member.loop.cancel(timer, using: Completion())
                }
            }
            member.onFinish { log.finished.withLock { $0[i] = member.loop.activeCount } }
        }
        let threads = log.setUpThreads.value
        #expect(threads.count == 3, "start returned before every set-up ran")
        #expect(Set(threads.values).count == 3 && !threads.values.contains(caller))
        #expect(!group.isStopRequested)

        let requestedAt = Atomic<UInt64>(0)
        let stopper = try TestThread {
            usleep(50_000)
            requestedAt.store(LoopInstant.now().nanoseconds, ordering: .sequentiallyConsistent)
            group.stop()
        }
        try group.join()
        let joinedAt = LoopInstant.now().nanoseconds
        stopper.join()
        #expect(group.isStopRequested)
        let latencyMs = Double(joinedAt &- requestedAt.load(ordering: .sequentiallyConsistent)) / 1_000_000
        #expect(latencyMs < 1000, "join returned \(latencyMs) ms after the stop")
        #expect(log.stopped.value == [0])
        #expect(log.finished.value == [0: 0, 1: 0, 2: 0], "a loop was not drained before its finish handler")
        #expect(log.timerResults.value == [0: ["canceled"], 1: ["canceled"], 2: ["canceled"]])
        #expect(log.waitResults.value == [0: ["canceled"], 1: ["canceled"], 2: ["canceled"]])
        // Joining again is harmless and reports the same (nothing).
        try group.join()
        #expect(throws: LoopGroupError.self) { try group.start() }
    }

    /// A stop requested before `start` is not lost: the loops stop right after their
    /// set-up. A loop of the group can stop the whole group from one of its callbacks.
    @Test(arguments: conformanceBackends)
    func stopBeforeStartAndFromALoop(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        let early = try LoopGroup(loops: 2, backend: backend)
        let finishedEarly = Locked(0)
        early.stop()
        try early.start { member in member.onFinish { finishedEarly.withLock { $0 += 1 } } }
        // A watchdog: if the early stop was lost, the loops would run for ever; it stops
        // them again after 5 s, so the test fails instead of hanging.
        let joined = Atomic<Bool>(false)
        let lost = Atomic<Bool>(false)
        let watchdog = try TestThread {
            let deadline = LoopInstant.now() + .seconds(5)
            while !joined.load(ordering: .acquiring) && LoopInstant.now() < deadline { usleep(1000) }
            if !joined.load(ordering: .acquiring) {
                lost.store(true, ordering: .releasing)
                early.stop()
            }
        }
        try early.join()
        joined.store(true, ordering: .releasing)
        watchdog.join()
        let stopWasLost = lost.load(ordering: .acquiring)
        #expect(!stopWasLost, "a stop requested before start was lost")
        #expect(finishedEarly.value == 2)

        let group = try LoopGroup(loops: 2, backend: backend)
        let log = GroupLog()
        try group.start { member in
            let i = member.index
            let timer = Completion()
            // Loop 1 stops the group from a timer callback on its own thread.
            try member.loop.timer(timer, after: i == 1 ? .milliseconds(20) : .seconds(3600)) { _, result in
                log.note(timer: i, result)
                if case .timer(.success) = result { member.group.stop() }
                return .disarm
            }
            member.onFinish { log.finished.withLock { $0[i] = member.loop.activeCount } }
        }
        try group.join()
        #expect(log.timerResults.value[1] == ["fired"])
        #expect(log.timerResults.value[0] == ["canceled"])
        #expect(log.finished.value == [0: 0, 1: 0])
    }

    /// A set-up that throws (after arming work) and a factory that throws are reported by
    /// `start`, each with its loop and stage, after every loop was stopped, drained (the
    /// work the failing set-up armed calls back once, cancelled) and joined; nothing is lost.
    @Test(arguments: conformanceBackends)
    func setUpAndFactoryErrorsAreReported(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        let log = GroupLog()
        let group = try LoopGroup(loops: 4) { index in
            if index == 3 { throw PlannedFailure(index: 3) }
            return try makeLoop(backend)
        }
        var thrown: LoopGroupError?
        do {
            try group.start { member in
                let i = member.index
                let timer = Completion()
                try member.loop.timer(timer, after: .seconds(3600)) { _, result in
                    log.note(timer: i, result)
                    return .disarm
                }
                member.onStop { log.stopped.withLock { $0.append(i) } ; member.loop.cancelAll() }
                member.onFinish { log.finished.withLock { $0[i] = member.loop.activeCount } }
                if i == 1 { throw PlannedFailure(index: 1) }
            }
        } catch {
            thrown = error
        }
        guard case .loopsFailed(let failures)? = thrown else {
            Issue.record("start did not report the failures: \(String(describing: thrown))")
            return
        }
        #expect(failures.map(\.index) == [1, 3])
        #expect(failures.map(\.stage) == [.setUp, .makeLoop])
        #expect(failures.map { $0.error as? PlannedFailure } == [PlannedFailure(index: 1), PlannedFailure(index: 3)])
        // Every loop that was made has drained and finished; the failed set-up's stop
        // handler did not run (its set-up never completed), the others' did.
        #expect(log.finished.value == [0: 0, 1: 0, 2: 0])
        #expect(log.stopped.value.sorted() == [0, 2])
        #expect(log.timerResults.value == [0: ["canceled"], 1: ["canceled"], 2: ["canceled"]])
        try group.join()   // finished already: returns at once
    }

    /// Bad input gets a typed error and creates nothing: zero or negative loops (the core
    /// type and both `Ev` conveniences), `join` before `start`, `start` twice, zero
    /// reuse-port sockets.
    @Test(arguments: conformanceBackends)
    func badInputIsATypedError(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        for n in [0, -1] {
            #expect(throws: LoopGroupError.self) { _ = try LoopGroup(loops: n, backend: backend) }
            do {
                _ = try makeBestLoopGroup(loops: n, backend: backend)
                Issue.record("makeBestLoopGroup accepted \(n) loops")
            } catch {
                guard case .invalidLoopCount(n) = error else { Issue.record("\(error)"); continue }
            }
        }
        do {
            _ = try LoopGroup<EpollLoop>(loops: 0) { _ in try EpollLoop() }
            Issue.record("a group of zero loops was made")
        } catch {
            #expect(error.description.contains("at least one loop"))
        }
        let group = try LoopGroup(loops: 1, backend: backend)
        do {
            try group.join()
            Issue.record("join before start did not throw")
        } catch {
            guard case .notStarted = error else { Issue.record("\(error)"); return }
        }
        try group.start()
        do {
            try group.start()
            Issue.record("a second start did not throw")
        } catch {
            guard case .alreadyStarted = error else { Issue.record("\(error)"); return }
        }
        group.stop()
        try group.join()
        #expect(throws: EvError.invalidArgument) {
            _ = try ReusePortSockets.listeners(count: 0, address: SocketAddress(ipv4: "127.0.0.1", port: 0))
        }
    }

    /// The `Ev` convenience picks the requested backend (and reports it), and the core type
    /// runs on a concrete loop type given by a factory, as a one-backend program would.
    @Test(arguments: conformanceBackends)
    func conveniencesChooseTheBackend(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        let (group, selection) = try makeBestLoopGroup(loops: 2, backend: backend)
        #expect(selection.backend == backend && selection.forced)
        let seen = Locked<[Backend]>([])
        try group.start { member in seen.withLock { $0.append(member.loop.backend) } }
        group.stop()
        try group.join()
        #expect(seen.value == [backend, backend])

        let epollGroup = try LoopGroup(loops: 2) { _ in try EpollLoop() }
        let ran = Locked(0)
        try epollGroup.start { member in
            let c = Completion()
            try member.loop.timer(c, after: .milliseconds(1)) { _, _ in ran.withLock { $0 += 1 }; return .disarm }
        }
        epollGroup.stop()
        try epollGroup.join()
        #expect(ran.value == 2)
    }

    /// One SO_REUSEPORT listener per loop: every loop gets its own socket, in the blocking
    /// mode its loop prefers, and the kernel spreads connections so that every loop
    /// accepts some; every connection made is accepted exactly once.
    @Test(arguments: conformanceBackends)
    func reusePortListenersAllAccept(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        let loops = 3
        let group = try LoopGroup(loops: loops, backend: backend)
        let listeners = try group.makeReusePortListeners(address: SocketAddress(ipv4: "127.0.0.1", port: 0))
        defer { listeners.closeAll() }
        #expect(listeners.count == loops && listeners.address.port != 0)
        #expect(Set(listeners.sockets.map { Sock.localAddress($0.fd)?.port }) == [listeners.address.port])
        let accepted = Locked<[Int]>(Array(repeating: 0, count: loops))
        let modeMatches = Locked<[Bool]>([])
        try group.start { member in
            let listener = try listeners.socket(member.index, preparedFor: member.loop)
            modeMatches.withLock { $0.append(Sock.isNonBlocking(listener.fd) == !member.loop.prefersBlockingDescriptors) }
            let accepting = Completion()
            let i = member.index
            try listener.accept(loop: member.loop, completion: accepting) { _, result in
                guard case .success(let client) = result else { return .disarm }
                accepted.withLock { $0[i] += 1 }
                close(client.fd)
                return .rearm
            }
            member.onStop { try? member.loop.cancel(accepting, using: Completion()) }
        }
        var made = 0
        while made < 600 && (accepted.value.contains(0) || made < 2 * loops) {
            let fd = try Sock.tcp()
            let r = listeners.address.withSockAddr { connect(fd, $0, $1) }
            let e = cevsys_errno()
            close(fd)
            guard r == 0 else { throw SysCallError("connect", errno: e) }
            made += 1
            // Wait until it has been accepted, so the count below is exact.
            let deadline = LoopInstant.now() + .seconds(5)
            while accepted.value.reduce(0, +) < made && LoopInstant.now() < deadline { usleep(200) }
        }
        group.stop()
        try group.join()
        #expect(modeMatches.value == Array(repeating: true, count: loops))
        #expect(accepted.value.reduce(0, +) == made, "accepted \(accepted.value) of \(made)")
        #expect(!accepted.value.contains(0), "a loop accepted nothing: \(accepted.value) after \(made) connections")
    }

    /// Starting, stopping and joining groups (one with a failing set-up among them) leaves
    /// no thread and no descriptor behind. Thread and descriptor counts are process-wide, so
    /// this runs in a child process of its own.
    @Test(arguments: conformanceBackends)
    func groupsLeaveNoThreadsOrDescriptors(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            _ = try makeTestLoop(backend)
            func cycle(_ round: Int) throws {
                let group = try LoopGroup(loops: 4, backend: backend)
                do {
                    try group.start { member in
                        let c = Completion()
                        try member.loop.timer(c, after: .seconds(3600)) { _, _ in .disarm }
                        if round % 4 == 3 && member.index == 2 { throw PlannedFailure(index: 2) }
                    }
                } catch LoopGroupError.loopsFailed(let failures) {
                    #expect(round % 4 == 3 && failures.count == 1)
                    return
                }
                group.stop()
                try group.join()
            }
            // Threads are counted before anything ran: every thread of a group must be gone
            // when its `join` returns. Descriptors after one round, so that lazily created
            // process-wide state does not count.
            let threads = Pitfall.threadCount()
            try cycle(0)
            let fds = Fds.count()
            for round in 1...20 { try cycle(round) }
            let threadsAfter = Pitfall.threadCount()
            // The test runner's own threads may come and go; a leak would be 4 per round.
            #expect(threadsAfter <= threads + 2, "threads: \(threads) before, \(threadsAfter) after 20 groups")
            #expect(Fds.count() == fds, "descriptors: \(fds) before, \(Fds.count()) after 20 groups")
        }
    }
}
