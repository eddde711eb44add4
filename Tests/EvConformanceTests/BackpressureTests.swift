// Backpressure: WriteQueue water marks and writability, writes of owned bytes, and
// StreamReader's pause/resume. Every test runs on every backend; the one that counts
// descriptors runs in a child process (ProcessIsolation).
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Bytes `0..<count` of stream `seed`, for checking what a reader got.
private func stream(_ seed: Int, _ range: Range<Int>) -> [UInt8] {
    range.map { patternByte($0, seed: seed) }
}

/// Where two byte streams first differ (a length difference counts), or nil when they are
/// equal: what a failed comparison of megabytes should report instead of both arrays.
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if let i = (0..<min(a.count, b.count)).first(where: { a[$0] != b[$0] }) { return i }
    return a.count == b.count ? nil : min(a.count, b.count)
}

/// Fills the heap's recently freed chunks with `fill`: a write that still pointed into
/// memory its caller released would then send these bytes instead of the right ones.
private func scribbleOverFreedMemory(sizes: [Int], fill: UInt8) -> Int {
    var total = 0
    for size in sizes {
        let junk = [UInt8](repeating: fill, count: size)
        total &+= Int(junk[size / 2])
    }
    return total
}

/// A stream socketpair for a backpressure test: `writer` is the loop's (in the mode the
/// loop prefers, its send buffer shrunk to `sendBuffer` so that writes stall as soon as the
/// peer stops reading), `reader` the test's own (non-blocking); the harness owns both.
private func slowStream(_ h: Harness, sendBuffer: Int32) throws -> (writer: Int32, reader: Int32) {
    let (writer, reader) = try Sock.socketPair()
    h.forLoop(writer)
    h.own(reader)
    Sock.setInt(writer, SOL_SOCKET, SO_SNDBUF, sendBuffer)
    Sock.setNonBlocking(reader, true)
    return (writer, reader)
}

@Suite("Backpressure: water marks, owned bytes, pause and resume")
struct BackpressureTests {

    /// A reader that never reads: once more than `high` bytes are queued the writability
    /// callback says unwritable (inside the enqueue that crossed the mark), exactly once
    /// however much more is queued and however long the loop runs; once the reader drains
    /// the stream and the queue falls below `low`, it says writable, exactly once.
    @Test(arguments: conformanceBackends)
    func waterMarksReportEachTransitionOnce(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try slowStream(h, sendBuffer: 4096)

        let queue = WriteQueue(fd: writer)
        let marks = try WriteBufferWaterMark(low: 16 * 1024, high: 64 * 1024)
        var transitions: [(writable: Bool, queued: Int)] = []
        queue.setWaterMark(marks) { q, writable in
            transitions.append((writable, q.bytesQueued))
            return .rearm
        }
        #expect(queue.isWritable && transitions.isEmpty, "setting marks below the high one is no transition")
        let chunk = 8 * 1024
        var sent = 0
        for i in 0..<40 {
            try queue.enqueue(loop: loop, copying: stream(1, sent..<sent + chunk))
            sent += chunk
            // The rise is reported inside the enqueue that crossed the mark: the 9th 8 KiB
            // write makes 72 KiB > 64 KiB (nothing has been written yet: no callback ran).
            #expect(transitions.count == (i >= 8 ? 1 : 0), "after write \(i): \(transitions.map(\.writable))")
        }
        #expect(transitions.map(\.writable) == [false] && transitions[0].queued > marks.high)
        #expect(!queue.isWritable)

        // The reader does not read: the queue stays above the marks, nothing more is said.
        try runFor(loop, .milliseconds(50))
        #expect(transitions.map(\.writable) == [false])
        #expect(queue.bytesQueued > marks.low)

        // The reader drains: below `low`, writable again, once.
        var received: [UInt8] = []
        #expect(try runUntil(h.loop, timeout: .seconds(10)) {
            received += Sock.take(reader, 1 << 20, timeoutMs: 0)
            return queue.isEmpty && received.count == sent
        })
        #expect(transitions.map(\.writable) == [false, true])
        #expect(transitions.count == 2 && transitions[1].queued < marks.low)
        #expect(queue.isWritable)
        #expect(firstDifference(received, stream(1, 0..<sent)) == nil)

        // Marks set while the queue is above the high one: unwritable at once. A callback
        // that answers `.disarm` is removed: the next transition is not reported to it.
        var later: [Bool] = []
        queue.removeWaterMark()
        for _ in 0..<12 { try queue.enqueue(loop: loop, copying: stream(2, 0..<chunk)) }
        #expect(queue.isWritable && transitions.count == 2, "no marks, no transitions")
        queue.setWaterMark(marks) { _, writable in
            later.append(writable)
            return .disarm
        }
        #expect(later == [false] && !queue.isWritable)
        #expect(try runUntil(h.loop, timeout: .seconds(10)) {
            Sock.drain(reader)
            return queue.isEmpty
        })
        #expect(later == [false], "a disarmed writability callback was called again")
        #expect(queue.isWritable, "writability is still tracked without a callback")
    }

    /// Water marks with the low one above the high one, or a low one that could never be
    /// undercut, are refused with a typed error; so is a reader with no buffer.
    @Test func badMarksAndCapacitiesAreTypedErrors() throws {
        #expect(throws: EvError.invalidArgument) { _ = try WriteBufferWaterMark(low: 10, high: 5) }
        #expect(throws: EvError.invalidArgument) { _ = try WriteBufferWaterMark(low: 0, high: 5) }
        #expect(throws: EvError.invalidArgument) { _ = try WriteBufferWaterMark(low: -1, high: -1) }
        let same = try WriteBufferWaterMark(low: 5, high: 5)
        #expect(same.low == 5 && same.high == 5)
        #expect(throws: EvError.invalidArgument) { _ = try StreamReader(fd: 0, capacity: 0) }
    }

    /// Writes of owned bytes (arrays copied in, `OwnedBytes` built in place, requests that
    /// hold owned bytes) mixed with raw-buffer requests all arrive complete and in order,
    /// with no failure; the bytes stay valid after the caller dropped its copy
    /// (the freed memory is overwritten before the loop writes anything); a request that
    /// answers `.rearm` is written again at the back; the queue's pool of requests for
    /// owned writes is reused, not regrown, in a second round.
    @Test(arguments: conformanceBackends)
    func ownedBytesWritesCompleteInOrder(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try slowStream(h, sendBuffer: 8192)
        let queue = WriteQueue(fd: writer)

        var rng = SeededRandom(seed: 0x0B17E5)
        var failures = 0
        func round(_ seed: Int) throws -> [UInt8] {
            var expected: [UInt8] = []
            var sizes: [Int] = []
            let count = 400
            for i in 0..<count {
                let size = Int.random(in: 1...3000, using: &rng)
                sizes.append(size)
                let bytes = stream(seed + i, 0..<size)
                expected += bytes
                let done: WriteRequest.CountCallback = { _, result in
                    if case .success(size) = result {} else { failures += 1 }
                    return .disarm
                }
                switch i % 4 {
                case 0:
                    // An array the caller drops right after this call.
                    try queue.enqueue(loop: loop, copying: bytes, callback: done)
                case 1:
                    // Built in place, no array at all.
                    let owned = OwnedBytes(count: size) { raw in
                        for j in 0..<size { raw[j] = patternByte(j, seed: seed + i) }
                    }
                    try queue.enqueue(loop: loop, bytes: owned, callback: done)
                case 2:
                    // A request of the caller's that holds owned bytes.
                    try queue.enqueue(loop: loop, WriteRequest(bytes: OwnedBytes(bytes), callback: done))
                default:
                    // A raw buffer the harness keeps alive.
                    try queue.enqueue(loop: loop, WriteRequest(buffer: UnsafeRawBufferPointer(h.buffer(bytes)), callback: done))
                }
            }
            // The arrays above are gone; reuse their memory before anything is written.
            _ = scribbleOverFreedMemory(sizes: sizes, fill: 0xEE)
            return expected
        }

        let expected = try round(10)
        var received: [UInt8] = []
        #expect(try runUntil(h.loop, timeout: .seconds(20)) {
            received += Sock.take(reader, 1 << 20, timeoutMs: 0)
            return queue.isEmpty && received.count >= expected.count
        })
        #expect(received.count == expected.count)
        #expect(firstDifference(received, expected) == nil, "owned bytes arrived damaged or out of order")
        let pool = queue.pooledRequests
        #expect(pool > 0 && pool <= 200, "pool of \(pool) requests for 200 owned writes")

        // Second round: the pool is reused, not regrown.
        let second = try round(5000)
        received = []
        #expect(try runUntil(h.loop, timeout: .seconds(20)) {
            received += Sock.take(reader, 1 << 20, timeoutMs: 0)
            return queue.isEmpty && received.count >= second.count
        })
        #expect(firstDifference(received, second) == nil)
        #expect(queue.pooledRequests == pool, "the pool grew from \(pool) to \(queue.pooledRequests) for the same backlog")
        #expect(failures == 0)

        // `.rearm` queues the same request again, at the back: A, B, A, A.
        var aCalls = 0
        let a = WriteRequest(bytes: OwnedBytes("A".utf8)) { _, result in
            guard case .success = result else { return .disarm }
            aCalls += 1
            return aCalls < 3 ? .rearm : .disarm
        }
        try queue.enqueue(loop: loop, a)
        try queue.enqueue(loop: loop, copying: Array("B".utf8))
        received = []
        #expect(try runUntil(h.loop) {
            received += Sock.take(reader, 16, timeoutMs: 0)
            return queue.isEmpty && received.count >= 4
        })
        #expect(String(decoding: received, as: UTF8.self) == "ABAA")
        #expect(aCalls == 3 && !a.isQueued)
    }

    /// Owned-bytes writes report their callbacks in queue order (every one exactly once).
    @Test(arguments: conformanceBackends)
    func ownedBytesCallbacksRunInOrder(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try slowStream(h, sendBuffer: 4096)
        let queue = WriteQueue(fd: writer)
        var order: [Int] = []
        var total = 0
        for i in 0..<200 {
            let size = 100 + (i * 37) % 2000
            total += size
            try queue.enqueue(loop: loop, copying: stream(i, 0..<size)) { _, result in
                if case .success(size) = result { order.append(i) }
                return .disarm
            }
        }
        var got = 0
        #expect(try runUntil(h.loop, timeout: .seconds(10)) {
            got += Sock.drain(reader)
            return queue.isEmpty && got == total
        })
        #expect(order == Array(0..<200))
    }

    /// A reader paused and resumed 10,000 times (pausing from outside, resuming before the
    /// pause's cancel has reported, from inside the callback; with data arriving meanwhile)
    /// delivers every byte exactly once and in order, and leaves nothing behind: no
    /// completion active and the process's descriptor count back where it was. Descriptor
    /// counts are process-wide, so this runs in a child process of its own.
    @Test(arguments: conformanceBackends)
    func pauseResumeTenThousandTimesLeaksNothing(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let fdsBefore = Fds.count()
            let (local, peer) = try Sock.socketPair()
            h.forLoop(local)
            h.own(peer)
            let reader = try StreamReader(fd: local, capacity: 512)
            var received: [UInt8] = []
            var pauseInCallback = false
            var deliveries = 0
            try reader.start(loop: loop) { r, result in
                guard case .success(let bytes) = result else {
                    Issue.record("read failed: \(result)")
                    return .disarm
                }
                received += bytes
                deliveries += 1
                if pauseInCallback {
                    pauseInCallback = false
                    do { try r.pause(loop: loop) } catch { Issue.record("pause: \(error)") }
                }
                return .rearm
            }
            var sent = 0
            var idleWhileResumed = 0
            rounds: for i in 0..<10_000 {
                if i % 50 == 0 {
                    // Data while the reader pauses and resumes: 37 bytes every 50 rounds.
                    try Sock.put(peer, stream(7, sent..<sent + 37))
                    sent += 37
                }
                switch i % 4 {
                case 0:
                    // Pause and resume at once: the resume comes while the cancel is on its way.
                    try reader.pause(loop: loop)
                    try reader.resume(loop: loop)
                    try loop.run(.noWait)
                case 1:
                    // Pause, let the cancel land, then resume.
                    try reader.pause(loop: loop)
                    guard try runUntil(h.loop, timeout: .seconds(2), { reader.completion.state == .dead }) else {
                        Issue.record("round \(i): the pause did not end the armed read")
                        break rounds
                    }
                    try reader.resume(loop: loop)
                    try loop.run(.noWait)
                case 2:
                    // Pause twice and resume twice: harmless.
                    try reader.pause(loop: loop)
                    try reader.pause(loop: loop)
                    try loop.run(.noWait)
                    try reader.resume(loop: loop)
                    try reader.resume(loop: loop)
                default:
                    // Pause from inside the read callback (if data comes), resume later.
                    pauseInCallback = true
                    try loop.run(.noWait)
                    pauseInCallback = false
                    try reader.resume(loop: loop)
                }
                // Every round ends resumed: a read must be armed (a resume that came while
                // the pause's cancel was on its way must not leave the reader idle).
                if !reader.isPaused && reader.completion.state != .active { idleWhileResumed += 1 }
            }
            #expect(idleWhileResumed == 0, "\(idleWhileResumed) rounds ended resumed with no read armed")
            #expect(try runUntil(h.loop, timeout: .seconds(10)) { received.count >= sent })
            #expect(received.count == sent, "received \(received.count) of \(sent) bytes")
            #expect(firstDifference(received, stream(7, 0..<sent)) == nil, "bytes lost, repeated or reordered across pauses")
            #expect(deliveries > 0)

            // Paused for good: nothing active once the last cancel has reported.
            try reader.pause(loop: loop)
            #expect(try runUntil(h.loop) { loop.activeCount == 0 })
            #expect(loop.activeCount == 0, "\(loop.activeCount) completions left active")
            #expect(reader.isPaused && !reader.isReading)
            h.close(local)
            h.close(peer)
            #expect(Fds.count() == fdsBefore, "descriptors: \(fdsBefore) before, \(Fds.count()) after")
        }
    }

    /// A reader whose callback answers `.disarm` stops (and can be started again, with
    /// data sent meanwhile delivered then); a close through the loop ends a reading reader
    /// with one `.canceled`, and a paused reader with nothing delivered at all.
    @Test(arguments: conformanceBackends)
    func readerStopsRestartsAndEndsOnClose(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, peerA) = try Sock.socketPair()
        let (b, peerB) = try Sock.socketPair()
        h.forLoop(a); h.forLoop(b); h.own(peerA); h.own(peerB)

        let reader = try StreamReader(fd: a, capacity: 64)
        var got: [String] = []
        try reader.start(loop: loop) { _, result in
            if case .success(let bytes) = result { got.append(String(decoding: bytes, as: UTF8.self)) }
            return .disarm
        }
        #expect(throws: EvError.completionActive) { try reader.start(loop: loop) { _, _ in .disarm } }
        try Sock.put(peerA, "one")
        #expect(try runUntil(h.loop) { got == ["one"] })
        #expect(!reader.isStarted && reader.completion.state == .dead)
        try Sock.put(peerA, "two")
        try runFor(loop, .milliseconds(20))
        #expect(got == ["one"], "a stopped reader read")
        var results: [String] = []
        try reader.start(loop: loop) { _, result in
            switch result {
            case .success(let bytes):
                results.append(String(decoding: bytes, as: UTF8.self))
                return .rearm
            case .failure(let e):
                results.append("\(e)")
                return .disarm   // `.rearm` would read the closed descriptor again
            }
        }
        #expect(try runUntil(h.loop) { results == ["two"] })
        // Closed through the loop while reading: one cancellation, then nothing.
        h.forget(a)
        try TCPSocket(fd: a).close(loop: loop, completion: Completion())
        #expect(try runUntil(h.loop) { results.count == 2 })
        try runFor(loop, .milliseconds(20))
        #expect(results == ["two", "\(EvError.canceled)"])

        // Paused, then closed: nothing armed, nothing delivered.
        let paused = try StreamReader(fd: b, capacity: 64)
        var pausedResults = 0
        try paused.start(loop: loop) { _, _ in pausedResults += 1; return .rearm }
        try paused.pause(loop: loop)
        #expect(try runUntil(h.loop) { paused.completion.state == .dead })
        h.forget(b)
        var closed = false
        try TCPSocket(fd: b).close(loop: loop, completion: Completion()) { _, _ in closed = true; return .disarm }
        #expect(try runUntil(h.loop) { closed })
        try runFor(loop, .milliseconds(20))
        #expect(pausedResults == 0 && loop.activeCount == 0)
    }

    /// The read completion's deadline is the reader's idle timeout: it does not run while
    /// the reader is paused, and after a resume it fires once, as `.timedOut`.
    @Test(arguments: conformanceBackends)
    func idleTimeoutDoesNotRunWhilePaused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (local, peer) = try Sock.socketPair()
        h.forLoop(local)
        h.own(peer)
        let reader = try StreamReader(fd: local, capacity: 64)
        reader.completion.deadline = .within(.milliseconds(60))
        var results: [Result<Int, EvError>] = []
        try reader.start(loop: loop) { _, result in
            results.append(result.map(\.count))
            if case .success = result { return .rearm }
            return .disarm
        }
        try reader.pause(loop: loop)
        try runFor(loop, .milliseconds(200))
        #expect(results.isEmpty, "a paused reader timed out: \(results)")
        // The deadline counts from the loop's cached time when the read is added.
        let resumed = loop.now
        try reader.resume(loop: loop)
        #expect(try runUntil(h.loop) { !results.isEmpty })
        #expect(results.count == 1 && results.first?.errorValue == .timedOut)
        #expect(LoopInstant.now() - resumed >= .milliseconds(60))
        try runFor(loop, .milliseconds(100))
        #expect(results.count == 1)
    }

    /// The server side of backpressure end to end: an echo with a `StreamReader` and a
    /// `WriteQueue` whose writability pauses and resumes the reader. A client that sends
    /// 2 MiB without reading makes the queue unwritable and the reader pause (so the
    /// server holds a bounded backlog); once the client reads, the reader resumes and
    /// every byte comes back, in order.
    @Test(arguments: conformanceBackends)
    func slowClientIsPausedAndResumed(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (server, client) = try slowStream(h, sendBuffer: 8192)
        Sock.setInt(client, SOL_SOCKET, SO_RCVBUF, 8192)

        let reader = try StreamReader(fd: server, capacity: 4096)
        let replies = WriteQueue(fd: server)
        var pauses = 0, resumes = 0
        var maxQueued = 0
        // `reader` weakly: its callback holds `replies`, which holds this callback (a cycle
        // that would keep both, and the loop, alive for ever).
        replies.setWaterMark(try WriteBufferWaterMark(low: 8 * 1024, high: 32 * 1024)) { [weak reader] _, writable in
            guard let reader else { return .disarm }
            do {
                if writable { resumes += 1; try reader.resume(loop: loop) } else { pauses += 1; try reader.pause(loop: loop) }
            } catch {
                Issue.record("pause/resume: \(error)")
            }
            return .rearm
        }
        try reader.start(loop: loop) { _, result in
            guard case .success(let bytes) = result else { return .disarm }
            do { try replies.enqueue(loop: loop, copying: bytes) } catch { Issue.record("enqueue: \(error)") }
            maxQueued = max(maxQueued, replies.bytesQueued)
            return .rearm
        }

        let total = 2 << 20
        let payload = stream(9, 0..<total)
        var sent = 0
        // Phase 1: the client sends what the kernel takes and reads nothing.
        #expect(try runUntil(h.loop, timeout: .seconds(10)) {
            while sent < total {
                let n = payload.withUnsafeBytes {
                    send(client, $0.baseAddress! + sent, min(4096, total - sent), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n <= 0 { break }
                sent += n
            }
            return reader.isPaused
        })
        #expect(pauses == 1 && !replies.isWritable)
        try runFor(loop, .milliseconds(30))
        #expect(reader.isPaused && !reader.isReading, "the reader kept reading while the client did not")
        #expect(sent < total, "everything was accepted: the server did not push back")

        // Phase 2: the client reads (and sends the rest).
        var echoed: [UInt8] = []
        #expect(try runUntil(h.loop, timeout: .seconds(30)) {
            echoed += Sock.take(client, 1 << 20, timeoutMs: 0)
            while sent < total {
                let n = payload.withUnsafeBytes {
                    send(client, $0.baseAddress! + sent, min(4096, total - sent), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n <= 0 { break }
                sent += n
            }
            return echoed.count >= total
        })
        #expect(echoed.count == total)
        #expect(firstDifference(echoed, payload) == nil, "the echo was damaged or reordered")
        #expect(resumes >= 1 && resumes == pauses, "pauses \(pauses), resumes \(resumes)")
        // One reader buffer above the high mark at most: the reader paused in time.
        // The high mark plus the read that crossed it and one that won the race with the
        // pause's cancel, at most: the reader paused in time.
        #expect(maxQueued <= 32 * 1024 + 2 * 4096, "backlog reached \(maxQueued) bytes")
        #expect(reader.isReading && replies.isWritable)
    }
}
