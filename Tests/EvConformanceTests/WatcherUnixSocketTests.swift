// Watchers: UnixSocket (issue 12): stream echo over a socket file and over an abstract
// name, datagrams with their sender's address, peer credentials, the address of every
// family as the kernel reports it, and the bad input of Unix addressing (a missing path, a
// stale socket file, a path too long). Every test runs on every backend.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Watcher: UnixSocket")
struct WatcherUnixSocketTests {

    /// A stream echo through the watchers over a socket file: the listener reports its
    /// path as its address (`unix:PATH`), the client connects to it, 200 KB go there and
    /// back through a `WriteQueue` and the echo server, the half close is seen, and every
    /// descriptor involved is closed at the end (`streamEcho` checks it by inode).
    @Test(arguments: conformanceBackends)
    func streamEchoOverASocketFile(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let path = UnixNames.path("echo")
        defer { unlink(path) }
        let address = try SocketAddress(unixPath: path)
        let listener = try UnixSocket(kind: .stream, loop: loop)
        h.own(listener.fd)
        try listener.bind(to: address)
        try listener.listen(backlog: 8)
        #expect(try listener.localAddress() == address)
        #expect(try listener.localAddress().description == "unix:" + path)
        let client = try UnixSocket(kind: .stream, loop: loop)
        h.own(client.fd)
        let size = 200_000
        let received = try streamEcho(loop: loop, harness: h, listener: listener, client: client, size: size, seed: 5)
        #expect(received == (0..<size).map { patternByte($0, seed: 5) })
        // Closing a bound socket leaves its file (nothing is unlinked behind the caller's back).
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK, "the socket file should remain after close")
    }

    /// The same echo over a name in the abstract namespace, which prints as `unix:@NAME`
    /// and leaves no file behind.
    @Test(arguments: conformanceBackends)
    func streamEchoOverAnAbstractName(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let name = UnixNames.abstract("echo")
        let address = try SocketAddress(abstractUnixName: name)
        let listener = try UnixSocket(loop: loop)
        h.own(listener.fd)
        try listener.bind(to: address)
        try listener.listen()
        #expect(try listener.localAddress().description == "unix:@" + name)
        #expect(try listener.localAddress().abstractUnixName == name)
        let client = try UnixSocket(loop: loop)
        h.own(client.fd)
        let received = try streamEcho(loop: loop, harness: h, listener: listener, client: client, size: 50_000, seed: 6)
        #expect(received == (0..<50_000).map { patternByte($0, seed: 6) })
    }

    /// Datagrams keep their boundaries and carry their sender's address: a client bound to
    /// a socket file is seen by the server at that path, the reply sent to the reported
    /// address reaches it from the server's abstract name, a datagram larger than the
    /// buffer is reported truncated, and a sender that never bound a name has no address.
    @Test(arguments: conformanceBackends)
    func datagramsCarryTheirSendersAddress(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let serverAddress = try SocketAddress(abstractUnixName: UnixNames.abstract("dgram"))
        let server = try UnixSocket(kind: .datagram, loop: loop)
        h.own(server.fd)
        try server.bind(to: serverAddress)
        let clientPath = UnixNames.path("dgram-client")
        defer { unlink(clientPath) }
        let clientAddress = try SocketAddress(unixPath: clientPath)
        let client = try UnixSocket(kind: .datagram, loop: loop)
        h.own(client.fd)
        try client.bind(to: clientAddress)
        #expect(Sock.isCloseOnExec(client.fd) && Sock.isNonBlocking(client.fd) == !loop.prefersBlockingDescriptors)

        let serverBuffer = h.buffer(64)
        var atServer: Result<ReceivedMessage, EvError>?
        try server.receive(loop: loop, completion: Completion(), buffer: serverBuffer) { _, r in atServer = r; return .disarm }
        let question = Array("who is there?".utf8)
        var sent: Result<Int, EvError>?
        try client.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer(question)),
                        to: serverAddress) { _, r in sent = r; return .disarm }
        #expect(try runUntil(loop) { atServer != nil && sent != nil })
        #expect(sent == .success(question.count))
        guard case .success(let m)? = atServer else { Issue.record("server receive: \(String(describing: atServer))"); return }
        #expect(m.count == question.count && !m.truncated && Array(serverBuffer[..<m.count]) == question)
        #expect(m.address == clientAddress && m.address.description == "unix:" + clientPath, "\(m.address)")

        // The reply goes to the address the server saw.
        let clientBuffer = h.buffer(8)
        var atClient: Result<ReceivedMessage, EvError>?
        try client.receive(loop: loop, completion: Completion(), buffer: clientBuffer) { _, r in atClient = r; return .disarm }
        let reply = h.buffer(Array("a long answer that does not fit".utf8))
        var replied: Result<Int, EvError>?
        try server.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(reply), to: m.address) { _, r in
            replied = r
            return .disarm
        }
        #expect(try runUntil(loop) { atClient != nil && replied != nil })
        #expect(replied == .success(reply.count))
        guard case .success(let answer)? = atClient else { Issue.record("client receive: \(String(describing: atClient))"); return }
        #expect(answer.truncated && answer.count == 8, "a datagram larger than the buffer is reported truncated")
        #expect(answer.address == serverAddress)

        // A sender without a name.
        let anonymous = try UnixSocket(kind: .datagram, loop: loop)
        h.own(anonymous.fd)
        atServer = nil
        try server.receive(loop: loop, completion: Completion(), buffer: serverBuffer) { _, r in atServer = r; return .disarm }
        try anonymous.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer([1, 2, 3])),
                           to: serverAddress) { _, _ in .disarm }
        #expect(try runUntil(loop) { atServer != nil })
        guard case .success(let fromNobody)? = atServer else { Issue.record("\(String(describing: atServer))"); return }
        #expect(fromNobody.count == 3)
        #expect(fromNobody.address.unixPath == nil && fromNobody.address.abstractUnixName == nil,
                "an unnamed sender has no name: \(fromNobody.address)")
        #expect(fromNobody.address.description == "(no address)" || fromNobody.address.description == "unix:(unnamed)")

        // An empty datagram from an unnamed sender is a 0-byte message, not end of stream
        // (it has no sender address either, as a stream at its end has none).
        atServer = nil
        try server.receive(loop: loop, completion: Completion(), buffer: serverBuffer) { _, r in atServer = r; return .disarm }
        try anonymous.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(start: nil, count: 0),
                           to: serverAddress) { _, _ in .disarm }
        #expect(try runUntil(loop) { atServer != nil })
        guard case .success(let empty)? = atServer else { Issue.record("empty datagram: \(String(describing: atServer))"); return }
        #expect(empty.count == 0 && !empty.truncated)
    }

    /// SO_PEERCRED: both ends of a pair, and both ends of a connection accepted through the
    /// loop, see this process (getpid, getuid, getgid); a socket that is not connected
    /// reports `.notConnected`.
    @Test(arguments: conformanceBackends)
    func peerCredentialsNameThisProcess(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let me = UnixSocket.PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
        let (a, b) = try UnixSocket.pair(loop: loop)
        h.own(a.fd)
        h.own(b.fd)
        #expect(Sock.isCloseOnExec(a.fd) && Sock.isCloseOnExec(b.fd))
        #expect(Sock.isNonBlocking(a.fd) == !loop.prefersBlockingDescriptors)
        #expect(try a.peerCredentials() == me)
        #expect(try b.peerCredentials() == me)

        let address = try SocketAddress(abstractUnixName: UnixNames.abstract("cred"))
        let listener = try UnixSocket(loop: loop)
        h.own(listener.fd)
        try listener.bind(to: address)
        try listener.listen()
        var accepted: Result<UnixSocket, EvError>?
        try listener.accept(loop: loop, completion: Completion()) { _, r in
            accepted = r
            if case .success(let s) = r { h.own(s.fd) }
            return .disarm
        }
        let client = try UnixSocket(loop: loop)
        h.own(client.fd)
        var connected: Result<Void, EvError>?
        try client.connect(loop: loop, completion: Completion(), to: address) { _, r in connected = r; return .disarm }
        #expect(try runUntil(loop) { accepted != nil && connected != nil })
        #expect(connected?.errorValue == nil, "\(String(describing: connected))")
        guard case .success(let server)? = accepted else { Issue.record("accept: \(String(describing: accepted))"); return }
        #expect(try server.peerCredentials() == me)
        #expect(try client.peerCredentials() == me)
        #expect(try server.peerAddress().isUnnamedUnix, "the client never bound a name")

        let loose = try UnixSocket(loop: loop)
        h.own(loose.fd)
        #expect(throws: EvError.notConnected) { try loose.peerCredentials() }
    }

    /// Addresses as the kernel reports them, one of each family: a socket file, an abstract
    /// name, an unnamed socketpair end, IPv4 and IPv6 (where ::1 exists); each prints as
    /// what it is, never as an IPv4-looking string.
    @Test(arguments: conformanceBackends)
    func addressesOfEveryFamilyDescribeThemselves(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let path = UnixNames.path("describe")
        defer { unlink(path) }
        let onPath = try UnixSocket(loop: loop)
        h.own(onPath.fd)
        try onPath.bind(to: SocketAddress(unixPath: path))
        #expect(try onPath.localAddress().description == "unix:" + path)
        #expect(try onPath.localAddress().unixPath == path)

        let name = UnixNames.abstract("describe")
        let abstract = try UnixSocket(kind: .datagram, loop: loop)
        h.own(abstract.fd)
        try abstract.bind(to: SocketAddress(abstractUnixName: name))
        #expect(try abstract.localAddress().description == "unix:@" + name)

        let (a, b) = try UnixSocket.pair(loop: loop)
        h.own(a.fd)
        h.own(b.fd)
        #expect(try a.localAddress().description == "unix:(unnamed)")
        #expect(try a.peerAddress().isUnnamedUnix && a.localAddress().length == 2)

        // A Unix address is not a TCP socket's (nothing is opened, so nothing leaks).
        #expect(throws: EvError.invalidArgument) { try TCPSocket(for: SocketAddress(unixPath: "x.sock"), loop: loop) }
        #expect(throws: EvError.invalidArgument) { try TCPSocket(family: AF_UNIX, loop: loop) }
        let tcp = try TCPSocket(family: AF_INET, loop: loop)
        h.own(tcp.fd)
        try tcp.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
        let v4 = try tcp.localAddress()
        #expect(v4.description == "127.0.0.1:\(v4.port)" && v4.port != 0)
        if Sock.hasIPv6Loopback {
            let udp = try UDPSocket(family: AF_INET6, loop: loop)
            h.own(udp.fd)
            try udp.bind(to: SocketAddress(ipv6: "::1", port: 0))
            let v6 = try udp.localAddress()
            #expect(v6.description == "[::1]:\(v6.port)")
        }
    }

    /// Bad input of Unix addressing, each with its own error: connecting to a path that
    /// does not exist is `.noSuchFile` (never the cancel's `.notFound`), and so is sending
    /// a datagram there or binding in a missing directory; a socket file nobody listens on
    /// is `.connectionRefused`; binding to a path that exists is `.addressInUse`.
    @Test(arguments: conformanceBackends)
    func missingPathsAndStaleFiles(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let missing = try SocketAddress(unixPath: UnixNames.path("missing"))
        let client = try UnixSocket(loop: loop)
        h.own(client.fd)
        var connected: Result<Void, EvError>?
        try client.connect(loop: loop, completion: Completion(), to: missing) { _, r in connected = r; return .disarm }
        #expect(try runUntil(loop) { connected != nil })
        #expect(connected?.errorValue == .noSuchFile, "\(String(describing: connected))")

        let sender = try UnixSocket(kind: .datagram, loop: loop)
        h.own(sender.fd)
        var sent: Result<Int, EvError>?
        try sender.send(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer([7])), to: missing) { _, r in
            sent = r
            return .disarm
        }
        #expect(try runUntil(loop) { sent != nil })
        #expect(sent?.errorValue == .noSuchFile, "\(String(describing: sent))")

        let unbindable = try UnixSocket(loop: loop)
        h.own(unbindable.fd)
        #expect(throws: EvError.noSuchFile) {
            try unbindable.bind(to: SocketAddress(unixPath: temporaryPath("evloop-no-such-dir-\(getpid())/x.sock")))
        }

        // A stale socket file: bound once, never listened on, closed.
        let stalePath = UnixNames.path("stale")
        defer { unlink(stalePath) }
        let stale = try SocketAddress(unixPath: stalePath)
        let former = try UnixSocket(loop: loop)
        h.own(former.fd)
        try former.bind(to: stale)
        h.close(former.fd)
        let second = try UnixSocket(loop: loop)
        h.own(second.fd)
        var refused: Result<Void, EvError>?
        try second.connect(loop: loop, completion: Completion(), to: stale) { _, r in refused = r; return .disarm }
        #expect(try runUntil(loop) { refused != nil })
        #expect(refused?.errorValue == .connectionRefused, "\(String(describing: refused))")
        #expect(throws: EvError.addressInUse) { try UnixSocket(loop: loop).bindOwned(to: stale, harness: h) }
    }

    /// A path longer than sun_path holds is refused with `.nameTooLong` before any socket
    /// call (never truncated to another file's name); the socket it was meant for is
    /// untouched and still usable, so the caller's close is the only cleanup.
    @Test(arguments: conformanceBackends)
    func pathTooLongIsRefused(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let long = temporaryPath(String(repeating: "n", count: 120) + ".sock")
        #expect(throws: EvError.nameTooLong) { try SocketAddress(unixPath: long) }
        #expect(throws: EvError.nameTooLong) { try SocketAddress(abstractUnixName: String(repeating: "a", count: 108)) }
        // The truncated name was not created either.
        var st = stat()
        #expect(lstat(String(long.utf8.prefix(SocketAddress.maximumUnixPathLength))!, &st) != 0)

        let socket = try UnixSocket(loop: loop)
        h.own(socket.fd)
        let name = UnixNames.abstract("after-too-long")
        try socket.bind(to: SocketAddress(abstractUnixName: name))
        #expect(try socket.localAddress().abstractUnixName == name)
    }
}

extension UnixSocket {
    /// `bind(to:)` on a socket the harness owns (closed after the test whatever happens).
    func bindOwned(to address: SocketAddress, harness h: Harness) throws(EvError) {
        h.own(fd)
        try bind(to: address)
    }
}
