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

    /// The async/await recipe: the echo server over `connections` and `reads`, with two
    /// clients; cancelling the server's task ends it (the connections sequence ends).
    @Test(arguments: conformanceBackends)
    func asyncEchoServerWithSequences(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (listenFd, port) = try Sock.listener()
            h.forLoop(listenFd)
            let listener = TCPSocket(fd: listenFd)
            let echoes = try runAsync(executor) { () async throws -> [[UInt8]] in
                let server = Task(executorPreference: executor) {
                    // The README's body of `executor.run { ... }`:
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await client in listener.connections(on: executor) {   // an EvError ends it
                            group.addTask {
                                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
                                defer { buffer.deallocate() }
                                do {
                                    for try await chunk in client.reads(into: buffer, on: executor) {
                                        try await client.writeAll(chunk, on: executor)
                                    }
                                } catch {}                                              // this connection failed
                                try? await client.close(on: executor)
                            }
                        }
                    }
                }
                let echoes = Locked<[[UInt8]]>([])
                let clients = try TestThread {
                    for text in ["hello", "world"] {
                        guard let fd = try? Sock.tcp() else { return }
                        defer { close(fd) }
                        let address = try? Sock.loopback(ipv6: false, port: port)
                        guard address?.withSockAddr({ connect(fd, $0, $1) }) == 0 else { return }
                        try? Sock.put(fd, text)
                        shutdown(fd, Int32(SHUT_WR))
                        let echo = Sock.take(fd, 64)
                        echoes.withLock { $0.append(echo) }
                    }
                }
                while echoes.value.count < 2 { try await executor.sleep(for: .milliseconds(1)) }
                clients.join()
                server.cancel()
                try await server.value
                return echoes.value
            }
            #expect(echoes == [Array("hello".utf8), Array("world".utf8)])
            #expect(Fds.socketsBound(toPort: port, except: listenFd).isEmpty)
        }
    }
}
