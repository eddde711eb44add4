// Conformance: draining a loop (`cancelAll()` then `run(.untilDone)`) waits for every
// completion that was active, background ones included (DESIGN invariant 1; the loop may
// be released right after). Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: draining")
struct DrainTests {
    /// Background waits (`keepsLoopAlive == false`, like an executor's or a notifier's
    /// wake-up poll) are cancelled by `cancelAll`, and the drain returns only after their
    /// callbacks have run: on io_uring each cancellation arrives later, as a completion of
    /// its own, and `run(.untilDone)` used to return before it did (activeCount 1 left).
    /// Background work started after the `cancelAll` (a watchdog) does not hold the drain.
    @Test(arguments: conformanceBackends)
    func drainWaitsForCancelledBackgroundWork(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [CompletionResult] = []
        let waits = (0..<3).map { _ in
            let c = Completion(.poll(fd: a, events: .readable)) { _, r in results.append(r); return .disarm }
            c.keepsLoopAlive = false
            return c
        }
        for c in waits { try loop.add(c) }
        try loop.run(.noWait)   // in the kernel (io_uring) or registered (epoll, poll)
        loop.cancelAll()
        let watchdog = Completion()
        watchdog.keepsLoopAlive = false
        try loop.timer(watchdog, after: .seconds(30)) { _, _ in .disarm }
        try loop.run(.untilDone)
        #expect(results.count == 3 && results.allSatisfy(\.isCanceled), "\(results)")
        #expect(loop.activeCount == 1, "only the watchdog, started after cancelAll, is left")
        // A rearmed background wait is new work: it does not hold a later drain either.
        loop.cancelAll()
        try loop.run(.untilDone)
        #expect(loop.activeCount == 0)
    }
}
