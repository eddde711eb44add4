// Watchers: Subprocess (spawn, exit through a pidfd or the waiter-thread fallback,
// PITFALLS H1-H4, B12). Every test runs on every backend, with both exit-watch methods.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Backends × the two ways of learning about an exit.
let processCases: [(Backend, ExitWatchMethod)] = conformanceBackends.flatMap { b in
    [(b, ExitWatchMethod.pidfd), (b, ExitWatchMethod.waiterThread)]
}

@Suite("Watcher: Process")
struct WatcherProcessTests {

    /// Waits through the loop for `child` to exit; nil on timeout.
    private func waitForExit(_ child: Subprocess, on loop: LoopCore,
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> Result<Subprocess.ExitStatus, EvError>? {
        var result: Result<Subprocess.ExitStatus, EvError>?
        let c = Completion()
        try child.wait(loop: loop, completion: c) { _, r in result = r; return .disarm }
        #expect(try runUntil(loop, timeout: .seconds(10)) { result != nil }, "no exit reported", sourceLocation: sourceLocation)
        return result
    }

    @Test(.tags(.pitfallH2), arguments: processCases)
    func exitCodeIsReported(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 3"], exitWatch: method)
        #expect(child.method == method)
        let result = try waitForExit(child, on: loop)
        #expect(result == .success(.exited(3)))
        #expect(child.exitStatus == .exited(3))
        // Reaped exactly once: the pid is gone (no zombie left behind).
        #expect(kill(child.pid, 0) != 0)
        // Waiting again reports the same status, through the loop.
        #expect(try waitForExit(child, on: loop) == .success(.exited(3)))
    }

    @Test(.tags(.pitfallH2), arguments: processCases)
    func killedBySignalIsReported(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, exitWatch: method)
        var result: Result<Subprocess.ExitStatus, EvError>?
        let c = Completion()
        try child.wait(loop: loop, completion: c) { _, r in result = r; return .disarm }
        try loop.run(.noWait)
        #expect(result == nil, "sleep 10 reported as exited at once")
        try child.signal(SIGKILL)
        #expect(try runUntil(loop, timeout: .seconds(10)) { result != nil })
        #expect(result == .success(.signaled(SIGKILL, coreDumped: false)))
        // After the reap the child can no longer be signalled (and no other process is hit).
        #expect(throws: EvError.self) { try child.signal(SIGKILL) }
    }

    /// The child has exited (it is a zombie) before the wait is armed: the exit is still
    /// reported (PITFALLS H2, libxev 59e337c).
    @Test(.tags(.pitfallH2), arguments: processCases)
    func childThatExitedBeforeTheWait(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 7"], exitWatch: method)
        // Wait (bounded) until the kernel shows the child as a zombie, or (waiter thread)
        // until that thread has reaped it: either way it exited before the wait exists.
        var exited = false
        for _ in 0..<1000 where !exited {
            exited = processState(child.pid) == "Z" || processState(child.pid) == nil
            if !exited { usleep(2_000) }
        }
        #expect(exited, "the child did not exit within 2 s")
        #expect(try waitForExit(child, on: loop) == .success(.exited(7)))
    }

    /// The wait's callback follows the one callback shape (docs/API.md): after the exit,
    /// `.rearm` reports the same status again on the next tick (the child is reaped once,
    /// never polled again), until the callback answers `.disarm`; after a cancel, `.rearm`
    /// waits for the exit again.
    @Test(arguments: processCases)
    func rearmedWaitReportsTheStatusAgain(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, exitWatch: method)
        var results: [Result<Subprocess.ExitStatus, EvError>] = []
        let c = Completion()
        try child.wait(loop: loop, completion: c) { _, r in
            results.append(r)
            return results.count < 4 ? .rearm : .disarm
        }
        try loop.run(.noWait)
        try loop.cancel(c, using: Completion())
        #expect(try runUntil(loop) { results.count == 1 })
        #expect(results == [.failure(.canceled)])
        #expect(c.state == .active, "a rearm after the cancel waits again")
        try child.signal(SIGKILL)
        #expect(try runUntil(loop, timeout: .seconds(10)) { c.state == .dead })
        let killed = Result<Subprocess.ExitStatus, EvError>.success(.signaled(SIGKILL, coreDumped: false))
        #expect(results == [.failure(.canceled), killed, killed, killed])
        #expect(kill(child.pid, 0) != 0, "reaped")
    }

    /// A cancelled wait reports `.canceled` and leaves the child running and waitable.
    @Test(arguments: processCases)
    func cancelledWaitCanBeRepeated(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, exitWatch: method)
        var result: Result<Subprocess.ExitStatus, EvError>?
        let c = Completion()
        try child.wait(loop: loop, completion: c) { _, r in result = r; return .disarm }
        try loop.run(.noWait)
        try loop.cancel(c, using: Completion())
        #expect(try runUntil(loop) { result != nil })
        #expect(result == .failure(.canceled))
        try child.signal(SIGTERM)
        #expect(try waitForExit(child, on: loop) == .success(.signaled(SIGTERM, coreDumped: false)))
    }

    /// With `.automatic`, a machine with pidfds uses them (the fallback is only for
    /// ENOSYS/EPERM, which the `.waiterThread` cases above exercise by force).
    @Test func automaticPrefersPidfd() throws {
        let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 0"])
        let probe = cevsys_pidfd_open(getpid(), 0)
        if probe >= 0 {
            close(probe)
            #expect(child.method == .pidfd)
        } else {
            #expect(child.method == .waiterThread)
        }
        let loop = try makeLoop(.poll)
        let h = Harness(loop)
        defer { h.finish() }
        #expect(try waitForExit(child, on: loop) == .success(.exited(0)))
    }

    /// None of the parent's descriptors is open in the child: not the loop's, not the
    /// pidfds, and not even a descriptor deliberately left without close-on-exec (spawn
    /// closes everything above stderr). The child lists its own /proc/self/fd into a
    /// socketpair. Arguments, environment and working directory arrive as given.
    @Test(.tags(.pitfallB12, .pitfallG3, .pitfallH4), arguments: processCases)
    func noDescriptorLeaksIntoTheChild(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        // A descriptor without close-on-exec (as a careless library would leave one).
        let leaky = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(leaky >= 0)
        h.own(leaky)
        // An active loop operation, so the backend has registered descriptors too.
        let async = try Async()
        let waiting = Completion()
        try async.wait(loop: loop, completion: waiting) { _, _ in .disarm }
        try loop.run(.noWait)

        let (ours, theirs) = try Sock.socketPair()
        h.own(ours)
        let script = "ls -l /proc/self/fd/; echo \"arg=$1 env=$EV_WATCHER_TEST cwd=$(pwd)\""
        let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", script, "sh", "hello"],
                                         environment: ["EV_WATCHER_TEST=42", "PATH=/usr/bin:/bin"],
                                         workingDirectory: "/tmp",
                                         stdin: .null, stdout: .fd(theirs), stderr: .null, exitWatch: method)
        close(theirs)
        let exit = try waitForExit(child, on: loop)
        #expect(exit == .success(.exited(0)))
        let output = String(decoding: Sock.take(ours, 1 << 20, timeoutMs: 5000), as: UTF8.self)
        #expect(output.contains("arg=hello env=42 cwd=/tmp"), "output: \(output)")

        // `ls -l` lines look like "lrwx------ 1 u g 64 ... 3 -> /proc/1234/fd".
        var childFds: [Int: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard let arrow = parts.firstIndex(of: "->"), arrow > 0, arrow + 1 < parts.count,
                  let n = Int(parts[arrow - 1]) else { continue }
            childFds[n] = parts[(arrow + 1)...].joined(separator: " ")
        }
        #expect(childFds[0] == "/dev/null" && childFds[2] == "/dev/null", "\(childFds)")
        #expect(childFds[1]?.hasPrefix("socket:") == true, "\(childFds)")
        // Anything above 2 may only be ls's own handle on the directory it lists.
        for (fd, target) in childFds where fd > 2 {
            #expect(target.hasPrefix("/proc/"), "descriptor \(fd) -> \(target) leaked into the child")
        }
        #expect(childFds.count >= 3, "could not parse the child's descriptor list: \(output)")
    }

    /// pidfd_open failing with ENOSYS (old kernel) or EPERM (seccomp) makes `.automatic`
    /// fall back to the waiter thread, and the exit is still reported (PITFALLS H1); any
    /// other failure (EMFILE) is an error, and spawn then kills and reaps the child
    /// instead of leaving it unwatched.
    @Test(.tags(.pitfallH1), arguments: conformanceBackends)
    func injectedPidfdFailures(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        for injected in [ENOSYS, EPERM] {
            let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 5"], environment: nil,
                                             workingDirectory: nil, searchPath: false,
                                             stdin: .null, stdout: .inherit, stderr: .inherit,
                                             exitWatch: .automatic, openPidfd: { _ in -injected })
            #expect(child.method == .waiterThread, "errno \(injected)")
            #expect(try waitForExit(child, on: loop) == .success(.exited(5)), "errno \(injected)")
        }
        // Forcing .pidfd does not fall back.
        #expect(throws: EvError.errno(ENOSYS)) {
            _ = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 0"], environment: nil,
                                     workingDirectory: nil, searchPath: false,
                                     stdin: .null, stdout: .inherit, stderr: .inherit,
                                     exitWatch: .pidfd, openPidfd: { _ in -ENOSYS })
        }
        var spawned: pid_t = 0
        #expect(throws: EvError.systemResources) {
            _ = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], environment: nil,
                                     workingDirectory: nil, searchPath: false,
                                     stdin: .null, stdout: .inherit, stderr: .inherit,
                                     exitWatch: .automatic, openPidfd: { pid in spawned = pid; return -EMFILE })
        }
        #expect(spawned > 0)
        #expect(kill(spawned, 0) != 0, "the unwatchable child was left running")
    }

    /// The child starts with an empty signal mask and default dispositions, even when the
    /// spawning thread blocks signals (as a signalfd user must).
    @Test func childStartsWithCleanSignalState() throws {
        try SignalWatcher.block([SIGUSR2])
        defer {
            while cevsys_signal_consume(SIGUSR2) == 1 {}
            try? SignalWatcher.unblock([SIGUSR2])
        }
        let (ours, theirs) = try Sock.socketPair()
        defer { close(ours) }
        let child = try Subprocess.spawn(path: "/bin/grep", arguments: ["-E", "^Sig(Blk|Ign):", "/proc/self/status"],
                                         stdin: .null, stdout: .fd(theirs), stderr: .null)
        close(theirs)
        let loop = try makeLoop(.poll)
        let h = Harness(loop)
        defer { h.finish() }
        #expect(try waitForExit(child, on: loop) == .success(.exited(0)))
        let output = String(decoding: Sock.take(ours, 4096, timeoutMs: 5000), as: UTF8.self)
        #expect(output.contains("SigBlk:\t0000000000000000"), "\(output)")
        // No standard signal (1-31) ignored. glibc's posix_spawn itself sets its two
        // internal real-time signals (32, 33) to SIG_IGN in the child, which survives exec.
        let ignored = output.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }
            .flatMap { UInt64($0.dropFirst("SigIgn:".count).drop { $0 == "\t" || $0 == " " }, radix: 16) }
        #expect(ignored.map { $0 & 0x7fff_ffff } == 0, "\(output)")
    }

    /// A program that does not exist is reported by spawn, not as an exit status, and as
    /// a missing file (`.noSuchFile`), never as the cancel's `.notFound`.
    @Test func spawnOfAMissingProgramThrows() throws {
        #expect(throws: EvError.noSuchFile) {
            _ = try Subprocess.spawn(path: "/nonexistent/evloop-no-such-program")
        }
    }

    // MARK: - Children started by other code (pitfalls B12, G3, H3)

    /// PITFALLS B12 and G3: every descriptor the loop and the watchers create (the
    /// backend's own, eventfds, a signalfd, pidfds, files, sockets, an accepted socket) is
    /// close-on-exec, and a child started by code outside this library -- plain
    /// posix_spawn, which closes nothing -- holds none of them.
    ///
    /// Runs in a child process of its own (ProcessIsolation.swift): it compares the whole
    /// descriptor table before and after.
    @Test(.tags(.pitfallB12, .pitfallG3), arguments: conformanceBackends)
    func noLoopDescriptorReachesAChildSpawnedWithoutCleanup(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let before = Fds.table()
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }

            let async = try Async()
            try async.wait(loop: loop, completion: Completion()) { _, _ in .disarm }
            let stopper = try LoopStopper(loop: loop)
            let signals = try SignalWatcher(signals: [SIGUSR2])
            try signals.wait(loop: loop, completion: Completion()) { _, _ in .disarm }
            var exits: [Result<Subprocess.ExitStatus, EvError>] = []
            var children: [Subprocess] = []
            for method in [ExitWatchMethod.pidfd, .waiterThread] {
                let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, exitWatch: method)
                children.append(child)
                try child.wait(loop: loop, completion: Completion()) { _, r in exits.append(r); return .disarm }
            }
            defer { for c in children { try? c.signal(SIGKILL) } }

            var path = Array(temporaryPath("evloop-pitfall-b12-XXXXXX").utf8CString)
            let tmp = path.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard tmp >= 0 else { throw SysCallError("mkstemp") }
            close(tmp)
            let name = path.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            defer { unlink(name) }
            let file = try File(path: name, options: [.readWrite])
            h.own(file.fd)
            var fileRead: Result<Int, EvError>?
            try file.read(loop: loop, completion: Completion(), buffer: h.buffer(16)) { _, r in fileRead = r; return .disarm }

            let listener = try TCPSocket(family: AF_INET, loop: loop)
            h.own(listener.fd)
            try listener.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
            try listener.listen(backlog: 8)
            var accepted: Result<TCPSocket, EvError>?
            try listener.accept(loop: loop, completion: Completion()) { _, r in
                accepted = r
                if case .success(let s) = r { h.own(s.fd) }
                return .disarm
            }
            let udp = try UDPSocket(family: AF_INET, loop: loop)
            h.own(udp.fd)
            let client = h.own(try Sock.tcp())
            let port = try listener.localAddress().port
            #expect(try Sock.loopback(ipv6: false, port: port).withSockAddr { connect(client, $0, $1) } == 0)
            #expect(try runUntil(loop) { accepted != nil && fileRead != nil })
            #expect(fileRead.map { if case .failure(.endOfFile) = $0 { true } else { false } } == true, "\(String(describing: fileRead))")

            let created = Fds.table().filter { before[$0.key] != $0.value }
            #expect(created.count >= 9, "the loop and watchers created too few descriptors to mean anything: \(created)")
            for (fd, target) in created.sorted(by: { $0.key < $1.key }) {
                #expect(Sock.isCloseOnExec(fd), "descriptor \(fd) (\(target)) is not close-on-exec")
            }

            let pid = try Pitfall.plainSpawn("/bin/sleep", ["10"])
            defer { Pitfall.killAndReap(pid) }
            let inChild = Pitfall.descriptors(of: pid)
            #expect(!inChild.isEmpty, "could not list /proc/\(pid)/fd")
            for (fd, target) in created where inChild[fd] == target {
                Issue.record("descriptor \(fd) (\(target)) of the loop leaked into a plainly spawned child")
            }

            // Reap the watched children through the loop.
            for c in children { try c.signal(SIGKILL) }
            #expect(try runUntil(loop) { exits.count == 2 })
            #expect(exits.allSatisfy { $0 == .success(.signaled(SIGKILL, coreDumped: false)) }, "\(exits)")
            _ = stopper
        }
    }

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
    @Test(.tags(.pitfallH3), arguments: processCases)
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
            try child.wait(loop: loop, completion: Completion()) { _, r in result = r; return .disarm }
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

/// The state letter of /proc/<pid>/stat ("R", "S", "Z", ...), or nil when the process is gone.
private func processState(_ pid: pid_t) -> String? {
    let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return nil }
    let text = String(decoding: buffer[0..<n], as: UTF8.self)
    // "pid (comm) S ...": the state follows the last ')'.
    guard let close = text.lastIndex(of: ")") else { return nil }
    return text[text.index(after: close)...].split(separator: " ").first.map(String.init)
}
