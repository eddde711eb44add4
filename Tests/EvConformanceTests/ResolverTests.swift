// Services: Resolver (getaddrinfo on a pool of its own, results on the loop thread), on
// every backend. No test needs the network: "localhost" and numeric hosts come from
// /etc/hosts or need no lookup, unknown hosts are a numeric address of the other family
// (and "nonexistent.invalid", RFC 6761), and slow lookups are made by the debug-build delay.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Runs one lookup through `loop` and returns its result (nil if none came in time).
func resolveNow(_ resolver: Resolver, _ loop: LoopCore, host: String, port: UInt16 = 0, family: Int32 = AF_UNSPEC,
                timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation) throws
    -> Result<[SocketAddress], EvError>? {
    var result: Result<[SocketAddress], EvError>?
    try resolver.resolve(loop: loop, completion: Completion(), host: host, port: port, family: family) { _, r in
        result = r
        return .disarm
    }
    #expect(try runUntil(loop, timeout: timeout) { result != nil }, sourceLocation: sourceLocation)
    return result
}

/// Whether `address` is a loopback address (127.0.0.0/8 or ::1).
func isLoopback(_ address: SocketAddress) -> Bool {
    address.family == AF_INET6 ? address.host == "::1" : address.host.hasPrefix("127.")
}

@Suite("Service: Resolver")
struct ResolverTests {

    /// "localhost" resolves (from /etc/hosts) to loopback addresses only, each with the
    /// port; the callback runs on the loop thread; a family filter keeps that family only.
    @Test(arguments: conformanceBackends)
    func resolvesLocalhost(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        var result: Result<[SocketAddress], EvError>?
        var thread: Int32 = 0
        try resolver.resolve(loop: loop, completion: Completion(), host: "localhost", port: 8080) { _, r in
            result = r
            thread = cevsys_gettid()
            return .disarm
        }
        #expect(try runUntil(loop) { result != nil })
        guard case .success(let all)? = result else {
            Issue.record("localhost did not resolve: \(String(describing: result))")
            return
        }
        #expect(!all.isEmpty && all.allSatisfy(isLoopback), "\(all)")
        #expect(all.allSatisfy { $0.port == 8080 })
        #expect(Set(all).count == all.count, "one entry per address: \(all)")
        #expect(thread == cevsys_gettid())
        if all.contains(where: { $0.family == AF_INET }) {
            let v4 = try resolveNow(resolver, loop, host: "localhost", port: 1, family: AF_INET)
            #expect((try? v4?.get())?.allSatisfy { $0.family == AF_INET && isLoopback($0) } == true, "\(String(describing: v4))")
        }
        #expect(loop.activeCount == 0)
    }

    /// Numeric hosts (IPv4, IPv6, bracketed IPv6) come back as themselves, without a lookup.
    @Test(arguments: conformanceBackends)
    func resolvesNumericHosts(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        #expect(try resolveNow(resolver, loop, host: "127.0.0.1", port: 80) == .success([try SocketAddress(ipv4: "127.0.0.1", port: 80)]))
        #expect(try resolveNow(resolver, loop, host: "10.1.2.3", port: 7) == .success([try SocketAddress(ipv4: "10.1.2.3", port: 7)]))
        #expect(try resolveNow(resolver, loop, host: "::1", port: 443) == .success([try SocketAddress(ipv6: "::1", port: 443)]))
        #expect(try resolveNow(resolver, loop, host: "[::1]", port: 443) == .success([try SocketAddress(ipv6: "::1", port: 443)]))
    }

    /// A host with no address is `.unknownHost`: a numeric address asked for in the other
    /// family (decided without any name server), and a name under .invalid (RFC 6761: it
    /// never exists; without a reachable name server getaddrinfo can only say EAI_AGAIN,
    /// the temporary failure, which is typed too).
    @Test(arguments: conformanceBackends)
    func anUnknownHostIsATypedError(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        #expect(try resolveNow(resolver, loop, host: "127.0.0.1", family: AF_INET6) == .failure(.unknownHost))
        #expect(try resolveNow(resolver, loop, host: "::1", family: AF_INET) == .failure(.unknownHost))
        let invalid = try resolveNow(resolver, loop, host: "nonexistent.invalid", port: 80)
        #expect(invalid == .failure(.unknownHost) || invalid == .failure(.nameResolutionFailed(EAI_AGAIN)),
                "\(String(describing: invalid))")
        #expect(loop.activeCount == 0)
    }

    /// Bad input is refused before anything starts, with a typed error, and leaves the
    /// completion untouched.
    @Test(arguments: conformanceBackends)
    func badInputIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver()
        defer { resolver.shutdown() }
        #expect(throws: EvError.invalidArgument) { _ = try Resolver(threads: 0) }
        let c = Completion()
        for host in ["", "[]", "local\u{0}host"] {
            #expect(throws: EvError.invalidArgument, "host \(host.debugDescription)") {
                try resolver.resolve(loop: loop, completion: c, host: host) { _, _ in .disarm }
            }
        }
        #expect(throws: EvError.invalidArgument) {
            try resolver.resolve(loop: loop, completion: c, host: "localhost", family: AF_UNIX) { _, _ in .disarm }
        }
        #expect(c.state == .dead && loop.activeCount == 0)
        var first: Result<[SocketAddress], EvError>?
        try resolver.resolve(loop: loop, completion: c, host: "127.0.0.1") { _, r in first = r; return .disarm }
        #expect(throws: EvError.completionActive) {
            try resolver.resolve(loop: loop, completion: c, host: "::1") { _, _ in .disarm }
        }
        #expect(try runUntil(loop) { first != nil })
        #expect(first == .success([try SocketAddress(ipv4: "127.0.0.1", port: 0)]))
    }

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// A lookup cancelled before it starts is withdrawn: `.canceled`, and the cancel succeeds.
    @Test(arguments: conformanceBackends)
    func cancelBeforeTheLookupStarts(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver(threads: 1)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .milliseconds(300)
        var first: Result<[SocketAddress], EvError>?
        try resolver.resolve(loop: loop, completion: Completion(), host: "127.0.0.1") { _, r in first = r; return .disarm }
        let queued = Completion()
        var second: [Result<[SocketAddress], EvError>] = []
        try resolver.resolve(loop: loop, completion: queued, host: "127.0.0.1") { _, r in second.append(r); return .disarm }
        var cancelResult: CompletionResult?
        try loop.cancel(queued, using: Completion()) { _, r in cancelResult = r; return .disarm }
        #expect(try runUntil(loop) { cancelResult != nil && !second.isEmpty })
        #expect(second == [.failure(.canceled)])
        #expect(cancelResult?.error == nil, "\(String(describing: cancelResult))")
        #expect(try runUntilDone(loop))
        #expect(first == .success([try SocketAddress(ipv4: "127.0.0.1", port: 0)]))
        #expect(second.count == 1)
    }
    #endif

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// A cancel in mid-resolution ends the lookup at once (`.canceled`, the cancel
    /// succeeds) instead of waiting for the slow lookup; the completion can be used again
    /// right away; the late result is dropped and the abandoned job freed once the lookup
    /// returns; nothing stays active or queued.
    @Test(arguments: conformanceBackends)
    func cancelInMidResolution(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver(threads: 1)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .milliseconds(600)
        let c = Completion()
        var results: [Result<[SocketAddress], EvError>] = []
        try resolver.resolve(loop: loop, completion: c, host: "localhost") { _, r in results.append(r); return .disarm }
        guard case .work(let job) = c.operation else {
            Issue.record("a lookup is not a .work operation: \(c.operation)")
            return
        }
        weak let abandoned = job
        _ = consume job
        // Wait (without the loop: nothing would wake it) until the lookup runs.
        spinUntil { resolver.pool.threads.jobsRunning > 0 }
        #expect(resolver.pool.threads.jobsRunning == 1)
        let cancelledAt = LoopInstant.now()
        var cancelResult: CompletionResult?
        try loop.cancel(c, using: Completion()) { _, r in cancelResult = r; return .disarm }
        #expect(try runUntil(loop) { !results.isEmpty && cancelResult != nil })
        #expect(LoopInstant.now() - cancelledAt < .milliseconds(300), "the cancel waited for the lookup")
        #expect(results == [.failure(.canceled)])
        #expect(cancelResult?.error == nil, "\(String(describing: cancelResult))")
        #expect(c.state == .dead && loop.activeCount == 0)
        #expect(abandoned != nil, "the running lookup's job is still the worker's")

        // The same completion again at once: a new lookup, queued behind the abandoned one.
        resolver.lookupDelayForTesting = .zero
        try resolver.resolve(loop: loop, completion: c, host: "127.0.0.1", port: 9) { _, r in results.append(r); return .disarm }
        #expect(try runUntil(loop) { results.count == 2 })
        #expect(results.last == .success([try SocketAddress(ipv4: "127.0.0.1", port: 9)]))
        // By now the abandoned lookup has returned (one thread, and the new one ran after it).
        spinUntil { abandoned == nil }
        #expect(abandoned == nil, "the abandoned job leaked")
        #expect(resolver.pool.threads.jobsInFlight == 0)
        #expect(results.count == 2, "the late result reached a callback")
        #expect(loop.activeCount == 0)
    }
    #endif

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// Lookups run on the resolver's own threads, never on the loop's file pool (libuv#28):
    /// with every resolver thread stuck in a slow lookup, file reads and other pool work
    /// still complete at once.
    @Test(arguments: conformanceBackends)
    func slowLookupsDoNotStallFilesOrOtherWork(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let resolver = try Resolver(threads: 2)
        defer { resolver.shutdown() }
        resolver.lookupDelayForTesting = .seconds(2)
        var lookups: [Result<[SocketAddress], EvError>] = []
        for _ in 0..<4 {
            try resolver.resolve(loop: loop, completion: Completion(), host: "127.0.0.1") { _, r in lookups.append(r); return .disarm }
        }
        spinUntil { resolver.pool.threads.jobsRunning == 2 }
        let started = LoopInstant.now()
        let fd = h.own(try makeTempFile())
        var block = [UInt8](repeating: 0x33, count: 4096)
        #expect(pwrite(fd, &block, block.count, 0) == block.count)
        let buffer = h.buffer(4096)
        var read: Result<Int, EvError>?
        try File(fd: fd).pread(loop: loop, completion: Completion(), buffer: buffer, offset: 0) { _, r in read = r; return .disarm }
        let pool = try WorkPool(threads: 1)
        defer { pool.shutdown() }
        var work: Result<Int, EvError>?
        try pool.run(loop: loop, completion: Completion(), { () throws(EvError) -> Int in 1 }) { _, r in work = r; return .disarm }
        #expect(try runUntil(loop) { read != nil && work != nil })
        #expect(read == .success(4096) && work == .success(1))
        #expect(LoopInstant.now() - started < .seconds(1), "file I/O or pool work waited for the lookups")
        #expect(lookups.isEmpty, "the slow lookups finished early: the test proves nothing")
        // Cancel the slow lookups: the running ones are abandoned, the queued withdrawn.
        loop.cancelAll()
        #expect(try runUntilDone(loop, timeout: .seconds(1)))
        #expect(lookups.count == 4 && lookups.allSatisfy { $0 == .failure(.canceled) }, "\(lookups)")
    }
    #endif

    /// Lookups leave no descriptor open and nothing active beyond the loop's one work
    /// eventfd, which goes with the loop. (The whole descriptor table: in a child process.)
    @Test(arguments: conformanceBackends)
    func descriptorsReturnToTheBaseline(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            let before = Fds.count()
            do {
                let loop = try makeTestLoop(backend)
                let h = Harness(loop)
                defer { h.finish() }
                let withLoop = Fds.count()
                let resolver = try Resolver()
                defer { resolver.shutdown() }
                for _ in 0..<20 {
                    _ = try resolveNow(resolver, loop, host: "localhost")
                    _ = try resolveNow(resolver, loop, host: "127.0.0.1", family: AF_INET6)
                }
                #expect(loop.activeCount == 0)
                #expect(Fds.count() == withLoop + 1, "lookups left descriptors open")
            }
            #expect(Fds.count() == before)
        }
    }
}
