// Issue 12's "nothing leaked": every Unix socket, pipe and child-stdio scenario, good input
// and bad, leaves the process's descriptor table exactly as it found it. Counting the whole
// table is only meaningful where no other test opens and closes descriptors meanwhile, so
// each backend's case runs in a child process of its own (ProcessIsolation.swift).
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Unix sockets and streams: descriptor count")
struct UnixAndStreamDescriptorTests {

    /// After each scenario the descriptor count is back to its baseline (taken once the
    /// loop exists): a stream echo over a socket file and over an abstract name, a datagram
    /// exchange, a path too long for sun_path, connects to a missing path and to a stale
    /// socket file, a pipe read to its end, a child's stdin/stdout/stderr pipes, and spawns
    /// refused for a missing loop or a missing program (whose pipes must be closed again).
    @Test(arguments: conformanceBackends)
    func everyScenarioLeavesTheDescriptorCountAtBaseline(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            // The loop's own descriptors (an epoll set, a ring, eventfds) exist from here on.
            try runFor(loop, .milliseconds(1))
            let baseline = Fds.count()
            func expectBaseline(_ scenario: String, sourceLocation: SourceLocation = #_sourceLocation) {
                let now = Fds.count()
                #expect(now == baseline, "\(scenario): \(now - baseline) descriptors more than before: \(Fds.table())",
                        sourceLocation: sourceLocation)
            }

            let path = UnixNames.path("count")
            defer { unlink(path) }
            for address in [try SocketAddress(unixPath: path), try SocketAddress(abstractUnixName: UnixNames.abstract("count"))] {
                let listener = try UnixSocket(loop: loop)
                h.own(listener.fd)
                try listener.bind(to: address)
                try listener.listen()
                let client = try UnixSocket(loop: loop)
                h.own(client.fd)
                #expect(try streamEcho(loop: loop, harness: h, listener: listener, client: client, size: 20_000).count == 20_000)
                unlink(path)
                expectBaseline("stream echo over \(address)")
            }

            let server = try UnixSocket(kind: .datagram, loop: loop)
            h.own(server.fd)
            try server.bind(to: SocketAddress(abstractUnixName: UnixNames.abstract("count-dgram")))
            let serverAddress = try server.localAddress()
            let sender = try UnixSocket(kind: .datagram, loop: loop)
            h.own(sender.fd)
            var received: Result<ReceivedMessage, EvError>?
            try server.receive(loop: loop, completion: Completion(), buffer: h.buffer(16)) { _, r in received = r; return .disarm }
            try sender.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer([1, 2])),
                            to: serverAddress) { _, _ in .disarm }
            #expect(try runUntil(loop) { received != nil })
            try closeSockets([server, sender], loop: loop, harness: h)
            expectBaseline("datagram exchange")

            #expect(throws: EvError.nameTooLong) { try SocketAddress(unixPath: "/" + String(repeating: "x", count: 200)) }
            expectBaseline("a path too long")

            let stale = try UnixSocket(loop: loop)
            h.own(stale.fd)
            try stale.bind(to: SocketAddress(unixPath: path))
            h.close(stale.fd)
            for (target, expected) in [(path, EvError.connectionRefused), (UnixNames.path("count-missing"), .noSuchFile)] {
                let client = try UnixSocket(loop: loop)
                h.own(client.fd)
                var connected: Result<Void, EvError>?
                try client.connect(loop: loop, completion: Completion(), to: SocketAddress(unixPath: target)) { _, r in
                    connected = r
                    return .disarm
                }
                #expect(try runUntil(loop) { connected != nil })
                #expect(connected?.errorValue == expected)
                try closeSockets([client], loop: loop, harness: h)
            }
            unlink(path)
            expectBaseline("connects to a stale and to a missing path")

            let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            h.own(readEnd.fd)
            h.own(writeEnd.fd)
            let reader = try StreamCollector(readEnd, loop: loop, buffer: h.buffer(1024))
            try writeEnd.write(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer([9, 9, 9]))) { _, _ in .disarm }
            try closeThroughLoop([writeEnd], loop: loop, harness: h)
            #expect(try runUntil(loop) { reader.done })
            #expect(reader.ended && reader.bytes == [9, 9, 9])
            try closeThroughLoop([readEnd], loop: loop, harness: h)
            expectBaseline("a pipe read to its end")

            // In a scope of its own: the Subprocess holds its pidfd until it is released.
            do {
                let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "cat; echo e >&2"],
                                                 stdin: .pipe, stdout: .pipe, stderr: .pipe, loop: loop)
                let ends = [child.standardInput, child.standardOutput, child.standardError].compactMap { $0 }
                for end in ends { h.own(end.fd) }
                #expect(ends.count == 3)
                let out = try StreamCollector(ends[1], loop: loop, buffer: h.buffer(1024))
                let err = try StreamCollector(ends[2], loop: loop, buffer: h.buffer(1024))
                try ends[0].write(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer(Array("in\n".utf8)))) { _, _ in .disarm }
                try closeThroughLoop([ends[0]], loop: loop, harness: h)
                var exit: Result<Subprocess.ExitStatus, EvError>?
                try child.wait(loop: loop, completion: Completion()) { _, r in exit = r; return .disarm }
                #expect(try runUntil(loop, timeout: .seconds(10)) { out.done && err.done && exit != nil })
                #expect(out.text == "in\n" && err.text == "e\n" && exit == .success(.exited(0)))
                try closeThroughLoop([ends[1], ends[2]], loop: loop, harness: h)
            }
            expectBaseline("a child's stdio pipes")

            #expect(throws: EvError.invalidArgument) { _ = try Subprocess.spawn(path: "/bin/true", stdin: .pipe) }
            #expect(throws: EvError.noSuchFile) {
                _ = try Subprocess.spawn(path: "/nonexistent/evloop-no-such-program",
                                         stdin: .pipe, stdout: .pipe, stderr: .pipe, loop: loop)
            }
            expectBaseline("refused spawns")
        }
    }

    /// Closes `sockets` through the loop and waits for every close.
    private func closeSockets(_ sockets: [UnixSocket], loop: LoopCore, harness h: Harness) throws {
        try closeThroughLoop(sockets.map { ByteStream($0) }, loop: loop, harness: h)
    }
}
