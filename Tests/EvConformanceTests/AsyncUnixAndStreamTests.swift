// Conformance: the awaitable forms of UnixSocket and ByteStream (EvAsync, issue 12), on
// every backend: the same operations as the callback forms, with the same errors.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: awaited Unix sockets and streams")
struct AsyncUnixAndStreamTests {

    /// An awaited echo over an abstract Unix name: `accept(on:)`, `UnixSocket.connect(to:on:)`,
    /// `writeAll`, `shutdown`, reads until 0 (end of stream) and `close`, all resuming on
    /// the loop thread; the server sees the client's credentials.
    @Test(arguments: conformanceBackends)
    func awaitedStreamEcho(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let address = try SocketAddress(abstractUnixName: UnixNames.abstract("async-echo"))
            let listener = try UnixSocket(loop: loop)
            h.own(listener.fd)
            try listener.bind(to: address)
            try listener.listen()
            let message = (0..<20_000).map { patternByte($0, seed: 11) }
            let loopThread = currentThreadID()
            let (echoed, peerPid, threads) = try runAsync(executor) {
                try await withThrowingTaskGroup(of: (pid_t, Int32).self) { group in
                    group.addTask {
                        let conn = try await listener.accept(on: executor)
                        let pid = try conn.peerCredentials().pid
                        let received = try await readToEnd { try await conn.read(into: $0, on: executor) }
                        let out = TestBuffer(received)
                        try await conn.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                        try await conn.close(on: executor)
                        return (pid, currentThreadID())
                    }
                    let client = try await UnixSocket.connect(to: address, on: executor)
                    let out = TestBuffer(message)
                    try await client.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                    try await client.shutdown(.write, on: executor)
                    let echoed = try await readToEnd { try await client.read(into: $0, on: executor) }
                    try await client.close(on: executor)
                    let (pid, serverThread) = try await group.next() ?? (0, 0)
                    return (echoed, pid, [serverThread, currentThreadID()])
                }
            }
            #expect(echoed == message)
            #expect(peerPid == getpid())
            #expect(Set(threads) == [loopThread])
        }
    }

    /// Awaited datagrams: `send(_:to:on:)` and `receive(into:on:)` carry the sender's
    /// address.
    @Test(arguments: conformanceBackends)
    func awaitedDatagrams(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let serverAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("async-dgram"))
            let clientAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("async-dgram-client"))
            let server = try UnixSocket(kind: .datagram, loop: loop)
            h.own(server.fd)
            try server.bind(to: serverAddress)
            let client = try UnixSocket(kind: .datagram, loop: loop)
            h.own(client.fd)
            try client.bind(to: clientAddress)
            let (sent, message, sender) = try runAsync(executor) {
                let out = TestBuffer(Array("datagram".utf8))
                let sent = try await client.send(UnsafeRawBufferPointer(out.raw), to: serverAddress, on: executor)
                let buffer = TestBuffer(64)
                let m = try await server.receive(into: buffer.raw, on: executor)
                return (sent, Array(buffer.raw[..<m.count]), m.address)
            }
            #expect(sent == 8)
            #expect(message == Array("datagram".utf8))
            #expect(sender == clientAddress)
        }
    }

    /// `UnixSocket.connect(to:on:)` to a path that does not exist throws `.noSuchFile` and
    /// closes the socket it made: the descriptor count is what it was (in a child process
    /// of its own, where no other test opens descriptors meanwhile).
    @Test(arguments: conformanceBackends)
    func awaitedConnectToAMissingPathLeavesNothingOpen(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            try withAsyncLoop(backend) { _, executor, _ in
                let missing = try SocketAddress(unixPath: UnixNames.path("async-missing"))
                _ = try runAsync(executor) { try await executor.sleep(for: .milliseconds(1)) }
                let baseline = Fds.count()
                let failure = try runAsync(executor) { () -> String? in
                    do {
                        _ = try await UnixSocket.connect(to: missing, on: executor)
                        return nil
                    } catch {
                        return "\(error)"
                    }
                }
                #expect(failure == "\(EvError.noSuchFile)")
                #expect(Fds.count() == baseline, "the socket made for the failed connect is still open")
            }
        }
    }

    /// Deadlines reach the new watchers in both forms: an awaited read of a pipe nobody
    /// writes and an awaited datagram receive with a deadline throw `.timedOut`, and a
    /// callback-form Unix stream read with `Completion.deadline` reports it; the streams
    /// stay usable afterwards.
    @Test(arguments: conformanceBackends)
    func deadlinesOnPipesAndUnixSockets(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            h.own(readEnd.fd)
            h.own(writeEnd.fd)
            let datagrams = try UnixSocket(kind: .datagram, loop: loop)
            h.own(datagrams.fd)
            try datagrams.bind(to: SocketAddress(abstractUnixName: UnixNames.abstract("deadline")))
            let outcomes = try runAsync(executor) { () -> [String] in
                let buffer = TestBuffer(16)
                var seen: [String] = []
                for attempt in 0..<2 {
                    do {
                        if attempt == 0 {
                            _ = try await readEnd.read(into: buffer.raw, deadline: .within(.milliseconds(20)), on: executor)
                        } else {
                            _ = try await datagrams.receive(into: buffer.raw, deadline: .within(.milliseconds(20)), on: executor)
                        }
                        seen.append("completed")
                    } catch {
                        seen.append("\(error)")
                    }
                }
                return seen
            }
            #expect(outcomes == ["\(EvError.timedOut)", "\(EvError.timedOut)"])

            let (a, b) = try UnixSocket.pair(loop: loop)
            h.own(a.fd)
            h.own(b.fd)
            let reading = Completion()
            reading.deadline = .within(.milliseconds(20))
            var result: Result<Int, EvError>?
            try a.read(loop: loop, completion: reading, buffer: h.buffer(16)) { _, r in result = r; return .disarm }
            #expect(try runUntil(loop) { result != nil })
            #expect(result?.errorValue == .timedOut)
        }
    }

    /// A child's output read with the awaitable ByteStream operations: `read(into:on:)`
    /// until `.endOfFile`, the exit through `wait(on:)`, and stdin written with `writeAll`
    /// and closed.
    @Test(arguments: conformanceBackends)
    func awaitedChildOutput(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let (text, status) = try runAsync(executor) {
                let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "rev; exit 2"],
                                                 stdin: .pipe, stdout: .pipe, stderr: .null, loop: executor.loop)
                guard let input = child.standardInput, let output = child.standardOutput else {
                    throw EvError.invalidArgument
                }
                let line = TestBuffer(Array("stressed\n".utf8))
                try await input.writeAll(UnsafeRawBufferPointer(line.raw), on: executor)
                try await input.close(on: executor)
                let bytes = try await readToEnd { try await output.read(into: $0, on: executor) }
                try await output.close(on: executor)
                return (String(decoding: bytes, as: UTF8.self), try await child.wait(on: executor))
            }
            #expect(text == "desserts\n")
            #expect(status == .exited(2))
        }
    }
}

/// Everything `read` delivers until it throws `.endOfFile` (the end of the stream), read in
/// chunks of 4 KiB.
nonisolated(nonsending)
private func readToEnd(_ read: (UnsafeMutableRawBufferPointer) async throws -> Int) async throws -> [UInt8] {
    let buffer = TestBuffer(4096)
    var bytes: [UInt8] = []
    while true {
        do {
            let n = try await read(buffer.raw)
            bytes += buffer.raw[..<n]
        } catch EvError.endOfFile {
            return bytes
        }
    }
}
