// PITFALLS timer items that had no test of their own: D4 (resets and cancels that land
// right at a timer's expiry) and D3 (a timer is not cut short by other completions). The
// timers of every backend live in the loop's heap (io_uring uses no IORING_OP_TIMEOUT),
// so these tests check the same promises on all three. See docs/PITFALLS.md.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Pitfall: timers")
struct PitfallTimerTests {

    /// PITFALLS D4: 1,000 timers, each reset or cancelled by another timer whose deadline
    /// is within ±1 ms of its own, so the reset or cancel lands just before the expiry,
    /// in the same tick (expired, callback not yet run), or just after the callback.
    /// Whatever the timing: exactly one callback per activation, never before the
    /// deadline that activation had when it fired; a successful cancel means exactly one
    /// `.canceled` and nothing after it; a cancel that found nothing means the timer
    /// reported its expiry.
    @Test(arguments: conformanceBackends)
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
    @Test(arguments: conformanceBackends)
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
