// Conformance: deadlines per operation (DESIGN invariant 10; issue 12 item 1; PITFALLS D5).
// Every test runs unchanged on every backend: io_uring keeps deadlines as linked kernel
// timeouts, epoll and poll in the core's timer heap, and the results must not differ.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: deadlines")
struct DeadlineConformanceTests {

    /// A cancel that races the operation's own deadline agrees with it: either the cancel
    /// reports success and the read `.canceled`, or the read reports `.timedOut` and the
    /// cancel `.notFound`/`.inProgress`. (Issue 16, found by the differential tester: on
    /// io_uring the kernel could give both the linked timeout's -ETIME and the cancel's 0,
    /// and the read reported `.timedOut` to a cancel that said it had cancelled it.)
    /// 300 rounds of a read with an expired deadline on an empty socket, cancelled in the
    /// same batch, one tick later, or after a short sleep.
    @Test(arguments: conformanceBackends)
    func aCancelRacingTheDeadlineAgreesWithTheTarget(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(16)
        let read = Completion(), cancel = Completion()
        var canceled = 0, timedOut = 0
        for round in 0..<300 {
            var readResults: [CompletionResult] = [], cancelResults: [CompletionResult] = []
            read.operation = .read(fd: a, buffer: buffer)
            read.deadline = .within(.zero)
            read.callback = { _, r in readResults.append(r); return .disarm }
            try loop.add(read)
            if round % 3 >= 1 { try loop.run(.noWait) }
            if round % 3 == 2 { usleep(200) }
            try loop.cancel(read, using: cancel) { _, r in cancelResults.append(r); return .disarm }
            #expect(try runUntil(loop) { read.state == .dead && cancel.state == .dead })
            guard readResults.count == 1, cancelResults.count == 1 else {
                Issue.record("round \(round): \(readResults.count) read and \(cancelResults.count) cancel callbacks")
                return
            }
            switch (readResults[0].error, cancelResults[0].error) {
            case (.canceled?, nil): canceled += 1
            case (.timedOut?, .notFound?), (.timedOut?, .inProgress?): timedOut += 1
            case let (r, c):
                Issue.record("round \(round): the read reports \(r.map { "\($0)" } ?? "success"), its cancel \(c.map { "\($0)" } ?? "success")")
                return
            }
        }
        print("[\(backend)] a cancel racing an expired deadline: cancelled \(canceled), timed out \(timedOut)")
    }

    /// A receive that nothing answers times out once, with `.timedOut`, no earlier than its
    /// deadline; the socket is untouched: bytes sent afterwards are all read.
    @Test(arguments: conformanceBackends)
    func receiveTimesOut(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(64)
        var results: [CompletionResult] = []
        let read = Completion(.recv(socket: a, buffer: buffer)) { _, r in results.append(r); return .disarm }
        read.deadline = .within(.milliseconds(50))
        loop.updateNow()
        let started = LoopInstant.now()
        try loop.add(read)
        #expect(try runUntil(loop) { !results.isEmpty })
        let waited = LoopInstant.now() - started
        #expect(results.count == 1 && results.first?.error == .timedOut, "\(results)")
        #expect(waited >= .milliseconds(50), "timed out after \(waited)")
        #expect(loop.activeCount == 0)

        // No deadline this time: the data sent now arrives whole.
        read.deadline = .none
        results = []
        try Sock.put(b, "after")
        try loop.add(read)
        #expect(try runUntil(loop) { !results.isEmpty })
        #expect(results.first?.count == 5)
        #expect(Array(buffer[0..<5]) == Array("after".utf8))
    }

    /// `.within` restarts with every activation: a read rearmed as data keeps arriving never
    /// times out, and times out once when the data stops (an idle timeout that allocates
    /// nothing per read). An `.at` deadline does not restart.
    @Test(arguments: conformanceBackends)
    func withinRestartsOnRearm(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(16)
        var reads = 0, timeouts = 0, other: [CompletionResult] = []
        let read = Completion(.recv(socket: a, buffer: buffer)) { _, r in
            if r.count != nil { reads += 1; return .rearm }
            if r.error == .timedOut { timeouts += 1 } else { other.append(r) }
            return .disarm
        }
        read.deadline = .within(.milliseconds(150))
        try loop.add(read)
        // Five bytes, 40 ms apart: each read is well inside its own 150 ms, while the five
        // together take longer than one deadline.
        var sent = 0
        let pacer = Completion()
        try loop.timer(pacer, after: .milliseconds(40)) { c, _ in
            try? Sock.put(b, "x")
            sent += 1
            guard sent < 5 else { return .disarm }
            c.operation = .timer(deadline: loop.now + .milliseconds(40))
            return .rearm
        }
        #expect(try runUntil(loop) { timeouts + other.count > 0 })
        #expect(reads == 5 && timeouts == 1 && other.isEmpty, "reads \(reads), timeouts \(timeouts), other \(other)")

        // An absolute deadline is the same for every activation: once passed, a rearmed
        // read with no data ready times out at once.
        let past = Completion(.recv(socket: a, buffer: buffer)) { _, r in other.append(r); return .disarm }
        past.deadline = .at(loop.now + .milliseconds(-1))
        try loop.add(past)
        #expect(try runUntil(loop) { !other.isEmpty })
        #expect(other.first?.error == .timedOut)
    }

    /// A deadline that has already passed lets the operation try once: with nothing to
    /// read it times out; with data ready it either reads it or times out, and if it times
    /// out the data is still there (a deadline never discards bytes, PITFALLS D5).
    @Test(.tags(.pitfallD5), arguments: conformanceBackends)
    func zeroDeadline(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(16)
        var result: CompletionResult?
        let read = Completion(.recv(socket: a, buffer: buffer)) { _, r in result = r; return .disarm }
        read.deadline = .within(.zero)
        try loop.add(read)
        #expect(try runUntil(loop) { result != nil })
        #expect(result?.error == .timedOut)

        try Sock.put(b, "ready")
        #expect(Sock.wait(a, timeoutMs: 1000) & Int16(POLLIN) != 0)
        result = nil
        try loop.add(read)
        #expect(try runUntil(loop) { result != nil })
        if result?.count == 5 {
            #expect(Array(buffer[0..<5]) == Array("ready".utf8))
        } else {
            #expect(result?.error == .timedOut, "\(String(describing: result))")
            #expect(Sock.take(a, 5) == Array("ready".utf8), "the bytes must still be in the socket")
        }
    }

    /// Accept and connect take deadlines too: an accept with no client times out, and a
    /// connect to a listener whose accept queue is full (the kernel drops the SYN and
    /// retries it for seconds) times out instead of waiting for the kernel to give up.
    @Test(arguments: conformanceBackends)
    func acceptAndConnectTimeOut(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (listener, port) = try Sock.listener(backlog: 0)
        h.forLoop(listener)
        var accepted: CompletionResult?
        let accept = Completion(.accept(socket: listener)) { _, r in accepted = r; return .disarm }
        accept.deadline = .within(.milliseconds(30))
        try loop.add(accept)
        #expect(try runUntil(loop) { accepted != nil })
        #expect(accepted?.error == .timedOut, "\(String(describing: accepted))")

        // Fill the accept queue (backlog 0 still queues one connection; more are dropped
        // at the SYN stage): connect plain clients until one stops connecting at once.
        var address = try Sock.loopback(ipv6: false, port: port)
        _ = address
        var stuck = false
        for _ in 0..<8 {
            let fd = h.own(try Sock.tcp())
            Sock.setNonBlocking(fd, true)
            let r = try Sock.loopback(ipv6: false, port: port).withSockAddr { Glibc.connect(fd, $0, $1) }
            if r == 0 { continue }
            if Sock.wait(fd, Int16(POLLOUT), timeoutMs: 200) & Int16(POLLOUT) == 0 { stuck = true; break }
        }
        #expect(stuck, "the listener's accept queue never filled")
        guard stuck else { return }
        let client = h.forLoop(try Sock.tcp())
        address = try Sock.loopback(ipv6: false, port: port)
        var connected: CompletionResult?
        let connect = Completion(.connect(socket: client, address: address)) { _, r in connected = r; return .disarm }
        connect.deadline = .within(.milliseconds(100))
        let started = LoopInstant.now()
        try loop.add(connect)
        #expect(try runUntil(loop) { connected != nil })
        #expect(connected?.error == .timedOut, "\(String(describing: connected))")
        #expect(LoopInstant.now() - started < .seconds(2))
    }

    /// A cancel before the deadline wins: the target reports `.canceled`, the cancel
    /// succeeds, and the deadline is gone (no second callback when it would have passed).
    /// `cancelAll` takes deadlines with it.
    @Test(arguments: conformanceBackends)
    func cancelBeforeDeadline(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [CompletionResult] = []
        let read = Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in results.append(r); return .disarm }
        read.deadline = .within(.milliseconds(40))
        try loop.add(read)
        var cancelResult: CompletionResult?
        try loop.cancel(read, using: Completion()) { _, r in cancelResult = r; return .disarm }
        #expect(try runUntil(loop) { !results.isEmpty && cancelResult != nil })
        try runFor(loop, .milliseconds(80))
        #expect(results.count == 1 && results.first?.isCanceled == true, "\(results)")
        #expect(cancelResult?.error == nil, "\(String(describing: cancelResult))")

        let reads = (0..<3).map { _ in
            Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in results.append(r); return .disarm }
        }
        results = []
        for r in reads { r.deadline = .within(.milliseconds(40)); try loop.add(r) }
        loop.cancelAll()
        #expect(try runUntil(loop) { results.count == 3 })
        try runFor(loop, .milliseconds(80))
        #expect(results.count == 3 && results.allSatisfy(\.isCanceled), "\(results)")
        #expect(loop.activeCount == 0)
    }

    /// Kinds that never wait ignore the deadline: a timer fires at its own instant, a nop
    /// completes, a close closes.
    @Test(arguments: conformanceBackends)
    func ignoredByKindsThatNeverWait(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var results: [CompletionResult] = []
        let timer = Completion(.timer(deadline: loop.now + .milliseconds(20))) { _, r in results.append(r); return .disarm }
        timer.deadline = .within(.zero)
        let nop = Completion(.nop) { _, r in results.append(r); return .disarm }
        nop.deadline = .within(.zero)
        let (a, b) = try Sock.socketPair()
        h.own(b)
        let close = Completion(.close(fd: a)) { _, r in results.append(r); return .disarm }
        close.deadline = .within(.zero)
        try loop.add(timer); try loop.add(nop); try loop.add(close)
        #expect(try runUntil(loop) { results.count == 3 })
        #expect(results.allSatisfy { $0.error == nil }, "\(results)")
        // The close happened: the peer reads end of file. (Not `fcntl` on the number: a
        // test running in parallel may already have been given it.)
        #expect(Sock.seesEndOfFile(b, timeoutMs: 1000))
    }

    /// An operation that completes just as its deadline passes, and rearms: 300 rounds of
    /// a read with a 0–2 ms deadline racing a write 0–2 ms later. Every activation gets
    /// exactly one callback (data or `.timedOut`), and every byte written is read exactly
    /// once: none lost to a timeout, none duplicated.
    @Test(.tags(.pitfallD5), arguments: conformanceBackends)
    func completionRacingDeadline(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        let buffer = h.buffer(256)
        var random = SeededRandom(seed: 12)
        var received: [UInt8] = []
        var activations = 0, callbacks = 0, timeouts = 0, written: [UInt8] = []
        var errors: [CompletionResult] = []
        let rounds = 300
        let read = Completion(.recv(socket: a, buffer: buffer)) { c, r in
            callbacks += 1
            if let n = r.count {
                received += buffer[0..<n]
            } else if r.error == .timedOut {
                timeouts += 1
            } else {
                errors.append(r)
                return .disarm
            }
            guard activations < rounds else { return .disarm }
            activations += 1
            c.deadline = .within(.microseconds(Int64(random.next() % 2000)))
            return .rearm
        }
        read.deadline = .within(.microseconds(1000))
        activations = 1
        try loop.add(read)
        let writer = Completion()
        var writes = 0
        try loop.timer(writer, after: .microseconds(500)) { c, _ in
            let byte = UInt8(truncatingIfNeeded: writes)
            try? Sock.put(b, [byte])
            written.append(byte)
            writes += 1
            guard writes < rounds else { return .disarm }
            c.operation = .timer(deadline: loop.now + .microseconds(Int64(random.next() % 2000)))
            return .rearm
        }
        #expect(try runUntil(loop, timeout: .seconds(20)) { read.state == .dead && writer.state == .dead })
        #expect(errors.isEmpty, "\(errors)")
        #expect(callbacks == activations, "one callback per activation")
        // What the reads did not take is still in the socket.
        let rest = Sock.take(a, written.count - received.count, timeoutMs: 1000)
        let intact = received + rest == written
        #expect(intact, "read \(received.count) + left \(rest.count) of \(written.count) bytes, in order: \(intact)")
        #expect(timeouts > 0, "the race never produced a timeout: the test proves nothing")
        #expect(loop.activeCount == 0)
    }

    /// Reads of a regular file with a deadline complete with their data (the pool or the
    /// kernel finishes file I/O it has started: a deadline never discards a result).
    @Test(arguments: conformanceBackends)
    func fileReadWithDeadline(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.own(try makeTempFile())
        let bytes = (0..<4096).map { patternByte($0) }
        #expect(bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, $0.count, 0) } == 4096)
        let buffer = h.buffer(4096)
        var result: CompletionResult?
        let read = Completion(.pread(fd: fd, buffer: buffer, offset: 0)) { _, r in result = r; return .disarm }
        read.deadline = .within(.seconds(5))
        try loop.add(read)
        #expect(try runUntil(loop) { result != nil })
        #expect(result?.count == 4096)
        #expect(Array(buffer) == bytes)
    }
}

@Suite("Conformance: awaited deadlines")
struct AwaitedDeadlineTests {
    /// The awaitable forms take the same deadline: an awaited read that nothing answers
    /// throws `EvError.timedOut`; the next awaited read, without one, gets the data (the
    /// executor's reused completion does not keep the old deadline).
    @Test(arguments: conformanceBackends)
    func awaitedReadTimesOut(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            let (first, second) = try runAsync(executor) { () async throws -> (EvError?, Int) in
                let buffer = TestBuffer(16)
                var caught: EvError?
                do {
                    _ = try await socket.read(into: buffer.raw, deadline: .within(.milliseconds(30)), on: executor)
                } catch let e as EvError {
                    caught = e
                }
                try Sock.put(b, "late")
                let n = try await socket.read(into: buffer.raw, on: executor)
                return (caught, n)
            }
            #expect(first == .timedOut)
            #expect(second == 4)
        }
    }
}
