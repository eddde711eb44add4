import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

/// The README's code, run for real on every backend, so the front page cannot drift from
/// the API. Keep the bodies in step with README.md.
@Suite struct ReadmeExampleTests {
    @Test(arguments: conformanceBackends)
    func firstProgramTimer(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        var fired: CompletionResult?
        let timer = Completion()
        try loop.timer(timer, after: .milliseconds(50)) { completion, result in
            fired = result
            return .disarm
        }
        let start = LoopInstant.now()
        try loop.run(.untilDone)
        guard case .timer(.success) = fired else {
            Issue.record("timer did not fire: \(String(describing: fired))")
            return
        }
        #expect(LoopInstant.now() - start >= .milliseconds(50))
    }

    @Test(arguments: conformanceBackends)
    func recvRearmsUntilEndOfFile(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let (peer, fd) = try Sock.socketPair()
        harness.own(peer)
        harness.forLoop(fd)
        let buffer = harness.buffer(4096)
        var got: [Int] = []
        var sawEOF = false
        let read = Completion(.recv(socket: fd, buffer: buffer)) { c, result in
            switch result {
            case .read(.success(let n)): got.append(n); return .rearm   // read again
            case .read(.failure(.endOfFile)): sawEOF = true; return .disarm
            default: return .disarm
            }
        }
        try loop.add(read)
        try Sock.put(peer, "hello")
        #expect(try runUntil(loop) { got == [5] })
        harness.close(peer)
        #expect(try runUntil(loop) { sawEOF })
    }

    @Test(arguments: conformanceBackends)
    func tcpAcceptWatcherRearms(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let server = try TCPSocket(family: AF_INET, loop: loop)
        harness.own(server.fd)
        try server.setReuseAddress(true)
        try server.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
        try server.listen(backlog: 1024)
        let port = try server.localAddress().port
        var accepted: [TCPSocket] = []
        let accepting = Completion()
        try server.accept(loop: loop, completion: accepting) { _, result in
            guard case .success(let client) = result else { return .disarm }
            accepted.append(client)
            harness.own(client.fd)
            return .rearm                 // accept the next connection
        }
        for _ in 0..<3 {
            let c = harness.own(try Sock.tcp())
            let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
            #expect(address.withSockAddr { connect(c, $0, $1) } == 0)
        }
        #expect(try runUntil(loop) { accepted.count == 3 })
    }
}
