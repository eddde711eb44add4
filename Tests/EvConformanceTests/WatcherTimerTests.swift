// Watchers: LoopTimer (start, repeat by new deadline + .rearm, reset, cancel; PITFALLS F1, F4).
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Watcher: Timer")
struct WatcherTimerTests {

    /// Repetition is "set the next deadline, then .rearm": five ticks 5 ms apart, none
    /// early, each measured from the previous callback (`now + interval`).
    @Test(.tags(.pitfallF4), arguments: conformanceBackends)
    func repeatsBySettingTheNextDeadline(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var fired: [LoopInstant] = []
        let armedAt = loop.now
        let c = Completion()
        try LoopTimer.start(loop: loop, completion: c, after: .milliseconds(5)) { c, result in
            guard case .success = result else { return .disarm }
            let deadline = LoopTimer.deadline(of: c)!
            #expect(LoopInstant.now() >= deadline, "fired early")
            fired.append(loop.now)
            if fired.count == 5 { return .disarm }
            LoopTimer.setDeadline(c, loop.now + .milliseconds(5))
            return .rearm
        }
        #expect(try runUntilDone(loop))
        #expect(fired.count == 5)
        #expect(fired.first.map { $0 - armedAt >= .milliseconds(5) } == true)
        for (a, b) in zip(fired, fired.dropFirst()) {
            #expect(b - a >= .milliseconds(5))
        }
    }

    /// Reset moves a pending timer (only the new deadline fires, once); reset of a dead
    /// timer starts it with its callback; cancel reports `.canceled` once.
    @Test(.tags(.pitfallF1), arguments: conformanceBackends)
    func resetAndCancel(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var results: [Result<Void, EvError>] = []
        let c = Completion()
        try LoopTimer.start(loop: loop, completion: c, after: .seconds(60)) { _, r in results.append(r); return .disarm }
        let start = LoopInstant.now()
        try LoopTimer.reset(loop: loop, completion: c, after: .milliseconds(10))
        #expect(try runUntil(loop) { !results.isEmpty })
        #expect(LoopInstant.now() - start >= .milliseconds(10))
        #expect(LoopInstant.now() - start < .seconds(5))
        try runFor(loop, .milliseconds(20))
        #expect(results.count == 1)
        if case .failure? = results.first { Issue.record("reset timer reported \(results)") }

        // Dead: reset starts it again, with the callback it had.
        try LoopTimer.reset(loop: loop, completion: c, after: .milliseconds(1))
        #expect(c.state == .active)
        #expect(try runUntil(loop) { results.count == 2 })

        // Cancel: one `.canceled`, and the cancel itself succeeds.
        try LoopTimer.start(loop: loop, completion: c, after: .seconds(60)) { _, r in results.append(r); return .disarm }
        var cancelOutcome: Result<Void, EvError>?
        try LoopTimer.cancel(loop: loop, completion: c, using: Completion()) { _, r in cancelOutcome = r; return .disarm }
        #expect(try runUntil(loop) { results.count == 3 && cancelOutcome != nil })
        #expect(results.last.map { r in if case .failure(.canceled) = r { true } else { false } } == true)
        #expect(cancelOutcome.map { r in if case .success = r { true } else { false } } == true)
        #expect(c.state == .dead)
    }
}
