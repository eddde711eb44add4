// Conformance: EvAsync's asynchronous sequences (incoming connections, stream reads,
// datagrams, signals): each delivers in order, ends at the end of the stream, ends when
// its consuming task is cancelled with nothing left behind, and throws EvError. Every
// test runs unchanged on every backend, loopback only.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Starts `consume` as a task on the loop, cancels it once it has had time to suspend
/// (from this thread, or from another one), and says how it ended: "ended" when it
/// returned, else what it threw.
func endsWhenCancelled(_ executor: LoopExecutor, fromAnotherThread: Bool = false,
                       _ consume: @escaping @Sendable () async throws -> Void) async throws -> String {
    let task = Task(executorPreference: executor) { () async -> String in
        do {
            try await consume()
            return "ended"
        } catch {
            return "threw \(error)"
        }
    }
    try await executor.sleep(for: .milliseconds(20))
    if fromAnotherThread {
        let canceller = try TestThread { task.cancel() }
        canceller.join()
    } else {
        task.cancel()
    }
    return await task.value
}

/// Sends `bytes` as one datagram from the plain socket `fd` to `address`.
func sendDatagram(_ fd: Int32, _ bytes: [UInt8], to address: SocketAddress) -> Int {
    bytes.withUnsafeBytes { raw in
        address.withSockAddr { sendto(fd, raw.baseAddress, raw.count, 0, $0, $1) }
    }
}

@Suite("Conformance: async sequences")
struct AsyncSequenceTests {

    /// Connections come out of `connections(on:)` in the order they were made (each client
    /// sends its number first), and breaking out of the loop stops accepting.
    @Test(arguments: conformanceBackends)
    func connectionsArriveInOrder(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (listenFd, port) = try Sock.listener()
            h.forLoop(listenFd)
            let listener = TCPSocket(fd: listenFd)
            let clients = Locked<[Int32]>([])
            defer { for fd in clients.value { close(fd) } }
            let firstBytes = try runAsync(executor) {
                let connector = try TestThread {
                    for i in 0..<5 {
                        guard let fd = try? Sock.tcp() else { return }
                        clients.withLock { $0.append(fd) }
                        let address = try? Sock.loopback(ipv6: false, port: port)
                        guard address?.withSockAddr({ connect(fd, $0, $1) }) == 0 else { return }
                        try? Sock.put(fd, [UInt8(i)])
                    }
                }
                defer { connector.join() }
                var seen: [UInt8] = []
                for try await connection in listener.connections(on: executor) {
                    let buffer = TestBuffer(1)
                    _ = try await connection.read(into: buffer.raw, on: executor)
                    seen.append(buffer.raw[0])
                    try await connection.close(on: executor)
                    if seen.count == 5 { break }
                }
                return seen
            }
            #expect(firstBytes == [0, 1, 2, 3, 4])
            #expect(Fds.socketsBound(toPort: port, except: listenFd).isEmpty, "every accepted connection was closed")
        }
    }

    /// `reads(into:on:)` hands over the whole stream, in order, chunk by chunk, and ends at
    /// the end of the stream (the peer shut down its side).
    @Test(arguments: conformanceBackends)
    func readsDeliverTheStreamAndEndAtEndOfStream(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            let message = (0..<100_000).map { patternByte($0, seed: 5) }
            let writer = try TestThread {
                var offset = 0
                var size = 1
                while offset < message.count {
                    let end = min(message.count, offset + size)
                    try? Sock.put(b, Array(message[offset..<end]))
                    offset = end
                    size = size * 3 % 7919 + 1
                }
                shutdown(b, Int32(SHUT_WR))
            }
            defer { writer.join() }
            let (received, chunks) = try runAsync(executor) {
                let buffer = TestBuffer(4096)
                var received: [UInt8] = []
                var chunks = 0
                for try await chunk in socket.reads(into: buffer.raw, on: executor) {
                    #expect(chunk.count > 0 && chunk.count <= 4096)
                    received += chunk
                    chunks += 1
                }
                return (received, chunks)
            }
            #expect(received == message)
            #expect(chunks >= message.count / 4096)
        }
    }

    /// A reset connection ends the reads by throwing `EvError.connectionReset`, after the
    /// bytes that came before it.
    @Test(arguments: conformanceBackends)
    func readsThrowEvErrors(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            try Sock.put(b, "hello")
            let outcome = try runAsync(executor) { () async -> String in
                let buffer = TestBuffer(64)
                var text = ""
                do throws(EvError) {
                    for try await chunk in socket.reads(into: buffer.raw, on: executor) {
                        text += String(decoding: chunk, as: UTF8.self)
                        if text == "hello" { Sock.closeWithReset(b) }
                    }
                    return "ended after \(text)"
                } catch {
                    // `do throws(EvError)`: the sequence throws nothing else (checked by the compiler).
                    return "\(text): \(error == .connectionReset)"
                }
            }
            h.forget(b)
            #expect(outcome == "hello: true")
        }
    }

    /// Datagrams come out in the order they were sent, with their sender; one longer than
    /// the buffer is cut to it and marked truncated.
    @Test(arguments: conformanceBackends)
    func datagramsArriveInOrderWithTheirSender(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let receiver = try UDPSocket.bound(to: try Sock.loopback(ipv6: false, port: 0), on: executor)
            h.own(receiver.fd)
            let (sender, senderAddress) = try Sock.udp()
            h.own(sender)
            let target = try receiver.localAddress()
            let sent: [[UInt8]] = (0..<5).map { Array("datagram \($0)".utf8) } + [Array("this one is longer than the buffer".utf8)]
            for d in sent { #expect(sendDatagram(sender, d, to: target) == d.count) }
            let received = try runAsync(executor) {
                let buffer = TestBuffer(16)
                var received: [([UInt8], SocketAddress, Bool)] = []
                for try await datagram in receiver.datagrams(into: buffer.raw, on: executor) {
                    received.append((Array(datagram.bytes), datagram.sender, datagram.truncated))
                    if received.count == sent.count { break }
                }
                return received
            }
            #expect(received.map(\.0) == sent.dropLast() + [Array(sent.last!.prefix(16))])
            #expect(received.allSatisfy { $0.1 == senderAddress })
            #expect(received.map(\.2) == [false, false, false, false, false, true])
        }
    }

    /// The sequences are the same over every socket and stream that has the operation:
    /// the connections of a Unix stream listener, the reads of a pipe (ending when its
    /// writer closes), the datagrams of a Unix datagram socket with their sender.
    @Test(arguments: conformanceBackends)
    func sequencesOverUnixSocketsAndPipes(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let streamAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("seq-stream"))
            let listener = try UnixSocket(loop: loop)
            h.own(listener.fd)
            try listener.bind(to: streamAddress)
            try listener.listen()
            let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            h.own(readEnd.fd)
            let serverAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("seq-dgram"))
            let clientAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("seq-dgram-client"))
            let server = try UnixSocket(kind: .datagram, loop: loop)
            h.own(server.fd)
            try server.bind(to: serverAddress)
            let client = try UnixSocket(kind: .datagram, loop: loop)
            h.own(client.fd)
            try client.bind(to: clientAddress)
            let (streamText, pipeText, datagrams) = try runAsync(executor) { () async throws -> (String, String, [String]) in
                // A Unix stream connection, accepted from the sequence and read to its end.
                let connecting = Task(executorPreference: executor) {
                    let socket = try await UnixSocket.connect(to: streamAddress, on: executor)
                    let out = TestBuffer(Array("over unix".utf8))
                    try await socket.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                    try await socket.close(on: executor)
                }
                var streamText = ""
                for try await connection in listener.connections(on: executor) {
                    let buffer = TestBuffer(4)
                    for try await chunk in connection.reads(into: buffer.raw, on: executor) {
                        streamText += String(decoding: chunk, as: UTF8.self)
                    }
                    try await connection.close(on: executor)
                    break
                }
                try await connecting.value
                // A pipe, read to its end (the writer closes its end).
                let writing = Task(executorPreference: executor) {
                    let out = TestBuffer(Array("through a pipe".utf8))
                    try await writeEnd.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                    try await writeEnd.close(on: executor)
                }
                var pipeText = ""
                let buffer = TestBuffer(5)
                for try await chunk in readEnd.reads(into: buffer.raw, on: executor) {
                    pipeText += String(decoding: chunk, as: UTF8.self)
                }
                try await writing.value
                // Unix datagrams, with their sender.
                for i in 0..<3 {
                    let out = TestBuffer(Array("dgram \(i)".utf8))
                    _ = try await client.send(UnsafeRawBufferPointer(out.raw), to: serverAddress, on: executor)
                }
                var datagrams: [String] = []
                let dgramBuffer = TestBuffer(64)
                for try await datagram in server.datagrams(into: dgramBuffer.raw, on: executor) {
                    #expect(datagram.sender == clientAddress)
                    datagrams.append(String(decoding: datagram.bytes, as: UTF8.self))
                    if datagrams.count == 3 { break }
                }
                return (streamText, pipeText, datagrams)
            }
            #expect(streamText == "over unix")
            #expect(pipeText == "through a pipe")
            #expect(datagrams == ["dgram 0", "dgram 1", "dgram 2"])
        }
    }

    /// Signals come out one element per delivery (SIGUSR2, blocked in this thread and
    /// raised to it, as in `awaitedSignal`); afterwards nothing holds the watcher.
    @Test(arguments: conformanceBackends)
    func signalsArriveAsASequence(backend: Backend) throws {
        try SignalWatcher.block([SIGUSR2])
        defer {
            while cevsys_signal_consume(SIGUSR2) == 1 {}
            try? SignalWatcher.unblock([SIGUSR2])
        }
        try withAsyncLoop(backend) { _, executor, _ in
            let received = Locked<Int>(0)
            let (signals, watcherReleased) = try runAsync(executor) {
                weak var released: SignalWatcher?
                let signals: [Int32] = try await {
                    let watcher = try SignalWatcher(signals: [SIGUSR2])
                    released = watcher
                    let raiser = Task(executorPreference: executor) {
                        let giveUp = LoopInstant.now() + .seconds(5)   // a broken sequence fails the test, never hangs it
                        for round in 1...3 {
                            try await executor.sleep(for: .milliseconds(5))
                            raise(SIGUSR2)   // this (the loop) thread
                            // One delivery at a time: deliveries pending together coalesce.
                            while received.value < round && LoopInstant.now() < giveUp {
                                try await executor.sleep(for: .milliseconds(1))
                            }
                        }
                    }
                    var signals: [Int32] = []
                    for try await info in watcher.signals(on: executor) {
                        signals.append(info.signal)
                        received.withLock { $0 += 1 }
                        if signals.count == 3 { break }
                    }
                    try await raiser.value
                    return signals
                }()
                return (signals, released == nil)
            }
            #expect(signals == [SIGUSR2, SIGUSR2, SIGUSR2])
            #expect(watcherReleased, "the awaits kept no reference to the watcher (and its signalfd)")
        }
    }

    /// Cancelling the consuming task ends each sequence (the loop returns, nothing is
    /// thrown), from the loop thread and from another thread; the pending operations are
    /// gone from the loop and no accepted descriptor is left open.
    @Test(arguments: conformanceBackends)
    func cancellingTheConsumerEndsEachSequence(backend: Backend) throws {
        try SignalWatcher.block([SIGUSR2])
        defer { try? SignalWatcher.unblock([SIGUSR2]) }
        try withAsyncLoop(backend) { loop, executor, h in
            let sources = try SequenceSources(executor, h)
            let baseline = loop.activeCount
            let outcomes = try runAsync(executor) {
                try await sources.cancelEveryConsumer(fromAnotherThread: false)
                    + sources.cancelEveryConsumer(fromAnotherThread: true)
            }
            #expect(outcomes == Array(repeating: "ended", count: 12))
            #expect(try runUntil(loop) { loop.activeCount == baseline }, "the cancelled operations left the loop")
            #expect(Fds.socketsBound(toPort: sources.port, except: sources.listener.fd).isEmpty)
        }
    }

    /// The descriptor table and the loop's active count are back to their baseline after
    /// consumers of every sequence (and of both channels) were cancelled. In a child process
    /// of its own (ProcessIsolation.swift), because it counts the whole descriptor table.
    @Test(arguments: conformanceBackends)
    func cancelledConsumersLeakNothing(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            try SignalWatcher.block([SIGUSR2])
            defer { try? SignalWatcher.unblock([SIGUSR2]) }
            try withAsyncLoop(backend) { loop, executor, h in
                let sources = try SequenceSources(executor, h)
                let fds = Fds.count()
                let tableBefore = Fds.table()
                let baseline = loop.activeCount
                let outcomes = try runAsync(executor) {
                    try await sources.cancelEveryConsumer(fromAnotherThread: false)
                }
                #expect(outcomes == Array(repeating: "ended", count: 6))
                #expect(try runUntil(loop) { loop.activeCount == baseline }, "the cancelled operations left the loop")
                #expect(Fds.count() == fds, "no descriptor was left open: \(Fds.table().filter { tableBefore[$0.key] == nil })")
            }
        }
    }
}

/// One of everything that has a sequence, none of which will ever deliver an element: a
/// listener nobody connects to, a connection nobody writes to, a UDP socket nobody sends
/// to, SIGUSR2 (never raised), an empty channel and an empty inbox.
struct SequenceSources: Sendable {
    let executor: LoopExecutor
    let listener: TCPSocket
    let port: UInt16
    let stream: TCPSocket
    let udp: UDPSocket
    let channel: LoopChannel<Int>
    let inbox: LoopInbox<Int>

    /// Creates them for `executor`'s loop; `h` owns the descriptors.
    init(_ executor: LoopExecutor, _ h: Harness) throws {
        self.executor = executor
        let (listenFd, port) = try Sock.listener()
        h.forLoop(listenFd)
        listener = TCPSocket(fd: listenFd)
        self.port = port
        let (a, b) = try Sock.tcpPair()
        h.forLoop(a); h.own(b)
        stream = TCPSocket(fd: a)
        udp = try UDPSocket.bound(to: try Sock.loopback(ipv6: false, port: 0), on: executor)
        h.own(udp.fd)
        channel = LoopChannel<Int>(capacity: 1, on: executor)
        inbox = try LoopInbox<Int>(on: executor)
    }

    /// Starts a consumer of each sequence in turn and cancels it while it waits: the
    /// outcome of each ("ended" when its loop ended without an error).
    func cancelEveryConsumer(fromAnotherThread: Bool) async throws -> [String] {
        let (executor, listener, stream, udp, channel, inbox) = (executor, listener, stream, udp, channel, inbox)
        let consumers: [@Sendable () async throws -> Void] = [
            { for try await connection in listener.connections(on: executor) { try? await connection.close(on: executor) } },
            {
                let buffer = TestBuffer(64)
                for try await _ in stream.reads(into: buffer.raw, on: executor) {}
            },
            {
                let buffer = TestBuffer(64)
                for try await _ in udp.datagrams(into: buffer.raw, on: executor) {}
            },
            {
                let watcher = try SignalWatcher(signals: [SIGUSR2])
                for try await _ in watcher.signals(on: executor) {}
            },
            { for await _ in channel {} },
            { for try await _ in inbox {} },
        ]
        var outcomes: [String] = []
        for consume in consumers {
            outcomes.append(try await endsWhenCancelled(executor, fromAnotherThread: fromAnotherThread, consume))
        }
        return outcomes
    }

}
