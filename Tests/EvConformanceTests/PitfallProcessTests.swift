// PITFALLS H3: the process watcher reaps only the children it watches and installs no
// SIGCHLD handler. Runs on every backend, with both exit-watch methods. See
// docs/PITFALLS.md.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Pitfall: processes")
struct PitfallProcessTests {

    /// The SIGCHLD disposition: handler address and flags.
    private func sigchldDisposition() -> (UInt, Int32) {
        var current = sigaction()
        sigaction(SIGCHLD, nil, &current)
        return (unsafeBitCast(current.__sigaction_handler.sa_handler, to: UInt.self), current.sa_flags)
    }

    /// PITFALLS H3: a child started by other code (plain posix_spawn) exits while the
    /// loop watches, and reaps, children of its own (pidfd and waiter thread); the other
    /// child is left for its owner to reap (no waitpid(-1)), and the SIGCHLD disposition
    /// is the same before and after (no handler installed).
    @Test(arguments: processCases)
    func onlyWatchedChildrenAreReapedAndSIGCHLDIsUntouched(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let dispositionBefore = sigchldDisposition()
        let foreign = try Pitfall.plainSpawn("/bin/sh", ["-c", "exit 4"])
        var foreignReaped = false
        defer { if !foreignReaped { Pitfall.killAndReap(foreign) } }
        // Wait (bounded) until the foreign child has exited and is a zombie.
        var zombie = false
        for _ in 0..<1000 where !zombie {
            var info = siginfo_t()
            zombie = waitid(P_PID, id_t(foreign), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == foreign
            if !zombie { usleep(2_000) }
        }
        #expect(zombie, "the foreign child did not exit within 2 s")

        for _ in 0..<3 {
            let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 6"], stdin: .null, exitWatch: method)
            var result: Result<Subprocess.ExitStatus, EvError>?
            try child.wait(loop: loop, completion: Completion()) { _, r in result = r }
            #expect(try runUntil(loop, timeout: .seconds(10)) { result != nil })
            #expect(result == .success(.exited(6)))
        }
        try runFor(loop, .milliseconds(20))

        // The foreign child is still there for its owner to reap, with its own status.
        var status: Int32 = 0
        let r = waitpid(foreign, &status, WNOHANG)
        foreignReaped = r == foreign
        #expect(r == foreign, "waitpid(\(foreign)) returned \(r) (errno \(cevsys_errno())): someone else reaped the foreign child")
        if r == foreign {
            #expect((status & 0x7f) == 0 && ((status >> 8) & 0xff) == 4, "status \(status)")
        }
        let dispositionAfter = sigchldDisposition()
        #expect(dispositionAfter.0 == dispositionBefore.0 && dispositionAfter.1 == dispositionBefore.1,
                "the SIGCHLD disposition changed: \(dispositionBefore) -> \(dispositionAfter)")
        #expect(dispositionAfter.0 == unsafeBitCast(SIG_DFL, to: UInt.self), "SIGCHLD is not SIG_DFL")
    }
}
