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

    @Test(arguments: conformanceBackends)
    func workPoolRecipe(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        @Sendable func slowHash(_ text: String) throws(EvError) -> [UInt8] { Array(text.utf8.reversed()) }
        let password = "secret"
        var stored: [UInt8]?
        func store(_ digest: [UInt8]) { stored = digest }

        let pool = try WorkPool(threads: 4)
        let hashing = Completion()
        try pool.run(loop: loop, completion: hashing, { () throws(EvError) -> [UInt8] in
            try slowHash(password)                   // on a pool thread: do not touch the loop here
        }) { _, result in
            if case .success(let digest) = result { store(digest) }   // on the loop thread
            return .disarm
        }
        #expect(try runUntilDone(loop))
        #expect(stored == Array("terces".utf8))
        pool.shutdown()
    }

    @Test(arguments: conformanceBackends)
    func connectByNameRecipe(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let (listener, port) = try Sock.listener()
        harness.own(listener)
        var connected: TCPSocket?
        func startEchoing(_ socket: TCPSocket) {
            connected = socket
            harness.own(socket.fd)
        }

        let resolver = try Resolver()
        let connecting = Completion()
        connecting.deadline = .within(.seconds(5))   // one deadline over the lookup and every attempt
        try TCPSocket.connect(loop: loop, completion: connecting, host: "localhost", port: port,
                              resolver: resolver) { _, result in
            switch result {
            case .success(let socket): startEchoing(socket)
            case .failure(.unknownHost): print("no such host")
            case .failure(let error): print("could not connect:", error)   // the last address's error, or .timedOut
            }
            return .disarm
        }
        #expect(try runUntilDone(loop, timeout: .seconds(10)))
        #expect(try connected?.peerAddress().port == port)
        resolver.shutdown()
    }

    /// README, "Recipe: a Unix socket echo": an abstract-name server accepts with the
    /// peer's credentials, and a client connects; a client of a missing path gets
    /// `.noSuchFile`.
    @Test(arguments: conformanceBackends)
    func unixSocketRecipe(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let name = UnixNames.abstract("readme")
        let address = try SocketAddress(abstractUnixName: name)   // prints "unix:@evloop-echo"
        #expect(address.description == "unix:@" + name)
        let server = try UnixSocket(kind: .stream, loop: loop)
        harness.own(server.fd)
        try server.bind(to: address)
        try server.listen()
        var who: UnixSocket.PeerCredentials?
        let accepting = Completion()
        try server.accept(loop: loop, completion: accepting) { _, result in
            guard case .success(let client) = result else { return .disarm }
            harness.own(client.fd)
            who = try? client.peerCredentials()    // the peer's pid, uid and gid, from the kernel
            return .rearm
        }
        let client = try UnixSocket(kind: .stream, loop: loop)
        harness.own(client.fd)
        var connected: Result<Void, EvError>?
        let connecting = Completion()
        try client.connect(loop: loop, completion: connecting, to: address) { _, result in
            connected = result
            return .disarm
        }
        #expect(try runUntil(loop) { connected != nil && who != nil })
        #expect(who?.pid == getpid())
        let lost = try UnixSocket(kind: .stream, loop: loop)
        harness.own(lost.fd)
        var missing: Result<Void, EvError>?
        try lost.connect(loop: loop, completion: Completion(), to: SocketAddress(unixPath: UnixNames.path("readme"))) { _, r in
            missing = r
            return .disarm
        }
        #expect(try runUntil(loop) { missing != nil })
        #expect(missing?.errorValue == .noSuchFile)
    }

    /// README, "Recipe: reading a child's output": `stdout: .pipe`, the parent's end read
    /// until end of file and closed, the exit reported.
    @Test(arguments: conformanceBackends)
    func childOutputRecipe(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let buffer = harness.buffer(4096)
        let child = try Subprocess.spawn(path: "/bin/ls", arguments: ["-d", "/"], stdout: .pipe, loop: loop)
        let output = child.standardOutput!           // the parent's read end
        harness.own(output.fd)
        var printed = ""
        var closed = false
        var exitStatus: Result<Subprocess.ExitStatus, EvError>?
        let reading = Completion(), closing = Completion(), exited = Completion()
        try output.read(loop: loop, completion: reading, buffer: buffer) { _, result in
            if case .success(let n) = result {
                printed += String(decoding: buffer[..<n], as: UTF8.self)
                return .rearm                        // read the next chunk
            }
            try? output.close(loop: loop, completion: closing) { _, _ in closed = true; return .disarm }
            return .disarm
        }
        try child.wait(loop: loop, completion: exited) { _, status in
            exitStatus = status
            return .disarm
        }
        #expect(try runUntilDone(loop))
        harness.forget(output.fd)
        #expect(printed == "/\n" && closed)
        #expect(exitStatus == .success(.exited(0)))
    }

    /// README, "Recipe: files and the file system": open, pwrite, fdatasync, close and
    /// rename through one completion, reused from each callback.
    @Test(arguments: conformanceBackends)
    func filesRecipe(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let harness = Harness(loop)
        defer { harness.finish() }
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let record = UnsafeRawBufferPointer(harness.buffer(Array("entry 1\n".utf8)))
        var saved: Result<Void, EvError>?
        let c = Completion()
        try File.open(loop: loop, completion: c, path: dir.at("journal.tmp"), options: [.writeOnly, .create, .truncate]) { _, result in
            guard case .success(let file) = result else { return .disarm }
            try? file.pwrite(loop: loop, completion: c, buffer: record, offset: 0) { _, _ in
                try? file.sync(loop: loop, completion: c, dataOnly: true) { _, _ in
                    try? file.close(loop: loop, completion: c) { _, _ in
                        try? FileSystem.rename(loop: loop, completion: c, from: dir.at("journal.tmp"), to: dir.at("journal")) { _, renamed in
                            saved = renamed
                            return .disarm
                        }
                        return .disarm
                    }
                    return .disarm
                }
                return .disarm
            }
            return .disarm
        }
        #expect(try runUntilDone(loop))
        #expect(saved.map { (try? $0.get()) != nil } == true, "\(String(describing: saved))")
        let fd = open(dir.at("journal"), O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        if fd >= 0 {
            #expect(fileContent(fd) == Array("entry 1\n".utf8))
            close(fd)
        }
    }

    /// README, "Recipe: files and the file system", direct I/O: stat for the alignment, an
    /// AlignedBuffer, an awaited read at offset 0 of a file opened with `.direct`, and the
    /// loop's direct-I/O path with its reason.
    @Test(arguments: conformanceBackends)
    func directIORecipe(backend: Backend) throws {
        let (found, reason) = directIODirectory()
        guard let dir = found else {
            let message = "EVLOOP TEST SKIPPED: O_DIRECT is not supported where the tests can write: \(reason)\n"
            _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            try Test.cancel(Comment(rawValue: message))
        }
        defer { dir.remove() }
        let path = dir.at("blocks")
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        #expect(Array(repeating: UInt8(7), count: 8192).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, 8192) } == 8192)
        close(fd)
        try withAsyncLoop(backend) { loop, executor, _ in
            let (n, first, route) = try runAsync(executor) { () async throws -> (Int, UInt8, String) in
                let file = try await File.open(path: path, options: [.readOnly, .direct], on: executor)
                let status = try await file.stat(on: executor)
                let block = try AlignedBuffer(byteCount: 4096, alignment: AlignedBuffer.alignment(for: status))
                let n = try await file.pread(into: block.bytes, offset: 0, on: executor)
                let route = "\(executor.loop.directIOPath(for: file))"
                try await file.close(on: executor)
                return (n, block.bytes[0], route)
            }
            #expect(n == 4096 && first == 7)
            #expect(route.contains("ring (") || route.contains("pool ("), "\(route)")
            _ = loop
        }
    }

    /// "A server on a loop group" and "A slow reader" together: the README's group server
    /// with its `Connection`, on two loops; a client that sends 8 MiB before it reads
    /// anything gets every byte back, in order (the reader paused and resumed on the way).
    @Test(arguments: conformanceBackends)
    func loopGroupServerWithSlowReader(backend: Backend) throws {
        _ = try makeTestLoop(backend)
        let (group, selection) = try makeBestLoopGroup(loops: 2, backend: backend)
        #expect(selection.backend == backend)
        let listeners = try group.makeReusePortListeners(address: SocketAddress(ipv4: "127.0.0.1", port: 0))
        try group.start { member in                    // on each loop's own thread
            let listener = try listeners.socket(member.index, preparedFor: member.loop)
            var connections: [ReadmeConnection] = []   // this loop's: the server keeps them
            let accepting = Completion()
            try listener.accept(loop: member.loop, completion: accepting) { _, result in
                guard case .success(let client) = result else { return .disarm }
                if let c = try? ReadmeConnection(client: client, loop: member.loop) { connections.append(c) }
                return .rearm
            }
            member.onStop {
                try? member.loop.cancel(accepting, using: Completion())
                for c in connections where c.closing.state == .dead {
                    try? c.client.close(loop: member.loop, completion: c.closing)
                }
            }
        }
        defer { listeners.closeAll() }

        let client = try Sock.tcp()
        defer { close(client) }
        Sock.setInt(client, SOL_SOCKET, SO_RCVBUF, 16384)
        #expect(listeners.address.withSockAddr { connect(client, $0, $1) } == 0)
        Sock.setNonBlocking(client, true)
        // More than the kernel's socket buffers hold (loopback TCP autotunes them to a few
        // MiB), so the server's writes stall and its reader must pause.
        let total = 8 << 20
        let payload = (0..<total).map { patternByte($0, seed: 4) }
        var sent = 0
        var echoed: [UInt8] = []
        let started = LoopInstant.now()
        let deadline = started + .seconds(30)
        while echoed.count < total && LoopInstant.now() < deadline {
            while sent < total {   // as much as the kernel takes now
                let n = payload.withUnsafeBytes {
                    send(client, $0.baseAddress! + sent, min(65536, total - sent), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                guard n > 0 else { break }
                sent += n
            }
            // Read nothing until everything is sent (or the server pushed back for 200 ms).
            if sent == total || LoopInstant.now() - started > .milliseconds(200) {
                echoed += Sock.take(client, total - echoed.count, timeoutMs: 1)
            } else {
                usleep(1000)
            }
        }
        group.stop()
        try group.join()
        #expect(echoed.count == total)
        #expect(firstDifference(echoed, payload) == nil, "the echo was damaged or reordered")
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

/// README.md, "A slow reader: water marks and pause/resume" (keep in step).
private final class ReadmeConnection {                     // the server keeps it while the socket is open
    let client: TCPSocket
    let reader: StreamReader
    let replies: WriteQueue
    let closing = Completion()

    init(client: TCPSocket, loop: some EventLoop) throws(EvError) {
        self.client = client
        reader = try StreamReader(socket: client)
        replies = WriteQueue(socket: client)
        replies.setWaterMark(try WriteBufferWaterMark(low: 16 << 10, high: 64 << 10)) { [unowned self] _, writable in
            if writable { try? self.reader.resume(loop: loop) } else { try? self.reader.pause(loop: loop) }
            return .rearm                        // keep listening for the next change
        }
        try reader.start(loop: loop) { [unowned self] _, result in
            guard case .success(let bytes) = result else {        // end of file, or an error
                try? self.client.close(loop: loop, completion: self.closing)
                return .disarm
            }
            try? self.replies.enqueue(loop: loop, copying: bytes)  // the queue keeps its own copy
            return .rearm
        }
    }
}
