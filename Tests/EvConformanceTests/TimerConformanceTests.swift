// Conformance: timers (DESIGN invariant 7; PITFALLS F1, F2, F3, F5, F6).
// Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: timers")
struct TimerConformanceTests {

    /// PITFALLS F6: 1,000 timers of random 1–20 ms never fire before their deadline, by
    /// the loop's clock or by a fresh clock read; lateness is reported.
    @Test(.tags(.pitfallF6), arguments: conformanceBackends)
    func timersNeverFireEarly(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var rng = SeededRandom(seed: 0xF6)
        var early = 0, late: [Int64] = [], failures = 0
        loop.updateNow()
        var timers: [Completion] = []
        for _ in 0..<1000 {
            let deadline = loop.now + .microseconds(Int64.random(in: 1000...20_000, using: &rng))
            let c = Completion()
            try loop.timer(c, deadline: deadline) { _, r in
                let actual = LoopInstant.now()
                guard case .timer(.success) = r else { failures += 1; return .disarm }
                if actual < deadline || loop.now < deadline { early += 1 }
                late.append((actual - deadline).nanosecondsSaturating)
                return .disarm
            }
            timers.append(c)
        }
        #expect(try runUntilDone(loop))
        #expect(late.count == 1000)
        #expect(early == 0)
        #expect(failures == 0)
        late.sort()
        if !late.isEmpty {
            let p99 = Double(late[late.count * 99 / 100]) / 1e6
            print("[\(backend)] timer lateness: median \(Double(late[late.count / 2]) / 1e6) ms, p99 \(p99) ms, max \(Double(late.last!) / 1e6) ms")
        }
    }

    /// 1,000 timers with random deadlines fire in deadline order (equal deadlines in the
    /// order they were armed).
    @Test(arguments: conformanceBackends)
    func timersFireInDeadlineOrder(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var rng = SeededRandom(seed: 0x0D3A)
        loop.updateNow()
        let base = loop.now
        var deadlines: [LoopInstant] = []
        var order: [Int] = []
        var timers: [Completion] = []
        for i in 0..<1000 {
            // Deadlines on a 0.5 ms grid over 0–25 ms, so many are equal.
            let d = base + .microseconds(500 * Int64.random(in: 0...50, using: &rng))
            deadlines.append(d)
            let c = Completion()
            try loop.timer(c, deadline: d) { _, _ in order.append(i); return .disarm }
            timers.append(c)
        }
        #expect(try runUntilDone(loop))
        #expect(order.count == 1000)
        let expected = (0..<1000).sorted { (deadlines[$0], $0) < (deadlines[$1], $1) }
        #expect(order == expected)
    }

    /// PITFALLS F1: resetTimer moves a pending timer (only the new deadline fires), the
    /// last of two resets wins, and resetting a dead completion starts it.
    @Test(.tags(.pitfallF1), arguments: conformanceBackends)
    func resetTimerMovesAPendingTimer(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var fires: [(Int, LoopInstant, CompletionResult)] = []
        func arm(_ id: Int) -> Completion.Callback {
            { _, r in fires.append((id, LoopInstant.now(), r)); return .disarm }
        }

        // Earlier: 2 s → 10 ms. Fires once, at ≥ 10 ms and long before 2 s.
        loop.updateNow()
        let t1 = Completion()
        try loop.timer(t1, after: .seconds(2), callback: arm(1))
        let newDeadline = loop.now + .milliseconds(10)
        try loop.resetTimer(t1, deadline: newDeadline)
        #expect(t1.state == .active)
        #expect(try runUntilDone(loop))
        #expect(fires.count == 1)
        if let f = fires.first {
            #expect(f.0 == 1 && f.1 >= newDeadline && f.1 - newDeadline < .milliseconds(1000))
            if case .timer(.success) = f.2 {} else { Issue.record("expected success, got \(f.2)") }
        }

        // Later: 5 ms → 40 ms. Nothing at 5 ms; once at ≥ 40 ms.
        fires = []
        loop.updateNow()
        let t2 = Completion()
        try loop.timer(t2, after: .milliseconds(5), callback: arm(2))
        let later = loop.now + .milliseconds(40)
        try loop.resetTimer(t2, deadline: later)
        #expect(try runUntilDone(loop))
        #expect(fires.count == 1)
        #expect(fires.first.map { $0.0 == 2 && $0.1 >= later } == true)

        // Twice quickly: the last deadline wins (2 s → 3 s → 15 ms).
        fires = []
        loop.updateNow()
        let t3 = Completion()
        try loop.timer(t3, after: .seconds(2), callback: arm(3))
        try loop.resetTimer(t3, deadline: loop.now + .seconds(3))
        let last = loop.now + .milliseconds(15)
        try loop.resetTimer(t3, deadline: last)
        #expect(try runUntilDone(loop))
        #expect(fires.count == 1)
        #expect(fires.first.map { $0.1 >= last && $0.1 - last < .milliseconds(1000) } == true)

        // A dead completion (never added, or after its callback): reset = start.
        fires = []
        let t4 = Completion(.nop, callback: arm(4))
        loop.updateNow()
        let d4 = loop.now + .milliseconds(5)
        try loop.resetTimer(t4, deadline: d4)
        #expect(t4.state == .active)
        #expect(try runUntilDone(loop))
        try loop.resetTimer(t4, deadline: loop.now + .milliseconds(1))
        #expect(try runUntilDone(loop))
        #expect(fires.map(\.0) == [4, 4])
        #expect(fires.first.map { $0.1 >= d4 } == true)

        // Reset while the old deadline has already passed but before the callback ran:
        // only the new deadline fires.
        fires = []
        loop.updateNow()
        let t5 = Completion()
        try loop.timer(t5, after: .milliseconds(1), callback: arm(5))
        usleep(3000)
        let d5 = LoopInstant.now() + .milliseconds(20)
        try loop.resetTimer(t5, deadline: d5)
        #expect(try runUntilDone(loop))
        #expect(fires.count == 1)
        #expect(fires.first.map { $0.1 >= d5 } == true)

        // An active completion that is not a timer cannot be reset.
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let read = Completion(.read(fd: a, buffer: h.buffer(8)))
        try loop.add(read)
        #expect(throws: EvError.invalidArgument) { try loop.resetTimer(read, deadline: loop.now) }
        #expect(read.state == .active)
    }

    /// A reset after a successful cancel, before the timer's callback has run, is refused
    /// with `.canceled`: the cancel has won, the timer reports `.canceled` once and never
    /// fires. (Issue 16, found by the differential tester: the reset withdrew the
    /// cancellation, so the cancel reported success and the timer fired later with
    /// `.success`.) The same for a timer cancelled by `cancelAll`.
    @Test(arguments: conformanceBackends)
    func resetAfterASuccessfulCancelIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var timerResults: [CompletionResult] = [], cancelResults: [CompletionResult] = []
        let timer = Completion(), cancel = Completion()
        try loop.timer(timer, after: .seconds(2)) { _, r in timerResults.append(r); return .disarm }
        try loop.cancel(timer, using: cancel) { _, r in cancelResults.append(r); return .disarm }
        #expect(timer.state == .active, "the callbacks run in the next tick")
        let armed = LoopTimer.deadline(of: timer)
        #expect(throws: EvError.canceled) { try loop.resetTimer(timer, deadline: loop.now + .milliseconds(5)) }
        #expect(LoopTimer.deadline(of: timer) == armed, "a refused reset changes nothing")
        #expect(try runUntilDone(loop))
        try runFor(loop, .milliseconds(20))
        #expect(timerResults.count == 1 && timerResults.first?.isCanceled == true, "\(timerResults)")
        #expect(cancelResults.count == 1 && cancelResults.first?.error == nil, "\(cancelResults)")

        timerResults = []
        try loop.timer(timer, after: .seconds(2)) { _, r in timerResults.append(r); return .disarm }
        loop.cancelAll()
        #expect(throws: EvError.canceled) { try loop.resetTimer(timer, deadline: loop.now + .milliseconds(5)) }
        #expect(try runUntilDone(loop))
        #expect(timerResults.count == 1 && timerResults.first?.isCanceled == true, "\(timerResults)")
    }

    /// Resetting a timer from inside another timer's callback in the tick where both
    /// expired withdraws the expired arm: only the new deadline fires.
    @Test(.tags(.pitfallF1), arguments: conformanceBackends)
    func resetFromACallbackOfTheSameTick(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var bFires: [LoopInstant] = []
        let a = Completion(), b = Completion()
        loop.updateNow()
        let deadline = loop.now + .milliseconds(5)
        var newDeadline = LoopInstant.distantFuture
        try loop.timer(a, deadline: deadline) { _, _ in
            newDeadline = loop.now + .milliseconds(20)
            do { try loop.resetTimer(b, deadline: newDeadline) } catch { Issue.record("reset threw \(error)") }
            return .disarm
        }
        try loop.timer(b, deadline: deadline) { _, _ in bFires.append(LoopInstant.now()); return .disarm }
        #expect(try runUntilDone(loop))
        #expect(bFires.count == 1)
        #expect(bFires.first.map { $0 >= newDeadline } == true)
    }

    /// PITFALLS F3: a 0 ms timer rearmed from its own callback (deadline = loop.now) does
    /// not starve I/O or other work: a read whose data arrives meanwhile and a nop added
    /// meanwhile complete within a few ticks.
    @Test(.tags(.pitfallF3), arguments: conformanceBackends)
    func selfRearmingZeroTimerDoesNotStarveIO(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(16)
        var readDoneAt: Int?
        var nopDoneAt: Int?
        var ticks = 0
        var dataSentAt: Int?
        let read = Completion(.read(fd: a, buffer: buf)) { _, r in
            #expect(r.count == 4)
            readDoneAt = ticks
            return .disarm
        }
        try loop.add(read)
        let nop = Completion(.nop) { _, _ in nopDoneAt = ticks; return .disarm }
        let timer = Completion()
        try loop.timer(timer, deadline: loop.now) { c, _ in
            ticks += 1
            if ticks == 3 {
                do {
                    try Sock.put(b, "data")
                    try loop.add(nop)
                } catch { Issue.record("\(error)") }
                dataSentAt = ticks
            }
            let done = readDoneAt != nil && nopDoneAt != nil
            if done || ticks >= 100_000 { return .disarm }
            c.operation = .timer(deadline: loop.now)
            return .rearm
        }
        #expect(try runUntilDone(loop, timeout: .seconds(10)))
        let sent = try #require(dataSentAt)
        let readTicks = try #require(readDoneAt) - sent
        let nopTicks = try #require(nopDoneAt) - sent
        #expect(nopTicks <= 2, "the nop waited \(nopTicks) ticks")
        #expect(readTicks <= 20, "the read waited \(readTicks) ticks")
    }

    /// PITFALLS F5: deadlines at the end of time (`distantFuture`, and `now + Int64.max s`,
    /// which saturates) do not trap anywhere (heap, wait timeout), never fire, and can be
    /// cancelled. The loop even waits with such a timer as the nearest deadline and still
    /// wakes for I/O.
    @Test(.tags(.pitfallF5), arguments: conformanceBackends)
    func hugeDeadlinesDoNotTrapOrFire(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var results: [Int: CompletionResult] = [:]
        let t1 = Completion(), t2 = Completion()
        try loop.timer(t1, deadline: .distantFuture) { _, r in results[1] = r; return .disarm }
        try loop.timer(t2, deadline: loop.now + .seconds(Int64.max)) { _, r in results[2] = r; return .disarm }
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.isEmpty)

        // A blocking wait whose nearest deadline is the far one, woken by a read.
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(8)
        var readCount: Int?
        try loop.add(Completion(.read(fd: a, buffer: buf)) { _, r in readCount = r.count; return .disarm })
        let writer = try TestThread { usleep(20_000); _ = try? Sock.put(b, "x") }
        try loop.run(.once)
        writer.join()
        #expect(readCount == 1)
        #expect(results.isEmpty)
        #expect(t1.state == .active && t2.state == .active)

        var cancelResults: [CompletionResult] = []
        for t in [t1, t2] {
            try loop.cancel(t, using: Completion()) { _, r in cancelResults.append(r); return .disarm }
        }
        #expect(try runUntilDone(loop))
        #expect(results.count == 2 && results.values.allSatisfy { $0.isCanceled })
        #expect(cancelResults.count == 2 && cancelResults.allSatisfy { $0.error == nil })
    }

    /// PITFALLS F2: `now` is cached per tick; after a callback that was busy for 30 ms,
    /// `updateNow()` refreshes it, and a 50 ms timer armed then fires ≥ 50 ms after the arm.
    @Test(.tags(.pitfallF2), arguments: conformanceBackends)
    func updateNowAfterABusyCallback(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var staleBy: Duration = .zero
        var armedAt = LoopInstant.distantFuture
        var firedAt: LoopInstant?
        let timer = Completion()
        let busy = Completion(.nop) { _, _ in
            let before = loop.now
            let end = LoopInstant.now() + .milliseconds(30)
            while LoopInstant.now() < end {}
            staleBy = LoopInstant.now() - loop.now
            #expect(loop.now == before, "now is cached for the whole tick")
            loop.updateNow()
            armedAt = loop.now
            #expect(loop.now >= end)
            do {
                try loop.timer(timer, after: .milliseconds(50)) { _, _ in firedAt = LoopInstant.now(); return .disarm }
            } catch { Issue.record("\(error)") }
            return .disarm
        }
        try loop.add(busy)
        #expect(try runUntilDone(loop))
        #expect(staleBy >= .milliseconds(30))
        let fired = try #require(firedAt)
        #expect(fired - armedAt >= .milliseconds(50))
    }

    // MARK: - Timers at the moment of expiry and under load (pitfalls D4, D3)

    // The timers of every backend live in the loop's heap (io_uring uses no
    // IORING_OP_TIMEOUT), so these check the same promises on all three.

    /// PITFALLS D4: 1,000 timers, each reset or cancelled by another timer whose deadline
    /// is within ±1 ms of its own, so the reset or cancel lands just before the expiry,
    /// in the same tick (expired, callback not yet run), or just after the callback.
    /// Whatever the timing: exactly one callback per activation, never before the
    /// deadline that activation had when it fired; a successful cancel means exactly one
    /// `.canceled` and nothing after it; a cancel that found nothing means the timer
    /// reported its expiry.
    @Test(.tags(.pitfallD4), arguments: conformanceBackends)
    func resetsAndCancelsAtTheMomentOfExpiry(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let n = 1000
        var rng = SeededRandom(seed: 0xD4)
        loop.updateNow()
        let base = loop.now + .milliseconds(20)

        final class Track {
            var activations = 1
            var results: [CompletionResult] = []
            var early = 0
            var cancelResult: CompletionResult?
        }
        let tracks = (0..<n).map { _ in Track() }
        var situations: [String: Int] = [:]
        var targets: [Completion] = []
        var actors: [Completion] = []
        var cancels: [Completion] = []
        for i in 0..<n {
            let track = tracks[i]
            let target = Completion()
            let deadline = base + .microseconds(Int64(i) * 150)
            try loop.timer(target, deadline: deadline) { c, r in
                track.results.append(r)
                if case .timer(.success) = r, let d = LoopTimer.deadline(of: c), LoopInstant.now() < d { track.early += 1 }
                return .disarm
            }
            let offset = Int64.random(in: -1000...1000, using: &rng)
            let resetTo = Int64.random(in: -500...2000, using: &rng)
            let cancel = Completion()
            let actor = Completion()
            try loop.timer(actor, deadline: deadline + .microseconds(offset)) { _, _ in
                let situation = target.state == .dead ? "after its callback"
                    : target.resultReady ? "expired, callback pending" : "pending"
                situations[situation, default: 0] += 1
                if i % 2 == 0 {
                    if target.state == .dead { track.activations += 1 }
                    do { try loop.resetTimer(target, deadline: loop.now + .microseconds(resetTo)) }
                    catch { Issue.record("reset \(i): \(error)") }
                } else {
                    do {
                        try loop.cancel(target, using: cancel) { _, r in track.cancelResult = r; return .disarm }
                    } catch { Issue.record("cancel \(i): \(error)") }
                }
                return .disarm
            }
            targets.append(target)
            actors.append(actor)
            cancels.append(cancel)
        }
        #expect(try runUntilDone(loop, timeout: .seconds(20)))
        try runFor(loop, .milliseconds(5))
        print("[\(backend)] D4: resets and cancels landed \(situations)")

        var bad: [String] = []
        for (i, t) in tracks.enumerated() {
            if t.results.count != t.activations { bad.append("timer \(i): \(t.results.count) callbacks for \(t.activations) activations: \(t.results)") }
            if t.early > 0 { bad.append("timer \(i) fired before its deadline") }
            if i % 2 == 1 {
                switch t.cancelResult?.error {
                case nil where t.cancelResult != nil:
                    if t.results.count != 1 || t.results.first?.isCanceled != true {
                        bad.append("timer \(i): the cancel succeeded but the timer reported \(t.results)")
                    }
                case .notFound?:
                    if t.results.count != 1 || t.results.first?.error != nil {
                        bad.append("timer \(i): the cancel found nothing but the timer reported \(t.results)")
                    }
                default:
                    bad.append("timer \(i): cancel reported \(String(describing: t.cancelResult))")
                }
            } else if t.results.contains(where: { $0.error != nil }) {
                bad.append("timer \(i): a reset timer failed: \(t.results)")
            }
        }
        #expect(bad.isEmpty, "\(bad.count) violations: \(bad.prefix(5))")
        #expect(situations.values.reduce(0, +) == n)
        #expect(loop.activeCount == 0)
        _ = (targets, actors, cancels)
    }

    /// PITFALLS D3: a 100 ms timer while 10,000 other operations complete (polls on a
    /// writable socket, which finish at once in the kernel) fires after 100 ms, with
    /// success, not early because of the other completions.
    @Test(.tags(.pitfallD3), arguments: conformanceBackends)
    func otherCompletionsDoNotCutATimerShort(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var completions = 0
        var completionsWhenFired: Int?
        var timerResult: CompletionResult?
        var firedAfter: Duration?
        loop.updateNow()
        let armedAt = loop.now
        try loop.timer(Completion(), after: .milliseconds(100)) { _, r in
            timerResult = r
            firedAfter = LoopInstant.now() - armedAt
            completionsWhenFired = completions
            return .disarm
        }
        let pollers = (0..<8).map { _ in
            Completion(.poll(fd: a, events: .writable)) { _, r in
                if r.error != nil { Issue.record("poll: \(r)"); return .disarm }
                completions += 1
                return completions < 10_000 || timerResult == nil ? .rearm : .disarm
            }
        }
        for p in pollers { try loop.add(p) }
        #expect(try runUntilDone(loop, timeout: .seconds(30)))
        let fired = try #require(firedAfter)
        print("[\(backend)] D3: the 100 ms timer fired after \(fired.milliseconds) ms and \(completionsWhenFired ?? -1) other completions")
        if case .timer(.success)? = timerResult {} else { Issue.record("timer result \(String(describing: timerResult))") }
        #expect(fired >= .milliseconds(100))
        #expect(completions >= 10_000)
    }
}
