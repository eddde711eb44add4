// Conformance: the life of a caller-owned completion (DESIGN invariants 1–3; PITFALLS J1,
// J2): rearm repeats exactly, disarm frees for reuse, an active completion cannot be added
// again, cancelAll drains, and the active count always matches the completions' states.
// Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: completion lifecycle")
struct CompletionLifecycleTests {

    /// `.rearm` repeats the operation exactly: a read rearmed N−1 times reads N chunks, in
    /// order, and a disarmed read consumes nothing more.
    @Test(.tags(.pitfallF4), arguments: conformanceBackends)
    func rearmRepeatsExactly(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let chunk = 100, n = 8
        var bytes: [UInt8] = []
        for k in 0..<n { bytes += [UInt8](repeating: UInt8(k + 1), count: chunk) }
        try Sock.put(b, bytes)
        let buf = h.buffer(chunk)
        var seen: [[UInt8]] = []
        let read = Completion(.read(fd: a, buffer: buf)) { _, r in
            if let count = r.count { seen.append(Array(buf[0..<count])) } else { seen.append([]) }
            return seen.count < n ? .rearm : .disarm
        }
        try loop.add(read)
        #expect(try runUntilDone(loop))
        #expect(seen.count == n)
        for (k, s) in seen.enumerated() {
            #expect(s == [UInt8](repeating: UInt8(k + 1), count: chunk), "chunk \(k)")
        }
        #expect(read.state == .dead)

        // Disarmed: more data stays in the socket for whoever reads next.
        try Sock.put(b, [UInt8](repeating: 0xEE, count: chunk))
        try runFor(loop, .milliseconds(20))
        #expect(seen.count == n)
        #expect(Sock.take(a, chunk, timeoutMs: 1000) == [UInt8](repeating: 0xEE, count: chunk))

        // A timer rearmed with its deadline unchanged (already passed) fires once per tick.
        var timerFires = 0
        let t = Completion()
        try loop.timer(t, deadline: loop.now) { _, _ in
            timerFires += 1
            return timerFires < 5 ? .rearm : .disarm
        }
        #expect(try runUntilDone(loop))
        #expect(timerFires == 5)
    }

    /// `addTakingImmediateResult` (EvAsync's awaits) delivers every activation exactly
    /// once: either as its returned raw result (an operation that finished while it was
    /// started; the completion is then dead, counted out, and its callback never runs) or
    /// through its callback, never both. The core's own kinds (a nop, a due timer) always go
    /// through the callback, and so does a close that also ended a read waiting on its
    /// descriptor: the read's `.canceled` comes first, in order. An active completion is
    /// refused with `.completionActive`, as by `add`. Which sends finish at once
    /// is the backend's business, so the test accepts either outcome for them.
    @Test(arguments: conformanceBackends)
    func immediateResultIsDeliveredOnce(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buf = h.buffer(4)
        var callbacks: [String] = []
        let send = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(buf))) { _, r in
            callbacks.append("send \(r.count ?? -1)")
            return .disarm
        }
        for _ in 0..<3 {
            let before = loop.activeCount
            if let raw = try loop.addTakingImmediateResult(send) {
                #expect(raw == 4)
                #expect(send.state == .dead)
                #expect(loop.activeCount == before)
                try runFor(loop, .milliseconds(5))
                #expect(callbacks.isEmpty, "a result taken back must not reach the callback too")
            } else {
                #expect(try runUntil(loop) { callbacks == ["send 4"] })
                callbacks.removeAll()
            }
        }
        #expect(Sock.take(b, 12) == [UInt8](repeating: 0, count: 12))

        let nop = Completion(.nop) { _, _ in callbacks.append("nop"); return .disarm }
        #expect(try loop.addTakingImmediateResult(nop) == nil)
        let timer = Completion(.timer(deadline: loop.now)) { _, _ in callbacks.append("timer"); return .disarm }
        #expect(try loop.addTakingImmediateResult(timer) == nil)
        #expect(try runUntil(loop) { callbacks.count == 2 })
        #expect(callbacks == ["nop", "timer"])
        callbacks.removeAll()

        let read = Completion(.read(fd: a, buffer: buf)) { _, r in
            callbacks.append("read \(r.error.map { "\($0)" } ?? "ok")")
            return .disarm
        }
        try loop.add(read)
        try runFor(loop, .milliseconds(5))   // the read is waiting now
        // An active completion is refused, as `add` refuses it, and left as it is.
        #expect(throws: EvError.completionActive) { try loop.addTakingImmediateResult(read) }
        #expect(read.state == .active)
        let close = Completion(.close(fd: a)) { _, r in
            callbacks.append("close \(r.error.map { "\($0)" } ?? "ok")")
            return .disarm
        }
        #expect(try loop.addTakingImmediateResult(close) == nil)
        h.forget(a)
        #expect(try runUntil(loop) { callbacks.count == 2 })
        #expect(callbacks == ["read \(EvError.canceled)", "close ok"])
    }

    /// `.disarm` leaves the completion dead and free: one completion is reconfigured and
    /// reused for a nop, a timer, a write, a read and a close, from outside and from inside
    /// its own callback.
    @Test(arguments: conformanceBackends)
    func disarmFreesForReuse(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let out = h.buffer(Array("ping".utf8))
        let inBuf = h.buffer(16)
        var log: [String] = []
        let c = Completion()
        c.callback = { c, r in
            #expect(c.state == .dead, "dead while its callback runs")
            switch r {
            case .nop:
                log.append("nop")
                c.operation = .timer(deadline: loop.now + .milliseconds(2))
                do { try loop.add(c) } catch { Issue.record("re-add from the callback: \(error)") }
                #expect(c.state == .active)
            case .timer(.success):
                log.append("timer")
                c.operation = .write(fd: a, buffer: UnsafeRawBufferPointer(out))
                return .rearm   // rearm runs the operation as it is configured now
            case .write(.success(let n)):
                log.append("write \(n)")
            default:
                log.append("other \(r)")
            }
            return .disarm
        }
        try loop.add(c)
        #expect(try runUntilDone(loop))
        #expect(log == ["nop", "timer", "write 4"])
        #expect(Sock.take(b, 4) == Array("ping".utf8))
        #expect(c.state == .dead)

        // The same completion, now a read and then a close.
        try Sock.put(b, "pong")
        c.operation = .read(fd: a, buffer: inBuf)
        c.callback = { _, r in log.append("read \(r.count ?? -1)"); return .disarm }
        try loop.add(c)
        #expect(try runUntilDone(loop))
        #expect(Array(inBuf[0..<4]) == Array("pong".utf8))
        h.forget(a)
        c.operation = .close(fd: a)
        c.callback = { _, r in log.append(r.error == nil ? "closed" : "close failed \(r)"); return .disarm }
        try loop.add(c)
        #expect(try runUntilDone(loop))
        #expect(log == ["nop", "timer", "write 4", "read 4", "closed"])
        #expect(Sock.seesEndOfFile(b, timeoutMs: 1000))
    }

    /// Adding a completion that is still active throws `.completionActive` and changes
    /// nothing (on this loop or another); once its callback has run, it can be added again.
    @Test(.tags(.pitfallA6), arguments: conformanceBackends)
    func addingAnActiveCompletionThrows(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let other = try makeTestLoop(backend)
        let h2 = Harness(other)
        defer { h2.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var calls = 0
        let count: Completion.Callback = { _, _ in calls += 1; return .disarm }
        let timer = Completion(.timer(deadline: loop.now + .seconds(10)), callback: count)
        let read = Completion(.read(fd: a, buffer: h.buffer(8)), callback: count)
        let nop = Completion(.nop, callback: count)
        for c in [timer, read, nop] {
            try loop.add(c)
            #expect(throws: EvError.completionActive) { try loop.add(c) }
            #expect(throws: EvError.completionActive) { try other.add(c) }
            #expect(c.state == .active)
        }
        #expect(loop.activeCount == 3)
        #expect(other.activeCount == 0)
        let gen = read.generation
        try loop.run(.noWait)   // the nop finishes
        #expect(calls == 1 && nop.state == .dead)
        try loop.add(nop)
        #expect(read.generation == gen)
        try Sock.put(b, "x")
        try loop.cancel(timer, using: Completion())
        #expect(try runUntilDone(loop))
        #expect(calls == 4)
        #expect(loop.activeCount == 0)
        try loop.add(read)
        #expect(read.generation == gen &+ 1, "every activation gets a new generation")
    }

    /// PITFALLS J1: cancelAll with 100 pending reads (and a timer, an accept and a poll) gives 100
    /// `.canceled` read callbacks, then the drained loop deinitializes.
    @Test(.tags(.pitfallJ1), arguments: conformanceBackends)
    func cancelAllThenDeinit(backend: Backend) throws {
        weak var weakLoop: LoopCore?
        var fds: [Int32] = []
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer {
            for fd in fds { close(fd) }
            for b in buffers { b.deallocate() }
        }
        var canceled = 0, other: [CompletionResult] = []
        do {
            let loop = try makeTestLoop(backend)
            weakLoop = loop
            let record: Completion.Callback = { _, r in
                if r.isCanceled { canceled += 1 } else { other.append(r) }
                return .disarm
            }
            var completions: [Completion] = []
            for _ in 0..<100 {
                let (a, b) = try Sock.socketPair()
                fds += [a, b]
                Sock.setNonBlocking(a, !loop.prefersBlockingDescriptors)
                let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 32, alignment: 8)
                buffers.append(buf)
                let c = Completion(.read(fd: a, buffer: buf), callback: record)
                try loop.add(c)
                completions.append(c)
            }
            let (l, _) = try Sock.listener()
            fds.append(l)
            Sock.setNonBlocking(l, !loop.prefersBlockingDescriptors)
            try loop.add(Completion(.accept(socket: l), callback: record))
            try loop.timer(Completion(), after: .seconds(30), callback: record)
            let (pa, pb) = try Sock.socketPair()
            fds += [pa, pb]
            Sock.setNonBlocking(pa, !loop.prefersBlockingDescriptors)
            try loop.add(Completion(.poll(fd: pa, events: .readable), callback: record))
            try loop.run(.noWait)
            #expect(loop.activeCount == 103)
            loop.cancelAll()
            let drained = try runUntilDone(loop)
            #expect(drained)
            #expect(canceled == 103)
            #expect(other.isEmpty, "\(other)")
            #expect(loop.activeCount == 0)
            #expect(completions.allSatisfy { $0.state == .dead })
            if !drained || loop.activeCount != 0 {
                _ = Unmanaged.passRetained(loop)   // do not trip the deinit assertion
                return
            }
        }
        #expect(weakLoop == nil, "the drained loop was released")
    }

    /// PITFALLS J2: over a random sequence of adds, cancels (of anything, including
    /// cancels and dead completions), rearms, data arrivals and ticks, `activeCount` always
    /// equals the number of completions in `.active`, and every activation gets exactly
    /// one callback.
    @Test(.tags(.pitfallJ2), arguments: conformanceBackends)
    func activeCountMatchesStatesUnderRandomOperations(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        final class Box { var rng = SeededRandom(seed: 0x12_3456) }
        let box = Box()
        var peers: [Int32] = []
        var all: [Completion] = []
        var activations: [ObjectIdentifier: Int] = [:]
        var callbacks: [ObjectIdentifier: Int] = [:]
        var violations: [String] = []

        func check(_ when: String) {
            let active = all.filter { $0.state == .active }.count
            if loop.activeCount != active, violations.count < 5 {
                violations.append("\(when): activeCount \(loop.activeCount), .active \(active)")
            }
        }
        func callback(rearmOneIn n: UInt64, retime: Bool) -> Completion.Callback {
            { c, _ in
                callbacks[ObjectIdentifier(c), default: 0] += 1
                check("in a callback")
                if box.rng.next() % n == 0 {
                    if retime { c.operation = .timer(deadline: loop.now + .microseconds(Int64(box.rng.next() % 2000))) }
                    activations[ObjectIdentifier(c), default: 0] += 1
                    return .rearm
                }
                return .disarm
            }
        }
        var reads: [Completion] = []
        for _ in 0..<8 {
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            peers.append(b)
            reads.append(Completion(.read(fd: a, buffer: h.buffer(4)), callback: callback(rearmOneIn: 3, retime: false)))
        }
        let timers = (0..<8).map { _ in Completion(.nop, callback: callback(rearmOneIn: 3, retime: true)) }
        let nops = (0..<4).map { _ in Completion(.nop, callback: callback(rearmOneIn: 4, retime: false)) }
        let cancels = (0..<6).map { _ in Completion(.nop, callback: callback(rearmOneIn: 1_000_000_000, retime: false)) }
        all = reads + timers + nops + cancels
        let targets = reads + timers + nops + cancels
        // Two reference cycles this test makes on purpose, broken on the way out: the
        // callbacks hold `check`, which holds `all`, which holds the completions and so
        // their callbacks; and cancels aimed at each other hold each other as targets.
        defer {
            for c in cancels where c.state == .dead { c.operation = .nop }
            all.removeAll()
        }

        for step in 0..<3000 {
            let r = box.rng.next() % 10
            switch r {
            case 0, 1, 2:
                let pool = [reads, timers, nops][Int(box.rng.next() % 3)]
                let c = pool[Int(box.rng.next() % UInt64(pool.count))]
                if c.state == .active {
                    #expect(throws: EvError.completionActive) { try loop.add(c) }
                } else {
                    if timers.contains(where: { $0 === c }) {
                        c.operation = .timer(deadline: loop.now + .microseconds(Int64(box.rng.next() % 3000)))
                    }
                    try loop.add(c)
                    activations[ObjectIdentifier(c), default: 0] += 1
                }
            case 3, 4:
                if let c = cancels.first(where: { $0.state == .dead }) {
                    let target = targets[Int(box.rng.next() % UInt64(targets.count))]
                    c.operation = .cancel(target: target)
                    try loop.add(c)
                    activations[ObjectIdentifier(c), default: 0] += 1
                }
            case 5:
                try Sock.put(peers[Int(box.rng.next() % UInt64(peers.count))], "z")
            default:
                try loop.run(.noWait)
            }
            check("after step \(step)")
        }
        // Let everything finish (reads get data so they can complete without a cancel).
        for p in peers { try Sock.put(p, [UInt8](repeating: 1, count: 64)) }
        for c in reads + timers + nops { c.callback = { c, _ in callbacks[ObjectIdentifier(c), default: 0] += 1; check("final"); return .disarm } }
        // Run without helper completions (a watchdog would be active and counted).
        let limit = LoopInstant.now() + .seconds(5)
        while all.contains(where: { $0.state == .active }) && LoopInstant.now() < limit {
            try loop.run(.noWait)
        }
        check("at the end")
        #expect(violations.isEmpty, "\(violations)")
        #expect(loop.activeCount == 0)
        for c in all {
            #expect(activations[ObjectIdentifier(c), default: 0] == callbacks[ObjectIdentifier(c), default: 0],
                    "one callback per activation")
        }
        #expect(activations.values.reduce(0, +) > 500, "the sequence exercised the loop")
    }

    /// Releasing a loop with work in flight stops the process with a message, in release
    /// builds too (a precondition, not an assert): otherwise the kernel could later write
    /// into freed memory. Runs in a child process (an exit test).
    @Test(arguments: conformanceBackends)
    func releasingALoopWithWorkInFlightTraps(backend: Backend) async throws {
        _ = try makeTestLoop(backend)   // skipped loudly where the backend cannot run
        // An exit test's body cannot capture the argument: one body per backend.
        switch backend {
        case .ioUring: await #expect(processExitsWith: .failure) { try Self.releaseLoopWithATimerArmed(.ioUring) }
        case .epoll: await #expect(processExitsWith: .failure) { try Self.releaseLoopWithATimerArmed(.epoll) }
        case .poll: await #expect(processExitsWith: .failure) { try Self.releaseLoopWithATimerArmed(.poll) }
        }
    }

    static func releaseLoopWithATimerArmed(_ backend: Backend) throws {
        var loop: LoopCore? = try makeLoop(backend)
        let timer = Completion()
        try loop!.timer(timer, after: .seconds(60)) { _, _ in .disarm }
        loop = nil
        withExtendedLifetime(timer) {}
    }


    // MARK: - Completion memory and loop teardown (pitfalls K1, I6)

    /// PITFALLS K1: for operations whose kernel-visible memory lives in the completion's
    /// scratch area (recvmsg's msghdr and sender address, sendmsg's destination, accept's
    /// peer address, connect's address), the completion and its scratch area are at the
    /// same address when the callback runs as when it was added, although the caller
    /// dropped every reference after `add`; the kernel's writes arrive there (the sender's
    /// and the peer's addresses), and the completion is freed after its callback.
    @Test(.tags(.pitfallK1), arguments: conformanceBackends)
    func scratchMemoryStaysPutFromAddToCallback(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (x, ax) = try Sock.udp()
        let (y, ay) = try Sock.udp()
        h.forLoop(x); h.forLoop(y)
        let (l, port) = try Sock.listener()
        h.forLoop(l)
        let client = h.forLoop(try Sock.tcp())
        let inBuf = h.buffer(64)
        let outBuf = h.buffer(Array("k1".utf8))

        struct Seen { var object: UInt; var scratch: UInt }
        var added: [String: Seen] = [:]
        var called: [String: Seen] = [:]
        var results: [String: CompletionResult] = [:]
        var addresses: [String: SocketAddress] = [:]
        var weakRefs: [String: () -> Completion?] = [:]
        func start(_ name: String, _ op: Operation) throws {
            // The only strong reference is this scope's; the loop must keep it alive.
            let c = Completion(op) { c, r in
                called[name] = Seen(object: UInt(bitPattern: Unmanaged.passUnretained(c).toOpaque()),
                                    scratch: UInt(bitPattern: c.scratch))
                results[name] = r
                addresses[name] = c.lastAddress
                return .disarm
            }
            added[name] = Seen(object: UInt(bitPattern: Unmanaged.passUnretained(c).toOpaque()),
                               scratch: UInt(bitPattern: c.scratch))
            weak let weakC = c
            weakRefs[name] = { weakC }
            try loop.add(c)
        }
        try start("recvmsg", .recvmsg(socket: y, buffer: inBuf))
        try start("accept", .accept(socket: l))
        try start("connect", .connect(socket: client, address: try Sock.loopback(ipv6: false, port: port)))
        try loop.run(.noWait)
        // Whatever has not finished yet (at least the receive: nothing was sent) is alive.
        #expect(results["recvmsg"] == nil)
        for (name, ref) in weakRefs where results[name] == nil {
            #expect(ref() != nil, "\(name): an in-flight completion was freed")
        }
        try start("sendmsg", .sendmsg(socket: x, buffer: UnsafeRawBufferPointer(outBuf), address: ay))
        #expect(try runUntil(loop) { results.count == 4 })
        for name in added.keys.sorted() {
            #expect(called[name]?.object == added[name]?.object, "\(name): the completion moved")
            #expect(called[name]?.scratch == added[name]?.scratch, "\(name): the scratch memory moved")
            #expect(results[name]?.error == nil, "\(name): \(String(describing: results[name]))")
        }
        #expect(addresses["recvmsg"] == ax, "the sender's address was written into the scratch memory")
        #expect(addresses["accept"]?.port == Sock.localAddress(client)?.port, "the peer's address was written into the scratch memory")
        if case .accept(.success(let fd))? = results["accept"] { h.own(fd) }
        #expect(weakRefs.values.allSatisfy { $0() == nil }, "completions are released after their callbacks")
    }

    /// PITFALLS I6 at the loop level: 200 loops, each with thread-pool work queued (preads
    /// of a regular file: the pool on readiness backends, the kernel on io_uring), are
    /// drained with `cancelAll` and released. No thread, descriptor or loop is left behind.
    ///
    /// Runs in a child process of its own (ProcessIsolation.swift): it compares the thread
    /// count and the descriptor table before and after.
    @Test(.tags(.pitfallI6), arguments: conformanceBackends)
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
