// Watchers: TCPSocket, UDPSocket and WriteQueue (PITFALLS D6, I1, I3, I5). Echo over
// loopback, IPv4 and IPv6, on every backend, plus the same code on a concrete loop type.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// The server side of a stream echo (TCP or Unix), built only from the watchers: read,
/// write back what was read (resuming short writes), read again; close on end of file.
///
/// The callbacks capture the connection weakly: a completion keeps its callback after it
/// ran (a rearm or a later `loop.add` reuses it), and the connection owns its completions,
/// so a strong capture would be a cycle that keeps the connection, and through it the loop,
/// alive for ever (LeakSanitizer found it: docs/TESTING.md, "Sanitizers"). Weak, not
/// unowned: if a test gives up early, the loop's drain may still run a callback after the
/// connection is gone.
final class EchoConnection<L: EventLoop, S: ConnectionSocket> {
    let loop: L
    let socket: S
    let buffer: UnsafeMutableRawBufferPointer
    let reading = Completion(), writing = Completion(), closing = Completion()
    var echoed = 0
    var closed = false
    var error: EvError?

    init(loop: L, socket: S, buffer: UnsafeMutableRawBufferPointer) {
        self.loop = loop
        self.socket = socket
        self.buffer = buffer
    }

    func start() throws(EvError) {
        try socket.read(loop: loop, completion: reading, buffer: buffer) { [weak self] _, result in
            guard let self else { return .disarm }
            switch result {
            case .success(let n):
                do throws(EvError) { try echo(n, from: 0) } catch { self.error = error }
            case .failure(.endOfFile):
                do throws(EvError) {
                    try socket.close(loop: loop, completion: closing) { [weak self] _, r in
                        guard let self else { return .disarm }
                        if case .failure(let e) = r { error = e }
                        closed = true
                        return .disarm
                    }
                } catch { self.error = error }
            case .failure(let e):
                error = e
            }
            return .disarm
        }
    }

    private func echo(_ count: Int, from offset: Int) throws(EvError) {
        let rest = UnsafeRawBufferPointer(rebasing: buffer[offset..<count])
        try socket.write(loop: loop, completion: writing, buffer: rest) { [weak self] c, result in
            guard let self else { return .disarm }
            switch result {
            case .success(let n):
                echoed += n
                if offset + n < count {
                    do throws(EvError) { try echo(count, from: offset + n) } catch { self.error = error }
                } else {
                    // Everything read has been echoed: read again, reusing the completion
                    // as it is configured (no new callback).
                    do throws(EvError) { try loop.add(reading) } catch { self.error = error }
                }
            case .failure(let e):
                error = e
            }
            return .disarm
        }
    }
}

/// A TCP echo through the watchers on `loop` (see `streamEcho`), over IPv4 or IPv6.
/// Returns the bytes the client received.
private func tcpEcho<L: EventLoop>(loop: L, harness h: Harness, ipv6: Bool, size: Int,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    let family = ipv6 ? AF_INET6 : AF_INET
    let listener = try TCPSocket(family: family, loop: loop)
    h.own(listener.fd)
    try listener.setReuseAddress(true)
    try listener.bind(to: SocketAddress(host: ipv6 ? "::1" : "127.0.0.1", port: 0))
    try listener.listen(backlog: 16)
    let serverAddress = try listener.localAddress()
    #expect(serverAddress.family == family)
    let client = try TCPSocket(for: serverAddress, loop: loop)
    h.own(client.fd)
    try client.setNoDelay(true)
    #expect(try client.option(level: Int32(IPPROTO_TCP), name: TCP_NODELAY) != 0)
    return try streamEcho(loop: loop, harness: h, listener: listener, client: client, size: size,
                          seed: ipv6 ? 1 : 0, sourceLocation: sourceLocation)
}

/// A stream echo through the watchers on `loop`: `listener` (bound, listening, owned by
/// `h`) accepts one connection from `client` (unconnected, owned by `h`); the client sends
/// `size` bytes through a `WriteQueue` in 10 requests while reading the echo, then shuts
/// down its write side; the server closes on end of file and the client sees it. Both
/// sockets and the listener are closed through the loop at the end. Returns the bytes the
/// client received.
func streamEcho<L: EventLoop, S: ConnectionSocket>(loop: L, harness h: Harness, listener: S, client: S,
                                                   size: Int, seed: Int = 0,
                                                   sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    let serverAddress = try listener.localAddress()
    #expect(fcntl(listener.fd, F_GETFD) & FD_CLOEXEC != 0, sourceLocation: sourceLocation)
    #expect((fcntl(listener.fd, F_GETFL) & O_NONBLOCK != 0) == !loop.prefersBlockingDescriptors,
            sourceLocation: sourceLocation)

    var server: EchoConnection<L, S>?
    // What each descriptor refers to while it is open ("socket:[inode]"), to check at the
    // end that none of them is open any more (descriptor numbers are reused at once by
    // tests running in parallel; inodes are not).
    var links = [listener.fd, client.fd].compactMap { Fds.link($0) }
    let accepting = Completion()
    try listener.accept(loop: loop, completion: accepting) { _, result in
        switch result {
        case .success(let socket):
            h.own(socket.fd)   // closed through the loop below; owned in case the test fails
            links += [Fds.link(socket.fd)].compactMap { $0 }
            let conn = EchoConnection(loop: loop, socket: socket, buffer: h.buffer(16 * 1024))
            server = conn
            do { try conn.start() } catch { Issue.record("server read: \(error)") }
        case .failure(let e):
            Issue.record("accept: \(e)")
        }
        return .disarm
    }

    var connected: Result<Void, EvError>?
    let connecting = Completion()
    try client.connect(loop: loop, completion: connecting, to: serverAddress) { _, r in connected = r; return .disarm }
    #expect(try runUntil(h.loop) { connected != nil && server != nil }, sourceLocation: sourceLocation)
    guard case .success? = connected, let server else {
        Issue.record("connect: \(String(describing: connected))", sourceLocation: sourceLocation)
        return []
    }
    #expect(try client.peerAddress() == serverAddress, sourceLocation: sourceLocation)

    // Send through a write queue, 10 requests.
    let payload = h.buffer((0..<size).map { patternByte($0, seed: seed) })
    let queue = WriteQueue(fd: client.fd, isSocket: true)
    var completedWrites: [Int] = []
    let chunk = (size + 9) / 10
    for i in 0..<10 {
        let range = min(i * chunk, size)..<min((i + 1) * chunk, size)
        let request = WriteRequest(buffer: UnsafeRawBufferPointer(rebasing: payload[range])) { r, result in
            if case .success(let n) = result, n == r.buffer.count { completedWrites.append(i) }
            return .disarm
        }
        try queue.enqueue(loop: loop, request)
    }
    #expect(queue.count == 10 && queue.bytesQueued == size, sourceLocation: sourceLocation)

    // Read the echo.
    var received: [UInt8] = []
    var clientEOF = false
    let receiveBuffer = h.buffer(8192)
    let reading = Completion()
    let shuttingDown = Completion()
    try client.read(loop: loop, completion: reading, buffer: receiveBuffer) { _, result in
        switch result {
        case .success(let n):
            received += receiveBuffer[0..<n]
            if received.count == size {
                do {
                    try client.shutdown(loop: loop, completion: shuttingDown, how: .write) { _, r in
                        if case .failure(let e) = r { Issue.record("shutdown: \(e)") }
                        return .disarm
                    }
                } catch { Issue.record("shutdown: \(error)") }
            }
            return .rearm
        case .failure(.endOfFile):
            clientEOF = true
            return .disarm
        case .failure(let e):
            Issue.record("client read: \(e)")
            return .disarm
        }
    }
    #expect(try runUntil(h.loop, timeout: .seconds(10)) { clientEOF && server.closed }, sourceLocation: sourceLocation)
    #expect(server.error == nil, "server: \(String(describing: server.error))", sourceLocation: sourceLocation)
    #expect(server.echoed == size, sourceLocation: sourceLocation)
    #expect(completedWrites == Array(0..<10), sourceLocation: sourceLocation)
    #expect(queue.isEmpty && queue.bytesQueued == 0, sourceLocation: sourceLocation)
    h.forget(server.socket.fd)

    // Close the client and the listener through the loop.
    var closes = 0
    let closeClient = Completion(), closeListener = Completion()
    try client.close(loop: loop, completion: closeClient) { _, r in
        if case .success = r { closes += 1 }
        return .disarm
    }
    try listener.close(loop: loop, completion: closeListener) { _, r in
        if case .success = r { closes += 1 }
        return .disarm
    }
    #expect(try runUntil(h.loop) { closes == 2 }, sourceLocation: sourceLocation)
    h.forget(client.fd)
    h.forget(listener.fd)
    let stillOpen = Set(Fds.table().values)
    #expect(links.count == 3 && links.allSatisfy { !stillOpen.contains($0) },
            "a descriptor of the echo is still open: \(links.filter { stillOpen.contains($0) })", sourceLocation: sourceLocation)
    return received
}

/// A UDP echo through the watchers: the server echoes each datagram to its sender; the
/// client checks the reply and that it came from the server's address.
private func udpEcho<L: EventLoop>(loop: L, harness h: Harness, ipv6: Bool, rounds: Int,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let host = ipv6 ? "::1" : "127.0.0.1"
    let server = try UDPSocket(family: ipv6 ? AF_INET6 : AF_INET, loop: loop)
    h.own(server.fd)
    try server.bind(to: SocketAddress(host: host, port: 0))
    let serverAddress = try server.localAddress()
    #expect(fcntl(server.fd, F_GETFD) & FD_CLOEXEC != 0)

    let serverBuffer = h.buffer(2048)
    let serverRead = Completion(), serverWrite = Completion()
    // The receive's callback re-adds `serverRead`, so it holds it (and the loop): a cycle
    // through the completion's callback, broken on the way out.
    defer { serverRead.callback = { _, _ in .disarm } }
    try server.receive(loop: loop, completion: serverRead, buffer: serverBuffer) { _, result in
        guard case .success(let message) = result else {
            if case .failure(let e) = result, e != .canceled { Issue.record("server recv: \(e)") }
            return .disarm
        }
        do {
            try server.send(loop: loop, completion: serverWrite,
                            buffer: UnsafeRawBufferPointer(rebasing: serverBuffer[..<message.count]),
                            to: message.address) { _, r in
                if case .failure(let e) = r { Issue.record("server send: \(e)") }
                // The reply is out: receive the next datagram (same operation, same callback).
                do { try loop.add(serverRead) } catch { Issue.record("rearm: \(error)") }
                return .disarm
            }
        } catch { Issue.record("server send: \(error)") }
        return .disarm
    }

    let client = try UDPSocket(for: serverAddress, loop: loop)
    h.own(client.fd)
    try client.bind(to: SocketAddress(host: host, port: 0))
    let clientAddress = try client.localAddress()
    let clientBuffer = h.buffer(2048)
    let send = Completion(), receive = Completion()
    for round in 0..<rounds {
        let bytes = Array("datagram \(round) over \(ipv6 ? "IPv6" : "IPv4")".utf8)
        let out = h.buffer(bytes)
        var sent: Result<Int, EvError>?
        var reply: Result<ReceivedMessage, EvError>?
        try client.send(loop: loop, completion: send, buffer: UnsafeRawBufferPointer(out), to: serverAddress) { _, r in
            sent = r
            return .disarm
        }
        try client.receive(loop: loop, completion: receive, buffer: clientBuffer) { _, r in reply = r; return .disarm }
        #expect(try runUntil(h.loop) { sent != nil && reply != nil }, sourceLocation: sourceLocation)
        #expect(sent == .success(bytes.count), sourceLocation: sourceLocation)
        guard case .success(let m)? = reply else {
            Issue.record("client recv: \(String(describing: reply))", sourceLocation: sourceLocation)
            return
        }
        #expect(m.address == serverAddress && !m.truncated, sourceLocation: sourceLocation)
        #expect(Array(clientBuffer[0..<m.count]) == bytes, sourceLocation: sourceLocation)
    }
    _ = clientAddress

    var closes = 0
    let c1 = Completion(), c2 = Completion()
    try client.close(loop: loop, completion: c1) { _, r in if case .success = r { closes += 1 }; return .disarm }
    try server.close(loop: loop, completion: c2) { _, r in if case .success = r { closes += 1 }; return .disarm }
    #expect(try runUntil(h.loop) { closes == 2 && serverRead.state == .dead }, sourceLocation: sourceLocation)
    h.forget(client.fd)
    h.forget(server.fd)
}

extension Result {
    /// The failure, or nil on success (for comparing results whose success is Void).
    var errorValue: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

private var ipFamilies: [Bool] { Sock.hasIPv6Loopback ? [false, true] : [false] }

@Suite("Watcher: TCP, UDP, WriteQueue")
struct WatcherSocketTests {

    @Test(arguments: conformanceBackends)
    func tcpEchoIPv4AndIPv6(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        if !Sock.hasIPv6Loopback { print("note: no ::1 on this machine; IPv6 echo skipped") }
        for ipv6 in ipFamilies {
            let size = 300_000
            let received = try tcpEcho(loop: loop, harness: h, ipv6: ipv6, size: size)
            #expect(received == (0..<size).map { patternByte($0, seed: ipv6 ? 1 : 0) }, "ipv6=\(ipv6)")
        }
    }

    @Test(arguments: conformanceBackends)
    func udpEchoIPv4AndIPv6(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        for ipv6 in ipFamilies {
            try udpEcho(loop: loop, harness: h, ipv6: ipv6, rounds: 5)
        }
    }

    /// The same watcher code, specialized for concrete loop types.
    @Test func echoOnConcreteLoopTypes() throws {
        let epoll = try EpollLoop()
        let he = Harness(epoll)
        defer { he.finish() }
        #expect(try tcpEcho(loop: epoll, harness: he, ipv6: false, size: 10_000).count == 10_000)
        try udpEcho(loop: epoll, harness: he, ipv6: false, rounds: 2)

        let poll = try PollLoop()
        let hp = Harness(poll)
        defer { hp.finish() }
        #expect(try tcpEcho(loop: poll, harness: hp, ipv6: false, size: 10_000).count == 10_000)

        if let uring = try? UringLoop() {   // where io_uring is available
            let hu = Harness(uring)
            defer { hu.finish() }
            #expect(try tcpEcho(loop: uring, harness: hu, ipv6: false, size: 10_000).count == 10_000)
            try udpEcho(loop: uring, harness: hu, ipv6: false, rounds: 2)
        }
    }

    /// Connect to a port where nothing listens: `.connectionRefused`; shutdown of an
    /// unconnected socket: `.notConnected` (PITFALLS I1).
    @Test(.tags(.pitfallI1), arguments: conformanceBackends)
    func connectRefusedAndShutdownUnconnected(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (holder, port) = try Sock.boundNotListening()
        h.own(holder)
        let socket = try TCPSocket(family: AF_INET, loop: loop)
        h.own(socket.fd)
        var connected: Result<Void, EvError>?
        try socket.connect(loop: loop, completion: Completion(), to: SocketAddress(ipv4: "127.0.0.1", port: port)) { _, r in
            connected = r
            return .disarm
        }
        #expect(try runUntil(h.loop) { connected != nil })
        #expect(connected?.errorValue == .connectionRefused)

        let other = try TCPSocket(family: AF_INET, loop: loop)
        h.own(other.fd)
        var shut: Result<Void, EvError>?
        try other.shutdown(loop: loop, completion: Completion(), how: .both) { _, r in shut = r; return .disarm }
        #expect(try runUntil(h.loop) { shut != nil })
        #expect(shut?.errorValue == .notConnected)
    }

    /// 10,000 queued writes of varying sizes arrive complete and in order at a reader that
    /// reads slowly (at most 32 KiB per millisecond, through small socket buffers, so
    /// writes are cut short and resumed); request callbacks run in queue order, and
    /// `bytesQueued` shows the backlog the slow reader causes (PITFALLS D6).
    @Test(.tags(.pitfallD6), arguments: conformanceBackends)
    func writeQueueKeepsOrderAgainstASlowReader(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        // A stream socketpair with a small send buffer: unlike loopback TCP (whose
        // 64 KiB segments let one send overshoot the buffer), it cuts writes short as soon
        // as the buffer is full, so resumption is exercised on every backend.
        let (writer, reader) = try Sock.socketPair()
        h.forLoop(writer)
        h.own(reader)
        Sock.setInt(writer, SOL_SOCKET, SO_SNDBUF, 16384)
        Sock.setNonBlocking(reader, true)

        let count = 10_000
        var rng = SeededRandom(seed: 0x5EED_0005)
        // Mostly small writes, and every 100th larger than the socket buffers can take at
        // once, so that writes are cut short and resumed.
        let sizes = (0..<count).map { i in
            i % 500 == 499 ? Int.random(in: 40_000...60_000, using: &rng) : Int.random(in: 1...200, using: &rng)
        }
        let total = sizes.reduce(0, +)
        let payload = h.buffer((0..<total).map { patternByte($0, seed: 3) })
        let queue = WriteQueue(fd: writer)
        var nextCallback = 0
        var outOfOrder = 0
        var failures = 0
        var offset = 0
        var requests: [WriteRequest] = []
        requests.reserveCapacity(count)
        for i in 0..<count {
            let slice = UnsafeRawBufferPointer(rebasing: payload[offset..<offset + sizes[i]])
            offset += sizes[i]
            requests.append(WriteRequest(buffer: slice) { _, result in
                if nextCallback != i { outOfOrder += 1 }
                nextCallback = i + 1
                if case .failure = result { failures += 1 }
                return .disarm
            })
        }
        for r in requests { try queue.enqueue(loop: loop, r) }
        #expect(queue.count == count && queue.bytesQueued == total)

        // The slow reader: a 1 ms timer that takes at most 32 KiB each time.
        var received: [UInt8] = []
        received.reserveCapacity(total)
        var maxQueued = 0
        var chunk = [UInt8](repeating: 0, count: 32768)
        let tick = Completion()
        try LoopTimer.start(loop: loop, completion: tick, after: .milliseconds(1)) { c, result in
            guard case .success = result else { return .disarm }
            maxQueued = max(maxQueued, queue.bytesQueued)
            let n = recv(reader, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 { received += chunk[0..<n] }
            if received.count >= total { return .disarm }
            LoopTimer.setDeadline(c, loop.now + .milliseconds(1))
            return .rearm
        }
        #expect(try runUntil(h.loop, timeout: .seconds(30)) { received.count >= total && queue.isEmpty })
        #expect(received.count == total)
        #expect(received == Array(payload), "bytes arrived out of order or damaged")
        #expect(nextCallback == count && outOfOrder == 0 && failures == 0)
        #expect(queue.bytesQueued == 0 && queue.count == 0)
        #expect(queue.resumedWrites > 0, "no write was partial: the test did not exercise resumption")
        #expect(maxQueued > total / 2, "the slow reader should have left a backlog (max \(maxQueued) of \(total))")
        // Every request is free for reuse.
        #expect(requests.allSatisfy { !$0.isQueued && $0.written == $0.buffer.count })
    }

    /// A failed (here: cancelled) write fails every queued request, in order, and leaves
    /// the queue empty and usable (PITFALLS I5). The queue then resumes with new requests.
    @Test(.tags(.pitfallI5), arguments: conformanceBackends)
    func writeQueueErrorFailsQueuedRequestsInOrder(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try Sock.socketPair()
        h.forLoop(writer)
        h.own(reader)
        Sock.setInt(writer, SOL_SOCKET, SO_SNDBUF, 4096)
        let big = h.buffer(1 << 20, fill: 0x41)
        let queue = WriteQueue(fd: writer)
        var outcomes: [(Int, Result<Int, EvError>)] = []
        var requests: [WriteRequest] = []
        for i in 0..<3 {
            let r = WriteRequest(buffer: UnsafeRawBufferPointer(big)) { _, result in
                outcomes.append((i, result))
                return .disarm
            }
            requests.append(r)
            try queue.enqueue(loop: loop, r)
        }
        #expect(throws: EvError.completionActive) { try queue.enqueue(loop: loop, requests[0]) }
        try runFor(loop, .milliseconds(20))   // the peer does not read: the first write stalls
        #expect(outcomes.isEmpty)
        #expect(queue.bytesQueued > 2 << 20)

        var cancelResult: CompletionResult?
        try queue.cancel(loop: loop, using: Completion()) { _, r in cancelResult = r; return .disarm }
        #expect(try runUntil(h.loop) { outcomes.count == 3 && cancelResult != nil })
        #expect(outcomes.map(\.0) == [0, 1, 2])
        for (_, r) in outcomes { #expect(r == .failure(.canceled)) }
        #expect(queue.isEmpty && queue.bytesQueued == 0 && queue.count == 0)

        // Usable again: a small write goes through once the reader drains.
        Sock.drain(reader)
        let small = h.buffer(Array("after".utf8))
        var done: Result<Int, EvError>?
        requests[0].buffer = UnsafeRawBufferPointer(small)
        requests[0].callback = { _, r in
            done = r
            return .disarm
        }
        try queue.enqueue(loop: loop, requests[0])
        var tail: [UInt8] = []
        #expect(try runUntil(h.loop) {
            tail += Sock.take(reader, 65536, timeoutMs: 0)
            return done != nil && tail.suffix(5) == Array("after".utf8)
        })
        #expect(done == .success(5))
    }
}
