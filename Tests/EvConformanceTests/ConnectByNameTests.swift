// Services: connecting by host name (resolve, then each address in turn, one deadline),
// on every backend, loopback only.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// A loopback address whose connects hang: a listener with a backlog of 0 whose one
/// queue slot is taken by a connection nobody accepts, so the kernel drops every further
/// SYN and the connect waits for its retransmissions (about a second each, for minutes).
final class UnresponsiveListener {
    let address: SocketAddress
    private let listener: Int32
    private let queued: Int32

    init() throws {
        let l = try Sock.tcp()
        let any = try Sock.loopback(ipv6: false, port: 0)
        guard any.withSockAddr({ bind(l, $0, $1) }) == 0, listen(l, 0) == 0, let bound = Sock.localAddress(l) else {
            close(l)
            throw SysCallError("bind/listen")
        }
        let c = try Sock.tcp()
        Sock.setNonBlocking(c, true)
        _ = bound.withSockAddr { connect(c, $0, $1) }
        guard Sock.wait(c, Int16(POLLOUT), timeoutMs: 2000) != 0 else {
            close(c); close(l)
            throw SysCallError("filling the listener's queue", errno: ETIMEDOUT)
        }
        listener = l
        queued = c
        address = bound
    }

    deinit {
        close(queued)
        close(listener)
    }
}

@Suite("Service: connect by name")
struct ConnectByNameTests {

    /// Connects `TCPSocket.connect(host:...)` and runs the loop until its callback.
    private func connect(_ loop: LoopCore, host: String, port: UInt16, resolver: Resolver, family: Int32 = AF_UNSPEC,
                         deadline: Deadline = .none, completion: Completion = Completion(),
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> Result<TCPSocket, EvError>? {
        var result: Result<TCPSocket, EvError>?
        completion.deadline = deadline
        try TCPSocket.connect(loop: loop, completion: completion, host: host, port: port, resolver: resolver,
                              family: family) { _, r in
            result = r
            return .disarm
        }
        #expect(try runUntil(loop, timeout: .seconds(20)) { result != nil }, sourceLocation: sourceLocation)
        return result
    }

    /// Closes a connected socket through the loop.
    private func closeThroughLoop(_ socket: TCPSocket, _ loop: LoopCore) throws {
        var closed: Result<Void, EvError>?
        try socket.close(loop: loop, completion: Completion()) { _, r in closed = r; return .disarm }
        #expect(try runUntil(loop) { closed != nil })
        #expect(closed.map { (try? $0.get()) != nil } == true)
    }

    /// "localhost" and "127.0.0.1" connect to a listener on 127.0.0.1: the socket handed
    /// over is connected to it (the listener accepts it), and is the loop's kind of socket.
    @Test(arguments: conformanceBackends)
    func connectsByNameToALocalListener(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        let (listener, port) = try Sock.listener()
        h.own(listener)
        for host in ["localhost", "127.0.0.1"] {
            let result = try connect(loop, host: host, port: port, resolver: resolver, deadline: .within(.seconds(10)))
            guard case .success(let socket)? = result else {
                Issue.record("\(host): \(String(describing: result))")
                continue
            }
            h.own(socket.fd)
            #expect(try socket.peerAddress() == Sock.loopback(ipv6: false, port: port), "\(host)")
            #expect(Sock.isNonBlocking(socket.fd) == h.wantsNonBlocking)
            #expect(Sock.isCloseOnExec(socket.fd))
            #expect(Sock.wait(listener, timeoutMs: 2000) != 0, "the listener has no connection to accept")
            let accepted = cevsys_accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            #expect(accepted >= 0)
            if accepted >= 0 { close(accepted) }
            h.forget(socket.fd)
            try closeThroughLoop(socket, loop)
        }
        #expect(loop.activeCount == 0)
    }

    /// A port nobody listens on: the error of the last attempt, `.connectionRefused`.
    @Test(arguments: conformanceBackends)
    func aClosedPortIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        let (holder, port) = try Sock.boundNotListening()
        h.own(holder)
        #expect(try connect(loop, host: "127.0.0.1", port: port, resolver: resolver) == .failure(.connectionRefused))
        // "localhost" may have ::1 as well (then tried first, and refused, or unreachable
        // without IPv6); 127.0.0.1 comes last and is refused.
        #expect(try connect(loop, host: "localhost", port: port, resolver: resolver, family: AF_INET) == .failure(.connectionRefused))
        #expect(loop.activeCount == 0)
    }

    /// Each address is tried in turn: a refusing one, then the listener; the refused
    /// attempt's socket is closed. With every address refusing, the last error comes back.
    @Test(arguments: conformanceBackends)
    func triesEachAddressInTurn(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let targets = try LoopbackTargets(h)
        let (listening, refusing) = (targets.listening, targets.refusing)
        var result: Result<TCPSocket, EvError>?
        try TCPSocket.connect(loop: loop, completion: Completion(), to: [refusing, refusing, listening]) { _, r in
            result = r
            return .disarm
        }
        #expect(try runUntil(loop) { result != nil })
        if case .success(let socket)? = result {
            #expect(try socket.peerAddress() == listening)
            h.forget(socket.fd)
            try closeThroughLoop(socket, loop)
        } else {
            Issue.record("\(String(describing: result))")
        }
        result = nil
        try TCPSocket.connect(loop: loop, completion: Completion(), to: [refusing, refusing]) { _, r in
            result = r
            return .disarm
        }
        #expect(try runUntil(loop) { result != nil })
        #expect(result == .failure(.connectionRefused))
        #expect(try runUntilDone(loop))
        #expect(loop.activeCount == 0)
        #expect(throws: EvError.invalidArgument) {
            try TCPSocket.connect(loop: loop, completion: Completion(), to: []) { _, _ in .disarm }
        }
    }

    /// An unknown host is the resolver's typed error; bad input is refused before anything
    /// starts.
    @Test(arguments: conformanceBackends)
    func anUnknownHostAndBadInput(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        #expect(try connect(loop, host: "127.0.0.1", port: 80, resolver: resolver, family: AF_INET6) == .failure(.unknownHost))
        let c = Completion()
        #expect(throws: EvError.invalidArgument) {
            try TCPSocket.connect(loop: loop, completion: c, host: "", port: 80, resolver: resolver) { _, _ in .disarm }
        }
        #expect(throws: EvError.invalidArgument) {
            try TCPSocket.connect(loop: loop, completion: c, host: "localhost", port: 80, resolver: resolver,
                                  family: AF_UNIX) { _, _ in .disarm }
        }
        #expect(c.state == .dead && loop.activeCount == 0)
    }

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// One deadline over everything: a connect that hangs (an address that drops SYNs)
    /// ends with `.timedOut` at the deadline, as does a lookup that takes too long; the
    /// half-open socket is closed and nothing stays active.
    @Test(arguments: conformanceBackends)
    func oneDeadlineOverTheLookupAndTheAttempts(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let silent = try UnresponsiveListener()
        let started = LoopInstant.now()
        var result: Result<TCPSocket, EvError>?
        let connecting = Completion()
        loop.updateNow()
        connecting.deadline = .at(loop.now + .milliseconds(200))   // an instant works as well as .within
        try TCPSocket.connect(loop: loop, completion: connecting, to: [silent.address]) { _, r in
            result = r
            return .disarm
        }
        #expect(try runUntil(loop) { result != nil })
        let waited = LoopInstant.now() - started
        #expect(result == .failure(.timedOut))
        #expect(waited >= .milliseconds(190) && waited < .seconds(2), "timed out after \(waited)")
        #expect(try runUntilDone(loop))
        #expect(loop.activeCount == 0, "the abandoned attempt's close did not finish")

        let resolver = try Resolver(threads: 1)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .seconds(2)
        let lookupStarted = LoopInstant.now()
        let slow = try connect(loop, host: "127.0.0.1", port: 1, resolver: resolver, deadline: .within(.milliseconds(100)))
        #expect(slow == .failure(.timedOut))
        #expect(LoopInstant.now() - lookupStarted < .seconds(1), "the deadline waited for the lookup")
        #expect(try runUntilDone(loop, timeout: .seconds(1)), "something waited for the abandoned lookup")
        #expect(loop.activeCount == 0)
    }
    #endif

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// Cancelling the caller's completion gives up at once, during the lookup or a hanging
    /// attempt, with `.canceled`; `cancelAll()` does the same.
    @Test(arguments: conformanceBackends)
    func cancelGivesUpDuringTheLookupOrAnAttempt(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver(threads: 1)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .seconds(2)
        let c = Completion()
        var result: Result<TCPSocket, EvError>?
        try TCPSocket.connect(loop: loop, completion: c, host: "127.0.0.1", port: 1, resolver: resolver) { _, r in
            result = r
            return .disarm
        }
        try loop.run(.noWait)
        var cancelResult: CompletionResult?
        try loop.cancel(c, using: Completion()) { _, r in cancelResult = r; return .disarm }
        #expect(try runUntil(loop, timeout: .seconds(1)) { result != nil && cancelResult != nil })
        #expect(result == .failure(.canceled))
        #expect(cancelResult?.error == nil)
        #expect(try runUntilDone(loop, timeout: .seconds(1)))
        #expect(loop.activeCount == 0)

        let silent = try UnresponsiveListener()
        result = nil
        try TCPSocket.connect(loop: loop, completion: c, to: [silent.address]) { _, r in
            result = r
            return .disarm
        }
        try loop.run(.noWait)
        loop.cancelAll()
        #expect(try runUntil(loop, timeout: .seconds(1)) { result != nil })
        #expect(result == .failure(.canceled))
        #expect(try runUntilDone(loop, timeout: .seconds(1)))
        #expect(loop.activeCount == 0)
    }
    #endif

    /// `.rearm` connects again, from the lookup on.
    @Test(arguments: conformanceBackends)
    func rearmConnectsAgain(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        let (listener, port) = try Sock.listener()
        h.own(listener)
        var sockets: [TCPSocket] = []
        let connecting = Completion()
        connecting.deadline = .within(.seconds(10))
        try TCPSocket.connect(loop: loop, completion: connecting, host: "localhost", port: port, resolver: resolver,
                              family: AF_INET) { _, r in
            guard case .success(let s) = r else { return .disarm }
            sockets.append(s)
            return sockets.count < 3 ? .rearm : .disarm
        }
        #expect(try runUntilDone(loop, timeout: .seconds(20)))
        #expect(sockets.count == 3)
        for s in sockets { try closeThroughLoop(s, loop) }
    }

    /// Every path (connected, refused, timed out, cancelled, unknown host) leaves no
    /// descriptor open but the socket handed over, and nothing active. (The whole
    /// descriptor table: in a child process.)
    @Test(arguments: conformanceBackends)
    func descriptorsReturnToTheBaseline(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let loop = try makeTestLoop(backend)
            let h = Harness(loop)
            defer { h.finish() }
            let resolver = try Resolver()
            defer { resolver.shutdown() }
            let targets = try LoopbackTargets(h)
            let (listener, port, closedPort) = (targets.listener, targets.listening.port, targets.refusing.port)
            let silent = try UnresponsiveListener()
            // The loop's work eventfd exists from the first lookup on.
            _ = try connect(loop, host: "127.0.0.1", port: closedPort, resolver: resolver)
            let baseline = Fds.count()
            for _ in 0..<10 {
                if case .success(let s)? = try connect(loop, host: "localhost", port: port, resolver: resolver, family: AF_INET) {
                    #expect(Fds.count() == baseline + 1)
                    try closeThroughLoop(s, loop)
                    let accepted = cevsys_accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
                    if accepted >= 0 { close(accepted) }
                } else {
                    Issue.record("no connection")
                }
                #expect(try connect(loop, host: "127.0.0.1", port: closedPort, resolver: resolver) == .failure(.connectionRefused))
                #expect(try connect(loop, host: "::1", port: port, resolver: resolver, family: AF_INET) == .failure(.unknownHost))
                var timedOut: Result<TCPSocket, EvError>?
                let connecting = Completion()
                connecting.deadline = .within(.milliseconds(20))
                try TCPSocket.connect(loop: loop, completion: connecting, to: [silent.address]) { _, r in
                    timedOut = r
                    return .disarm
                }
                #expect(try runUntil(loop) { timedOut != nil })
                #expect(timedOut == .failure(.timedOut))
                let c = Completion()
                var canceled: Result<TCPSocket, EvError>?
                try TCPSocket.connect(loop: loop, completion: c, to: [silent.address]) { _, r in canceled = r; return .disarm }
                try loop.run(.noWait)
                try loop.cancel(c, using: Completion())
                #expect(try runUntil(loop) { canceled != nil })
                #expect(canceled == .failure(.canceled))
                #expect(try runUntilDone(loop))
                #expect(loop.activeCount == 0)
                #expect(Fds.count() == baseline, "descriptors: \(Fds.count() - baseline) above the baseline")
            }
        }
    }
}
