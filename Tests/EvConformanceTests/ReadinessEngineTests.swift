// Backend-specific checks of the readiness engine shared by epoll and poll: several
// operations on one descriptor, registrations that never outlive their operations, stale
// events, POLLNVAL, the thread pool for regular files (and its shutdown), sub-millisecond
// waits and the cost of a steady-state request/response loop (counted in waits and
// registration changes).
import Testing
import Ev
import EvReadiness
import EvLoop
import Synchronization
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

private let readinessBackends: [Backend] = [.epoll, .poll]

private struct ReadinessTestError: Error, CustomStringConvertible {
    var description: String
    init(_ what: String) { description = "\(what): errno \(cevsys_errno())" }
}

/// Helpers private to this file (the conformance suite has its own).
private enum RE {
    static func readiness(_ loop: LoopCore) -> ReadinessLoop { loop as! ReadinessLoop }

    /// A connected, non-blocking, close-on-exec AF_UNIX stream pair.
    static func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw ReadinessTestError("socketpair") }
        return (fds[0], fds[1])
    }

    /// Moves `fd` to a high descriptor number that tests running in parallel will not be
    /// handed by the kernel (which always picks the lowest free number), so the number
    /// stays closed once closed.
    static func moveHigh(_ fd: Int32) throws -> Int32 {
        let high = fcntl(fd, F_DUPFD_CLOEXEC, 15_000)
        guard high >= 0 else { throw ReadinessTestError("F_DUPFD_CLOEXEC") }
        close(fd)
        return high
    }

    /// Fills `fd`'s send buffer (and its peer's receive buffer) until a send would block.
    static func fill(_ fd: Int32) {
        var size: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var chunk = [UInt8](repeating: 0x5a, count: 1024)
        while send(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) > 0 {}
    }

    /// Reads everything queued on non-blocking `fd`; returns the byte count.
    @discardableResult
    static func drain(_ fd: Int32) -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return total }
            total += n
        }
    }

    static func put(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        _ = write(fd, &bytes, bytes.count)
    }

    /// A listening TCP socket on 127.0.0.1 and its port.
    static func listener() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ReadinessTestError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let ok = address.withSockAddr { bind(fd, $0, $1) } == 0 && listen(fd, 64) == 0
        guard ok else { close(fd); throw ReadinessTestError("bind/listen") }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        return (fd, SocketAddress(storage: storage, length: length).port)
    }

    static func tcpSocket() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ReadinessTestError("socket") }
        return fd
    }

    /// A connected TCP pair over loopback (client, server), both non-blocking.
    static func tcpPair() throws -> (Int32, Int32) {
        let (l, port) = try listener()
        defer { close(l) }
        let client = try tcpSocket()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        _ = address.withSockAddr { connect(client, $0, $1) }   // EINPROGRESS on loopback
        var server: Int32 = -1
        for _ in 0..<1000 {
            server = cevsys_accept4(l, nil, nil, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
            if server >= 0 { break }
            usleep(1000)
        }
        guard server >= 0 else { close(client); throw ReadinessTestError("accept") }
        var p = pollfd(fd: client, events: Int16(POLLOUT), revents: 0)
        _ = poll(&p, 1, 2000)
        var one: Int32 = 1
        setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(server, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return (client, server)
    }

    /// How many of this process's descriptors refer to the same open file as `fd`
    /// (by /proc link target, e.g. "socket:[1234]"): a dup() leak shows up as more than one.
    /// Other tests' descriptors never match, so parallel tests cannot disturb the count.
    static func references(to fd: Int32) -> Int {
        guard let target = link("/proc/self/fd/\(fd)") else { return 0 }
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = direntName(entry)
            guard let n = Int32(name) else { continue }
            if link("/proc/self/fd/\(n)") == target { count += 1 }
        }
        return count
    }

    private static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs `loop` (tick by tick) until `done()` or `limit` passes; returns `done()`.
    /// A watchdog timer that does not hold the loop open bounds every blocking tick, so a
    /// missing wake-up fails the test instead of hanging the suite.
    @discardableResult
    static func run(_ loop: LoopCore, limit: Duration = .seconds(5), until done: () -> Bool) throws -> Bool {
        loop.updateNow()
        let deadline = loop.now + limit
        let watchdog = Completion()
        watchdog.keepsLoopAlive = false
        try loop.timer(watchdog, deadline: deadline) { _, _ in .disarm }
        while !done() && LoopInstant.now() < deadline {
            try loop.run(.once)
        }
        if watchdog.state == .active {
            let c = Completion()
            try loop.cancel(watchdog, using: c)
            while watchdog.state == .active || c.state == .active { try loop.run(.noWait) }
        }
        return done()
    }

    /// `run(.untilDone)`, bounded: after `limit` a watchdog cancels everything (so a
    /// missing wake-up fails the test instead of hanging the suite). False on timeout.
    @discardableResult
    static func runUntilDone(_ loop: LoopCore, limit: Duration = .seconds(5)) throws -> Bool {
        var timedOut = false
        let watchdog = Completion()
        watchdog.keepsLoopAlive = false
        loop.updateNow()
        try loop.timer(watchdog, after: limit) { _, result in
            if case .timer(.success) = result {
                timedOut = true
                loop.cancelAll()
            }
            return .disarm
        }
        try loop.run(.untilDone)
        if watchdog.state == .active {
            let c = Completion()
            try loop.cancel(watchdog, using: c)
            while watchdog.state == .active || c.state == .active { try loop.run(.noWait) }
        }
        return !timedOut
    }

    /// Waits `duration` with nothing else to do and returns how many kernel waits it took:
    /// a loop that spins on an event nobody consumes shows thousands.
    /// The most waits an idle loop may make in `waitsWhileIdle`'s 30 ms. One or two is the
    /// norm; a stray wake-up on a loaded machine (a late signal, a leftover eventfd write
    /// from an earlier test) can add a few. A loop spinning on a level-triggered event it
    /// skipped makes thousands, which is what these checks exist to catch.
    static let idleWaitBound = 10

    static func waitsWhileIdle(_ loop: LoopCore, _ duration: Duration = .milliseconds(30)) throws -> Int {
        let r = readiness(loop)
        let before = r.waitCount
        let t = Completion()
        loop.updateNow()
        try loop.timer(t, after: duration) { _, _ in .disarm }
        try runUntilDone(loop)
        return r.waitCount - before
    }

    static func buffer(_ count: Int, fill: UInt8 = 0) -> UnsafeMutableRawBufferPointer {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        b.initializeMemory(as: UInt8.self, repeating: fill)
        return b
    }
}

private func isCanceled(_ r: CompletionResult?) -> Bool { r?.error == .canceled }

@Suite("Readiness engine (epoll, poll)")
struct ReadinessEngineTests {

    /// PITFALLS E2/E4: a read and a write wait on one socket at once (one registration
    /// with both interests); the read fires and rearms, and the write still completes.
    @Test(.tags(.pitfallE2, .pitfallE4), arguments: readinessBackends)
    func readAndWritePendingOnOneSocket(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        RE.fill(a)
        let rb = RE.buffer(64), wb = RE.buffer(8192, fill: 1)
        defer { rb.deallocate(); wb.deallocate() }
        var reads: [Int] = []
        var written: Int?
        let r = Completion(.recv(socket: a, buffer: rb)) { _, result in
            reads.append(result.count ?? -1)
            return reads.count == 1 ? .rearm : .disarm
        }
        let w = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, result in
            written = result.count ?? -1
            return .disarm
        }
        try loop.add(r)
        try loop.add(w)
        try loop.run(.noWait)
        #expect(reads.isEmpty && written == nil)
        #expect(RE.readiness(loop).isRegistered(a))

        RE.put(b, "one")
        #expect(try RE.run(loop) { reads.count == 1 })
        #expect(reads == [3])
        #expect(written == nil)

        RE.put(b, "second")
        #expect(try RE.run(loop) { reads.count == 2 })
        #expect(reads == [3, 6])
        #expect(written == nil)

        RE.drain(b)
        #expect(try RE.runUntilDone(loop))
        #expect((written ?? 0) > 0)
        #expect(loop.activeCount == 0)
    }

    /// PITFALLS E2: cancelling one of two operations waiting on a socket leaves the other
    /// working, in both orders.
    @Test(.tags(.pitfallE2), arguments: readinessBackends)
    func cancellingOneWaiterLeavesTheOther(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        RE.fill(a)
        let rb = RE.buffer(64), wb = RE.buffer(8192, fill: 1)
        defer { rb.deallocate(); wb.deallocate() }
        var readResults: [CompletionResult] = []
        var writeResults: [CompletionResult] = []
        var cancelResults: [CompletionResult] = []
        let r = Completion(.recv(socket: a, buffer: rb)) { _, res in readResults.append(res); return .disarm }
        let w = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb))) { _, res in writeResults.append(res); return .disarm }
        let cancel = Completion()
        let record: Completion.Callback = { _, res in cancelResults.append(res); return .disarm }

        // Cancel the read; the write completes once the peer drains.
        try loop.add(r)
        try loop.add(w)
        try loop.run(.noWait)
        try loop.cancel(r, using: cancel, callback: record)
        try loop.run(.noWait)
        #expect(readResults.count == 1 && isCanceled(readResults.first))
        #expect(cancelResults.count == 1 && cancelResults.first?.error == nil)
        #expect(RE.readiness(loop).isRegistered(a), "the write still waits")
        RE.drain(b)
        #expect(try RE.runUntilDone(loop))
        #expect(writeResults.count == 1 && (writeResults.first?.count ?? 0) > 0)

        // Cancel the write; the read completes when data arrives.
        readResults = []; writeResults = []; cancelResults = []
        RE.fill(a)
        try loop.add(r)
        try loop.add(w)
        try loop.run(.noWait)
        try loop.cancel(w, using: cancel, callback: record)
        try loop.run(.noWait)
        #expect(writeResults.count == 1 && isCanceled(writeResults.first))
        #expect(cancelResults.count == 1 && cancelResults.first?.error == nil)
        RE.put(b, "hello")
        #expect(try RE.runUntilDone(loop))
        #expect(readResults.count == 1 && readResults.first?.count == 5)
        #expect(!RE.readiness(loop).isRegistered(a) || loop.backend == .epoll,
                "poll drops an idle registration at once")
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)
    }

    /// PITFALLS A5: 1,000 arm/cancel cycles each of a read, a write and an accept leave no
    /// registration and no duplicate descriptor behind, and the peer sees our close at once.
    @Test(.tags(.pitfallA5), arguments: readinessBackends)
    func armCancelCyclesLeaveNothingBehind(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let engine = RE.readiness(loop)
        let (a, b) = try RE.socketPair()
        var aOpen = true
        defer { if aOpen { close(a) }; close(b) }
        let (l, _) = try RE.listener()
        defer { close(l) }
        let rb = RE.buffer(64), wb = RE.buffer(8192, fill: 1)
        defer { rb.deallocate(); wb.deallocate() }
        var canceled = 0
        var other = 0
        let count: Completion.Callback = { _, res in
            if isCanceled(res) { canceled += 1 } else { other += 1 }
            return .disarm
        }
        let r = Completion(.recv(socket: a, buffer: rb), callback: count)
        let w = Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(wb)), callback: count)
        let acc = Completion(.accept(socket: l), callback: count)
        let cancel = Completion()
        var cancelFailures = 0
        RE.fill(a)
        for target in [r, w, acc] {
            for _ in 0..<1000 {
                try loop.add(target)
                try loop.run(.noWait)   // registers (and waits 0)
                try loop.cancel(target, using: cancel) { _, res in
                    if res.error != nil { cancelFailures += 1 }
                    return .disarm
                }
                try loop.run(.noWait)
            }
        }
        #expect(canceled == 3000)
        #expect(other == 0)
        #expect(cancelFailures == 0)
        #expect(loop.activeCount == 0)
        #expect(!engine.isRegistered(a))
        #expect(!engine.isRegistered(l))
        #expect(RE.references(to: a) == 1)
        #expect(RE.references(to: l) == 1)
        // No hidden duplicate keeps the connection open: the peer sees EOF at once.
        RE.drain(b)
        close(a)
        aOpen = false
        // Waited for (up to 2 s), not read at once: a test in another thread that spawns a
        // process at this moment gives the child a copy of our descriptor table until its
        // exec, and the EOF then arrives a moment later (seen once in the parallel suite:
        // read returned -1, EAGAIN). A duplicate the loop kept would never let it arrive.
        var p = pollfd(fd: b, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, 2000)
        var byte: UInt8 = 0
        #expect(read(b, &byte, 1) == 0)
    }

    /// PITFALLS E1, E9: a regular file is never registered; its read goes through the pool
    /// and wakes the loop at once through the eventfd. pread/pwrite go to the pool too, and
    /// /dev/null (which epoll refuses with EPERM) still reads as end of file.
    @Test(.tags(.pitfallA5, .pitfallE1, .pitfallE9), arguments: readinessBackends)
    func regularFileGoesThroughThePool(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let engine = RE.readiness(loop)
        let path = temporaryPath("evloop-readiness-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ReadinessTestError("open \(path)") }
        unlink(path)
        defer { close(fd) }
        var content = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(pwrite(fd, &content, content.count, 0) == content.count)

        let buffer = RE.buffer(8192)
        defer { buffer.deallocate() }
        var got: CompletionResult?
        let c = Completion(.read(fd: fd, buffer: buffer)) { _, res in got = res; return .disarm }
        let start = LoopInstant.now()
        try loop.add(c)
        #expect(try RE.runUntilDone(loop))
        let elapsed = LoopInstant.now() - start
        #expect(got?.count == 8192)
        #expect(Array(buffer) == content)
        #expect(elapsed < .milliseconds(500), "a pool result wakes the loop at once")
        #expect(!engine.isRegistered(fd))

        // pread at an offset, then a write at the file position (now 8192: appends).
        let half = RE.buffer(100)
        defer { half.deallocate() }
        got = nil
        c.operation = .pread(fd: fd, buffer: half, offset: 4096)
        try loop.add(c)
        #expect(try RE.runUntilDone(loop))
        #expect(got?.count == 100)
        #expect(Array(half) == Array(content[4096..<4196]))
        got = nil
        c.operation = .write(fd: fd, buffer: UnsafeRawBufferPointer(half))
        try loop.add(c)
        #expect(try RE.runUntilDone(loop))
        #expect(got?.count == 100)
        var st = stat()
        fstat(fd, &st)
        #expect(st.st_size == 8292)

        // /dev/null: epoll_ctl refuses it (EPERM); the read still completes, as EOF.
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        got = nil
        c.operation = .read(fd: null, buffer: half)
        try loop.add(c)
        #expect(try RE.runUntilDone(loop))
        #expect(got?.error == .endOfFile)
        #expect(!engine.isRegistered(null))
    }

    /// PITFALLS A3 / libxev#234: completions A and B wait on two sockets. A's callback
    /// cancels B. Whatever the order of readiness, B's callback runs exactly once (with
    /// its data if it had already completed in the same batch -- the cancel then reports
    /// `.notFound` -- or with `.canceled`), never again afterwards, and the loop does not
    /// spin on readiness nobody waits for any more.
    @Test(.tags(.pitfallA3), arguments: readinessBackends)
    func staleEventsNeverReachACallbackNorSpin(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (a1, b1) = try RE.socketPair()
        let (a2, b2) = try RE.socketPair()
        defer { close(a1); close(b1); close(a2); close(b2) }
        let ba = RE.buffer(64), bb = RE.buffer(64)
        defer { ba.deallocate(); bb.deallocate() }

        for variant in ["same batch", "ready after retirement"] {
            var bResults: [CompletionResult] = []
            var cancelResult: CompletionResult?
            let cancel = Completion()
            let B = Completion(.recv(socket: a2, buffer: bb)) { _, res in bResults.append(res); return .disarm }
            let A = Completion(.recv(socket: a1, buffer: ba)) { _, _ in
                if variant == "ready after retirement" { RE.put(b2, "late") }
                try? loop.cancel(B, using: cancel) { _, res in cancelResult = res; return .disarm }
                return .disarm
            }
            try loop.add(A)
            try loop.add(B)
            try loop.run(.noWait)
            RE.put(b1, "a")
            if variant == "same batch" { RE.put(b2, "b") }
            #expect(try RE.runUntilDone(loop))
            #expect(bResults.count == 1, "\(variant)")
            switch cancelResult?.error {
            case nil:
                #expect(isCanceled(bResults.first), "\(variant): a successful cancel means .canceled")
            case .notFound?:
                #expect(bResults.first?.count == 1, "\(variant): B completed first with its data")
            default:
                Issue.record("\(variant): unexpected cancel result \(String(describing: cancelResult))")
            }
            // B's socket is readable now, and nothing waits on it: no callback, no spin.
            #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound, "\(variant)")
            #expect(bResults.count == 1, "\(variant)")
            RE.drain(a1)
            RE.drain(a2)
        }

        // A registration kept after its read finished, then data with nobody waiting.
        var reads = 0
        let c = Completion(.recv(socket: a1, buffer: ba)) { _, _ in reads += 1; return .disarm }
        try loop.add(c)
        RE.put(b1, "x")
        #expect(try RE.runUntilDone(loop))
        RE.put(b1, "unwanted")
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)
        #expect(reads == 1)
        #expect(!RE.readiness(loop).isRegistered(a1), "a stale event drops the registration")
    }

    /// PITFALLS E6: a descriptor closed behind the loop's back while a read waits fails the
    /// read with `.badFileDescriptor`, and the loop is idle afterwards. (On epoll a
    /// descriptor closed after it was registered cannot be noticed at all -- the kernel
    /// drops the registration silently -- so there the close happens before the wait.)
    @Test(.tags(.pitfallE6), arguments: readinessBackends)
    func descriptorClosedBehindTheLoopsBack(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        var cases = ["before registration"]
        if backend == .poll { cases.append("while registered") }
        for when in cases {
            let (a0, b) = try RE.socketPair()
            defer { close(b) }
            let a = try RE.moveHigh(a0)
            let buffer = RE.buffer(16)
            defer { buffer.deallocate() }
            var results: [CompletionResult] = []
            let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in results.append(res); return .disarm }
            try loop.add(r)
            if when == "while registered" { try loop.run(.noWait) }
            close(a)
            #expect(try RE.runUntilDone(loop), "\(when)")
            #expect(results.count == 1)
            #expect(results.first?.error == .badFileDescriptor, "\(when)")
            #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound, "\(when)")
            #expect(!RE.readiness(loop).isRegistered(a))
        }
    }

    /// PITFALLS E7: 300 timers 0.3 ms apart neither fire early nor spin the loop, including
    /// on epoll's millisecond fallback (which must round up).
    @Test(.tags(.pitfallE7), arguments: ["epoll", "epoll, milliseconds", "poll"])
    func subMillisecondTimersNeitherSpinNorFireEarly(variant: String) throws {
        let loop: LoopCore
        switch variant {
        case "epoll": loop = try makeTestLoop(.epoll)
        case "poll": loop = try makeTestLoop(.poll)
        default: loop = try EpollLoop(nanosecondWaits: false)
        }
        let engine = RE.readiness(loop)
        let rounds = 300
        var fired = 0
        var early = 0
        var deadline = LoopInstant.now() + .microseconds(300)
        let t = Completion(.timer(deadline: deadline))
        t.callback = { c, _ in
            if LoopInstant.now() < deadline { early += 1 }
            fired += 1
            if fired < rounds {
                deadline = LoopInstant.now() + .microseconds(300)
                c.operation = .timer(deadline: deadline)
                return .rearm
            }
            return .disarm
        }
        let before = engine.waitCount
        try loop.add(t)
        #expect(try RE.runUntilDone(loop, limit: .seconds(10)))
        #expect(fired == rounds)
        #expect(early == 0)
        let waits = engine.waitCount - before
        #expect(waits <= 2 * rounds + 5, "\(waits) waits for \(rounds) timers")
    }

    /// PITFALLS E5: hang-ups complete the waiting operation with its real error, and the
    /// loop goes idle: peer closed → a read gets end of file, a blocked write gets a broken
    /// pipe; a peer that resets a TCP connection gives a read `.connectionReset`.
    @Test(.tags(.pitfallE5), arguments: readinessBackends)
    func hangupsCompleteWaitersWithTheirRealError(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let buffer = RE.buffer(8192, fill: 1)
        defer { buffer.deallocate() }

        var readResult: CompletionResult?
        var writeResult: CompletionResult?
        let (a, b) = try RE.socketPair()
        defer { close(a) }
        let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in readResult = res; return .disarm }
        try loop.add(r)
        try loop.run(.noWait)
        close(b)
        #expect(try RE.runUntilDone(loop))
        #expect(readResult?.error == .endOfFile)
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)

        // A write blocked on a full buffer. (The peer closes with our bytes unread, so an
        // AF_UNIX socket reports ECONNRESET rather than EPIPE: either is the real error.)
        let (c, d) = try RE.socketPair()
        defer { close(c) }
        RE.fill(c)
        let w = Completion(.send(socket: c, buffer: UnsafeRawBufferPointer(buffer))) { _, res in writeResult = res; return .disarm }
        try loop.add(w)
        try loop.run(.noWait)
        #expect(writeResult == nil)
        close(d)
        #expect(try RE.runUntilDone(loop))
        #expect(writeResult?.error == .brokenPipe || writeResult?.error == .connectionReset)
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)

        let (client, server) = try RE.tcpPair()
        defer { close(client) }
        readResult = nil
        let r2 = Completion(.recv(socket: client, buffer: buffer)) { _, res in readResult = res; return .disarm }
        try loop.add(r2)
        try loop.run(.noWait)
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(server, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(server)   // RST
        #expect(try RE.runUntilDone(loop))
        #expect(readResult?.error == .connectionReset)
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)
    }

    /// `.close` through the loop ends the operations waiting on the descriptor and removes
    /// its registration before closing, so the peer sees the close at once
    /// (PITFALLS A11, E3) and the number can be reused without stale state.
    @Test(.tags(.pitfallA11, .pitfallE3), arguments: readinessBackends)
    func closeThroughTheLoopCancelsWaitersFirst(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let engine = RE.readiness(loop)
        let (a, b) = try RE.socketPair()
        defer { close(b) }
        let dup = fcntl(a, F_DUPFD_CLOEXEC, 0)   // keeps the file open after `a` closes
        defer { close(dup) }
        let buffer = RE.buffer(64)
        defer { buffer.deallocate() }
        var readResult: CompletionResult?
        var closeResult: CompletionResult?
        let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in readResult = res; return .disarm }
        try loop.add(r)
        try loop.run(.noWait)
        #expect(engine.isRegistered(a))
        let c = Completion(.close(fd: a)) { _, res in closeResult = res; return .disarm }
        try loop.add(c)
        #expect(try RE.runUntilDone(loop))
        #expect(isCanceled(readResult))
        #expect(closeResult?.error == nil)
        #expect(!engine.isRegistered(a))
        // The dup keeps the socket open; its readiness must not reach the closed number.
        RE.put(b, "data")
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)

        // The number comes back for a new socket: it registers and reads normally.
        let (a2, b2) = try RE.socketPair()
        defer { close(a2); close(b2) }
        readResult = nil
        r.operation = .recv(socket: a2, buffer: buffer)
        try loop.add(r)
        RE.put(b2, "fresh")
        #expect(try RE.runUntilDone(loop))
        #expect(readResult?.count == 5)
    }

    /// A non-blocking connect waits for writability and reports SO_ERROR; an accept waits
    /// for the listener; a refused connect reports `.connectionRefused`.
    @Test(arguments: readinessBackends)
    func connectAndAccept(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (l, port) = try RE.listener()
        defer { close(l) }
        let client = try RE.tcpSocket()
        defer { close(client) }
        var accepted: Int32 = -1
        var connected: CompletionResult?
        let acc = Completion(.accept(socket: l)) { _, res in
            if case .accept(.success(let fd)) = res { accepted = fd }
            return .disarm
        }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        let con = Completion(.connect(socket: client, address: address)) { _, res in
            connected = res
            return .disarm
        }
        try loop.add(acc)
        try loop.add(con)
        #expect(try RE.runUntilDone(loop))
        #expect(connected?.error == nil)
        #expect(accepted >= 0)
        if accepted >= 0 {
            #expect(fcntl(accepted, F_GETFD) & FD_CLOEXEC != 0)
            #expect(fcntl(accepted, F_GETFL) & O_NONBLOCK != 0)
            close(accepted)
        }

        // A port nothing listens on: bind one, close it, connect to it.
        let (dead, deadPort) = try RE.listener()
        close(dead)
        let refused = try RE.tcpSocket()
        defer { close(refused) }
        connected = nil
        let deadAddress = try SocketAddress(ipv4: "127.0.0.1", port: deadPort)
        con.operation = .connect(socket: refused, address: deadAddress)
        try loop.add(con)
        #expect(try RE.runUntilDone(loop))
        #expect(connected?.error == .connectionRefused)
    }

    /// DESIGN invariant 6 on the readiness backends: a TCP ping-pong in steady state makes
    /// no registration change at all (one registration per socket, kept across the
    /// read/rearm cycle) and about one wait per message. Allocation counts are measured by
    /// the benchmarks (malloc counters); the heap is process-wide and shared with the
    /// tests running in parallel, so it is not measured here.
    @Test(arguments: readinessBackends)
    func pingPongSteadyStateIsCheap(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let engine = RE.readiness(loop)
        let (client, server) = try RE.tcpPair()
        defer { close(client); close(server) }
        let ping = RE.buffer(5), pong = RE.buffer(5)
        let clientIn = RE.buffer(64), serverIn = RE.buffer(64)
        defer { ping.deallocate(); pong.deallocate(); clientIn.deallocate(); serverIn.deallocate() }
        ping.copyBytes(from: Array("PING\n".utf8))
        pong.copyBytes(from: Array("PONG\n".utf8))

        var roundtrips = 0
        var target = 1000
        var corrupt = 0
        let clientSend = Completion(.send(socket: client, buffer: UnsafeRawBufferPointer(ping)))
        let serverSend = Completion(.send(socket: server, buffer: UnsafeRawBufferPointer(pong)))
        let serverRecv = Completion(.recv(socket: server, buffer: serverIn))
        let clientRecv = Completion(.recv(socket: client, buffer: clientIn))
        let stopServer = Completion()
        serverRecv.callback = { _, res in
            guard res.count == 5 else { return .disarm }
            if serverIn[0] != UInt8(ascii: "P") || serverIn[1] != UInt8(ascii: "I") { corrupt += 1 }
            try? loop.add(serverSend)
            return .rearm
        }
        clientRecv.callback = { _, res in
            guard res.count == 5 else { corrupt += 1; return .disarm }
            if clientIn[1] != UInt8(ascii: "O") { corrupt += 1 }
            roundtrips += 1
            if roundtrips < target {
                try? loop.add(clientSend)
                return .rearm
            }
            try? loop.cancel(serverRecv, using: stopServer)
            return .disarm
        }
        func go() throws {
            try loop.add(serverRecv)
            try loop.add(clientRecv)
            try loop.add(clientSend)
            #expect(try RE.runUntilDone(loop, limit: .seconds(30)))
        }
        try go()   // warm-up: registrations made, tables sized
        #expect(roundtrips == target)

        let waits = engine.waitCount, changes = engine.registrationChanges
        roundtrips = 0
        target = 10_000
        try go()
        #expect(roundtrips == target)
        #expect(corrupt == 0)
        let waitsPerRoundtrip = Double(engine.waitCount - waits) / Double(target)
        // Each roundtrip: one wait for the server's read, one for the client's (the
        // immediate sends cost none). The restart and the final cancel add a few changes.
        #expect(waitsPerRoundtrip <= 2.1, "\(waitsPerRoundtrip) waits per roundtrip")
        #expect(engine.registrationChanges - changes <= 4,
                "\(engine.registrationChanges - changes) registration changes in 10,000 roundtrips")

        // A send that completes at once reaches its callback without a wait of its own
        // (the next zero-timeout wait is skipped; I/O is still polled every other tick).
        var sent = 0
        clientSend.callback = { _, _ in sent += 1; return .disarm }
        let before = engine.waitCount
        try loop.add(clientSend)
        try loop.run(.once)
        #expect(sent == 1)
        #expect(engine.waitCount == before)
        RE.drain(server)
    }

    /// The async form of the ping-pong above (issue 13): each side's receive is awaited
    /// again when its send, which completed at once, resumes the task, one tick (a skipped
    /// wait) after the receive went idle. It reuses the kept registration as the callback
    /// form's rearm does: no registration change per roundtrip (there was one
    /// `EPOLL_CTL_MOD` per roundtrip per side). epoll only: poll keeps no idle
    /// registration (its registrations are an array in user space, rebuilt into every
    /// wait, so dropping one costs no system call).
    @Test(arguments: [Backend.epoll])
    func asyncPingPongKeepsItsRegistrations(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let engine = RE.readiness(loop)
        let executor = try LoopExecutor(loop)
        let (client, server) = try RE.tcpPair()
        defer { close(client); close(server) }
        let ping = TestBuffer(Array("PING\n".utf8)), pong = TestBuffer(Array("PONG\n".utf8))
        let clientIn = TestBuffer(64), serverIn = TestBuffer(64)
        func roundtrips(_ count: Int) throws -> Int {
            try executor.run {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    group.addTask {
                        for _ in 0..<count {
                            let r = try await executor.perform(.recv(socket: server, buffer: serverIn.raw))
                            guard r.count == 5 else { return 0 }
                            _ = try await executor.perform(.send(socket: server, buffer: UnsafeRawBufferPointer(pong.raw)))
                        }
                        return 0
                    }
                    group.addTask {
                        var done = 0
                        for _ in 0..<count {
                            _ = try await executor.perform(.send(socket: client, buffer: UnsafeRawBufferPointer(ping.raw)))
                            let r = try await executor.perform(.recv(socket: client, buffer: clientIn.raw))
                            guard r.count == 5 else { break }
                            done += 1
                        }
                        return done
                    }
                    var total = 0
                    for try await n in group { total += n }
                    return total
                }
            }
        }
        #expect(try roundtrips(100) == 100)   // warm-up: registrations made, slots pooled
        let changes = engine.registrationChanges
        #expect(try roundtrips(2000) == 2000)
        // The executor's own wake-up poll and the run's start and end may add a few.
        #expect(engine.registrationChanges - changes <= 4,
                "\(engine.registrationChanges - changes) registration changes in 2,000 async roundtrips")
        executor.shutdown()
        #expect(try RE.runUntilDone(loop))
    }

    /// The other side of the kept registration: between two runs of the loop the caller's
    /// code may close a descriptor with close(2) and reuse its number, which drops the epoll
    /// registration with it. A read waited on afterwards, from the first callback of the
    /// next run and before that run has waited for I/O (a nop's, delivered without a
    /// wait), must still be woken: the kept registration is confirmed.
    @Test(arguments: readinessBackends)
    func keptRegistrationIsConfirmedAfterTheLoopWasLeft(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (a0, b) = try RE.socketPair()
        let a = try RE.moveHigh(a0)
        let (c, d) = try RE.socketPair()
        defer { close(b); close(c); close(d) }
        let buffer = RE.buffer(16)
        defer { buffer.deallocate() }
        var got: [CompletionResult] = []
        let second = Completion(.recv(socket: a, buffer: buffer)) { _, res in got.append(res); return .disarm }
        let poke = Completion(.nop) { _, _ in
            // First callback of the next run, before it has waited: wait on `a` again.
            try? loop.add(second)
            return .disarm
        }
        let first = Completion(.recv(socket: a, buffer: buffer)) { _, res in
            got.append(res)
            // Completes at once; its callback runs in the next tick, which skips its wait.
            try? loop.add(poke)
            return .disarm
        }
        try loop.add(first)
        RE.put(b, "1")
        // Returns after the tick that delivered `first` (its registration kept, idle).
        while got.isEmpty { try loop.run(.once) }
        #expect(got.first?.count == 1)
        #expect(poke.state == .active, "the nop's callback waits for the next run")
        // Behind the loop's back: `a`'s number now names another socket (the old one, and
        // its epoll registration, are gone).
        #expect(dup2(d, a) == a)
        RE.put(c, "22")
        #expect(try RE.run(loop) { got.count == 2 }, "the read on the reused number was never woken")
        #expect(got.last?.count == 2)
        close(a)
    }

    /// epoll(7) Q6, PITFALLS E3: a descriptor closed with close(2) while a dup keeps its
    /// file open leaves a registration that can no longer be deleted by number. A read
    /// waiting on it fails with `.badFileDescriptor` when data arrives, and the orphaned
    /// registration does not spin the loop (the engine rebuilds its epoll set).
    @Test(.tags(.pitfallE3), arguments: readinessBackends)
    func registrationOrphanedByCloseOfADupDoesNotSpin(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        for waiting in [true, false] {
            let (a0, b) = try RE.socketPair()
            defer { close(b) }
            let a = try RE.moveHigh(a0)
            let keeper = fcntl(a, F_DUPFD_CLOEXEC, 0)
            defer { close(keeper) }
            let buffer = RE.buffer(16)
            defer { buffer.deallocate() }
            var results: [CompletionResult] = []
            let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in results.append(res); return .disarm }
            try loop.add(r)
            if !waiting {
                // Completed read: its registration is kept for the next read.
                RE.put(b, "1")
                #expect(try RE.runUntilDone(loop))
                #expect(results.first?.count == 1)
                results = []
            } else {
                try loop.run(.noWait)
            }
            close(a)          // behind the loop's back; `keeper` keeps the socket open
            RE.put(b, "data") // the orphaned registration reports readable
            if waiting {
                #expect(try RE.runUntilDone(loop))
                #expect(results.count == 1)
                #expect(results.first?.error == .badFileDescriptor)
            }
            #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound, "waiting: \(waiting)")
            #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound, "waiting: \(waiting)")
        }
    }

    /// Several accepts wait on one listener (one registration); each connection goes to
    /// exactly one of them. `.poll` reports readiness without doing I/O, and on a regular
    /// file (which epoll refuses) reports it ready at once, as poll(2) does.
    @Test(arguments: readinessBackends)
    func severalAcceptsOnOneListenerAndPollOperations(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (l, port) = try RE.listener()
        defer { close(l) }
        var accepted: [Int32] = []
        let accepts = (0..<3).map { _ in
            Completion(.accept(socket: l)) { _, res in
                if case .accept(.success(let fd)) = res { accepted.append(fd) }
                return .disarm
            }
        }
        for a in accepts { try loop.add(a) }
        try loop.run(.noWait)
        #expect(RE.readiness(loop).isRegistered(l))
        var clients: [Int32] = []
        defer { for c in clients { close(c) } }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        for _ in 0..<3 {
            let c = try RE.tcpSocket()
            clients.append(c)
            _ = address.withSockAddr { connect(c, $0, $1) }
        }
        #expect(try RE.runUntilDone(loop))
        #expect(accepted.count == 3)
        #expect(Set(accepted).count == 3)
        for fd in accepted { close(fd) }

        // .poll: writable at once, readable when data arrives.
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        var polled: [PollEvents] = []
        let record: Completion.Callback = { _, res in
            if case .poll(.success(let ev)) = res { polled.append(ev) }
            return .disarm
        }
        let pw = Completion(.poll(fd: a, events: .writable), callback: record)
        let pr = Completion(.poll(fd: a, events: .readable), callback: record)
        try loop.add(pr)
        try loop.add(pw)
        #expect(try RE.run(loop) { polled.count == 1 })
        #expect(polled == [.writable])
        RE.put(b, "x")
        #expect(try RE.runUntilDone(loop))
        #expect(polled.count == 2 && polled.last?.contains(.readable) == true)
        #expect(RE.drain(a) == 1, "poll does no I/O")

        let path = temporaryPath("evloop-readiness-poll-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        let file = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard file >= 0 else { throw ReadinessTestError("open") }
        unlink(path)
        defer { close(file) }
        polled = []
        let pf = Completion(.poll(fd: file, events: [.readable, .writable]), callback: record)
        try loop.add(pf)
        #expect(try RE.runUntilDone(loop))
        #expect(polled == [[.readable, .writable]])
    }

    /// PITFALLS A4: data is there before the read is added; the callback rearms once
    /// (both reads complete), then the rearmed read is cancelled and more data arrives:
    /// no further callback, the cancel succeeds, the completion is dead.
    @Test(.tags(.pitfallA4), arguments: readinessBackends)
    func rearmAfterImmediateReadThenCancel(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        let buffer = RE.buffer(4)
        defer { buffer.deallocate() }
        RE.put(b, "abcdefgh")   // fills the 4-byte buffer twice
        var results: [Int] = []
        let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in
            results.append(res.count ?? -1)
            return results.count < 3 ? .rearm : .disarm
        }
        try loop.add(r)
        #expect(try RE.run(loop) { results.count == 2 })
        #expect(results == [4, 4])
        #expect(r.state == .active)
        var cancelResult: CompletionResult?
        let cancel = Completion()
        try loop.cancel(r, using: cancel) { _, res in cancelResult = res; return .disarm }
        #expect(try RE.runUntilDone(loop))
        #expect(cancelResult?.error == nil)
        #expect(results == [4, 4, -1])
        RE.put(b, "more")
        #expect(try RE.waitsWhileIdle(loop) <= RE.idleWaitBound)
        #expect(results.count == 3)
        #expect(r.state == .dead)
    }

    /// Cancelling pool work: a job no worker has taken is withdrawn (`.canceled`, cancel
    /// succeeds); one already running reports its real result and the cancel
    /// `.inProgress`. Never both, never neither. `cancelAll` ends waiters and queued jobs.
    @Test(arguments: readinessBackends)
    func cancellingPoolJobsAndCancelAll(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let path = temporaryPath("evloop-readiness-pool-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        let file = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard file >= 0 else { throw ReadinessTestError("open") }
        unlink(path)
        defer { close(file) }
        var block = [UInt8](repeating: 7, count: 65536)
        #expect(pwrite(file, &block, block.count, 0) == block.count)
        let buffers = (0..<40).map { _ in RE.buffer(65536) }
        defer { for b in buffers { b.deallocate() } }
        var results: [CompletionResult?] = Array(repeating: nil, count: 40)
        var callbacks = 0
        let jobs = (0..<40).map { i in
            Completion(.pread(fd: file, buffer: buffers[i], offset: 0)) { _, res in
                results[i] = res
                callbacks += 1
                return .disarm
            }
        }
        for j in jobs { try loop.add(j) }
        var cancelResult: CompletionResult?
        let cancel = Completion()
        try loop.cancel(jobs[39], using: cancel) { _, res in cancelResult = res; return .disarm }
        #expect(try RE.runUntilDone(loop))
        #expect(callbacks == 40)
        switch cancelResult?.error {
        case nil: #expect(isCanceled(results[39]))
        case .inProgress?: #expect(results[39]?.count == 65536)
        default: Issue.record("unexpected cancel result \(String(describing: cancelResult))")
        }
        #expect(results[0..<39].allSatisfy { $0?.count == 65536 })

        // cancelAll: a waiting read, a blocked write, an accept and queued pool jobs.
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        let (l, _) = try RE.listener()
        defer { close(l) }
        RE.fill(a)
        callbacks = 0
        var canceled = 0
        let count: Completion.Callback = { _, res in
            callbacks += 1
            if isCanceled(res) { canceled += 1 }
            return .disarm
        }
        let small = RE.buffer(16)
        defer { small.deallocate() }
        let waiters = [
            Completion(.recv(socket: a, buffer: small), callback: count),
            Completion(.send(socket: a, buffer: UnsafeRawBufferPointer(buffers[0])), callback: count),
            Completion(.accept(socket: l), callback: count),
        ]
        for w in waiters { try loop.add(w) }
        for j in jobs { j.callback = count; try loop.add(j) }
        try loop.run(.noWait)
        loop.cancelAll()
        #expect(try RE.runUntilDone(loop))
        #expect(callbacks == 43)
        #expect(canceled >= 3, "the three waiters at least; pool jobs already running finish")
        #expect(!RE.readiness(loop).isRegistered(a))
        #expect(!RE.readiness(loop).isRegistered(l))
        #expect(loop.activeCount == 0)
    }

    /// UDP through the readiness path: sendmsg with a destination goes out at once,
    /// recvmsg waits and reports the sender and truncation (PITFALLS I3).
    @Test(arguments: readinessBackends)
    func datagramsWithAddressesAndTruncation(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        func udp() throws -> (Int32, SocketAddress) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw ReadinessTestError("socket") }
            let any = try SocketAddress(ipv4: "127.0.0.1", port: 0)
            _ = any.withSockAddr { bind(fd, $0, $1) }
            var st = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutablePointer(to: &st) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
            }
            return (fd, SocketAddress(storage: st, length: len))
        }
        let (x, xAddress) = try udp()
        let (y, yAddress) = try udp()
        defer { close(x); close(y) }
        let payload = RE.buffer(2048, fill: 9)
        let small = RE.buffer(1024)
        defer { payload.deallocate(); small.deallocate() }
        var received: ReceivedMessageSize?
        var sent: Int?
        let r = Completion(.recvmsg(socket: y, buffer: small)) { _, res in
            if case .recvmsg(.success(let m)) = res { received = m }
            return .disarm
        }
        let s = Completion(.sendmsg(socket: x, buffer: UnsafeRawBufferPointer(payload), address: yAddress)) { _, res in
            sent = res.count
            return .disarm
        }
        try loop.add(r)
        try loop.run(.noWait)
        try loop.add(s)
        #expect(try RE.runUntilDone(loop))
        #expect(sent == 2048)
        #expect(received?.truncated == true)
        #expect(r.lastAddress == xAddress, "the sender, kept in the completion")
    }

    /// PITFALLS F5: a timer at `distantFuture` is the nearest deadline; the wait's timeout
    /// is clamped (no overflow on any wait call), other work still wakes the loop, and the
    /// timer can be cancelled.
    @Test(.tags(.pitfallF5), arguments: ["epoll", "epoll, milliseconds", "poll"])
    func distantFutureTimeoutDoesNotOverflow(variant: String) throws {
        let loop: LoopCore
        switch variant {
        case "epoll": loop = try makeTestLoop(.epoll)
        case "poll": loop = try makeTestLoop(.poll)
        default: loop = try EpollLoop(nanosecondWaits: false)
        }
        var timerResult: CompletionResult?
        let far = Completion(.timer(deadline: .distantFuture)) { _, res in timerResult = res; return .disarm }
        try loop.add(far)
        let (a, b) = try RE.socketPair()
        defer { close(a); close(b) }
        let buffer = RE.buffer(8)
        defer { buffer.deallocate() }
        var got: Int?
        let r = Completion(.recv(socket: a, buffer: buffer)) { _, res in got = res.count; return .disarm }
        try loop.add(r)
        try loop.run(.noWait)
        RE.put(b, "wake")
        try loop.run(.once)   // waits with the clamped distant-future timeout
        #expect(got == 4)
        #expect(timerResult == nil)
        let cancel = Completion()
        try loop.cancel(far, using: cancel)
        #expect(try RE.runUntilDone(loop))
        #expect(timerResult?.error == .canceled)
    }

    // MARK: - Thread pool shutdown (pitfall I6)

    // PITFALLS I6 (libxev PR #113, #130): the readiness backends' thread pool is created and
    // shut down with work queued and running, 1,000 times, without a hang, a leaked thread
    // or a leaked pool, and without a worker touching a job's buffer after `shutdown()`
    // returned. (The loop-level variant, loops torn down with pool work queued, is
    // `loopsWithQueuedPoolWorkAreTornDownCleanly` in CompletionLifecycleTests.) It counts the
    // process's threads, so it runs in a child process of its own (ProcessIsolation.swift):
    // under parallel `swift test` other tests' threads come and go.

    private final class ShutDownFlag: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// What the rounds share with the thread that runs them; read by the test thread only
    /// after `done` is set (or never, if the rounds hang).
    private final class Rounds: @unchecked Sendable {
        let zero: Int32
        let buffers: [UnsafeMutableRawBufferPointer]
        let done = Atomic<Bool>(false)
        let wakes = Atomic<Int>(0)
        let lateWakes = Atomic<Int>(0)
        var drained = 0
        var completedRounds = 0
        var pools: [() -> BlockingPool?] = []
        var scribbledAfterShutdown = 0

        init(zero: Int32, jobs: Int, size: Int) {
            self.zero = zero
            buffers = (0..<jobs).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16) }
        }

        func run(count: Int) {
            let size = buffers[0].count
            for round in 0..<count {
                for b in buffers { b.initializeMemory(as: UInt8.self, repeating: 0xFF) }
                // A wake-up (a worker posting a result) after shutdown() returned means a
                // worker outlived the shutdown.
                let shutDown = ShutDownFlag()
                let pool = BlockingPool(threads: 2, wake: { [self] in
                    self.wakes.add(1, ordering: .relaxed)
                    if shutDown.flag.load(ordering: .acquiring) { self.lateWakes.add(1, ordering: .relaxed) }
                })
                weak let weakPool = pool
                pools.append { weakPool }
                for (i, b) in buffers.enumerated() {
                    pool.submit(BlockingPool.Job(id: UInt64(i + 1), kind: .read, fd: zero,
                                                 address: UInt(bitPattern: b.baseAddress), count: size, offset: 0))
                }
                if round % 4 == 1 {
                    // Let some of it run (and post results) before the shutdown.
                    usleep(200)
                    pool.drainResults { _, raw in if raw == size { drained += 1 } }
                }
                if round % 8 == 3 {
                    _ = pool.cancel(id: UInt64(buffers.count))   // withdraw a queued job
                }
                pool.shutdown()
                shutDown.flag.store(true, ordering: .releasing)
                // No worker runs after shutdown() returned: mark the buffers, and check
                // below that no read of /dev/zero (which writes zeros) lands after this.
                for b in buffers { b.initializeMemory(as: UInt8.self, repeating: 0xFF) }
                usleep(50)
                let sample = stride(from: 0, to: size, by: 256)
                if !buffers.allSatisfy({ b in sample.allSatisfy { b[$0] == 0xFF } }) { scribbledAfterShutdown += 1 }
                completedRounds += 1
            }
            done.store(true, ordering: .releasing)
        }
    }

    @Test(.tags(.pitfallI6)) func createAndShutDownWithQueuedWorkAThousandTimes() throws {
        try ProcessIsolation.run(Self.self) {
            let zero = open("/dev/zero", O_RDONLY | O_CLOEXEC)
            try #require(zero >= 0)
            let threadsBefore = Pitfall.threadCount()
            let rounds = Rounds(zero: zero, jobs: 16, size: 65536)
            // The rounds run on a thread of their own, so that a shutdown that hangs fails the
            // test after a bound instead of blocking the suite (the thread is then leaked).
            let box = Unmanaged.passRetained(rounds).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { arg in
                let r = Unmanaged<Rounds>.fromOpaque(arg!).takeRetainedValue()
                r.run(count: 1000)
                return nil
            }, box)
            try #require(created == 0)
            let deadline = ContinuousClock.now + .seconds(60)
            while !rounds.done.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
            guard rounds.done.load(ordering: .acquiring) else {
                Issue.record("the 1,000 create/shutdown rounds did not finish within 60 s: a shutdown hangs")
                return   // leaks the thread, the descriptor and the buffers on purpose
            }
            pthread_join(thread, nil)
            defer {
                close(zero)
                for b in rounds.buffers { b.deallocate() }
            }
            #expect(rounds.completedRounds == 1000)
            usleep(20_000)   // time for a worker that outlived its pool's shutdown to show itself
            #expect(rounds.lateWakes.load(ordering: .relaxed) == 0, "a worker posted a result after shutdown() returned")
            #expect(rounds.scribbledAfterShutdown == 0, "a worker wrote into a buffer after shutdown() returned")
            #expect(rounds.pools.allSatisfy { $0() == nil }, "a pool outlived its shutdown and release")
            #expect(rounds.wakes.load(ordering: .relaxed) > 0 && rounds.drained > 0, "the pools did work before their shutdowns")
            let threadsAfter = Pitfall.threadCount()
            #expect(threadsAfter <= threadsBefore + 4, "threads: \(threadsBefore) before, \(threadsAfter) after 1,000 pools")

            // A pool that never got work starts no thread and needs no shutdown.
            let before = Pitfall.threadCount()
            do {
                let idle = BlockingPool(threads: 2, wake: {})
                _ = idle
            }
            #expect(Pitfall.threadCount() == before)
        }
    }
}
