// Conformance: cancellation (DESIGN invariant 4; PITFALLS A2–A6, A10, E3).
// Every test runs unchanged on every backend.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Records every callback of the completions it hands out, for exactly-once checks.
/// It keeps each completion it has seen alive, so an identifier is never reused by a
/// later allocation while the log exists. So a callback that records into the log must
/// capture it weakly (as `recorder` does, unowned): the log holds the completion, the
/// completion its callback, and a strong capture would close the cycle and keep all of
/// them alive for ever (LeakSanitizer: docs/TESTING.md, "Sanitizers").
final class CallbackLog {
    private(set) var results: [ObjectIdentifier: [CompletionResult]] = [:]
    private var seen: [Completion] = []

    func recorder(_ then: CallbackAction = .disarm) -> Completion.Callback {
        { [unowned self] c, r in
            self.record(c, r)
            return then
        }
    }

    func record(_ c: Completion, _ r: CompletionResult) {
        if results[ObjectIdentifier(c)] == nil { seen.append(c) }
        results[ObjectIdentifier(c), default: []].append(r)
    }

    func of(_ c: Completion) -> [CompletionResult] { results[ObjectIdentifier(c)] ?? [] }

    func reset() { results = [:] }
}

@Suite("Conformance: cancellation")
struct CancelConformanceTests {

    /// Cancels `target` with `cancel` once it waits in the backend (or right after `add`,
    /// when `sameTick`), and checks the rules: the target stays `.active` until its own
    /// callback (A6), which runs exactly once with `.canceled`, and the cancel succeeds.
    private func cancelPending(_ target: Completion, loop: LoopCore, log: CallbackLog,
                               sameTick: Bool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        target.callback = log.recorder()
        try loop.add(target)
        if !sameTick {
            try loop.run(.noWait)
            try loop.run(.noWait)
        }
        #expect(target.state == .active, sourceLocation: sourceLocation)
        let cancel = Completion()
        var activeWhenCancelReported: Bool?
        try loop.cancel(target, using: cancel) { [weak log] c, r in
            guard let log else { return .disarm }
            log.record(c, r)
            if log.of(target).isEmpty { activeWhenCancelReported = target.state == .active }
            return .disarm
        }
        #expect(target.state == .active, "a cancel never completes anything inside add", sourceLocation: sourceLocation)
        #expect(try runUntil(loop) { target.state == .dead && cancel.state == .dead }, sourceLocation: sourceLocation)
        let results = log.of(target)
        #expect(results.count == 1, "exactly one target callback: \(results)", sourceLocation: sourceLocation)
        #expect(results.first?.isCanceled == true, "\(results)", sourceLocation: sourceLocation)
        let cancelResults = log.of(cancel)
        #expect(cancelResults.count == 1 && cancelResults.first?.error == nil, "\(cancelResults)", sourceLocation: sourceLocation)
        if let stillActive = activeWhenCancelReported {
            #expect(stillActive, "A6: the target is .active until its own callback", sourceLocation: sourceLocation)
        }
        // Nothing more arrives later.
        try loop.run(.noWait)
        #expect(log.of(target).count == 1, sourceLocation: sourceLocation)
    }

    /// A pending read, accept and timer: the target's callback fires once with
    /// `.canceled`, the cancel succeeds, in the same tick as the add or after the
    /// operation has reached the kernel.
    @Test(.tags(.pitfallA6), arguments: conformanceBackends)
    func cancelPendingReadAcceptAndTimer(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let log = CallbackLog()
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let (l, _) = try Sock.listener()
        h.forLoop(l)
        let buf = h.buffer(32)
        for sameTick in [false, true] {
            try cancelPending(Completion(.read(fd: a, buffer: buf)), loop: loop, log: log, sameTick: sameTick)
            try cancelPending(Completion(.recv(socket: a, buffer: buf)), loop: loop, log: log, sameTick: sameTick)
            try cancelPending(Completion(.accept(socket: l)), loop: loop, log: log, sameTick: sameTick)
            try cancelPending(Completion(.timer(deadline: loop.now + .seconds(60))), loop: loop, log: log, sameTick: sameTick)
            try cancelPending(Completion(.poll(fd: a, events: .readable)), loop: loop, log: log, sameTick: sameTick)
        }
        // The socket still works: nothing of the cancelled reads lingers.
        var got: [UInt8] = []
        try loop.add(Completion(.read(fd: a, buffer: buf)) { _, r in got = Array(buf[0..<(r.count ?? 0)]); return .disarm })
        try Sock.put(b, "after")
        #expect(try runUntil(loop) { !got.isEmpty })
        #expect(got == Array("after".utf8))
    }

    /// PITFALLS A2: cancelling work that is not in flight (never added, finished and
    /// disarmed, already cancelled) reports `.notFound` and touches nothing; afterwards a
    /// new socket that reuses the descriptor number works normally.
    @Test(.tags(.pitfallA2), arguments: conformanceBackends)
    func cancelOfNothingIsNotFound(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let log = CallbackLog()
        var (a, b) = try Sock.socketPair()
        a = try Fds.moveHigh(a)
        h.forLoop(a); h.own(b)
        let buf = h.buffer(32)

        func expectNotFound(_ target: Completion, _ what: String) throws {
            let cancel = Completion()
            try loop.cancel(target, using: cancel, callback: log.recorder())
            #expect(try runUntil(loop) { cancel.state == .dead }, "\(what)")
            #expect(log.of(cancel).count == 1 && log.of(cancel).first?.error == .notFound, "\(what): \(log.of(cancel))")
        }

        // (a) never added.
        let never = Completion(.read(fd: a, buffer: buf), callback: log.recorder())
        try expectNotFound(never, "never added")
        #expect(log.of(never).isEmpty)

        // (b) finished and disarmed.
        let finished = Completion(.read(fd: a, buffer: buf), callback: log.recorder())
        try loop.add(finished)
        try Sock.put(b, "done")
        #expect(try runUntil(loop) { finished.state == .dead })
        try expectNotFound(finished, "finished")
        #expect(log.of(finished).count == 1 && log.of(finished).first?.count == 4)

        // (c) already cancelled.
        let twice = Completion(.read(fd: a, buffer: buf), callback: log.recorder())
        try loop.add(twice)
        try loop.run(.noWait)
        let first = Completion()
        try loop.cancel(twice, using: first, callback: log.recorder())
        #expect(try runUntil(loop) { twice.state == .dead && first.state == .dead })
        #expect(log.of(first).first?.error == nil)
        try expectNotFound(twice, "already cancelled")
        #expect(log.of(twice).count == 1 && log.of(twice).first?.isCanceled == true)

        // (d) a dead cancel, and a finished timer.
        try expectNotFound(first, "a finished cancel")
        let timer = Completion(.timer(deadline: loop.now), callback: log.recorder())
        try loop.add(timer)
        #expect(try runUntil(loop) { timer.state == .dead })
        try expectNotFound(timer, "a fired timer")

        // (e) two cancels of one read in the same tick: exactly one succeeds.
        let target = Completion(.read(fd: a, buffer: buf), callback: log.recorder())
        try loop.add(target)
        try loop.run(.noWait)
        let c1 = Completion(), c2 = Completion()
        try loop.cancel(target, using: c1, callback: log.recorder())
        try loop.cancel(target, using: c2, callback: log.recorder())
        #expect(try runUntil(loop) { target.state == .dead && c1.state == .dead && c2.state == .dead })
        #expect(log.of(target).count == 1 && log.of(target).first?.isCanceled == true)
        let outcomes = (log.of(c1) + log.of(c2)).map { $0.error }
        #expect(outcomes.count == 2)
        #expect(outcomes.filter { $0 == nil }.count == 1, "one cancel succeeds: \(outcomes)")
        #expect(outcomes.filter { $0 == .notFound || $0 == .inProgress }.count == 1, "\(outcomes)")

        // The descriptor number, closed and reused by a new socket, works normally; none
        // of the old completions hears about it.
        let before = log.results.mapValues(\.count)
        h.close(a)
        let (c, d) = try Sock.socketPair()
        try Fds.place(c, at: a)
        h.forLoop(a); h.own(d)
        var got: [UInt8] = []
        let fresh = Completion(.read(fd: a, buffer: buf)) { _, r in got = Array(buf[0..<(r.count ?? 0)]); return .disarm }
        try loop.add(fresh)
        try Sock.put(d, "reused")
        #expect(try runUntil(loop) { fresh.state == .dead })
        #expect(got == Array("reused".utf8))
        try runFor(loop, .milliseconds(10))
        #expect(log.results.mapValues(\.count) == before, "no old completion was called again")
    }

    /// PITFALLS A10: a cancel aimed at a cancel (or at itself) reports
    /// `.cannotCancelCancel` and does not disturb the first cancel.
    @Test(.tags(.pitfallA10), arguments: conformanceBackends)
    func cancelOfACancelIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let log = CallbackLog()
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let read = Completion(.read(fd: a, buffer: h.buffer(16)), callback: log.recorder())
        try loop.add(read)
        try loop.run(.noWait)
        let c1 = Completion(), c2 = Completion(), c3 = Completion()
        try loop.cancel(read, using: c1, callback: log.recorder())
        try loop.cancel(c1, using: c2, callback: log.recorder())
        c3.operation = .cancel(target: c3)
        c3.callback = log.recorder()
        try loop.add(c3)
        #expect(try runUntil(loop) { [read, c1, c2, c3].allSatisfy { $0.state == .dead } })
        #expect(log.of(c2).map(\.error) == [.cannotCancelCancel])
        #expect(log.of(c3).map(\.error) == [.cannotCancelCancel])
        #expect(log.of(c1).count == 1 && log.of(c1).first?.error == nil)
        #expect(log.of(read).count == 1 && log.of(read).first?.isCanceled == true)
    }

    /// A completion that cancels itself is refused (`.cannotCancelCancel`) and is freed
    /// like any other once the caller lets go of it: its reference to itself as the target
    /// must not keep it alive (LeakSanitizer found that leak: the completion retained
    /// itself). A cancel of another completion still keeps its target alive while idle.
    @Test(.tags(.pitfallA10), arguments: conformanceBackends)
    func aCancelAimedAtItselfIsFreed(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        weak var weakSelfCancel: Completion?
        weak var weakTarget: Completion?
        var result: CompletionResult?
        let other: Completion
        do {
            let selfCancel = Completion()
            selfCancel.operation = .cancel(target: selfCancel)
            selfCancel.callback = { _, r in result = r; return .disarm }
            weakSelfCancel = selfCancel
            try loop.add(selfCancel)
            #expect(try runUntil(loop) { result != nil })
            #expect(result?.error == .cannotCancelCancel)
            // Aimed elsewhere again, then at itself once more: still no self-reference.
            selfCancel.operation = .cancel(target: Completion())
            selfCancel.operation = .cancel(target: selfCancel)
            let target = Completion()
            weakTarget = target
            other = Completion(.cancel(target: target))
        }
        #expect(weakSelfCancel == nil, "a completion aimed at itself kept itself alive")
        #expect(weakTarget != nil, "an idle cancel keeps its target")
        other.operation = .nop
        #expect(weakTarget == nil, "changing the operation lets the target go")
    }

    /// PITFALLS A4: a read that completes at once (the data was there before it was
    /// submitted) and is rearmed from its callback, then cancelled: one `.canceled`
    /// callback, the cancel succeeds, no callback after that even when more data comes,
    /// and the completion ends `.dead`.
    @Test(.tags(.pitfallA4), arguments: conformanceBackends)
    func immediateReadRearmedThenCancelled(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let log = CallbackLog()
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        try Sock.put(b, "1")
        let buf = h.buffer(1)
        var rearmed = false
        let read = Completion(.read(fd: a, buffer: buf)) { [weak log] c, r in
            log?.record(c, r)
            if !rearmed { rearmed = true; return .rearm }
            return .disarm
        }
        try loop.add(read)
        #expect(try runUntil(loop) { !log.of(read).isEmpty })
        #expect(log.of(read).first?.count == 1)
        #expect(read.state == .active, "rearmed")
        let cancel = Completion()
        try loop.cancel(read, using: cancel, callback: log.recorder())
        #expect(try runUntil(loop) { read.state == .dead && cancel.state == .dead })
        try Sock.put(b, "2345")
        try runFor(loop, .milliseconds(20))
        #expect(log.of(read).count == 2)
        #expect(log.of(read).last?.isCanceled == true)
        #expect(log.of(cancel).count == 1 && log.of(cancel).first?.error == nil)
        #expect(read.state == .dead)
        #expect(Sock.take(a, 4, timeoutMs: 1000) == Array("2345".utf8), "the cancelled read consumed nothing")
    }

    /// PITFALLS A3: reads A and B are ready in the same batch and whichever callback runs
    /// first cancels the other. The other's callback runs exactly once, consistently with
    /// the cancel's report: `.canceled` with a successful cancel (and its data left in the
    /// socket), or its real data with `.notFound`/`.inProgress` (it had already finished:
    /// the loop never drops data it has read). Never both, never neither.
    @Test(.tags(.pitfallA3), arguments: conformanceBackends)
    func completionRetiredEarlierInTheSameBatch(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a1, b1) = try Sock.socketPair()
        let (a2, b2) = try Sock.socketPair()
        h.forLoop(a1); h.forLoop(a2); h.own(b1); h.own(b2)
        let buf1 = h.buffer(8), buf2 = h.buffer(8)
        var canceledRounds = 0, dataRounds = 0
        for round in 0..<20 {
            let log = CallbackLog()
            let r1 = Completion(.read(fd: a1, buffer: buf1))
            let r2 = Completion(.read(fd: a2, buffer: buf2))
            let cancel = Completion()
            var victim: Completion?
            let body: Completion.Callback = { c, r in
                log.record(c, r)
                if victim == nil {
                    let other = c === r1 ? r2 : r1
                    victim = other
                    do { try loop.cancel(other, using: cancel, callback: log.recorder()) } catch { Issue.record("\(error)") }
                }
                return .disarm
            }
            r1.callback = body
            r2.callback = body
            // `body` holds r1 and r2 (and the log, which holds them): a cycle through
            // their callbacks, broken when the round is over.
            defer {
                r1.callback = { _, _ in .disarm }
                r2.callback = { _, _ in .disarm }
            }
            try Sock.put(b1, [UInt8(round)])
            try Sock.put(b2, [UInt8(round)])
            // Let both become readable before the reads are even submitted.
            _ = Sock.wait(a1, timeoutMs: 1000); _ = Sock.wait(a2, timeoutMs: 1000)
            try loop.add(r1)
            try loop.add(r2)
            #expect(try runUntil(loop) { r1.state == .dead && r2.state == .dead && cancel.state == .dead })
            let v = try #require(victim)
            let victimResults = log.of(v)
            let cancelResults = log.of(cancel)
            #expect(victimResults.count == 1, "round \(round): \(victimResults)")
            #expect(cancelResults.count == 1, "round \(round): \(cancelResults)")
            guard let vr = victimResults.first, let cr = cancelResults.first else { continue }
            let victimFd = v === r1 ? a1 : a2
            if vr.isCanceled {
                canceledRounds += 1
                #expect(cr.error == nil, "round \(round): cancel says \(cr) but the target was cancelled")
                #expect(Sock.take(victimFd, 1, timeoutMs: 1000) == [UInt8(round)], "its byte is still in the socket")
            } else {
                dataRounds += 1
                #expect(vr.count == 1, "round \(round): \(vr)")
                #expect(cr.error == .notFound || cr.error == .inProgress, "round \(round): cancel says \(cr) but the target got data")
                #expect((v === r1 ? buf1 : buf2)[0] == UInt8(round))
            }
            // No stale delivery later.
            try runFor(loop, .milliseconds(2))
            #expect(log.of(r1).count == 1 && log.of(r2).count == 1)
        }
        print("[\(backend)] A3: the victim was cancelled in \(canceledRounds) rounds, had already read in \(dataRounds)")
    }

    /// PITFALLS E3 and A11 (descriptor reuse): a read waits on descriptor N; N is closed
    /// through the loop (the read completes once, with an error or `.canceled`); a new
    /// socket gets number N, its read works, and the old completion never sees its data.
    @Test(.tags(.pitfallE3), arguments: conformanceBackends)
    func descriptorNumberReusedAfterCloseThroughTheLoop(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let log = CallbackLog()
        var (a, b) = try Sock.socketPair()
        a = try Fds.moveHigh(a)
        h.forLoop(a); h.own(b)
        let oldBuf = h.buffer(16, fill: 0xAA)
        let old = Completion(.read(fd: a, buffer: oldBuf), callback: log.recorder())
        try loop.add(old)
        try loop.run(.noWait)
        let closer = Completion(.close(fd: a), callback: log.recorder())
        h.forget(a)
        try loop.add(closer)
        #expect(try runUntil(loop) { old.state == .dead && closer.state == .dead })
        #expect(log.of(closer).count == 1 && log.of(closer).first?.error == nil, "\(log.of(closer))")
        #expect(log.of(old).count == 1)
        #expect(log.of(old).first?.error != nil, "the pending read ends with an error: \(log.of(old))")
        #expect(Sock.seesEndOfFile(b, timeoutMs: 100), "the peer sees the close")

        // Same number, new socket.
        let (c, d) = try Sock.socketPair()
        try Fds.place(c, at: a)
        h.forLoop(a); h.own(d)
        let newBuf = h.buffer(16)
        var got: [UInt8] = []
        let fresh = Completion(.read(fd: a, buffer: newBuf)) { _, r in got = Array(newBuf[0..<(r.count ?? 0)]); return .disarm }
        try loop.add(fresh)
        try loop.run(.noWait)
        try Sock.put(d, "new data")
        #expect(try runUntil(loop) { fresh.state == .dead })
        #expect(got == Array("new data".utf8))
        try runFor(loop, .milliseconds(10))
        #expect(log.of(old).count == 1, "the old completion never hears of the new socket")
        #expect(Array(oldBuf) == [UInt8](repeating: 0xAA, count: 16), "nor gets its data")

        // And the old completion itself can be reused on the new socket.
        try loop.add(old)
        try Sock.put(d, "again")
        #expect(try runUntil(loop) { old.state == .dead })
        #expect(log.of(old).count == 2 && log.of(old).last?.count == 5)
    }

    /// PITFALLS A5: 1,000 arm/cancel cycles each of a read, a write on a full socket
    /// buffer and an accept leave nothing behind: no duplicate of our descriptors, no
    /// accepted socket, no growth of the descriptor table; the peer sees our close at once
    /// and the listening port closes. In a child process (ProcessIsolation): it counts the
    /// whole descriptor table.
    @Test(.tags(.pitfallA5), arguments: conformanceBackends)
    func armCancelCyclesLeakNothing(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            let (l, port) = try Sock.listener()
            h.forLoop(l)
            Sock.fillSendBuffer(a)
            let rb = h.buffer(64), wb = h.buffer(65536, fill: 1)
            var canceled = 0
            var other: [CompletionResult] = []
            var cancelFailures: [CompletionResult] = []
            let record: Completion.Callback = { _, r in
                if r.isCanceled { canceled += 1 } else { other.append(r) }
                return .disarm
            }
            let read = Completion(.read(fd: a, buffer: rb), callback: record)
            let write = Completion(.write(fd: a, buffer: UnsafeRawBufferPointer(wb)), callback: record)
            let accept = Completion(.accept(socket: l), callback: record)
            let cancel = Completion()
            func cycle(_ target: Completion) throws {
                try loop.add(target)
                try loop.run(.noWait)
                try loop.cancel(target, using: cancel) { _, r in
                    if r.error != nil { cancelFailures.append(r) }
                    return .disarm
                }
                var spins = 0
                while (target.state == .active || cancel.state == .active) && spins < 10_000 {
                    try loop.run(spins < 100 ? .noWait : .once)
                    spins += 1
                }
            }
            // Warm-up: one cycle of each, so one-time lazy set-up does not count as a leak.
            for t in [read, write, accept] { try cycle(t) }
            let baseline = Fds.count()
            for t in [read, write, accept] {
                for _ in 0..<1000 { try cycle(t) }
            }
            #expect(canceled == 3003)
            #expect(other.isEmpty, "\(other.prefix(3))")
            #expect(cancelFailures.isEmpty, "\(cancelFailures.prefix(3))")
            #expect(loop.activeCount == 0)
            #expect(Fds.references(to: a) == 1, "no dup() of the socket is left")
            #expect(Fds.references(to: l) == 1, "no dup() of the listener is left")
            #expect(Fds.socketsBound(toPort: port, except: l).isEmpty, "no accepted socket is left")

            // The whole table, exactly: the test runs in a child process of its own
            // (ProcessIsolation), so no other test's descriptors come and go meanwhile.
            let delta = Fds.count() - baseline
            #expect(delta == 0, "the descriptor table grew by \(delta) over 3,000 cycles")

            // Our close is seen by the peer at once, and the port stops listening.
            h.close(a)
            #expect(Sock.seesEndOfFile(b, timeoutMs: 100))
            h.close(l)
            let probe = try Sock.tcp()
            defer { close(probe) }
            let address = try Sock.loopback(ipv6: false, port: port)
            let r = address.withSockAddr { connect(probe, $0, $1) }
            #expect(r != 0 && cevsys_errno() == ECONNREFUSED, "nothing keeps the listener open")
        }
    }

    // MARK: - Cancel races with accept and close (pitfalls A8, A12)

    /// PITFALLS A8: an accept cancelled while a client connects, 1,000 times. Each round
    /// ends in exactly one consistent pair: (descriptor handed to the callback, cancel
    /// `.notFound`/`.inProgress`) or (`.canceled`, cancel succeeded, the connection still
    /// queued). No connection is lost to an accept whose result was dropped, and no
    /// descriptor is left open.
    ///
    /// Runs in a child process of its own (ProcessIsolation.swift): it compares the whole
    /// descriptor table before and after.
    @Test(.tags(.pitfallA8), arguments: conformanceBackends)
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
    ///
    /// Runs in a child process of its own (ProcessIsolation.swift): it compares the whole
    /// descriptor table before and after.
    @Test(.tags(.pitfallA12), arguments: conformanceBackends)
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

    /// Starts a 1 MiB send on a TCP socket whose peer reads nothing (its send buffer is full
    /// already) and whose read side is shut down, then has the peer send to it for 300 ms
    /// while the loop ticks: every segment wakes the socket's waiters, which is what pushes
    /// io_uring's send into a kernel worker. `result` gets the send's results.
    private func startBlockedSend(loop: LoopCore, _ h: Harness, deadline: Deadline,
                                  result: @escaping (CompletionResult) -> Void) throws -> Completion {
        let (a, b) = try Sock.tcpPair()
        h.forLoop(a); h.own(b)
        Sock.setNonBlocking(b, true)
        Sock.setInt(b, SOL_SOCKET, SO_RCVBUF, 4096)
        Sock.fillSendBuffer(a)
        _ = shutdown(a, Int32(SHUT_RD))
        let wb = h.buffer(1 << 20, fill: 7)
        let w = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, res in result(res); return .disarm }
        w.deadline = deadline
        try loop.add(w)
        var junk = [UInt8](repeating: 1, count: 1024)
        let until = LoopInstant.now() + .milliseconds(300)
        while LoopInstant.now() < until {
            _ = send(b, &junk, junk.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            try loop.run(.noWait)
        }
        return w
    }

    /// A send blocked on a peer that reads nothing, on a socket whose read side was shut down
    /// (shutdown(2) SHUT_RD, as a server does to end its idle connections at shutdown),
    /// while the peer keeps sending: a cancel ends it, with `.canceled`, in bounded time.
    /// On io_uring such a send ends up in a kernel worker (io-wq), blocked inside the
    /// socket's sendmsg: the cancel finds it running (-EALREADY) and interrupts the worker,
    /// whose send then returns -EINTR. That EINTR is the cancel's doing: the loop used to
    /// restart the send (an interrupted write did nothing; libxev PR #198 restarts them too), which
    /// lost the cancel and left the send, and whatever awaited it, blocked for good (found
    /// by ev-http-async's graceful shutdown, which hung in its grace period's cancel).
    @Test(.timeLimit(.minutes(1)), arguments: conformanceBackends)
    func cancelOfASendBlockedInTheKernelEnds(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var written: [CompletionResult] = []
        let w = try startBlockedSend(loop: loop, h, deadline: .none) { written.append($0) }
        #expect(written.isEmpty, "the send completed although its peer reads nothing: \(written)")
        var cancelResult: CompletionResult?
        try loop.cancel(w, using: Completion()) { _, res in cancelResult = res; return .disarm }
        let ended = try runUntil(loop, timeout: .seconds(10)) { !written.isEmpty && cancelResult != nil }
        #expect(ended, "the cancelled send never ended (cancel: \(String(describing: cancelResult)))")
        #expect(written.count == 1 && written.first?.isCanceled == true, "\(written)")
        // Success, or in progress (it reached a running kernel worker): never not found.
        #expect(cancelResult?.error == nil || cancelResult?.error == .inProgress, "\(String(describing: cancelResult))")
    }

    /// The same blocked send with a deadline instead of a cancel: it ends with `.timedOut`
    /// in bounded time. On io_uring the deadline is a linked timeout, which meets the same
    /// running kernel worker (-EALREADY) and the same EINTR; restarting that send would drop
    /// the deadline, which the kernel has already spent.
    @Test(.timeLimit(.minutes(1)), arguments: conformanceBackends)
    func deadlineOfASendBlockedInTheKernelEnds(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var written: [CompletionResult] = []
        _ = try startBlockedSend(loop: loop, h, deadline: .within(.milliseconds(500))) { written.append($0) }
        let ended = try runUntil(loop, timeout: .seconds(10)) { !written.isEmpty }
        #expect(ended, "the send outlived its deadline")
        #expect(written.count == 1 && written.first?.error == .timedOut, "\(written)")
    }
}
