// PITFALLS items about descriptors and other resources that had no test of their own:
// E8 (EMFILE on accept), A8 (an accept that beats its cancel), A12 (close and its
// cancel), B12/G3 (no loop descriptor reaches a child), I6 (a loop with pool work torn
// down). Every test runs on every backend. See docs/PITFALLS.md.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

// Every test here checks process-wide state -- E8 lowers RLIMIT_NOFILE, the others compare
// the whole descriptor table (and I6 the thread count) before and after -- so each runs in
// a child process of its own (ProcessIsolation.swift), where no other test opens
// descriptors or starts threads meanwhile.
@Suite("Pitfall: descriptors and resources")
struct PitfallResourceTests {

    /// PITFALLS E8: with the descriptor table full, an accept whose connection is waiting
    /// reports `.systemResources` to its callback (each rearm tries again and reports again:
    /// no silent retry), and once the callback disarms, the loop is idle even though the
    /// level-triggered listener stays readable. When descriptors are available again, every
    /// queued connection is still there to accept.
    @Test(arguments: conformanceBackends)
    func acceptAtTheDescriptorLimitReportsSystemResourcesThenIdles(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let clients = 20
            let (l, port) = try Sock.listener(backlog: 64)
            h.forLoop(l)
            let address = try Sock.loopback(ipv6: false, port: port)
            for _ in 0..<clients {
                let c = h.own(try Sock.tcp())
                guard address.withSockAddr({ connect(c, $0, $1) }) == 0 else { throw SysCallError("connect") }
            }
            _ = Sock.wait(l, timeoutMs: 1000)

            var results: [CompletionResult] = []
            let accept = Completion(.accept(socket: l)) { _, r in
                results.append(r)
                if case .accept(.success(let fd)) = r { close(fd) }
                return results.count < 3 ? .rearm : .disarm
            }
            var socketErrno: Int32 = 0
            var finished = false
            var idleWaits = -1
            try Pitfall.withDescriptorTableFull(anyOpenFd: l) {
                // The limit really is reached: a plain socket(2) fails the same way.
                let probe = socket(AF_INET, Sock.streamType, 0)
                if probe >= 0 { close(probe) } else { socketErrno = cevsys_errno() }
                try loop.add(accept)
                finished = try runUntil(loop) { accept.state == .dead }
                idleWaits = try Pitfall.kernelWaitsWhileIdle(loop, .milliseconds(50))
            }
            #expect(socketErrno == EMFILE, "the descriptor table was not full (socket errno \(socketErrno))")
            #expect(finished, "the accept callbacks did not run")
            #expect(results.count == 3, "\(results)")
            #expect(results.allSatisfy { $0.error == .systemResources }, "\(results)")
            #expect(idleWaits >= 1 && idleWaits <= 5, "\(idleWaits) kernel waits in 50 ms with nothing to do: the readable listener spins the loop")

            // Descriptors are available again: all queued connections are accepted.
            var accepted = 0
            var failures: [CompletionResult] = []
            accept.callback = { _, r in
                guard case .accept(.success(let fd)) = r else { failures.append(r); return .disarm }
                close(fd)
                accepted += 1
                return accepted < clients ? .rearm : .disarm
            }
            try loop.add(accept)
            #expect(try runUntil(loop) { accept.state == .dead })
            #expect(failures.isEmpty, "\(failures)")
            #expect(accepted == clients)
        }
    }

    /// PITFALLS A8: an accept cancelled while a client connects, 1,000 times. Each round
    /// ends in exactly one consistent pair: (descriptor handed to the callback, cancel
    /// `.notFound`/`.inProgress`) or (`.canceled`, cancel succeeded, the connection still
    /// queued). No connection is lost to an accept whose result was dropped, and no
    /// descriptor is left open.
    @Test(arguments: conformanceBackends)
    func acceptThatBeatsItsCancelHandsOverTheDescriptor(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let (l, port) = try Sock.listener(backlog: 128)
            h.forLoop(l)
            let address = try Sock.loopback(ipv6: false, port: port)
            let baseline = Fds.count()
            var handedOver = 0, canceled = 0, takenByTest = 0, lost = 0
            var bad: [String] = []
            let accept = Completion(.accept(socket: l))
            let cancel = Completion()
            let rounds = 1000
            for round in 0..<rounds {
                var acceptResult: CompletionResult?
                var cancelResult: CompletionResult?
                accept.callback = { _, r in
                    acceptResult = r
                    if case .accept(.success(let fd)) = r { close(fd) }
                    return .disarm
                }
                try loop.add(accept)
                let variant = round % 5
                // Variants 0 and 3: the accept waits (in the kernel, or registered) first.
                if variant == 0 || variant == 3 { try loop.run(.noWait) }
                let client = try Sock.tcp()
                defer { close(client) }
                var connector: TestThread?
                if variant >= 3 {
                    // The client connects from another thread while this one cancels.
                    let delay = UInt32(round % 7) * 25
                    connector = try TestThread { usleep(delay); _ = address.withSockAddr { connect(client, $0, $1) } }
                } else {
                    guard address.withSockAddr({ connect(client, $0, $1) }) == 0 else { throw SysCallError("connect") }
                }
                if variant == 1 { try loop.run(.noWait) }   // give the accept a chance to finish first
                try loop.cancel(accept, using: cancel) { _, r in cancelResult = r; return .disarm }
                #expect(try runUntil(loop) { acceptResult != nil && cancelResult != nil }, "round \(round)")
                connector?.join()
                guard let a = acceptResult, let c = cancelResult else { break }
                switch (a, c.error) {
                case (.accept(.success), .notFound?), (.accept(.success), .inProgress?):
                    handedOver += 1
                case (.accept(.failure(.canceled)), nil):
                    canceled += 1
                    // The connection the cancelled accept did not take is still queued.
                    if Sock.wait(l, timeoutMs: 1000) & Int16(POLLIN) != 0 {
                        let fd = cevsys_accept4(l, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
                        if fd >= 0 { close(fd); takenByTest += 1 } else { lost += 1 }
                    } else {
                        lost += 1
                    }
                default:
                    if bad.count < 5 { bad.append("round \(round): accept \(a), cancel \(c)") }
                }
            }
            print("[\(backend)] A8: \(handedOver) accepts won the race, \(canceled) were cancelled")
            #expect(bad.isEmpty, "\(bad)")
            #expect(lost == 0, "\(lost) connections vanished: an accepted descriptor was dropped")
            #expect(handedOver + canceled == rounds)
            #expect(takenByTest == canceled)
            #expect(Fds.socketsBound(toPort: port, except: l).isEmpty, "an accepted descriptor was left open")
            #expect(Fds.count() - baseline <= 2, "the descriptor table grew by \(Fds.count() - baseline)")
        }
    }

    /// PITFALLS A12: a close through the loop and a cancel of that close, with a pread on
    /// the same descriptor in flight (on readiness backends it runs on the thread pool,
    /// where a running read makes the close wait). Every round: each callback exactly once,
    /// and the close's outcome agrees with the cancel's and with the descriptor table
    /// (closed, or still open and closed by the test).
    @Test(arguments: conformanceBackends)
    func closeAndACancelOfItAgree(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let file = h.own(try makeTempFile())
            var block = [UInt8](repeating: 0x61, count: 65536)
            #expect(pwrite(file, &block, block.count, 0) == block.count)
            let buffer = h.buffer(65536)
            let baseline = Fds.count()
            var closedByLoop = 0, closeCanceled = 0, readsDone = 0, readsCanceled = 0
            var bad: [String] = []
            for round in 0..<300 {
                let fd = fcntl(file, F_DUPFD_CLOEXEC, 0)
                guard fd >= 0 else { throw SysCallError("F_DUPFD_CLOEXEC") }
                var readResults: [CompletionResult] = [], closeResults: [CompletionResult] = [], cancelResults: [CompletionResult] = []
                let read = Completion(.pread(fd: fd, buffer: buffer, offset: 0)) { _, r in readResults.append(r); return .disarm }
                let closer = Completion(.close(fd: fd)) { _, r in closeResults.append(r); return .disarm }
                let cancel = Completion()
                try loop.add(read)
                if round % 3 == 0 { try loop.run(.noWait) }
                try loop.add(closer)
                if round % 4 == 1 { try loop.run(.noWait) }
                try loop.cancel(closer, using: cancel) { _, r in cancelResults.append(r); return .disarm }
                #expect(try runUntil(loop) { [read, closer, cancel].allSatisfy { $0.state == .dead } }, "round \(round)")
                try loop.run(.noWait)
                guard readResults.count == 1, closeResults.count == 1, cancelResults.count == 1 else {
                    bad.append("round \(round): callbacks read \(readResults), close \(closeResults), cancel \(cancelResults)")
                    break
                }
                switch readResults[0] {
                case .read(.success(65536)): readsDone += 1
                case .read(.failure(.canceled)): readsCanceled += 1
                default: bad.append("round \(round): pread \(readResults[0])")
                }
                let stillOpen = fcntl(fd, F_GETFD) >= 0
                switch (closeResults[0].error, cancelResults[0].error) {
                case (nil, .notFound?), (nil, .inProgress?):
                    closedByLoop += 1
                    if stillOpen { bad.append("round \(round): the close succeeded but \(fd) is open") }
                case (.canceled?, nil):
                    closeCanceled += 1
                    if stillOpen { close(fd) } else { bad.append("round \(round): the close was cancelled but \(fd) is closed") }
                default:
                    bad.append("round \(round): close \(closeResults[0]), cancel \(cancelResults[0])")
                    if stillOpen { close(fd) }
                }
                if bad.count > 5 { break }
            }
            print("[\(backend)] A12: \(closedByLoop) closes done, \(closeCanceled) cancelled; \(readsDone) reads done, \(readsCanceled) cancelled")
            #expect(bad.isEmpty, "\(bad)")
            #expect(closedByLoop + closeCanceled == 300)
            #expect(Fds.count() == baseline, "descriptor table changed by \(Fds.count() - baseline)")
        }
    }

    /// PITFALLS B12 and G3: every descriptor the loop and the watchers create (the
    /// backend's own, eventfds, a signalfd, pidfds, files, sockets, an accepted socket) is
    /// close-on-exec, and a child started by code outside this library -- plain
    /// posix_spawn, which closes nothing -- holds none of them.
    @Test(arguments: conformanceBackends)
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
                try child.wait(loop: loop, completion: Completion()) { _, r in exits.append(r) }
            }
            defer { for c in children { try? c.signal(SIGKILL) } }

            var path = Array("/tmp/evloop-pitfall-b12-XXXXXX".utf8CString)
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

    /// PITFALLS I6 at the loop level: 200 loops, each with thread-pool work queued (preads
    /// of a regular file: the pool on readiness backends, the kernel on io_uring), are
    /// drained with `cancelAll` and released. No thread, descriptor or loop is left behind.
    @Test(arguments: conformanceBackends)
    func loopsWithQueuedPoolWorkAreTornDownCleanly(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            _ = try makeTestLoop(backend)   // skips, loudly, where the backend is unavailable
            let file = try makeTempFile()
            defer { close(file) }
            var block = [UInt8](repeating: 0x62, count: 65536)
            #expect(pwrite(file, &block, block.count, 0) == block.count)
            let buffers = (0..<16).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16) }
            defer { for b in buffers { b.deallocate() } }
            var undrained = 0
            func cycle(stopAfter: Int = 8) throws -> () -> LoopCore? {
                let loop = try makeLoop(backend)
                weak let weakLoop = loop
                var callbacks = 0
                for (i, b) in buffers.enumerated() {
                    try loop.add(Completion(.pread(fd: file, buffer: b, offset: 0)) { _, _ in callbacks += 1; return .disarm })
                    if i == stopAfter { try loop.run(.noWait) }
                }
                loop.cancelAll()
                let drained = try runUntilDone(loop)
                if !drained || callbacks != buffers.count || loop.activeCount != 0 {
                    undrained += 1
                    _ = Unmanaged.passRetained(loop)   // never release a loop with work in flight
                }
                return { weakLoop }
            }
            // One loop first, so lazily created process-wide state does not count.
            _ = try cycle()
            let threads = Pitfall.threadCount()
            let fds = Fds.count()
            var weakLoops: [() -> LoopCore?] = []
            for round in 0..<200 {
                weakLoops.append(try cycle(stopAfter: round % 16))
            }
            #expect(undrained == 0)
            #expect(weakLoops.allSatisfy { $0() == nil }, "a drained loop was not released")
            // Threads of other components (the test runner's) may come and go; a leak of the
            // pool's workers would be hundreds.
            let threadsAfter = Pitfall.threadCount()
            #expect(threadsAfter <= threads + 4, "threads: \(threads) before, \(threadsAfter) after 200 loops")
            #expect(Fds.count() == fds, "descriptors: \(fds) before, \(Fds.count()) after 200 loops")
        }
    }
}
