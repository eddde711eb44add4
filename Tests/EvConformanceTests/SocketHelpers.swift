// Helpers for the conformance suite: sockets and files made with plain system calls (so
// the test's side of a connection never depends on the loop under test), descriptor
// accounting through /proc/self/fd, a seeded random generator, threads, and a bounded way
// to run a loop. Everything here is loopback only and bounded in time.
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call in test set-up, with its errno.
struct SysCallError: Error, CustomStringConvertible {
    var description: String
    init(_ what: String, errno code: Int32 = cevsys_errno()) {
        description = "\(what) failed: errno \(code) (\(String(cString: strerror(code))))"
    }
}

/// SplitMix64: a tiny deterministic generator, so a failing random sequence can be
/// replayed from the seed printed with the failure.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Descriptors

/// Descriptor accounting and placement.
enum Fds {
    /// The soft RLIMIT_NOFILE, raised once to the hard limit (the 1,000-connection test
    /// needs more than the usual default of 1,024 descriptors).
    static let limit: Int = {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 1024 }
        if rl.rlim_cur < rl.rlim_max {
            var raised = rl
            raised.rlim_cur = rl.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { rl = raised }
        }
        return Int(min(rl.rlim_cur, 1 << 20))
    }()

    /// Numbers handed out by `moveHigh`, far above anything the kernel's lowest-free-number
    /// rule gives to tests running in parallel, so a number we close stays ours to reuse
    /// (with dup2) without clobbering another test's descriptor. The readiness engine's
    /// own tests use numbers from 15,000 up; this range starts higher where the limit allows.
    private static let nextHigh = Atomic<Int>(0)

    private static var highBase: Int { limit - min(4000, limit / 4) }

    /// Moves `fd` to a fresh high descriptor number (close-on-exec) and closes the original.
    static func moveHigh(_ fd: Int32) throws -> Int32 {
        let offset = nextHigh.add(1, ordering: .relaxed).newValue
        let wanted = highBase + (offset % max(1, limit - highBase - 64))
        let high = fcntl(fd, F_DUPFD_CLOEXEC, Int32(wanted))
        guard high >= 0 else { throw SysCallError("F_DUPFD_CLOEXEC") }
        close(fd)
        return high
    }

    /// Puts `fd` at exactly `number` (which the caller owns and has closed), then closes `fd`.
    static func place(_ fd: Int32, at number: Int32) throws {
        // dup3 (atomic O_CLOEXEC) is a GNU extension Glibc does not export to Swift;
        // the tests spawn no children, so setting the flag right after dup2 is enough.
        guard dup2(fd, number) == number else { throw SysCallError("dup2") }
        _ = fcntl(number, F_SETFD, FD_CLOEXEC)
        close(fd)
    }

    /// The descriptor numbers this process has open, each with its /proc link target
    /// ("socket:[1234]", "anon_inode:[eventpoll]", a path).
    static func table() -> [Int32: String] {
        var out: [Int32: String] = [:]
        guard let dir = opendir("/proc/self/fd") else { return out }
        let dirFd = dirfd(dir)
        while let entry = readdir(dir) {
            let name = direntName(entry)
            guard let n = Int32(name), n != dirFd, let target = link(n) else { continue }
            out[n] = target
        }
        closedir(dir)
        return out
    }

    /// How many descriptors the process has open. Only meaningful where no other test
    /// runs (other tests open and close descriptors all the time): call it inside
    /// `ProcessIsolation.run`. Tests running in parallel check their own descriptors
    /// instead (`references(to:)`, `socketsBound(toPort:except:)`, `isOpen`).
    static func count() -> Int {
        ProcessIsolation.expectInChild("Fds.count()")
        return table().count
    }

    /// How many open descriptors refer to the same open file as `fd` (a dup() leak shows
    /// up as more than one). Other tests' descriptors never match.
    static func references(to fd: Int32) -> Int {
        guard let target = link(fd) else { return 0 }
        return table().values.filter { $0 == target }.count
    }

    /// The /proc link target of `fd`, or nil when it is closed.
    static func link(_ fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    /// Descriptors (other than `except`) whose local TCP port is `port`: sockets accepted
    /// from our listener that nobody closed.
    static func socketsBound(toPort port: UInt16, except: Int32) -> [Int32] {
        table().compactMap { fd, target in
            guard fd != except, target.hasPrefix("socket:") else { return nil }
            guard let local = Sock.localAddress(fd), local.port == port else { return nil }
            return fd
        }
    }
}

// MARK: - Sockets

/// Sockets made with plain system calls, for the test's side of a connection and for
/// set-up. All are close-on-exec; they start blocking unless stated otherwise.
enum Sock {
    static let streamType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    static let datagramType = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    static func setNonBlocking(_ fd: Int32, _ on: Bool) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    static func isNonBlocking(_ fd: Int32) -> Bool { fcntl(fd, F_GETFL) & O_NONBLOCK != 0 }

    static func isCloseOnExec(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) & FD_CLOEXEC != 0 }

    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The socket's local address, or nil.
    static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard r == 0, length > 0 else { return nil }
        let family = Int32(storage.ss_family)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        return SocketAddress(storage: storage, length: length)
    }

    static func loopback(ipv6: Bool, port: UInt16) throws -> SocketAddress {
        ipv6 ? try SocketAddress(ipv6: "::1", port: port) : try SocketAddress(ipv4: "127.0.0.1", port: port)
    }

    /// A TCP socket (blocking).
    static func tcp(ipv6: Bool = false) throws -> Int32 {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, streamType, 0)
        guard fd >= 0 else { throw SysCallError("socket") }
        return fd
    }

    /// A TCP socket bound to a loopback port without listening: connecting to that port is
    /// refused, and holding the socket keeps anyone else from listening there meanwhile.
    static func boundNotListening() throws -> (fd: Int32, port: UInt16) {
        let fd = try tcp()
        let address = try loopback(ipv6: false, port: 0)
        guard address.withSockAddr({ bind(fd, $0, $1) }) == 0 else {
            close(fd)
            throw SysCallError("bind")
        }
        return (fd, localAddress(fd)?.port ?? 0)
    }

    /// A listening TCP socket on 127.0.0.1 (or ::1) with a kernel-chosen port (blocking).
    static func listener(ipv6: Bool = false, backlog: Int32 = 128) throws -> (fd: Int32, port: UInt16) {
        let fd = try tcp(ipv6: ipv6)
        setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        let address = try loopback(ipv6: ipv6, port: 0)
        guard address.withSockAddr({ bind(fd, $0, $1) }) == 0, listen(fd, backlog) == 0 else {
            let e = cevsys_errno()
            close(fd)
            throw SysCallError("bind/listen", errno: e)
        }
        guard let port = localAddress(fd)?.port else { close(fd); throw SysCallError("getsockname") }
        return (fd, port)
    }

    /// Whether this machine has a usable ::1 (containers sometimes run without IPv6).
    static var hasIPv6Loopback: Bool {
        guard let (fd, _) = try? listener(ipv6: true) else { return false }
        close(fd)
        return true
    }

    /// A connected TCP pair over loopback made with blocking connect and accept:
    /// (client, server), both blocking, with TCP_NODELAY.
    static func tcpPair(ipv6: Bool = false) throws -> (Int32, Int32) {
        let (l, port) = try listener(ipv6: ipv6)
        defer { close(l) }
        let client = try tcp(ipv6: ipv6)
        let address = try loopback(ipv6: ipv6, port: port)
        guard address.withSockAddr({ connect(client, $0, $1) }) == 0 else {
            let e = cevsys_errno()
            close(client)
            throw SysCallError("connect", errno: e)
        }
        let server = cevsys_accept4(l, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        guard server >= 0 else { let e = cevsys_errno(); close(client); throw SysCallError("accept", errno: e) }
        setInt(client, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        setInt(server, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        return (client, server)
    }

    /// A connected AF_UNIX pair (blocking) of `type` (stream by default).
    static func socketPair(type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SysCallError("socketpair")
        }
        return (fds[0], fds[1])
    }

    /// A UDP socket bound to a loopback address with a kernel-chosen port (blocking).
    static func udp(ipv6: Bool = false) throws -> (fd: Int32, address: SocketAddress) {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, datagramType, 0)
        guard fd >= 0 else { throw SysCallError("socket") }
        let address = try loopback(ipv6: ipv6, port: 0)
        guard address.withSockAddr({ bind(fd, $0, $1) }) == 0, let bound = localAddress(fd) else {
            let e = cevsys_errno()
            close(fd)
            throw SysCallError("bind", errno: e)
        }
        return (fd, bound)
    }

    /// Shrinks `fd`'s send buffer and fills it (and the peer's receive buffer) until a send
    /// would block, so a write on `fd` has to wait for the peer to read.
    static func fillSendBuffer(_ fd: Int32) {
        setInt(fd, SOL_SOCKET, SO_SNDBUF, 4096)
        var chunk = [UInt8](repeating: 0x5a, count: 4096)
        while send(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) > 0 {}
    }

    /// Closes `fd` with SO_LINGER 0, so the peer gets a reset (RST) instead of an end of file.
    static func closeWithReset(_ fd: Int32) {
        var lin = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    /// Waits up to `timeoutMs` for `events` on `fd`; returns the reported events (0 on timeout).
    static func wait(_ fd: Int32, _ events: Int16 = Int16(POLLIN), timeoutMs: Int32) -> Int16 {
        var p = pollfd(fd: fd, events: events, revents: 0)
        let r = poll(&p, 1, timeoutMs)
        return r > 0 ? p.revents : 0
    }

    /// Sends all of `bytes` from the test's side (bounded: fails after 5 s of no progress).
    static func put(_ fd: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if n > 0 { sent += n; continue }
            let e = cevsys_errno()
            guard n < 0, e == EAGAIN || e == EINTR else { throw SysCallError("send", errno: e) }
            guard wait(fd, Int16(POLLOUT), timeoutMs: 5000) != 0 else { throw SysCallError("send (timed out)", errno: ETIMEDOUT) }
        }
    }

    static func put(_ fd: Int32, _ text: String) throws { try put(fd, Array(text.utf8)) }

    /// Reads exactly `count` bytes from the test's side, or fewer if the stream ends or
    /// `timeoutMs` passes without data.
    static func take(_ fd: Int32, _ count: Int, timeoutMs: Int32 = 5000) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            let n = recv(fd, &chunk, min(chunk.count, count - out.count), Int32(MSG_DONTWAIT))
            if n > 0 { out += chunk[0..<n]; continue }
            if n == 0 { break }
            let e = cevsys_errno()
            if e == EINTR { continue }
            guard e == EAGAIN, wait(fd, timeoutMs: timeoutMs) != 0 else { break }
        }
        return out
    }

    /// Reads (and discards) everything queued on `fd` without waiting; returns the count.
    @discardableResult
    static func drain(_ fd: Int32) -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return total }
            total += n
        }
    }

    /// True when the peer's close is visible on `fd` within `timeoutMs`: a read returns 0
    /// (end of file) or a reset. Data still queued is read and discarded on the way.
    static func seesEndOfFile(_ fd: Int32, timeoutMs: Int32) -> Bool {
        let deadline = LoopInstant.now() + .milliseconds(Int64(timeoutMs))
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n == 0 { return true }
            if n < 0 {
                let e = cevsys_errno()
                if e == ECONNRESET { return true }
                if e != EAGAIN && e != EINTR { return false }
            }
            if n > 0 { continue }
            let left = deadline - LoopInstant.now()
            guard left > .zero else { return false }
            _ = wait(fd, timeoutMs: Int32(max(1, left.nanosecondsSaturating / 1_000_000)))
        }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating (for arithmetic in tests).
    var nanosecondsSaturating: Int64 {
        let (s, atto) = components
        let (ns, o) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o { return s < 0 ? .min : .max }
        return ns.addingReportingOverflow(atto / 1_000_000_000).overflow ? .max : ns + atto / 1_000_000_000
    }

    var milliseconds: Double { Double(nanosecondsSaturating) / 1_000_000 }
}

// MARK: - Unix socket names

/// Names for the Unix socket tests, unique to this process and call, so that tests
/// running in parallel (and earlier runs that crashed) never meet each other's sockets.
enum UnixNames {
    private static let counter = Atomic<Int>(0)

    private static func next(_ tag: String) -> String {
        "ev-\(getpid())-\(counter.add(1, ordering: .relaxed).newValue)-\(tag)"
    }

    /// A socket path in the temporary directory (short, so that a long TMPDIR still fits
    /// in sun_path), with any file of that name removed; the caller unlinks it when done.
    static func path(_ tag: String) -> String {
        let p = temporaryPath(next(tag) + ".sock")
        _ = unlink(p)
        return p
    }

    /// A name in the abstract namespace (nothing to clean up).
    static func abstract(_ tag: String) -> String { "evloop-test-" + next(tag) }
}

// MARK: - Files

/// A new, empty temporary regular file opened read-write (close-on-exec). The name is
/// unlinked at once: nothing is left behind even if the test crashes.
func makeTempFile() throws -> Int32 {
    var template = Array(temporaryPath("evloop-conformance-XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw SysCallError("mkstemp") }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// The whole content of `fd`, read with pread(2).
func fileContent(_ fd: Int32) -> [UInt8] {
    var st = stat()
    guard fstat(fd, &st) == 0 else { return [] }
    var out = [UInt8](repeating: 0, count: Int(st.st_size))
    let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    return n >= 0 ? Array(out[0..<n]) : []
}

// MARK: - Threads

private final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// A plain pthread (Dispatch and Swift concurrency threads are shared with the test
/// runner; these tests need a thread of their own that they can join).
struct TestThread {
    private let handle: pthread_t

    init(_ body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var t = pthread_t()
        let r = pthread_create(&t, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        guard r == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw SysCallError("pthread_create", errno: r)
        }
        handle = t
    }

    func join() { pthread_join(handle, nil) }
}

// MARK: - Running a loop, bounded

/// Runs `loop` tick by tick until `condition()` holds or `timeout` passes; returns
/// `condition()`. A watchdog timer that does not hold the loop open bounds every blocking
/// wait, so a missing wake-up fails the test instead of hanging the suite.
@discardableResult
func runUntil(_ loop: LoopCore, timeout: Duration = .seconds(5), _ condition: () -> Bool) throws -> Bool {
    if condition() { return true }
    let deadline = LoopInstant.now() + timeout
    let watchdog = Completion()
    watchdog.keepsLoopAlive = false
    try loop.timer(watchdog, deadline: deadline) { _, _ in .disarm }
    while !condition() && LoopInstant.now() < deadline {
        try loop.run(.once)
    }
    try retire(watchdog, on: loop)
    return condition()
}

/// Runs `loop` for about `duration` (ticks keep coming only if something is active),
/// to check that nothing happens meanwhile.
func runFor(_ loop: LoopCore, _ duration: Duration) throws {
    let deadline = LoopInstant.now() + duration
    let watchdog = Completion()
    try loop.timer(watchdog, deadline: deadline) { _, _ in .disarm }
    while watchdog.state == .active {
        try loop.run(.once)
    }
}

/// `run(.untilDone)`, bounded: after `timeout` a watchdog stops the run. False on timeout.
@discardableResult
func runUntilDone(_ loop: LoopCore, timeout: Duration = .seconds(5)) throws -> Bool {
    var timedOut = false
    let watchdog = Completion()
    watchdog.keepsLoopAlive = false
    try loop.timer(watchdog, deadline: LoopInstant.now() + timeout) { _, result in
        if case .timer(.success) = result {
            timedOut = true
            loop.stop()
        }
        return .disarm
    }
    try loop.run(.untilDone)
    try retire(watchdog, on: loop)
    return !timedOut
}

/// Cancels a still-pending helper timer and delivers its callback.
private func retire(_ timer: Completion, on loop: LoopCore) throws {
    guard timer.state == .active else { return }
    let cancel = Completion()
    try loop.cancel(timer, using: cancel)
    var spins = 0
    while (timer.state == .active || cancel.state == .active) && spins < 1000 {
        try loop.run(.noWait)
        spins += 1
    }
}

/// Owns what a conformance test hands to its loop (descriptors, buffers) and releases it
/// in the one safe order: first drain the loop (`cancelAll()` + `run(.untilDone)`, because a
/// loop must have no active completion when it is released, and io_uring may write into a
/// buffer until the operation's completion arrives), then close and free.
///
/// If the loop fails to drain, the test fails and the loop and its buffers are leaked on
/// purpose: freeing them could let the kernel write into freed memory, and releasing the
/// loop would stop the whole test process on the loop's deinit assertion.
final class Harness {
    let loop: LoopCore
    private var fds: Set<Int32> = []
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    private var finished = false

    init(_ loop: LoopCore) { self.loop = loop }

    /// Whether sockets given to this loop are made non-blocking (readiness backends) or
    /// left blocking (io_uring), as the loop prefers.
    var wantsNonBlocking: Bool { !loop.prefersBlockingDescriptors }

    /// Takes ownership of `fd` (closed after the drain) and returns it.
    @discardableResult
    func own(_ fd: Int32) -> Int32 { fds.insert(fd); return fd }

    /// Takes ownership of `fd` and puts it in the mode the loop prefers.
    @discardableResult
    func forLoop(_ fd: Int32) -> Int32 {
        Sock.setNonBlocking(fd, wantsNonBlocking)
        return own(fd)
    }

    /// Gives up ownership (the test closed `fd` itself, or through the loop).
    func forget(_ fd: Int32) { fds.remove(fd) }

    /// Closes an owned descriptor now.
    func close(_ fd: Int32) {
        if fds.remove(fd) != nil { _ = Glibc.close(fd) }
    }

    /// A zero-filled (or `fill`ed) buffer that lives until the loop has drained.
    func buffer(_ count: Int, fill: UInt8 = 0) -> UnsafeMutableRawBufferPointer {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        b.initializeMemory(as: UInt8.self, repeating: fill)
        buffers.append(b)
        return UnsafeMutableRawBufferPointer(rebasing: b[0..<count])
    }

    /// A buffer holding `bytes`.
    func buffer(_ bytes: [UInt8]) -> UnsafeMutableRawBufferPointer {
        let b = buffer(bytes.count)
        b.copyBytes(from: bytes)
        return b
    }

    /// Drains the loop, then closes the descriptors and frees the buffers.
    func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        guard !finished else { return }
        finished = true
        loop.cancelAll()
        var drained = false
        do {
            drained = try runUntilDone(loop, timeout: .seconds(5))
        } catch {
            Issue.record("draining the loop threw \(error)", sourceLocation: sourceLocation)
        }
        #expect(drained, "the loop did not drain within 5 s of cancelAll()", sourceLocation: sourceLocation)
        #expect(loop.activeCount == 0, "active completions left after the drain", sourceLocation: sourceLocation)
        if loop.activeCount != 0 {
            _ = Unmanaged.passRetained(loop)   // deliberately leaked; see the type's comment
            return
        }
        for fd in fds { _ = Glibc.close(fd) }
        fds.removeAll()
        for b in buffers { b.deallocate() }
        buffers.removeAll()
    }

    deinit {
        if !finished { finish() }
    }
}

/// Byte `i` of the deterministic pattern used by the transfer tests.
@inline(__always)
func patternByte(_ i: Int, seed: Int = 0) -> UInt8 {
    UInt8(truncatingIfNeeded: (i &* 31) &+ (i >> 8) &+ (i >> 16) &+ seed &* 7 &+ 7)
}

extension CompletionResult {
    /// True when the operation reported `.canceled`.
    var isCanceled: Bool { error == .canceled }
}

/// A path in the temporary directory (`TMPDIR`, else the system's) for a test file or a
/// mkstemp/mkdtemp template: one place decides where the tests write.
func temporaryPath(_ name: String) -> String {
    let dir = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    return dir.hasSuffix("/") ? dir + name : dir + "/" + name
}

/// The name in a `readdir` entry. Read through a pointer up to its NUL: glibc allocates
/// an entry only as long as its name (`d_reclen`), so copying the whole 256-byte `d_name`
/// tuple read past the allocation (AddressSanitizer: heap-buffer-overflow).
func direntName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    return String(cString: (UnsafeRawPointer(entry) + offset).assumingMemoryBound(to: CChar.self))
}
