// Conformance: run modes, re-entrancy, stop (DESIGN invariants 2 and 8; PITFALLS B8, J3).
// Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: run modes")
struct RunModeTests {

    /// `.noWait` delivers what is already finished (a nop) and returns at once, even with
    /// a far timer and an idle read pending.
    @Test(arguments: conformanceBackends)
    func noWaitReturnsWithoutBlocking(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(16)
        var events: [String] = []
        let far = Completion()
        try loop.timer(far, after: .seconds(10)) { _, _ in events.append("timer"); return .disarm }
        let read = Completion(.read(fd: a, buffer: buf)) { _, _ in events.append("read"); return .disarm }
        try loop.add(read)
        let nop = Completion(.nop) { _, _ in events.append("nop"); return .disarm }
        try loop.add(nop)
        #expect(events.isEmpty, "callbacks never run inside add")

        let start = LoopInstant.now()
        try loop.run(.noWait)
        #expect(LoopInstant.now() - start < .milliseconds(100))
        #expect(events == ["nop"])
        for _ in 0..<5 { try loop.run(.noWait) }
        #expect(LoopInstant.now() - start < .milliseconds(200))
        #expect(events == ["nop"])
        #expect(loop.activeCount == 2)
        #expect(far.state == .active && read.state == .active)
    }

    /// `.once` blocks until at least one callback has run, then returns (leaving later
    /// work pending).
    @Test(arguments: conformanceBackends)
    func onceWaitsForACompletion(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var fired: [String] = []
        let near = Completion(), far = Completion()
        loop.updateNow()
        let armed = loop.now
        try loop.timer(near, after: .milliseconds(20)) { _, _ in fired.append("near"); return .disarm }
        try loop.timer(far, after: .seconds(10)) { _, _ in fired.append("far"); return .disarm }
        try loop.run(.once)
        let elapsed = LoopInstant.now() - armed
        #expect(fired == ["near"])
        #expect(elapsed >= .milliseconds(20))
        #expect(elapsed < .seconds(5))
        #expect(far.state == .active)
        #expect(loop.activeCount == 1)
    }

    /// `.once` with a read that becomes ready from another thread: the wait really blocks
    /// in the kernel and wakes for I/O (not only for timers).
    @Test(arguments: conformanceBackends)
    func onceWakesForIO(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(16)
        var got: CompletionResult?
        let read = Completion(.read(fd: a, buffer: buf)) { _, r in got = r; return .disarm }
        try loop.add(read)
        let writer = try TestThread { usleep(30_000); _ = try? Sock.put(b, "wake") }
        defer { writer.join() }
        let watchdog = Completion()
        watchdog.keepsLoopAlive = false
        try loop.timer(watchdog, after: .seconds(5)) { _, _ in .disarm }
        let start = LoopInstant.now()
        try loop.run(.once)
        #expect(got?.count == 4)
        #expect(LoopInstant.now() - start >= .milliseconds(20))
        #expect(watchdog.state == .active, "woken by the read, not by the watchdog")
    }

    /// `.untilDone` keeps going until nothing is active: timers of several deadlines, a nop
    /// and a chain of work added from callbacks.
    @Test(arguments: conformanceBackends)
    func untilDoneDrains(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var fired: [Int] = []
        let timers = (0..<5).map { _ in Completion() }
        for (i, t) in timers.enumerated() {
            try loop.timer(t, after: .milliseconds(Int64(5 * (5 - i)))) { _, r in
                if case .timer(.success) = r { fired.append(i) }
                return .disarm
            }
        }
        var chain = 0
        let nop = Completion(.nop) { _, _ in
            chain += 1
            return chain < 10 ? .rearm : .disarm
        }
        try loop.add(nop)
        #expect(try runUntilDone(loop))
        #expect(fired == [4, 3, 2, 1, 0])
        #expect(chain == 10)
        #expect(loop.activeCount == 0)
        #expect(timers.allSatisfy { $0.state == .dead } && nop.state == .dead)
        // With nothing active, untilDone returns at once.
        let start = LoopInstant.now()
        try loop.run(.untilDone)
        #expect(LoopInstant.now() - start < .milliseconds(100))
    }

    /// PITFALLS B8: `run` from inside a callback throws `.nestedRun`, and the loop keeps
    /// working afterwards.
    @Test(.tags(.pitfallB8), arguments: conformanceBackends)
    func nestedRunThrowsAndLoopKeepsWorking(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var nestedErrors: [EvError] = []
        var otherErrors = 0
        let nop = Completion(.nop) { _, _ in
            for mode in [RunMode.noWait, .once, .untilDone] {
                do { try loop.run(mode) } catch let e as EvError { nestedErrors.append(e) } catch { otherErrors += 1 }
            }
            return .disarm
        }
        try loop.add(nop)
        try loop.run(.untilDone)
        #expect(nestedErrors == [.nestedRun, .nestedRun, .nestedRun])
        #expect(otherErrors == 0)

        // The loop still runs timers, nops and I/O.
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(8)
        var results: [String] = []
        try loop.add(Completion(.nop) { _, _ in results.append("nop"); return .disarm })
        try loop.timer(Completion(), after: .milliseconds(5)) { _, _ in results.append("timer"); return .disarm }
        try loop.add(Completion(.read(fd: a, buffer: buf)) { _, r in results.append("read \(r.count ?? -1)"); return .disarm })
        try Sock.put(b, "abc")
        #expect(try runUntilDone(loop))
        #expect(results.sorted() == ["nop", "read 3", "timer"])
    }

    /// `stop()` from a callback ends the current run even though work is still pending
    /// (PITFALLS J3); the pending completions stay active, and a later run can cancel them.
    @Test(.tags(.pitfallJ3), arguments: conformanceBackends)
    func stopFromCallbackThenCancelInALaterRun(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let (l, _) = try Sock.listener()
        h.forLoop(l)
        let buf = h.buffer(16)
        var results: [String: CompletionResult] = [:]
        let read = Completion(.read(fd: a, buffer: buf)) { _, r in results["read"] = r; return .disarm }
        let accept = Completion(.accept(socket: l)) { _, r in results["accept"] = r; return .disarm }
        let far = Completion()
        try loop.add(read)
        try loop.add(accept)
        try loop.timer(far, after: .seconds(30)) { _, r in results["far"] = r; return .disarm }
        let stopper = Completion()
        try loop.timer(stopper, after: .milliseconds(10)) { _, _ in loop.stop(); return .disarm }

        let start = LoopInstant.now()
        try loop.run(.untilDone)
        #expect(LoopInstant.now() - start < .seconds(2), "stop() ended run(.untilDone)")
        #expect(results.isEmpty)
        #expect(read.state == .active && accept.state == .active && far.state == .active)
        #expect(loop.activeCount == 3)

        // A later run cancels them, each callback once with .canceled.
        var cancelResults: [CompletionResult] = []
        let cancels = (0..<3).map { _ in Completion() }
        for (target, cancel) in zip([read, accept, far], cancels) {
            try loop.cancel(target, using: cancel) { _, r in cancelResults.append(r); return .disarm }
        }
        #expect(try runUntilDone(loop))
        #expect(results.count == 3)
        #expect(results.values.allSatisfy { $0.isCanceled })
        #expect(cancelResults.count == 3 && cancelResults.allSatisfy { $0.error == nil })
        #expect(loop.activeCount == 0)
    }

    // MARK: - The loop thread (pitfall B11)

    /// PITFALLS B11 (observed, not endorsed): a loop belongs to one long-lived thread. Here
    /// a receive is added and submitted by a thread that then exits, and the loop is run
    /// on to this thread. The outcome is recorded, not prescribed: on readiness backends
    /// the receive gets its data; on io_uring the kernel cancels a request whose task
    /// exited, so it reports `.canceled` though nobody cancelled it. Either way it is
    /// exactly one callback, no crash and no hang, and the loop works afterwards.
    @Test(.tags(.pitfallB11, .pitfallK5), arguments: conformanceBackends)
    func operationSubmittedByAThreadThatExited(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(8)
        var results: [CompletionResult] = []
        let recv = Completion(.recv(socket: a, buffer: buffer)) { _, r in results.append(r); return .disarm }
        // Deliberate misuse of a non-Sendable loop, to observe what the kernel does.
        final class Handoff: @unchecked Sendable {
            let loop: LoopCore, completion: Completion
            var error: (any Error)?
            init(_ loop: LoopCore, _ completion: Completion) { self.loop = loop; self.completion = completion }
        }
        let handoff = Handoff(loop, recv)
        let submitter = try TestThread {
            do {
                try handoff.loop.add(handoff.completion)
                try handoff.loop.run(.noWait)   // submits (io_uring) or registers (epoll, poll)
            } catch { handoff.error = error }
        }
        submitter.join()
        #expect(handoff.error == nil, "\(String(describing: handoff.error))")
        #expect(results.isEmpty, "nothing had arrived yet")
        try Sock.put(b, "late")
        #expect(try runUntil(loop) { !results.isEmpty })
        try runFor(loop, .milliseconds(20))
        print("[\(backend)] B11: a receive submitted by a thread that exited reported \(results)")
        #expect(results.count == 1, "\(results)")
        if backend == .ioUring {
            #expect(results.first?.count == 4 || results.first?.isCanceled == true, "\(results)")
        } else {
            #expect(results.first?.count == 4, "\(results)")
        }
        // Whatever happened, the loop still works from this thread (and a receive that was
        // cancelled by the kernel consumed nothing).
        var again: CompletionResult?
        if results.first?.isCanceled == true {
            try loop.add(Completion(.recv(socket: a, buffer: buffer)) { _, r in again = r; return .disarm })
            #expect(try runUntil(loop) { again != nil })
            #expect(again?.count == 4 && Array(buffer[0..<4]) == Array("late".utf8), "\(String(describing: again))")
        }
        try Sock.put(b, "more")
        again = nil
        try loop.add(Completion(.recv(socket: a, buffer: buffer)) { _, r in again = r; return .disarm })
        #expect(try runUntil(loop) { again != nil })
        #expect(again?.count == 4 && Array(buffer[0..<4]) == Array("more".utf8), "\(String(describing: again))")
    }
}
