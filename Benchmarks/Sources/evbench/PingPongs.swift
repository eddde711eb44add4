#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// libxev's ping-pongs (src/bench/ping-pongs.zig): one TCP connection over loopback; the
/// client sends "PING\n", the server echoes what it reads, the client counts complete
/// echoes and sends the next ping after each. Server and client each run their own loop on
/// their own thread (run.sh pins the process to one CPU). Figure: roundtrips/s.
///
/// Differences from libxev, all to measure the loop rather than a memory pool: the
/// completions and buffers are allocated once per connection and reused (libxev takes a
/// completion and a 4 KiB buffer from a pool for every write); the window starts after a
/// warm-up and excludes connect and teardown; the port is the kernel's choice, not 3131.
///
/// Like libxev's harness, the callbacks cost a field access through a pointer: they capture
/// their side strongly (a cycle through the side's completions, broken by `release()` once
/// the loop has finished; an `unowned` capture retained and released the side at every
/// callback, `unowned(unsafe)` retained it too) and the sides' state is
/// `@exclusivity(unchecked)` (touched only from its loop's thread), not a dynamic
/// exclusivity check at every access; callgrind counted these as a few hundred of the
/// user-space instructions per roundtrip, none of them the library's.
enum PingPongs {
    /// The ping-pong on the runtime-chosen loop (`LoopCore`, what `makeLoop` returns).
    static func run(_ setup: BenchSetup, count: Int, warmup: Int) {
        run(setup, count: count, warmup: warmup, bench: "ping-pongs", implementation: setup.implementation) {
            setup.openLoop()
        }
    }

    /// The same code specialized for the concrete backend type (`UringLoop`, `EpollLoop`,
    /// `PollLoop`), to measure what the runtime-chosen loop costs against it (issue 6).
    static func runConcrete(_ setup: BenchSetup, count: Int, warmup: Int) {
        let name = "ping-pongs-concrete"
        let impl = setup.implementation + "/concrete"
        switch setup.backend {
        case .ioUring: run(setup, count: count, warmup: warmup, bench: name, implementation: impl) { openConcrete { () throws(BackendUnavailable) in try UringLoop() } }
        case .epoll: run(setup, count: count, warmup: warmup, bench: name, implementation: impl) { openConcrete { () throws(BackendUnavailable) in try EpollLoop() } }
        case .poll: run(setup, count: count, warmup: warmup, bench: name, implementation: impl) { openConcrete { () throws(BackendUnavailable) in try PollLoop() } }
        }
    }

    @Sendable static func openConcrete<L: EventLoop>(_ make: () throws(BackendUnavailable) -> L) -> L {
        do { return try make() } catch { BenchOutput.fail("\(error)") }
    }

    static func run<L: EventLoop & SendableMetatype>(_ setup: BenchSetup, count: Int, warmup: Int, bench: String,
                                  implementation: String, makeLoop: @escaping @Sendable () -> L) {
        let port = Handoff<UInt16>()
        let serverThread = BenchThread {
            let loop = makeLoop()
            let server = check("server") { try EchoServer(loop: loop) }
            port.put(server.port)
            check("server") { try server.start() }
            check("server loop") { try loop.run(.untilDone) }
            drain(loop)
            server.release()
        }

        let loop = makeLoop()
        let address = check("address") { try SocketAddress(ipv4: "127.0.0.1", port: port.take()) }
        let client = check("client") { try PingClient(loop: loop, warmup: warmup, count: count) }
        check("connect") { try client.start(connectingTo: address) }
        check("client loop") { try loop.run(.untilDone) }
        serverThread.join()
        drain(loop)
        if let failure = client.failure { BenchOutput.fail(failure) }
        guard let start = client.start, let end = client.end else {
            BenchOutput.fail("the ping-pong ended after \(client.pongs) roundtrips")
        }
        client.release()
        let window = Window(from: start, to: end, operations: UInt64(count))
        BenchOutput.result(bench: bench, impl: implementation, value: window.rate,
                           unit: "roundtrips/s", window: window, opName: "roundtrip")
    }
}

/// The echo side (libxev's Server): accepts one connection, then reads into one buffer and
/// sends back everything it read. Bytes that arrive while a send is in flight wait in
/// `pending` and go out when it completes (a ping-pong never has more than one message in
/// flight, but the server does not rely on it).
final class EchoServer<L: EventLoop> {
    let loop: L
    let listener: TCPSocket
    @exclusivity(unchecked) private var connection: Int32 = -1
    private let acceptCompletion = Completion()
    private let readCompletion = Completion()
    private let writeCompletion = Completion()
    private let closeCompletion = Completion()
    private let closeListenerCompletion = Completion()
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
    private let pending = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
    @exclusivity(unchecked) private var pendingStart = 0
    @exclusivity(unchecked) private var pendingEnd = 0
    @exclusivity(unchecked) private var writing = false

    init(loop: L) throws(EvError) {
        self.loop = loop
        listener = try TCPSocket(family: AF_INET, loop: loop)
        try listener.setReuseAddress(true)
        try listener.bind(to: loopbackAnyPort())
        try listener.listen(backlog: 128)
    }

    var port: UInt16 { check("getsockname") { try listener.localAddress().port } }

    func start() throws(EvError) {
        // The callbacks are made once; every later operation reuses them (no allocation).
        acceptCompletion.operation = .accept(socket: listener.fd)
        acceptCompletion.callback = { _, result in self.accepted(result) }
        readCompletion.callback = { _, result in self.didRead(result) }
        writeCompletion.callback = { c, result in self.didWrite(c, result) }
        try loop.add(acceptCompletion)
    }

    private func accepted(_ result: CompletionResult) -> CallbackAction {
        guard case .accept(.success(let fd)) = result else {
            BenchOutput.fail("accept: \(result)")
        }
        connection = fd
        // One connection only (like libxev's server): stop listening.
        closeListenerCompletion.operation = .close(fd: listener.fd)
        check("close listener") { try loop.add(closeListenerCompletion) }
        readCompletion.operation = .recv(socket: fd, buffer: readBuffer)
        check("read") { try loop.add(readCompletion) }
        return .disarm
    }

    private func didRead(_ result: CompletionResult) -> CallbackAction {
        guard case .read(.success(let n)) = result else {
            // End of stream (the client's shutdown) or an error: close the connection,
            // which also cancels a send still in flight.
            closeCompletion.operation = .close(fd: connection)
            check("close") { try loop.add(closeCompletion) }
            return .disarm
        }
        guard pendingEnd + n <= pending.count else { BenchOutput.fail("echo server: pending buffer full") }
        (pending.baseAddress! + pendingEnd).copyMemory(from: readBuffer.baseAddress!, byteCount: n)
        pendingEnd += n
        if !writing { sendPending(writeCompletion) ; check("write") { try loop.add(writeCompletion) } }
        return .rearm
    }

    /// Points `c` at the pending bytes (the caller adds it or returns `.rearm`).
    private func sendPending(_ c: Completion) {
        writing = true
        c.operation = .send(socket: connection,
                            buffer: UnsafeRawBufferPointer(rebasing: pending[pendingStart..<pendingEnd]))
    }

    private func didWrite(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        guard case .write(.success(let n)) = result else {
            writing = false
            return .disarm
        }
        pendingStart += n
        if pendingStart == pendingEnd {
            pendingStart = 0
            pendingEnd = 0
            writing = false
            return .disarm
        }
        sendPending(c)
        return .rearm
    }

    /// Frees the buffers and drops the callbacks, which hold `self` (after the loop has
    /// finished with them).
    func release() {
        readBuffer.deallocate()
        pending.deallocate()
        for c in [acceptCompletion, readCompletion, writeCompletion] { c.callback = { _, _ in .disarm } }
    }
}

/// The pinging side (libxev's Client): sends "PING\n", counts echoes, sends the next.
final class PingClient<L: EventLoop> {
    let loop: L
    let socket: TCPSocket
    let warmup: Int
    let count: Int
    @exclusivity(unchecked) private(set) var pongs = 0
    @exclusivity(unchecked) private(set) var start: Sample?
    @exclusivity(unchecked) private(set) var end: Sample?
    private(set) var failure: String?
    @exclusivity(unchecked) private var parser = PingParser()
    private let connectCompletion = Completion()
    private let readCompletion = Completion()
    private let writeCompletion = Completion()
    private let closeCompletion = Completion()
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 64)
    /// `Ping.bytes` read once (a `static let` costs a `swift_once` check at every read).
    private let ping = Ping.bytes
    @exclusivity(unchecked) private var writing = false
    @exclusivity(unchecked) private var pingOwed = false
    @exclusivity(unchecked) private var written = 0

    init(loop: L, warmup: Int, count: Int) throws(EvError) {
        self.loop = loop
        self.warmup = warmup
        self.count = count
        socket = try TCPSocket(family: AF_INET, loop: loop)
    }

    func start(connectingTo address: SocketAddress) throws(EvError) {
        connectCompletion.callback = { _, result in self.connected(result) }
        readCompletion.operation = .recv(socket: socket.fd, buffer: readBuffer)
        readCompletion.callback = { _, result in self.didRead(result) }
        writeCompletion.operation = .send(socket: socket.fd, buffer: ping)
        writeCompletion.callback = { c, result in self.didWrite(c, result) }
        closeCompletion.callback = { c, result in self.closing(c, result) }
        connectCompletion.operation = .connect(socket: socket.fd, address: address)
        try loop.add(connectCompletion)
    }

    private func connected(_ result: CompletionResult) -> CallbackAction {
        guard case .connect(.success) = result else {
            BenchOutput.fail("connect: \(result)")
        }
        sendPing()
        check("read") { try loop.add(readCompletion) }
        return .disarm
    }

    private func sendPing() {
        if writing {
            // The previous ping's send has not reported yet: send when it does.
            pingOwed = true
            return
        }
        writing = true
        written = 0
        writeCompletion.operation = .send(socket: socket.fd, buffer: ping)
        check("write") { try loop.add(writeCompletion) }
    }

    private func didWrite(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        guard case .write(.success(let n)) = result else {
            failure = failure ?? "write: \(result)"
            writing = false
            return .disarm
        }
        written += n
        if written < ping.count {
            c.operation = .send(socket: socket.fd, buffer: UnsafeRawBufferPointer(rebasing: ping[written...]))
            return .rearm
        }
        if pingOwed {
            pingOwed = false
            written = 0
            c.operation = .send(socket: socket.fd, buffer: ping)
            return .rearm
        }
        writing = false
        return .disarm
    }

    private func didRead(_ result: CompletionResult) -> CallbackAction {
        guard case .read(.success(let n)) = result else {
            failure = failure ?? "read after \(pongs) roundtrips: \(result)"
            return .disarm
        }
        let echoes = parser.feed(UnsafeRawBufferPointer(rebasing: readBuffer[..<n]))
        for _ in 0..<echoes {
            pongs += 1
            if pongs == warmup {
                start = Sample.now()
            } else if pongs == warmup + count {
                end = Sample.now()
                // Done: shut down our side, then close (the server sees end of stream).
                closeCompletion.operation = .shutdown(socket: socket.fd, how: .write)
                check("shutdown") { try loop.add(closeCompletion) }
                return .disarm
            }
            sendPing()
        }
        return .rearm
    }

    private func closing(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        if case .shutdown = result {
            c.operation = .close(fd: socket.fd)
            return .rearm
        }
        return .disarm
    }

    /// Frees the buffer and drops the callbacks, which hold `self` (after the loop has
    /// finished with them).
    func release() {
        readBuffer.deallocate()
        for c in [connectCompletion, readCompletion, writeCompletion, closeCompletion] { c.callback = { _, _ in .disarm } }
    }
}
