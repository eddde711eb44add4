// Conformance: TCP and stream sockets over loopback (DESIGN invariants 4 and 5; PITFALLS
// A11, D7, D10, E2, E4, E5, I1). Every test runs unchanged on every backend.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: TCP")
struct TCPConformanceTests {

    /// Connects `client` to `port` and accepts on `listener` through the loop; returns the
    /// accepted descriptor (owned by `h`) and the address accept reported.
    private func connectAndAccept(_ h: Harness, listener: Int32, client: Int32, port: UInt16, ipv6: Bool = false,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws -> (Int32, SocketAddress) {
        let loop = h.loop
        var accepted: CompletionResult?
        var connected: CompletionResult?
        let acceptC = Completion(.accept(socket: listener)) { _, r in accepted = r; return .disarm }
        let connectC = Completion(.connect(socket: client, address: try Sock.loopback(ipv6: ipv6, port: port))) { _, r in
            connected = r
            return .disarm
        }
        try loop.add(acceptC)
        try loop.add(connectC)
        #expect(try runUntil(loop) { accepted != nil && connected != nil }, sourceLocation: sourceLocation)
        #expect(connected?.error == nil, "connect: \(String(describing: connected))", sourceLocation: sourceLocation)
        guard case .accept(.success(let fd))? = accepted else {
            Issue.record("accept: \(String(describing: accepted))", sourceLocation: sourceLocation)
            throw SysCallError("accept through the loop", errno: EIO)
        }
        h.own(fd)
        return (fd, acceptC.lastAddress)
    }

    /// Sends `text` on `from` and receives it on `to`, both through the loop.
    private func exchange(_ h: Harness, from: Int32, to: Int32, _ text: String,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = h.buffer(Array(text.utf8))
        let inBuf = h.buffer(text.utf8.count)
        var got: [UInt8] = []
        var sent: CompletionResult?
        try h.loop.add(Completion(.send(socket: from, buffer: UnsafeRawBufferPointer(out))) { _, r in sent = r; return .disarm })
        let recv = Completion(.recv(socket: to, buffer: inBuf)) { c, r in
            guard let n = r.count else { got.append(0xFF); return .disarm }
            got += inBuf[got.count..<got.count + n]
            if got.count < inBuf.count, case .recv(let s, _) = c.operation {
                c.operation = .recv(socket: s, buffer: UnsafeMutableRawBufferPointer(rebasing: inBuf[got.count...]))
                return .rearm
            }
            return .disarm
        }
        try h.loop.add(recv)
        #expect(try runUntil(h.loop) { sent != nil && recv.state == .dead }, sourceLocation: sourceLocation)
        #expect(sent?.count == text.utf8.count, sourceLocation: sourceLocation)
        #expect(got == Array(text.utf8), sourceLocation: sourceLocation)
    }

    /// Accept and connect through the loop; the accepted descriptor is close-on-exec
    /// (and non-blocking on readiness backends), accept reports the client's address, and
    /// data flows both ways.
    @Test(arguments: conformanceBackends)
    func acceptAndConnect(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (l, port) = try Sock.listener()
        h.forLoop(l)
        let client = h.forLoop(try Sock.tcp())
        let (server, peer) = try connectAndAccept(h, listener: l, client: client, port: port)
        #expect(Sock.isCloseOnExec(server))
        if !loop.prefersBlockingDescriptors {
            #expect(Sock.isNonBlocking(server), "readiness backends accept non-blocking sockets")
        }
        #expect(peer.family == AF_INET)
        #expect(peer.port == Sock.localAddress(client)?.port)
        #expect(peer.host == "127.0.0.1")
        Sock.setNonBlocking(server, h.wantsNonBlocking)
        try exchange(h, from: client, to: server, "hello server")
        try exchange(h, from: server, to: client, "hello client")
    }

    /// 1 MiB each way at once, byte-exact: send/recv in one direction and write/read in the
    /// other, each side with a read and a write in flight on the same socket, with partial
    /// writes continued by rearming with the rest of the buffer.
    @Test(.tags(.pitfallD6), arguments: conformanceBackends)
    func oneMebibyteTransferIsByteExact(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (c, s) = try Sock.tcpPair()
        h.forLoop(c); h.forLoop(s)
        // Small kernel buffers, so writes come back short and are continued by rearming.
        for fd in [c, s] {
            Sock.setInt(fd, SOL_SOCKET, SO_SNDBUF, 16384)
            Sock.setInt(fd, SOL_SOCKET, SO_RCVBUF, 16384)
        }
        let total = 1 << 20
        let outA = h.buffer(total), outB = h.buffer(total)
        for i in 0..<total { outA[i] = patternByte(i, seed: 1); outB[i] = patternByte(i, seed: 2) }
        let inA = h.buffer(total), inB = h.buffer(total)
        var receivedA = 0, receivedB = 0, sentA = 0, sentB = 0
        var errors: [CompletionResult] = []
        var sendCalls = 0, recvCalls = 0

        // c → s with send/recv.
        let sendA = Completion(.send(socket: c, buffer: UnsafeRawBufferPointer(outA))) { c, r in
            sendCalls += 1
            guard let n = r.count, n > 0 else { errors.append(r); return .disarm }
            sentA += n
            guard sentA < total, case .send(let fd, _) = c.operation else { return .disarm }
            c.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: outA[sentA...]))
            return .rearm
        }
        let recvA = Completion(.recv(socket: s, buffer: UnsafeMutableRawBufferPointer(rebasing: inA[0..<65536]))) { c, r in
            recvCalls += 1
            guard let n = r.count, n > 0 else { errors.append(r); return .disarm }
            receivedA += n
            guard receivedA < total, case .recv(let fd, _) = c.operation else { return .disarm }
            c.operation = .recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: inA[receivedA..<min(total, receivedA + 65536)]))
            return .rearm
        }
        // s → c with write/read.
        let writeB = Completion(.write(fd: s, buffer: UnsafeRawBufferPointer(outB))) { c, r in
            guard let n = r.count, n > 0 else { errors.append(r); return .disarm }
            sentB += n
            guard sentB < total, case .write(let fd, _) = c.operation else { return .disarm }
            c.operation = .write(fd: fd, buffer: UnsafeRawBufferPointer(rebasing: outB[sentB...]))
            return .rearm
        }
        let readB = Completion(.read(fd: c, buffer: UnsafeMutableRawBufferPointer(rebasing: inB[0..<65536]))) { c, r in
            guard let n = r.count, n > 0 else { errors.append(r); return .disarm }
            receivedB += n
            guard receivedB < total, case .read(let fd, _) = c.operation else { return .disarm }
            c.operation = .read(fd: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: inB[receivedB..<min(total, receivedB + 65536)]))
            return .rearm
        }
        for x in [recvA, readB, sendA, writeB] { try loop.add(x) }
        #expect(try runUntilDone(loop, timeout: .seconds(20)))
        #expect(errors.isEmpty, "\(errors)")
        #expect(sentA == total && receivedA == total && sentB == total && receivedB == total)
        #expect(memcmp(outA.baseAddress!, inA.baseAddress!, total) == 0, "c → s byte-exact")
        #expect(memcmp(outB.baseAddress!, inB.baseAddress!, total) == 0, "s → c byte-exact")
        print("[\(backend)] 1 MiB: \(sendCalls) send and \(recvCalls) recv callbacks")
    }

    /// PITFALLS E2/E4: a read and a write pending on one socket at once; the read fires
    /// and is rearmed, the write still completes when the peer drains; then cancelling
    /// one of the two leaves the other working.
    @Test(.tags(.pitfallE2, .pitfallE4), arguments: conformanceBackends)
    func readAndWritePendingOnOneSocket(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        Sock.setNonBlocking(b, true)
        Sock.fillSendBuffer(a)
        let rb = h.buffer(64), wb = h.buffer(8192, fill: 7)
        var reads: [Int] = []
        var written: [CompletionResult] = []
        let r = Completion(.recv(socket: a, buffer: rb)) { _, res in
            reads.append(res.count ?? -1)
            return reads.count == 1 ? .rearm : .disarm
        }
        let w = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, res in written.append(res); return .disarm }
        try loop.add(r)
        try loop.add(w)
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(reads.isEmpty && written.isEmpty)

        try Sock.put(b, "one")
        #expect(try runUntil(loop) { reads.count == 1 })
        #expect(reads == [3] && written.isEmpty)
        try Sock.put(b, "second")
        #expect(try runUntil(loop) { reads.count == 2 })
        #expect(reads == [3, 6] && written.isEmpty)
        #expect(r.state == .dead && w.state == .active)

        var drained = 0
        #expect(try runUntil(loop) {
            drained += Sock.drain(b)
            return !written.isEmpty
        })
        #expect(written.count == 1 && (written.first?.count ?? 0) > 0, "\(written)")

        // Both pending again; cancel the write, the read still completes.
        Sock.fillSendBuffer(a)
        reads = []; written = []
        try loop.add(r)
        try loop.add(w)
        try loop.run(.noWait)
        var cancelResult: CompletionResult?
        try loop.cancel(w, using: Completion()) { _, res in cancelResult = res; return .disarm }
        #expect(try runUntil(loop) { !written.isEmpty && cancelResult != nil })
        #expect(written.first?.isCanceled == true)
        #expect(cancelResult?.error == nil)
        try Sock.put(b, "x")
        #expect(try runUntil(loop) { reads.count == 1 })
        #expect(reads == [1])
    }

    /// A pending read (and a later recv and recvmsg) on a socket whose peer closes ends
    /// with `.endOfFile`.
    @Test(.tags(.pitfallE5), arguments: conformanceBackends)
    func endOfFileWhenThePeerCloses(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (c, s) = try Sock.tcpPair()
        h.forLoop(s); h.own(c)
        let buf = h.buffer(64)
        var results: [CompletionResult] = []
        let record: Completion.Callback = { _, r in results.append(r); return .disarm }
        try loop.add(Completion(.read(fd: s, buffer: buf), callback: record))
        try loop.run(.noWait)
        try Sock.put(c, "last words")
        h.close(c)
        #expect(try runUntil(loop) { results.count == 1 })
        #expect(results.first?.count == 10)
        for op in [Operation.read(fd: s, buffer: buf), .recv(socket: s, buffer: buf), .recvmsg(socket: s, buffer: buf)] {
            results = []
            try loop.add(Completion(op, callback: record))
            #expect(try runUntil(loop) { results.count == 1 })
            #expect(results.first?.error == .endOfFile, "\(op.kind): \(results)")
        }
    }

    /// PITFALLS D10/E5: when the peer resets (SO_LINGER 0), a pending read gets
    /// `.connectionReset`, and sends get `.brokenPipe` (or the reset first) — as values:
    /// no SIGPIPE kills the process.
    @Test(.tags(.pitfallD10, .pitfallE5), arguments: conformanceBackends)
    func peerResetGivesResetOrBrokenPipeWithoutSIGPIPE(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (c, s) = try Sock.tcpPair()
        h.forLoop(s)
        let buf = h.buffer(64)
        let out = h.buffer(Array("are you there?".utf8))
        var results: [CompletionResult] = []
        let record: Completion.Callback = { _, r in results.append(r); return .disarm }
        try loop.add(Completion(.read(fd: s, buffer: buf), callback: record))
        try loop.run(.noWait)
        Sock.closeWithReset(c)
        #expect(try runUntil(loop) { results.count == 1 })
        #expect(results.first?.error == .connectionReset, "\(results)")

        // Writes after the reset: errors, never a signal.
        for (i, op) in [Operation.send(socket: s, buffer: UnsafeRawBufferPointer(out)),
                        .sendmsg(socket: s, buffer: UnsafeRawBufferPointer(out), address: nil),
                        .send(socket: s, buffer: UnsafeRawBufferPointer(out))].enumerated() {
            results = []
            try loop.add(Completion(op, callback: record))
            #expect(try runUntil(loop) { results.count == 1 })
            let e = results.first?.error
            if i == 0 {
                #expect(e == .brokenPipe || e == .connectionReset, "\(results)")
            } else {
                #expect(e == .brokenPipe, "\(op.kind): \(results)")
            }
        }

        // A second connection reset while nothing was pending: the first send reports it.
        let (c2, s2) = try Sock.tcpPair()
        h.forLoop(s2)
        Sock.closeWithReset(c2)
        usleep(5000)
        var outcomes: [EvError?] = []
        for _ in 0..<2 {
            results = []
            try loop.add(Completion(.send(socket: s2, buffer: UnsafeRawBufferPointer(out)), callback: record))
            #expect(try runUntil(loop) { results.count == 1 })
            outcomes.append(results.first?.error)
        }
        #expect(outcomes.allSatisfy { $0 == .connectionReset || $0 == .brokenPipe }, "\(outcomes)")
        #expect(outcomes.last == .brokenPipe)
    }

    /// PITFALLS I1: connecting to a port where nothing listens reports `.connectionRefused`.
    @Test(.tags(.pitfallI1), arguments: conformanceBackends)
    func connectToAClosedPortIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (bound, port) = try Sock.boundNotListening()
        h.own(bound)
        for _ in 0..<3 {
            let client = h.forLoop(try Sock.tcp())
            var result: CompletionResult?
            try loop.add(Completion(.connect(socket: client, address: try Sock.loopback(ipv6: false, port: port))) { _, r in
                result = r
                return .disarm
            })
            #expect(try runUntil(loop) { result != nil })
            #expect(result?.error == .connectionRefused, "\(String(describing: result))")
            h.close(client)
        }
    }

    /// Issue 16, bug 1: an accept on a socket that does not listen -- either end of a
    /// connected AF_UNIX pair, either end of a connected TCP connection, a bound TCP socket,
    /// a UDP socket -- fails at once with the error accept(2) itself gives on that socket
    /// (EINVAL; EOPNOTSUPP for UDP), twice in a row, on every backend. io_uring always did;
    /// the readiness backends used to wait for the socket to become readable, which for want
    /// of queued connections it never does, so the accept never completed.
    @Test(arguments: conformanceBackends)
    func acceptOnASocketThatDoesNotListenFailsAtOnce(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (unixA, unixB) = try Sock.socketPair()
        let (client, server) = try Sock.tcpPair()
        let (bound, _) = try Sock.boundNotListening()
        let (udp, _) = try Sock.udp()
        let sockets = [("AF_UNIX socketpair end", unixA), ("the other AF_UNIX end", unixB),
                       ("connected TCP client", client), ("accepted TCP socket", server),
                       ("bound TCP socket", bound), ("UDP socket", udp)]
        for (_, fd) in sockets { h.forLoop(fd) }
        for (what, fd) in sockets {
            // accept(2) on a socket that does not listen fails at once and changes nothing.
            let direct = cevsys_accept4(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            let expected = direct < 0 ? cevsys_errno() : 0
            if direct >= 0 { close(direct) }
            #expect(expected == EINVAL || expected == EOPNOTSUPP, "\(what): accept(2) gave errno \(expected)")
            for attempt in 1...2 {
                var result: CompletionResult?
                try loop.add(Completion(.accept(socket: fd)) { _, r in result = r; return .disarm })
                #expect(try runUntil(loop, timeout: .seconds(2)) { result != nil },
                        "\(what), accept \(attempt): never completed")
                #expect(result?.error == EvError(errno: expected), "\(what), accept \(attempt): \(String(describing: result))")
                loop.cancelAll()   // an accept that is still waiting must not hold up the next case
                _ = try runUntilDone(loop)
            }
        }
    }

    /// PITFALLS I1: shutdown of a socket that was never connected reports `.notConnected`.
    @Test(.tags(.pitfallI1), arguments: conformanceBackends)
    func shutdownOfAnUnconnectedSocketIsNotConnected(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.forLoop(try Sock.tcp())
        var results: [CompletionResult] = []
        for how in [ShutdownHow.write, .read, .both] {
            try loop.add(Completion(.shutdown(socket: fd, how: how)) { _, r in results.append(r); return .disarm })
        }
        #expect(try runUntilDone(loop))
        #expect(results.map(\.error) == [.notConnected, .notConnected, .notConnected], "\(results)")
    }

    /// Shutdown of the write side: the peer reads end of file, and the socket can still
    /// read what the peer sends back.
    @Test(arguments: conformanceBackends)
    func shutdownWriteGivesThePeerEndOfFile(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (c, s) = try Sock.tcpPair()
        h.forLoop(s); h.own(c)
        var result: CompletionResult?
        try loop.add(Completion(.shutdown(socket: s, how: .write)) { _, r in result = r; return .disarm })
        #expect(try runUntil(loop) { result != nil })
        #expect(result?.error == nil, "\(String(describing: result))")
        #expect(Sock.seesEndOfFile(c, timeoutMs: 100))
        try Sock.put(c, "still listening?")
        let buf = h.buffer(16)
        var got: CompletionResult?
        try loop.add(Completion(.read(fd: s, buffer: buf)) { _, r in got = r; return .disarm })
        #expect(try runUntil(loop) { got != nil })
        #expect(got?.count == 16)
        #expect(Array(buf) == Array("still listening?".utf8))
    }

    /// PITFALLS A11: closing a socket through the loop while a read is pending on it: the
    /// read completes (with `.canceled` or another error, never data), the close succeeds,
    /// and the peer sees end of file within 100 ms.
    @Test(.tags(.pitfallA11), arguments: conformanceBackends)
    func closeWithAReadPendingReleasesTheConnection(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (c, s) = try Sock.tcpPair()
        h.forLoop(s); h.own(c)
        let buf = h.buffer(64)
        var readResult: CompletionResult?
        var closeResult: CompletionResult?
        let read = Completion(.read(fd: s, buffer: buf)) { _, r in readResult = r; return .disarm }
        try loop.add(read)
        try loop.run(.noWait)
        try loop.run(.noWait)
        h.forget(s)
        try loop.add(Completion(.close(fd: s)) { _, r in closeResult = r; return .disarm })
        let closedAt = LoopInstant.now()
        #expect(try runUntil(loop) { readResult != nil && closeResult != nil })
        #expect(closeResult?.error == nil, "\(String(describing: closeResult))")
        #expect(readResult?.error != nil, "the pending read ends with an error: \(String(describing: readResult))")
        #expect(Sock.seesEndOfFile(c, timeoutMs: 100), "the peer sees the close")
        #expect(LoopInstant.now() - closedAt < .milliseconds(500))
    }

    /// IPv6 loopback: accept and connect on ::1, with the peer's IPv6 address reported.
    @Test(arguments: conformanceBackends)
    func ipv6AcceptAndConnect(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        guard Sock.hasIPv6Loopback else {
            let message = "EVLOOP TEST SKIPPED on \(backend): no IPv6 loopback (::1) on this machine\n"
            _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            try Test.cancel(Comment(rawValue: message))
        }
        let (l, port) = try Sock.listener(ipv6: true)
        h.forLoop(l)
        let client = h.forLoop(try Sock.tcp(ipv6: true))
        let (server, peer) = try connectAndAccept(h, listener: l, client: client, port: port, ipv6: true)
        #expect(peer.family == AF_INET6)
        #expect(peer.host == "::1")
        #expect(peer.port == Sock.localAddress(client)?.port)
        Sock.setNonBlocking(server, h.wantsNonBlocking)
        try exchange(h, from: client, to: server, "over ipv6")
        try exchange(h, from: server, to: client, "and back")
    }

    /// PITFALLS D7: non-blocking descriptors work on every backend, even where the loop
    /// prefers blocking ones (io_uring must absorb EAGAIN itself): a pending recv, an
    /// accept that waits for a client, a send on a full buffer and a connect.
    @Test(.tags(.pitfallD7), arguments: conformanceBackends)
    func nonBlockingDescriptorsWorkOnEveryBackend(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.own(a); h.own(b)
        Sock.setNonBlocking(a, true)
        Sock.setNonBlocking(b, true)
        let (l, port) = try Sock.listener()
        h.own(l)
        Sock.setNonBlocking(l, true)
        var results: [String: CompletionResult] = [:]
        let rb = h.buffer(16)
        try loop.add(Completion(.recv(socket: a, buffer: rb)) { _, r in results["recv"] = r; return .disarm })
        try loop.add(Completion(.accept(socket: l)) { _, r in
            results["accept"] = r
            if case .accept(.success(let fd)) = r { h.own(fd) }
            return .disarm
        })
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.isEmpty, "nothing is ready yet: \(results)")

        // Data and a client arrive from another thread while the loop waits.
        let worker = try TestThread {
            usleep(20_000)
            _ = try? Sock.put(b, "late")
            if let fd = try? Sock.tcp(), let addr = try? Sock.loopback(ipv6: false, port: port) {
                _ = addr.withSockAddr { connect(fd, $0, $1) }
                usleep(50_000)
                close(fd)
            }
        }
        defer { worker.join() }
        #expect(try runUntil(loop) { results.count == 2 })
        #expect(results["recv"]?.count == 4)
        #expect(results["accept"]?.error == nil, "\(String(describing: results["accept"]))")

        // A send that has to wait for room, and a non-blocking connect.
        Sock.fillSendBuffer(a)
        let wb = h.buffer(4096, fill: 3)
        try loop.add(Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, r in results["send"] = r; return .disarm })
        let client = h.own(try Sock.tcp())
        Sock.setNonBlocking(client, true)
        let (l2, port2) = try Sock.listener()
        h.own(l2)
        try loop.add(Completion(.connect(socket: client, address: try Sock.loopback(ipv6: false, port: port2))) { _, r in
            results["connect"] = r
            return .disarm
        })
        try loop.run(.noWait)
        #expect(results["send"] == nil)
        #expect(try runUntil(loop) {
            Sock.drain(b)
            return results["send"] != nil && results["connect"] != nil
        })
        #expect((results["send"]?.count ?? 0) > 0, "\(String(describing: results["send"]))")
        #expect(results["connect"]?.error == nil, "\(String(describing: results["connect"]))")
    }

    // MARK: - Accept at the descriptor limit, and spurious wake-ups (pitfalls E8, I2)

    /// PITFALLS E8: with the descriptor table full, an accept whose connection is waiting
    /// reports `.systemResources` to its callback (each rearm tries again and reports again:
    /// no silent retry), and once the callback disarms, the loop is idle even though the
    /// level-triggered listener stays readable. When descriptors are available again, every
    /// queued connection is still there to accept.
    ///
    /// Runs in a child process of its own (ProcessIsolation.swift): it lowers RLIMIT_NOFILE
    /// (every other test's sockets would fail).
    @Test(.tags(.pitfallE8), arguments: conformanceBackends)
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

    /// PITFALLS I2: two receives and two accepts wait on one socket each; one byte (one
    /// connection) arrives, so both waiters are woken but only one can succeed. The other
    /// gets EAGAIN inside the loop and goes on waiting: exactly one callback, until a
    /// second byte (connection) completes the other.
    @Test(.tags(.pitfallI2), arguments: conformanceBackends)
    func eagainAfterAWakeUpNeverReachesACallback(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var recvs: [CompletionResult] = []
        let r1 = Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in recvs.append(r); return .disarm }
        let r2 = Completion(.recv(socket: a, buffer: h.buffer(8))) { _, r in recvs.append(r); return .disarm }
        try loop.add(r1)
        try loop.add(r2)
        try loop.run(.noWait)
        try Sock.put(b, [1])
        #expect(try runUntil(loop) { !recvs.isEmpty })
        try runFor(loop, .milliseconds(20))
        #expect(recvs.count == 1 && recvs.first?.count == 1, "\(recvs)")
        #expect([r1, r2].filter { $0.state == .active }.count == 1)
        try Sock.put(b, [2])
        #expect(try runUntil(loop) { recvs.count == 2 })
        #expect(recvs.allSatisfy { $0.count == 1 }, "\(recvs)")

        let (l, port) = try Sock.listener()
        h.forLoop(l)
        var accepts: [CompletionResult] = []
        let record: Completion.Callback = { _, r in
            accepts.append(r)
            if case .accept(.success(let fd)) = r { h.own(fd) }
            return .disarm
        }
        let a1 = Completion(.accept(socket: l), callback: record)
        let a2 = Completion(.accept(socket: l), callback: record)
        try loop.add(a1)
        try loop.add(a2)
        try loop.run(.noWait)
        let address = try Sock.loopback(ipv6: false, port: port)
        let c1 = h.own(try Sock.tcp())
        #expect(address.withSockAddr { connect(c1, $0, $1) } == 0)
        #expect(try runUntil(loop) { !accepts.isEmpty })
        try runFor(loop, .milliseconds(20))
        #expect(accepts.count == 1 && accepts.first?.error == nil, "\(accepts)")
        let c2 = h.own(try Sock.tcp())
        #expect(address.withSockAddr { connect(c2, $0, $1) } == 0)
        #expect(try runUntil(loop) { accepts.count == 2 })
        #expect(accepts.allSatisfy { $0.error == nil }, "\(accepts)")
    }
}
