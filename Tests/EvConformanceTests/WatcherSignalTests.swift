// Watchers: SignalWatcher (signalfd, PITFALLS H5).
//
// The signal is blocked in the test's own thread only and raised to that thread
// (raise(3) is tgkill to the calling thread), because other threads of the test process
// do not block SIGUSR2 and a process-directed SIGUSR2 would kill the process. The loop
// runs on the same thread, as a signalfd reports signals pending for the thread that
// reads it. Whatever the outcome, the signal is consumed before it is unblocked again.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Watcher: Signal")
struct WatcherSignalTests {

    /// Blocks SIGUSR2 in this thread for `body`, then consumes any leftover and unblocks.
    private func withSIGUSR2Blocked(_ body: () throws -> Void) throws {
        try SignalWatcher.block([SIGUSR2])
        defer {
            while cevsys_signal_consume(SIGUSR2) == 1 {}
            try? SignalWatcher.unblock([SIGUSR2])
        }
        try body()
    }

    /// A blocked SIGUSR2 raised while the wait is pending is reported, with its code
    /// (SI_TKILL for raise) and sender; then nothing more arrives.
    @Test(.tags(.pitfallH5), arguments: conformanceBackends)
    func raisedSignalIsReported(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        try withSIGUSR2Blocked {
            let watcher = try SignalWatcher(signals: [SIGUSR2])
            #expect(fcntl(watcher.fd, F_GETFD) & FD_CLOEXEC != 0)
            var received: [SignalInfo] = []
            let c = Completion()
            try watcher.wait(loop: loop, completion: c) { _, result in
                switch result {
                case .success(let info): received.append(info); return .rearm
                case .failure(let e):
                    if e != .canceled { Issue.record("signal wait: \(e)") }
                    return .disarm
                }
            }
            try loop.run(.noWait)
            #expect(received.isEmpty)
            #expect(raise(SIGUSR2) == 0)
            #expect(try runUntil(loop) { received.count == 1 })
            #expect(received.first?.signal == SIGUSR2)
            #expect(received.first?.code == -6, "SI_TKILL")   // raise(3) uses tgkill
            #expect(received.first?.senderPID == getpid())
            #expect(cevsys_signal_pending(SIGUSR2) == 0, "the watcher consumed the signal")
            try runFor(loop, .milliseconds(20))
            #expect(received.count == 1)
            // Drain the watcher before the signal is unblocked.
            loop.cancelAll()
            #expect(try runUntil(loop) { c.state == .dead })
        }
    }

    /// Signals raised before the wait is armed are pending and reported; several of the
    /// same signal coalesce into one delivery (at-least-once, not per signal).
    @Test(.tags(.pitfallH5), arguments: conformanceBackends)
    func signalsBeforeTheWaitCoalesce(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        try withSIGUSR2Blocked {
            let watcher = try SignalWatcher(signals: [SIGUSR2])
            #expect(raise(SIGUSR2) == 0)
            #expect(raise(SIGUSR2) == 0)
            #expect(raise(SIGUSR2) == 0)
            var received = 0
            let c = Completion()
            try watcher.wait(loop: loop, completion: c) { _, result in
                if case .success = result { received += 1; return .rearm }
                return .disarm
            }
            #expect(try runUntil(loop) { received >= 1 })
            try runFor(loop, .milliseconds(20))
            #expect(received == 1, "three raises of one standard signal coalesce")
            loop.cancelAll()
            #expect(try runUntil(loop) { c.state == .dead })
        }
    }
}
