// Conformance: the readiness-only `.poll` operation (libxev PR #146). Every test runs
// unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: poll operation")
struct PollOperationTests {

    /// A socket's readability is reported as `.readable` (pending until data arrives,
    /// or at once when it is there), the poll consumes nothing, and `.writable` is
    /// reported for a socket with room to write.
    @Test(arguments: conformanceBackends)
    func readinessIsReported(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.own(b)
        var results: [CompletionResult] = []
        let p = Completion(.poll(fd: a, events: .readable)) { _, r in results.append(r); return .disarm }
        try loop.add(p)
        for _ in 0..<3 { try loop.run(.noWait) }
        #expect(results.isEmpty, "not readable yet")
        try Sock.put(b, "data")
        #expect(try runUntil(loop) { results.count == 1 })
        guard case .poll(.success(let events))? = results.first else {
            Issue.record("\(results)")
            return
        }
        #expect(events.contains(.readable))

        // Already readable: reported at once; rearming reports it again (the data is
        // still there: a poll reads nothing).
        results = []
        p.callback = { _, r in results.append(r); return results.count < 3 ? .rearm : .disarm }
        try loop.add(p)
        #expect(try runUntil(loop) { results.count == 3 })
        #expect(results.allSatisfy {
            if case .poll(.success(let e)) = $0 { return e.contains(.readable) }
            return false
        }, "\(results)")
        #expect(Sock.take(a, 4, timeoutMs: 1000) == Array("data".utf8))

        // Writable.
        var w: CompletionResult?
        try loop.add(Completion(.poll(fd: a, events: .writable)) { _, r in w = r; return .disarm })
        #expect(try runUntil(loop) { w != nil })
        if case .poll(.success(let e))? = w { #expect(e.contains(.writable)) } else { Issue.record("\(String(describing: w))") }

        // The peer's close makes the socket readable (end of file) as well.
        var closed: CompletionResult?
        try loop.add(Completion(.poll(fd: a, events: .readable)) { _, r in closed = r; return .disarm })
        try loop.run(.noWait)
        h.close(b)
        #expect(try runUntil(loop) { closed != nil })
        if case .poll(.success(let e))? = closed {
            #expect(e.contains(.readable) || e.contains(.hangup), "\(e)")
        } else {
            Issue.record("\(String(describing: closed))")
        }
    }

    /// A listening socket polls readable when a client is waiting to be accepted.
    @Test(arguments: conformanceBackends)
    func listenerIsReadableWithAPendingConnection(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (l, port) = try Sock.listener()
        h.forLoop(l)
        var result: CompletionResult?
        try loop.add(Completion(.poll(fd: l, events: .readable)) { _, r in result = r; return .disarm })
        try loop.run(.noWait)
        #expect(result == nil)
        let client = h.own(try Sock.tcp())
        let address = try Sock.loopback(ipv6: false, port: port)
        #expect(address.withSockAddr { connect(client, $0, $1) } == 0)
        #expect(try runUntil(loop) { result != nil })
        if case .poll(.success(let e))? = result { #expect(e.contains(.readable)) } else { Issue.record("\(String(describing: result))") }
    }
}
