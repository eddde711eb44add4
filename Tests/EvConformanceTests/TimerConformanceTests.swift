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
    @Test(arguments: conformanceBackends)
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
    @Test(arguments: conformanceBackends)
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

    /// Resetting a timer from inside another timer's callback in the tick where both
    /// expired withdraws the expired arm: only the new deadline fires.
    @Test(arguments: conformanceBackends)
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
    @Test(arguments: conformanceBackends)
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
    @Test(arguments: conformanceBackends)
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
    @Test(arguments: conformanceBackends)
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
}
