// Conformance: a connect to a Unix stream listener whose accept queue is full
// (issue 12 item 2). Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: Unix socket with a full backlog")
struct UnixBacklogTests {
    /// A connect to a Unix listener whose accept queue is full waits, as a blocking
    /// connect(2) does, and completes once the server accepts one; EAGAIN never reaches the
    /// callback. (A non-blocking AF_UNIX connect fails with EAGAIN at once, unlike TCP's
    /// EINPROGRESS, and nothing can be polled for room in the queue.)
    /// A Unix listener at a fresh path whose accept queue is full (plain non-blocking
    /// clients connect until one is refused with EAGAIN).
    private func fullListener(_ h: Harness, _ name: String) throws -> (UnixSocket, SocketAddress, String) {
        let path = temporaryPath("evloop-backlog-\(getpid())-\(name).sock")
        unlink(path)
        let address = try SocketAddress(unixPath: path)
        let listener = try UnixSocket(kind: .stream, loop: h.loop)
        h.own(listener.fd)
        try listener.bind(to: address)
        try listener.listen(backlog: 0)
        var full = false
        for _ in 0..<16 {
            let fd = h.own(socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0))
            let r = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if r != 0 && errno == EAGAIN { full = true; break }
        }
        #expect(full, "the accept queue never filled")
        return (listener, address, path)
    }

    /// Such a connect honours its deadline, and a cancel or a close ends it, on every
    /// backend (on epoll and poll it waits in the engine's retry list).
    @Test(arguments: conformanceBackends)
    func waitingConnectTimesOutOrIsCancelled(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (_, address, path) = try fullListener(h, "\(backend)-deadline")
        defer { unlink(path) }
        let client = try UnixSocket(kind: .stream, loop: loop)
        h.own(client.fd)
        var timed: Result<Void, EvError>?
        let connecting = Completion()
        connecting.deadline = .within(.milliseconds(40))
        try client.connect(loop: loop, completion: connecting, to: address) { _, r in timed = r; return .disarm }
        #expect(try runUntil(loop) { timed != nil })
        #expect(timed.map { if case .failure(.timedOut) = $0 { true } else { false } } == true, "got \(String(describing: timed))")

        let other = try UnixSocket(kind: .stream, loop: loop)
        h.own(other.fd)
        var canceled: Result<Void, EvError>?
        let c = Completion()
        try other.connect(loop: loop, completion: c, to: address) { _, r in canceled = r; return .disarm }
        try runFor(loop, .milliseconds(10))
        try loop.cancel(c, using: Completion())
        #expect(try runUntil(loop) { canceled != nil })
        #expect(canceled.map { if case .failure(.canceled) = $0 { true } else { false } } == true, "\(String(describing: canceled))")
    }

    @Test(arguments: conformanceBackends)
    func connectWaitsForRoom(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (listener, address, path) = try fullListener(h, "\(backend)-wait")
        defer { unlink(path) }
        let client = try UnixSocket(kind: .stream, loop: loop)
        h.own(client.fd)
        var result: Result<Void, EvError>?
        try client.connect(loop: loop, completion: Completion(), to: address) { _, r in result = r; return .disarm }
        try runFor(loop, .milliseconds(50))
        #expect(result == nil, "the connect finished while the queue was full: \(String(describing: result))")
        // Room in the queue: accept one (plain accept(2), in blocking mode).
        Sock.setNonBlocking(listener.fd, false)
        let accepted = Glibc.accept(listener.fd, nil, nil)
        #expect(accepted >= 0)
        if accepted >= 0 { h.own(accepted) }
        #expect(try runUntil(loop, timeout: .seconds(5)) { result != nil })
        #expect(result.map { if case .success = $0 { true } else { false } } == true, "\(String(describing: result))")
    }
}
