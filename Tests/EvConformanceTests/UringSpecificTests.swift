// The io_uring cases of issue 4 (PITFALLS A1, A7, A9, B1, B3, B5, B9, C7, D7). Each test
// that means something on every backend runs on all of them: the situations io_uring
// makes hard (a full submission queue, a full completion queue, a cancel in the same
// batch as the completion) must give the same answers everywhere. On io_uring the loop
// gets a deliberately tiny ring (8 entries) so that the submission queue overflows.
// The rest exercise io_uring internals through package-level hooks and run only where
// io_uring is available (elsewhere they are reported as skipped, never as passed).
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// A loop on `backend`; on io_uring, one with a ring of `entries` submission entries (the
/// completion queue has twice as many).
private func smallRingLoop(_ backend: Backend, entries: UInt32) throws -> LoopCore {
    let loop = try makeTestLoop(backend)   // cancels (skips) the test when unavailable
    guard backend == .ioUring else { return loop }
    return try UringLoop(entries: entries)
}

/// Makes an io_uring loop for a test that only makes sense there, or skips the test.
private func uringTestLoop(entries: UInt32 = 8, setupFlags: UringLoop.SetupFlags = [],
                           allowCancelByDescriptor: Bool = true) throws -> UringLoop {
    _ = try makeTestLoop(.ioUring)   // skips, loudly, on a machine without io_uring
    return try UringLoop(entries: entries, setupFlags: setupFlags, probeOverride: nil,
                         allowCancelByDescriptor: allowCancelByDescriptor)
}

private let uringListed = conformanceBackends.contains(.ioUring)

@Suite("Conformance: io_uring cases on every backend")
struct UringSpecificTests {

    /// PITFALLS B1: 10,000 operations in flight at once through an 8-entry ring. Nothing is
    /// dropped or failed: every callback runs exactly once, 4,000 one-byte pwrites land at
    /// their offsets, 1,000 polls wait until data arrives, and 1,000 timers with one
    /// deadline fire in the order they were armed.
    @Test(.tags(.pitfallB1), arguments: conformanceBackends)
    func tenThousandOperationsThroughAnEightEntryRing(backend: Backend) throws {
        let loop = try smallRingLoop(backend, entries: 8)
        let h = Harness(loop)
        defer { h.finish() }
        if let u = loop as? UringLoop { #expect(u.entries == 8) }
        let file = h.own(try makeTempFile())
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)

        let writes = 4000, writablePolls = 4000, readablePolls = 1000, timers = 1000
        let total = writes + writablePolls + readablePolls + timers
        var calls = [Int](repeating: 0, count: total)
        var bad: [String] = []
        var timerOrder: [Int] = []
        let source = h.buffer(writes)
        for i in 0..<writes { source[i] = patternByte(i) }
        var keep: [Completion] = []
        keep.reserveCapacity(total)

        for i in 0..<writes {
            let c = Completion(.pwrite(fd: file, buffer: UnsafeRawBufferPointer(rebasing: source[i..<(i + 1)]),
                                       offset: UInt64(i))) { _, r in
                calls[i] += 1
                if r.count != 1 { bad.append("pwrite \(i): \(r)") }
                return .disarm
            }
            keep.append(c)
        }
        for k in 0..<writablePolls {
            let i = writes + k
            keep.append(Completion(.poll(fd: a, events: .writable)) { _, r in
                calls[i] += 1
                guard case .poll(.success(let ev)) = r, ev.contains(.writable) else { bad.append("writable poll: \(r)"); return .disarm }
                return .disarm
            })
        }
        for k in 0..<readablePolls {
            let i = writes + writablePolls + k
            keep.append(Completion(.poll(fd: a, events: .readable)) { _, r in
                calls[i] += 1
                guard case .poll(.success(let ev)) = r, ev.contains(.readable) else { bad.append("readable poll: \(r)"); return .disarm }
                return .disarm
            })
        }
        let deadline = loop.now + .milliseconds(20)
        for k in 0..<timers {
            let i = writes + writablePolls + readablePolls + k
            keep.append(Completion(.timer(deadline: deadline)) { _, r in
                calls[i] += 1
                timerOrder.append(k)
                if r.error != nil { bad.append("timer: \(r)") }
                return .disarm
            })
        }
        // Interleave the kinds, so the parked FIFO holds a mix.
        var order = Array(0..<total)
        var rng = SeededRandom(seed: 4)
        order.shuffle(using: &rng)
        for i in order { try loop.add(keep[i]) }
        #expect(loop.activeCount == total)

        let readableRange = (writes + writablePolls)..<(writes + writablePolls + readablePolls)
        #expect(try runUntil(loop, timeout: .seconds(20)) {
            (0..<total).allSatisfy { readableRange.contains($0) || calls[$0] > 0 }
        })
        #expect(readableRange.allSatisfy { calls[$0] == 0 }, "nothing is readable yet")
        try Sock.put(b, [42])
        #expect(try runUntil(loop, timeout: .seconds(20)) { !calls.contains(0) })
        let wrongCounts = calls.filter { $0 != 1 }.count
        #expect(wrongCounts == 0, "every callback exactly once: \(wrongCounts) differ")
        #expect(bad.isEmpty, "\(bad.prefix(5))")
        // Timers with one deadline fire in the order they were armed (added).
        let timerBase = writes + writablePolls + readablePolls
        let armOrder = order.filter { $0 >= timerBase }.map { $0 - timerBase }
        let firstMismatch = Array(zip(timerOrder, armOrder)).firstIndex { $0.0 != $0.1 }
        #expect(timerOrder.count == timers && firstMismatch == nil,
                "timers out of arm order from position \(String(describing: firstMismatch))")
        #expect(fileContent(file) == (0..<writes).map { patternByte($0) })
        #expect(loop.activeCount == 0)
    }

    /// PITFALLS A7: a cancel in the same batch as the completion it targets. Whatever the
    /// timing, exactly one outcome pair: (target `.canceled`, cancel succeeded) or (target
    /// has its data, cancel `.notFound`/`.inProgress`), and no byte is lost or read twice.
    @Test(.tags(.pitfallA7), arguments: conformanceBackends)
    func cancelRacingCompletionInOneBatch(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(1)
        var sent = 0, received = 0
        var pairs: [String: Int] = [:]
        for round in 0..<300 {
            var target: CompletionResult?
            var outcome: CompletionResult?
            let recv = Completion(.recv(socket: a, buffer: buffer)) { _, r in target = r; return .disarm }
            let cancel = Completion()
            let variant = round % 3
            if variant == 0 { try Sock.put(b, [UInt8(truncatingIfNeeded: round)]); sent += 1 }
            try loop.add(recv)
            if variant == 1 { try Sock.put(b, [UInt8(truncatingIfNeeded: round)]); sent += 1 }
            try loop.cancel(recv, using: cancel) { _, r in outcome = r; return .disarm }
            if variant == 2 { try Sock.put(b, [UInt8(truncatingIfNeeded: round)]); sent += 1 }
            #expect(try runUntil(loop) { target != nil && outcome != nil }, "round \(round)")
            guard let t = target, let o = outcome else { break }
            switch (t, o) {
            case (.read(.failure(.canceled)), .cancel(.success)):
                pairs["canceled/success", default: 0] += 1
            case (.read(.success(1)), .cancel(.failure(.notFound))),
                 (.read(.success(1)), .cancel(.failure(.inProgress))):
                received += 1
                pairs["data/\(o.error!)", default: 0] += 1
            default:
                Issue.record("round \(round): impossible pair (\(t), \(o))")
            }
            // A cancelled read consumed nothing: its byte is still queued.
            received += Sock.drain(a)
            #expect(received == sent, "round \(round): \(received) of \(sent) bytes")
        }
        #expect(pairs.values.reduce(0, +) == 300, "\(pairs)")
    }

    /// PITFALLS A1 (libxev#233): a write that completed partially and was rearmed on the
    /// same completion, then cancelled at once. The cancel names the second activation:
    /// the write's callback reports `.canceled` exactly once and the cancel succeeds; a
    /// second cancel finds nothing and the write's callback is not invoked again.
    @Test(.tags(.pitfallA1), arguments: conformanceBackends)
    func partialWriteRearmedThenCancelled(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        Sock.setInt(a, SOL_SOCKET, SO_SNDBUF, 2048)
        let out = h.buffer(16 * 1024, fill: 7)
        var results: [CompletionResult] = []
        let write = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(out))) { c, r in
            results.append(r)
            if results.count == 1, let n = r.count, n > 0, n < out.count {
                c.operation = .send(socket: a, buffer: UnsafeRawBufferPointer(rebasing: out[n...]))
                return .rearm
            }
            return .disarm
        }
        try loop.add(write)
        #expect(try runUntil(loop) { !results.isEmpty })
        let first = results.first?.count ?? 0
        #expect(first > 0 && first < out.count, "the first write is partial: \(results)")
        #expect(write.state == .active, "rearmed with the rest")
        let generation = write.generation

        var cancelResults: [CompletionResult] = []
        let cancel = Completion()
        try loop.cancel(write, using: cancel) { _, r in cancelResults.append(r); return .disarm }
        #expect(try runUntil(loop) { write.state == .dead && cancel.state == .dead })
        #expect(results.count == 2 && results.last?.isCanceled == true, "\(results)")
        #expect(cancelResults.count == 1 && cancelResults.first?.error == nil, "\(cancelResults)")
        #expect(write.generation == generation)

        var again: [CompletionResult] = []
        let second = Completion()
        try loop.cancel(write, using: second) { _, r in again.append(r); return .disarm }
        #expect(try runUntil(loop) { second.state == .dead })
        #expect(again.count == 1 && again.first?.error == .notFound, "\(again)")
        try runFor(loop, .milliseconds(20))
        #expect(results.count == 2, "no further write callback: \(results)")
        // Only the first, partial write's bytes reached the peer.
        #expect(Sock.drain(b) == first)
    }

    /// PITFALLS B3: a batch of three where the middle one has a closed descriptor. The
    /// middle one gets `.badFileDescriptor`; the first and third complete normally (without
    /// IORING_SETUP_SUBMIT_ALL the kernel would stop the batch at a failing entry).
    @Test(.tags(.pitfallB3), arguments: conformanceBackends)
    func invalidDescriptorInTheMiddleOfABatch(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        // A number reserved for this test (moveHigh) and closed: nothing else can hold it.
        let closed = try Fds.moveHigh(try Sock.tcp())
        close(closed)
        let one = h.buffer(Array("first,".utf8)), two = h.buffer(Array("never".utf8)), three = h.buffer(Array("third".utf8))
        var results: [Int: CompletionResult] = [:]
        try loop.add(Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(one))) { _, r in results[1] = r; return .disarm })
        try loop.add(Completion(.write(fd: closed, buffer: UnsafeRawBufferPointer(two))) { _, r in results[2] = r; return .disarm })
        try loop.add(Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(three))) { _, r in results[3] = r; return .disarm })
        #expect(try runUntil(loop) { results.count == 3 })
        #expect(results[1]?.count == 6)
        #expect(results[2]?.error == .badFileDescriptor, "\(String(describing: results[2]))")
        #expect(results[3]?.count == 5)
        #expect(Sock.take(b, 11) == Array("first,third".utf8))
    }

    /// PITFALLS B5: four times the completion queue's size finishing at once (polls that
    /// all wait on one socket, made readable by one byte). Every callback runs exactly
    /// once and promptly: a loop that slept with completions still held by the kernel
    /// would only wake at the watchdog, seconds later. On io_uring the CQ overflows
    /// (16 entries here) and the kept-aside completions are fetched.
    @Test(.tags(.pitfallB5), arguments: conformanceBackends)
    func fourTimesTheCompletionQueueAtOnce(backend: Backend) throws {
        let loop = try smallRingLoop(backend, entries: 8)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let cqSize = Int((loop as? UringLoop)?.completionQueueEntries ?? 16)
        let n = 4 * cqSize
        var fired = [Int](repeating: 0, count: n)
        var keep: [Completion] = []
        for i in 0..<n {
            let c = Completion(.poll(fd: a, events: .readable)) { _, r in
                fired[i] += 1
                if r.error != nil { Issue.record("poll \(i): \(r)") }
                return .disarm
            }
            keep.append(c)
            try loop.add(c)
        }
        for _ in 0..<(n / 4 + 3) { try loop.run(.noWait) }
        #expect(fired.allSatisfy { $0 == 0 })
        if let u = loop as? UringLoop { #expect(u.parkedCount == 0, "all submitted") }
        try Sock.put(b, [1])
        let start = LoopInstant.now()
        #expect(try runUntil(loop, timeout: .seconds(5)) { !fired.contains(0) })
        let elapsed = LoopInstant.now() - start
        #expect(elapsed < .seconds(1), "took \(elapsed): the loop slept with completions pending")
        #expect(fired.allSatisfy { $0 == 1 })
        if let u = loop as? UringLoop {
            #expect(u.overflowFlushes > 0, "\(n) completions at once overflow a \(cqSize)-entry CQ")
        }
    }

    /// Operations with deadlines (each an SQE and its linked timeout) parked behind a full
    /// ring: 20 reads, all but the first with a deadline, through an 8-entry ring all read
    /// their byte, none is
    /// lost while it waits for room for both of its entries (issue 14: a parked operation
    /// with a deadline was dropped when only one entry was free).
    @Test(arguments: conformanceBackends)
    func parkedOperationsWithDeadlines(backend: Backend) throws {
        let loop = try smallRingLoop(backend, entries: 8)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var got: [Int: CompletionResult] = [:]
        var reads: [Completion] = []
        for i in 0..<20 {
            let c = Completion(.recv(socket: a, buffer: h.buffer(1))) { _, r in
                if got[i] != nil { Issue.record("read \(i) called twice") }
                got[i] = r
                return .disarm
            }
            // The first without a deadline: it leaves an odd number of free entries, so a
            // parked read with a deadline meets a ring with room for one entry only.
            if i > 0 { c.deadline = .within(.seconds(30)) }
            reads.append(c)
            try loop.add(c)
        }
        for _ in 0..<10 { try loop.run(.noWait) }
        if let u = loop as? UringLoop { #expect(u.parkedCount == 0, "every read and its timeout submitted") }
        let letters = Array("ABCDEFGHIJKLMNOPQRST".utf8)
        try Sock.put(b, letters)
        #expect(try runUntil(loop, timeout: .seconds(5)) { got.count == 20 }, "\(got.count) of 20 reads completed")
        var bytes: [UInt8] = []
        for (i, c) in reads.enumerated() {
            #expect(got[i]?.count == 1, "read \(i): \(String(describing: got[i]))")
            if case .recv(_, let buffer) = c.operation { bytes.append(buffer[0]) }
        }
        #expect(bytes.sorted() == letters, "each byte read exactly once")
    }

    /// PITFALLS A9: cancelling an operation that is still waiting for a submission entry
    /// (20 reads through an 8-entry ring) completes it as cancelled without submitting it;
    /// the other 19 still read one byte each.
    @Test(.tags(.pitfallA9), arguments: conformanceBackends)
    func cancelOfAParkedOperation(backend: Backend) throws {
        let loop = try smallRingLoop(backend, entries: 8)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var got: [Int: CompletionResult] = [:]
        var reads: [Completion] = []
        for i in 0..<20 {
            let c = Completion(.recv(socket: a, buffer: h.buffer(1))) { _, r in
                if got[i] != nil { Issue.record("read \(i) called twice") }
                got[i] = r
                return .disarm
            }
            reads.append(c)
            try loop.add(c)
        }
        let uring = loop as? UringLoop
        if let u = uring { #expect(u.parkedCount == 12, "8 in the ring, 12 parked") }
        var cancelResult: CompletionResult?
        let cancel = Completion()
        try loop.cancel(reads[14], using: cancel) { _, r in cancelResult = r; return .disarm }
        if let u = uring { #expect(u.parkedCount == 11, "the cancelled read left the queue at once") }
        #expect(try runUntil(loop) { cancelResult != nil && got[14] != nil })
        #expect(got[14]?.isCanceled == true, "\(String(describing: got[14]))")
        #expect(cancelResult?.error == nil, "\(String(describing: cancelResult))")
        #expect(got.count == 1)

        let letters = Array("ABCDEFGHIJKLMNOPQRS".utf8)
        try Sock.put(b, letters)
        #expect(try runUntil(loop) { got.count == 20 })
        var bytes: [UInt8] = []
        for (i, c) in reads.enumerated() where i != 14 {
            #expect(got[i]?.count == 1, "read \(i): \(String(describing: got[i]))")
            if case .recv(_, let buffer) = c.operation { bytes.append(buffer[0]) }
        }
        #expect(bytes.sorted() == letters, "each byte read exactly once")
    }

    /// cancelAll with more operations in flight than the ring has entries (100 waiting in
    /// the kernel, 10 still parked): each is cancelled exactly once.
    @Test(arguments: conformanceBackends)
    func cancelAllWithMoreInFlightThanTheRingHolds(backend: Backend) throws {
        let loop = try smallRingLoop(backend, entries: 8)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results = [[CompletionResult]](repeating: [], count: 110)
        var keep: [Completion] = []
        func addRead(_ i: Int) throws {
            let c = Completion(.recv(socket: a, buffer: h.buffer(1))) { _, r in results[i].append(r); return .disarm }
            keep.append(c)
            try loop.add(c)
        }
        for i in 0..<100 { try addRead(i) }
        for _ in 0..<20 { try loop.run(.noWait) }
        if let u = loop as? UringLoop { #expect(u.parkedCount == 0) }
        for i in 100..<110 { try addRead(i) }
        loop.cancelAll()
        #expect(try runUntilDone(loop))
        #expect(results.allSatisfy { $0.count == 1 && $0[0].isCanceled }, "\(results.filter { $0.count != 1 || !$0[0].isCanceled }.prefix(3))")
        #expect(loop.activeCount == 0)
        // Nothing is left reading: a byte sent now stays queued.
        try Sock.put(b, [9])
        #expect(Sock.take(a, 1, timeoutMs: 1000) == [9])
    }
}

@Suite("io_uring backend internals")
struct UringInternalsTests {

    /// PITFALLS C7: a kernel whose opcode probe lacks an operation the loop needs makes
    /// init throw, naming the opcode; nothing is cached, so a normal ring works right after.
    @Test(.tags(.pitfallC7), .enabled(if: uringListed))
    func missingOpcodeMakesInitThrow() throws {
        _ = try makeTestLoop(.ioUring)
        var asked: [String] = []
        do {
            _ = try UringLoop(entries: 8, setupFlags: [], probeOverride: { name, supported in
                asked.append(name)
                return name == "IORING_OP_SHUTDOWN" ? false : supported
            })
            Issue.record("init succeeded although IORING_OP_SHUTDOWN was reported missing")
        } catch {
            #expect(error.backend == .ioUring)
            #expect(error.reason.contains("IORING_OP_SHUTDOWN"), "\(error.reason)")
            #expect(!error.reason.contains("IORING_OP_RECV,"), "only the missing opcode is named: \(error.reason)")
        }
        #expect(asked.contains("IORING_OP_RECV") && asked.contains("IORING_OP_ASYNC_CANCEL"), "\(asked)")
        let loop = try UringLoop(entries: 8)
        #expect(loop.backend == .ioUring)
    }

    #if DEBUG   // forceNonblockingAttempts and injectedEnterResults exist in debug builds only
    /// PITFALLS D7: with every socket read and write attempted without waiting (as older
    /// kernels do on non-blocking descriptors), -EAGAIN never reaches a callback: the loop
    /// polls and retries. Also a cancel while the operation waits on that poll.
    @Test(.tags(.pitfallD7), .enabled(if: uringListed))
    func eagainIsAbsorbedByPollAndRetry() throws {
        let loop = try uringTestLoop()
        loop.forceNonblockingAttempts = true
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [String: CompletionResult] = [:]
        let rb = h.buffer(16)
        try loop.add(Completion(.recv(socket: a, buffer: rb)) { _, r in results["recv"] = r; return .disarm })
        let readBuffer = h.buffer(16)
        try loop.add(Completion(.read(fd: b, buffer: readBuffer)) { _, r in results["read"] = r; return .disarm })
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.isEmpty)
        #expect(loop.eagainRetries >= 2, "both got EAGAIN and now poll")
        try Sock.put(b, "ping")
        try Sock.put(a, "pong!")
        #expect(try runUntil(loop) { results.count == 2 })
        #expect(results["recv"]?.count == 4 && Array(rb[0..<4]) == Array("ping".utf8), "\(String(describing: results["recv"]))")
        #expect(results["read"]?.count == 5 && Array(readBuffer[0..<5]) == Array("pong!".utf8), "\(String(describing: results["read"]))")

        // A send that finds the buffer full waits for room.
        Sock.fillSendBuffer(a)
        let wb = h.buffer(4096, fill: 5)
        try loop.add(Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, r in results["send"] = r; return .disarm })
        try loop.run(.noWait)
        #expect(results["send"] == nil)
        #expect(try runUntil(loop) { Sock.drain(b); return results["send"] != nil })
        #expect((results["send"]?.count ?? 0) > 0, "\(String(describing: results["send"]))")

        // Cancelled while it waits on its poll.
        var cancelled: CompletionResult?, outcome: CompletionResult?
        let waiting = Completion(.recv(socket: a, buffer: rb)) { _, r in cancelled = r; return .disarm }
        try loop.add(waiting)
        for _ in 0..<3 { try loop.run(.noWait) }
        let cancel = Completion()
        try loop.cancel(waiting, using: cancel) { _, r in outcome = r; return .disarm }
        #expect(try runUntil(loop) { cancelled != nil && outcome != nil })
        #expect(cancelled?.isCanceled == true && outcome?.error == nil, "\(String(describing: cancelled)) \(String(describing: outcome))")
        #expect(!results.values.contains { $0.error == .errno(EAGAIN) })
    }

    /// An operation with a deadline is two SQEs (its own and the linked timeout). When its
    /// own CQE is an EAGAIN (or an EINTR) while a cancel is on its way, the loop holds it
    /// instead of trying again, and the cancel's CQE ends it; the linked timeout's CQE may
    /// still be to come then. (The debug build's check of the held phase wanted no SQE
    /// left at all, and stopped ev-http-async on io_uring in CI: a write with the idle
    /// deadline, interrupted by the shutdown's cancel.) Here the receive, its timeout and
    /// the cancel go to the kernel in one batch: the receive fails at once (MSG_DONTWAIT,
    /// the test knob), its timeout is disarmed, and the cancel finds nothing.
    @Test(.tags(.pitfallD7), .enabled(if: uringListed))
    func operationWithADeadlineHeldForACancelAfterEAGAIN() throws {
        let loop = try uringTestLoop()
        loop.forceNonblockingAttempts = true
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        for round in 0..<20 {
            var received: CompletionResult?, outcome: CompletionResult?
            let receive = Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in received = r; return .disarm }
            receive.deadline = .within(.seconds(30))
            try loop.add(receive)
            try loop.cancel(receive, using: Completion()) { _, r in outcome = r; return .disarm }
            #expect(try runUntil(loop) { received != nil && outcome != nil })
            #expect(received?.isCanceled == true, "round \(round): \(String(describing: received))")
            #expect(outcome?.error == nil, "round \(round): the cancel ended it: \(String(describing: outcome))")
        }
        #expect(loop.eagainRetries >= 20, "every receive got EAGAIN first")
    }

    /// PITFALLS B1 with D7: EAGAINs that come back while other work waits for room in the
    /// ring park the readiness polls they need behind it (in order), and those polls are
    /// written as room frees up: 20 receives through an 8-entry ring all get EAGAIN, all
    /// poll, and all complete once their data comes; half are cancelled while polling.
    /// With deadlines each receive is two SQEs, and a poll may be parked before its
    /// receive's linked timeout has reported (the debug check of the parked phases once
    /// asked for no SQE then, and stopped).
    @Test(.tags(.pitfallB1, .pitfallD7), .enabled(if: uringListed), arguments: [false, true])
    func eagainPollsWaitForRoomInAFullRing(withDeadlines: Bool) throws {
        let loop = try uringTestLoop()
        loop.forceNonblockingAttempts = true
        let h = Harness(loop)
        defer { h.finish() }
        var peers: [Int32] = []
        var results = [CompletionResult?](repeating: nil, count: 20)
        var receives: [Completion] = []
        let pollsBefore = loop.sqeCounts[Int(OperationKind.poll.rawValue)]
        for i in 0..<20 {
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            peers.append(b)
            let c = Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in results[i] = r; return .disarm }
            if withDeadlines { c.deadline = .within(.seconds(30)) }
            receives.append(c)
            try loop.add(c)
        }
        if withDeadlines {
            #expect(loop.parkedCount == 16, "4 in the ring (with their timeouts), 16 parked")
        } else {
            #expect(loop.parkedCount == 12, "8 in the ring, 12 parked")
        }
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.allSatisfy { $0 == nil })
        #expect(loop.parkedCount == 0)
        #expect(loop.eagainRetries >= 20, "every receive got EAGAIN")
        #expect(loop.sqeCounts[Int(OperationKind.poll.rawValue)] - pollsBefore >= 20, "and polls")
        var cancels = 0
        for i in stride(from: 0, to: 20, by: 2) {
            try loop.cancel(receives[i], using: Completion()) { _, r in
                if r.error == nil { cancels += 1 }
                return .disarm
            }
        }
        for i in stride(from: 1, to: 20, by: 2) { try Sock.put(peers[i], "data") }
        #expect(try runUntil(loop) { results.allSatisfy { $0 != nil } && cancels == 10 })
        for i in 0..<20 {
            if i % 2 == 0 {
                #expect(results[i]?.isCanceled == true, "\(i): \(String(describing: results[i]))")
            } else {
                #expect(results[i]?.count == 4, "\(i): \(String(describing: results[i]))")
            }
        }
    }
    #endif

    /// PITFALLS B9: with each setup-flag combination, an operation that completes while
    /// the loop is not waiting is delivered by a single `run(.noWait)` (with
    /// DEFER_TASKRUN, only an io_uring_enter asking for events posts it).
    @Test(.tags(.pitfallB9), .enabled(if: uringListed),
          arguments: [UringLoop.SetupFlags(), [.coopTaskrun], [.singleIssuer], [.singleIssuer, .deferTaskrun],
                      [.singleIssuer, .coopTaskrun, .deferTaskrun]])
    func noWaitDeliversWithEverySetupFlag(flags: UringLoop.SetupFlags) throws {
        let loop = try uringTestLoop(setupFlags: flags)
        let h = Harness(loop)
        defer { h.finish() }
        #expect(loop.setupFlags == flags, "this kernel (6.18 here) knows every flag")
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        for round in 0..<20 {
            var result: CompletionResult?
            let c = Completion(.poll(fd: a, events: .readable)) { _, r in result = r; return .disarm }
            try loop.add(c)
            try loop.run(.noWait)
            #expect(result == nil)
            try Sock.put(b, [1])
            try loop.run(.noWait)
            #expect(result?.error == nil && result != nil, "round \(round): one run(.noWait) delivers: \(String(describing: result))")
            _ = try runUntil(loop) { result != nil }
            Sock.drain(a)
        }
    }

    /// `.close` on a kernel without IORING_ASYNC_CANCEL_FD (simulated): the loop cancels
    /// its own operations on the descriptor, then closes; the pending read ends and the
    /// peer sees the close at once (PITFALLS A11). Also with CANCEL_FD, for comparison.
    @Test(.tags(.pitfallA11), .enabled(if: uringListed),
          arguments: [false, true], [UringLoop.SetupFlags(), [.singleIssuer, .deferTaskrun]])
    func closeCancelsPendingOperations(cancelByDescriptor: Bool, flags: UringLoop.SetupFlags) throws {
        let loop = try uringTestLoop(setupFlags: flags, allowCancelByDescriptor: cancelByDescriptor)
        #expect(loop.cancelsByDescriptor == cancelByDescriptor)
        let h = Harness(loop)
        defer { h.finish() }
        let (client, server) = try Sock.tcpPair()
        h.own(client)
        var results: [String: CompletionResult] = [:]
        try loop.add(Completion(.recv(socket: server, buffer: h.buffer(8))) { _, r in results["recv"] = r; return .disarm })
        try loop.add(Completion(.poll(fd: server, events: .readable)) { _, r in results["poll"] = r; return .disarm })
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.isEmpty)
        try loop.add(Completion(.close(fd: server)) { _, r in results["close"] = r; return .disarm })
        #expect(try runUntil(loop) { results.count == 3 })
        #expect(results["close"]?.error == nil, "\(String(describing: results["close"]))")
        #expect(results["recv"]?.isCanceled == true, "\(String(describing: results["recv"]))")
        #expect(results["poll"]?.isCanceled == true, "\(String(describing: results["poll"]))")
        #expect(Sock.seesEndOfFile(client, timeoutMs: 100))
    }

    #if DEBUG   // forceNonblockingAttempts and injectedEnterResults exist in debug builds only
    /// PITFALLS B2: io_uring_enter refusing work with EBUSY, EAGAIN or ENOMEM (CQ
    /// back-pressure, request memory) fails no operation: the loop reaps and submits again.
    /// 20 operations through an 8-entry ring, so the refusals hit both the rounds that
    /// empty the parked queue and the final submit.
    @Test(.tags(.pitfallB2), .enabled(if: uringListed))
    func busyAgainAndNoMemoryFromEnterAreRetried() throws {
        let loop = try uringTestLoop()
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [CompletionResult] = []
        for _ in 0..<20 {
            try loop.add(Completion(.poll(fd: a, events: .writable)) { _, r in results.append(r); return .disarm })
        }
        loop.injectedEnterResults = [-EBUSY, -EAGAIN, -ENOMEM, -EBUSY, -EAGAIN]
        #expect(try runUntil(loop) { results.count == 20 })
        #expect(loop.injectedEnterResults.isEmpty, "every refusal was met")
        #expect(results.allSatisfy { $0.error == nil }, "\(results.filter { $0.error != nil })")
    }

    /// PITFALLS B4: an SQE written to the ring stays active whatever io_uring_enter says.
    /// An interrupted enter (EINTR) is not an error; an error the loop does not retry
    /// (EFAULT here) makes `run` throw, not the operation fail; either way a later `run`
    /// submits the entry and the operation completes normally, once.
    @Test(.tags(.pitfallB4), .enabled(if: uringListed))
    func submitErrorsLeaveWrittenOperationsActive() throws {
        let loop = try uringTestLoop()
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [CompletionResult] = []
        let c = Completion(.poll(fd: a, events: .writable)) { _, r in results.append(r); return .disarm }
        try loop.add(c)
        loop.injectedEnterResults = [-EINTR]
        try loop.run(.noWait)
        #expect(c.state == .active && results.isEmpty)
        loop.injectedEnterResults = [-EFAULT]
        #expect(throws: EvError.errno(EFAULT)) { try loop.run(.noWait) }
        #expect(c.state == .active && results.isEmpty)
        #expect(try runUntil(loop) { !results.isEmpty })
        #expect(results.count == 1 && results.first?.error == nil, "\(results)")
    }
    #endif

    /// PITFALLS C6: a sandbox that lets io_uring_setup through but blocks io_uring_enter
    /// (simulated: the probe's enter fails) makes init throw with the errno named; the
    /// rings of the failed attempts are released. In a child process (ProcessIsolation):
    /// it counts every ring descriptor of the process.
    @Test(.tags(.pitfallC6), .enabled(if: uringListed), arguments: [EPERM, ENOSYS])
    func blockedEnterMakesInitThrow(code: Int32) throws {
        try ProcessIsolation.run(Self.self, argument: "\(code)") {
            _ = try makeTestLoop(.ioUring)
            let ringsBefore = Fds.table().values.filter { $0.contains("io_uring") }.count
            for _ in 0..<50 {
                do {
                    _ = try UringLoop(entries: 8, setupFlags: [], probeOverride: nil, probeEnterResult: -code)
                    Issue.record("init succeeded although io_uring_enter failed")
                } catch let error as BackendUnavailable {
                    #expect(error.errno == code)
                    #expect(error.reason.contains("io_uring_enter"), "\(error.reason)")
                    #expect(error.reason.contains(code == EPERM ? "EPERM" : "ENOSYS"), "\(error.reason)")
                }
            }
            let ringsAfter = Fds.table().values.filter { $0.contains("io_uring") }.count
            // Exact: in a child process of its own no other test opens or closes rings.
            #expect(ringsAfter == ringsBefore, "\(ringsAfter - ringsBefore) rings left open by 50 failed inits")
        }
    }

    /// PITFALLS D1: an Async notifier's eventfd is waited on with POLL_ADD and read with
    /// read(2) on the loop thread, never with an io_uring READ (Linux 6.15.4 made those
    /// hang): 200 cross-thread notifications submit polls and no READ.
    @Test(.tags(.pitfallD1), .enabled(if: uringListed))
    func eventfdIsNeverReadThroughTheRing() throws {
        let loop = try uringTestLoop()
        let h = Harness(loop)
        defer { h.finish() }
        let async = try Async()
        let waiter = Completion()
        var wakeups = 0
        let readsBefore = loop.sqeCounts[Int(OperationKind.read.rawValue)]
        let pollsBefore = loop.sqeCounts[Int(OperationKind.poll.rawValue)]
        try async.wait(loop: loop, completion: waiter) { _, r in
            if case .success = r { wakeups += 1 }
            return wakeups < 200 ? .rearm : .disarm
        }
        let notifier = async.notifier
        for _ in 0..<200 {
            let seen = wakeups
            let t = try TestThread { notifier.notify() }
            t.join()
            #expect(try runUntil(loop) { wakeups > seen })
        }
        #expect(wakeups == 200)
        #expect(loop.sqeCounts[Int(OperationKind.read.rawValue)] == readsBefore, "no READ SQE")
        #expect(loop.sqeCounts[Int(OperationKind.poll.rawValue)] - pollsBefore >= 200)
    }

    /// `.close` with more operations on the descriptor than the ring holds: 30 polls in
    /// the kernel, 10 still parked, then the close (parked too). Every poll is cancelled
    /// exactly once, the close succeeds, and the peer sees the close at once; with and
    /// without IORING_ASYNC_CANCEL_FD (without it, the 30 internal cancels themselves
    /// have to wait for room in the 8-entry ring, ahead of the close).
    @Test(.enabled(if: uringListed), arguments: [false, true])
    func closeWithMoreOperationsThanTheRingHolds(cancelByDescriptor: Bool) throws {
        let loop = try uringTestLoop(allowCancelByDescriptor: cancelByDescriptor)
        let h = Harness(loop)
        defer { h.finish() }
        let (client, server) = try Sock.tcpPair()
        h.own(client)
        var polls = [[CompletionResult]](repeating: [], count: 40)
        var keep: [Completion] = []
        func addPoll(_ i: Int) throws {
            let c = Completion(.poll(fd: server, events: .readable)) { _, r in polls[i].append(r); return .disarm }
            keep.append(c)
            try loop.add(c)
        }
        for i in 0..<30 { try addPoll(i) }
        for _ in 0..<10 { try loop.run(.noWait) }
        #expect(loop.parkedCount == 0)
        for i in 30..<40 { try addPoll(i) }
        var closed: CompletionResult?
        try loop.add(Completion(.close(fd: server)) { _, r in closed = r; return .disarm })
        // 8 of the new polls took the free SQEs; the 2 that were parked were cancelled at
        // once by the close, which now waits for room itself.
        #expect(loop.parkedCount == 1)
        #expect(try runUntil(loop) { closed != nil && polls.allSatisfy { !$0.isEmpty } })
        #expect(closed?.error == nil, "\(String(describing: closed))")
        #expect(polls.allSatisfy { $0.count == 1 && $0[0].isCanceled }, "\(polls.filter { $0.count != 1 || !$0[0].isCanceled }.prefix(3))")
        #expect(Sock.seesEndOfFile(client, timeoutMs: 100))
    }

    /// A receive rearmed after one that emptied its TCP socket (its CQE had no
    /// IORING_CQE_F_SOCK_NONEMPTY) is submitted with IORING_RECVSEND_POLL_FIRST, and one
    /// rearmed after a receive that left bytes behind is not; the bytes arrive in order
    /// either way, and the end of the stream still ends the last one (issue 14). On a
    /// kernel before 6.0 (simulated: IORING_OP_SEND_ZC reported missing) no receive polls
    /// first.
    @Test(.enabled(if: uringListed), arguments: [true, false])
    func receiveRearmedOnAnEmptiedSocketPollsFirst(kernelHasPollFirst: Bool) throws {
        _ = try makeTestLoop(.ioUring)   // skips, loudly, on a machine without io_uring
        let loop = try UringLoop(entries: 8, setupFlags: [], probeOverride: { name, supported in
            name == "IORING_OP_SEND_ZC" ? kernelHasPollFirst : supported
        })
        #expect(loop.receivesPollFirst == kernelHasPollFirst, "this kernel (6.18 here) has IORING_RECVSEND_POLL_FIRST")
        let first = kernelHasPollFirst ? 1 : 0, second = kernelHasPollFirst ? 2 : 0
        let h = Harness(loop)
        defer { h.finish() }
        let (client, server) = try Sock.tcpPair()
        h.own(client); h.forLoop(server)
        let buffer = h.buffer(4)
        var received: [UInt8] = []
        var results: [CompletionResult] = []
        try Sock.put(client, "abcdefgh")
        let recv = Completion(.recv(socket: server, buffer: buffer)) { _, r in
            results.append(r)
            received += buffer[0..<(r.count ?? 0)]
            return (r.count ?? 0) > 0 ? .rearm : .disarm
        }
        try loop.add(recv)
        // "abcd" left "efgh" queued: its rearm tries the receive at once. "efgh" emptied
        // the socket: its rearm arms the poll first.
        #expect(try runUntil(loop) { results.count == 2 })
        #expect(loop.pollFirstReceives == first, "\(loop.pollFirstReceives)")
        try Sock.put(client, "xy")
        #expect(try runUntil(loop) { results.count == 3 })
        #expect(loop.pollFirstReceives == second, "\(loop.pollFirstReceives)")
        h.close(client)
        #expect(try runUntil(loop) { results.count == 4 })
        #expect(String(decoding: received, as: UTF8.self) == "abcdefghxy")
        #expect(results.last?.error == .endOfFile, "the end of the stream: \(String(describing: results.last))")
    }

    /// libxev's ping-udp1 on one socket: each time both the send of a ping and its receive
    /// have completed, the next ping goes out, and the receive is rearmed after it. The send
    /// and the receive then reach the kernel in one io_uring_enter, the send first, so
    /// loopback has queued the datagram when the receive runs: one enter per roundtrip, no
    /// EAGAIN and no readiness poll, as libxev's io_uring backend (issue 11: 1.00 enter and
    /// 2.00 submitted requests per roundtrip for both, counted with perf tracepoints).
    @Test(.enabled(if: uringListed))
    func datagramsToItselfTakeOneEnterPerRoundtrip() throws {
        let loop = try uringTestLoop(entries: 64, setupFlags: UringLoop.defaultFlags)
        let h = Harness(loop)
        defer { h.finish() }
        let (fd, address) = try Sock.udp()
        h.forLoop(fd)
        let ping = h.buffer(Array("PING\n".utf8))
        let buffer = h.buffer(64)
        let roundtrips = 200
        var pongs = 0
        var done = 0   // the send and the receive of the current ping that have completed
        var failures: [String] = []
        let send = Completion(.sendmsg(socket: fd, buffer: UnsafeRawBufferPointer(ping), address: address)) { _, r in
            if r.count != 5 { failures.append("send: \(r)") }
            done += 1
            if done == 2 { done = 0; return .rearm }
            return .disarm
        }
        let receive = Completion(.recvmsg(socket: fd, buffer: buffer)) { _, r in
            guard r.count == 5 else { failures.append("receive: \(r)"); return .disarm }
            pongs += 1
            if pongs == roundtrips { return .disarm }
            done += 1
            if done == 2 {
                done = 0
                do { try loop.add(send) } catch { failures.append("add: \(error)") }
            }
            return .rearm
        }
        let poll = Int(OperationKind.poll.rawValue), recvmsg = Int(OperationKind.recvmsg.rawValue)
        let enters = loop.enterCount, polls = loop.sqeCounts[poll], receives = loop.sqeCounts[recvmsg]
        try loop.add(receive)
        try loop.add(send)
        #expect(try runUntil(loop) { pongs == roundtrips || !failures.isEmpty })
        #expect(failures.isEmpty, "\(failures)")
        #expect(pongs == roundtrips)
        // The first roundtrip may take two (its receive went to the kernel before the send).
        #expect(loop.enterCount - enters <= roundtrips + 2, "\(loop.enterCount - enters) enters for \(roundtrips) roundtrips")
        #expect(loop.sqeCounts[recvmsg] - receives == roundtrips, "one receive per datagram")
        #expect(loop.sqeCounts[poll] == polls && loop.eagainRetries == 0, "no EAGAIN, no readiness poll")
    }

    /// Every io_uring descriptor in the process is close-on-exec (PITFALLS B12). In a
    /// child process (ProcessIsolation): with other tests running, a ring listed in the
    /// table may be closed, and its number reused, before it is checked.
    @Test(.tags(.pitfallB12, .pitfallG3), .enabled(if: uringListed))
    func ringDescriptorIsCloseOnExec() throws {
        try ProcessIsolation.run(Self.self) {
            let loop = try uringTestLoop()
            let rings = Fds.table().filter { $0.value.contains("io_uring") }.map(\.key)
            #expect(!rings.isEmpty)
            for fd in rings { #expect(Sock.isCloseOnExec(fd), "descriptor \(fd)") }
            _ = loop
        }
    }
}
