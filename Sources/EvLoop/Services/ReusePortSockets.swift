#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One socket per loop of a `LoopGroup`, all bound to the same address with SO_REUSEPORT,
/// so that the kernel spreads incoming connections (TCP) or senders (UDP) across the loops
/// and the loops share nothing while they serve.
///
/// Why a helper: getting this right by hand has three traps. Port 0 must be resolved once
/// (the first socket binds, and the others bind the port the kernel gave it, or each would
/// get a port of its own); every socket needs SO_REUSEADDR and SO_REUSEPORT *before* bind,
/// and an IPv6 one IPV6_V6ONLY to serve exactly the address asked for; and a failure
/// halfway must close the sockets already made.
///
/// The sockets are made before the loops exist (so that a bind error is reported before any
/// thread starts), close-on-exec and non-blocking; each loop's set-up takes its own with
/// `socket(_:preparedFor:)`, which puts it in the blocking mode that loop prefers (blocking
/// for io_uring, non-blocking for epoll and poll).
///
/// Ownership: a value holding descriptors it does not close on its own, like every socket
/// watcher. Close each socket through its loop (a stop handler: `close(loop:completion:)`
/// cancels the accept still waiting on it), or all of them with `closeAll()` once the group
/// has been joined and no loop uses them any more.
///
/// ```swift
/// let group = try LoopGroup(loops: 4) { _ in try EpollLoop() }
/// let listeners = try ReusePortSockets.listeners(count: group.count,
///                                                address: SocketAddress(ipv4: "0.0.0.0", port: 8080))
/// try group.start { member in
///     let listener = try listeners.socket(member.index, preparedFor: member.loop)
///     let accepting = Completion()
///     try listener.accept(loop: member.loop, completion: accepting) { _, result in
///         guard case .success(let client) = result else { return .disarm }
///         serve(client, on: member.loop)
///         return .rearm
///     }
/// }
/// // ... group.stop(); try group.join(); listeners.closeAll()
/// ```
public struct ReusePortSockets<Socket: LoopSocket>: Sendable {
    /// The sockets, one per loop, in loop order.
    public let sockets: [Socket]
    /// The address every socket is bound to, with port 0 resolved to the real port.
    public let address: SocketAddress

    /// How many sockets there are.
    public var count: Int { sockets.count }

    /// Socket `index`.
    public subscript(index: Int) -> Socket { sockets[index] }

    /// Makes `count` sockets with `make` (which must return a close-on-exec socket of the
    /// family of the address it is given), sets SO_REUSEADDR, SO_REUSEPORT and, for IPv6,
    /// IPV6_V6ONLY on each, binds it to `address` (the first resolves port 0, the others bind
    /// the resolved port) and then calls `prepare` (for example `listen`).
    ///
    /// Throws `.invalidArgument` for a `count` below 1, and any error of making, setting up
    /// or binding a socket; the sockets made before the error are closed then.
    public init(count: Int, address: SocketAddress,
                make: (SocketAddress) throws(EvError) -> Socket,
                prepare: (Socket) throws(EvError) -> Void = { _ in }) throws(EvError) {
        guard count > 0 else { throw .invalidArgument }
        var made: [Socket] = []
        made.reserveCapacity(count)
        func bound(to address: SocketAddress) throws(EvError) -> Socket {
            let socket = try make(address)
            do {
                try socket.setReuseAddress(true)
                try socket.setReusePort(true)
                // Serve exactly the address asked for ("::1"), not IPv4-mapped peers too.
                if address.family == AF_INET6 { try socket.setIPv6Only(true) }
                try socket.bind(to: address)
                try prepare(socket)
            } catch {
                _ = Glibc.close(socket.fd)
                throw error
            }
            return socket
        }
        do {
            let first = try bound(to: address)
            made.append(first)
            let resolved = try first.localAddress()
            for _ in 1..<count { made.append(try bound(to: resolved)) }
            self.sockets = made
            self.address = resolved
        } catch {
            for s in made { _ = Glibc.close(s.fd) }
            throw error
        }
    }

    /// Sockets already made and bound (`unixListener`).
    private init(sockets: [Socket], address: SocketAddress) {
        self.sockets = sockets
        self.address = address
    }

    /// Socket `index`, put in the blocking mode `loop` prefers (call it on the loop's
    /// thread, from its set-up, before the loop uses the socket).
    public func socket(_ index: Int, preparedFor loop: some EventLoop) throws(EvError) -> Socket {
        let socket = sockets[index]
        try SocketCalls.setBlocking(socket.fd, loop.prefersBlockingDescriptors)
        return socket
    }

    /// Closes every socket directly (close(2)). Only for after the group has been joined:
    /// a socket still used by a loop must be closed through that loop, so that what waits
    /// on it is cancelled first.
    public func closeAll() {
        for s in sockets { _ = Glibc.close(s.fd) }
    }
}

extension ReusePortSockets where Socket == TCPSocket {
    /// `count` listening TCP sockets on `address` (IPv4 or IPv6), each with a listen queue
    /// of `backlog` connections (the kernel caps it at net.core.somaxconn).
    public static func listeners(count: Int, address: SocketAddress,
                                 backlog: Int32 = 128) throws(EvError) -> Self {
        try Self(count: count, address: address,
                 make: { a throws(EvError) in
                     TCPSocket(fd: try SocketCalls.open(family: a.family, type: Int32(SOCK_STREAM.rawValue), blocking: false))
                 },
                 prepare: { s throws(EvError) in try s.listen(backlog: backlog) })
    }
}

extension ReusePortSockets where Socket == UnixSocket {
    /// One listening Unix stream socket bound to `address` (a path or an abstract name),
    /// for a server on one loop. AF_UNIX has no SO_REUSEPORT (setsockopt fails with
    /// EOPNOTSUPP), so a Unix-socket server has one listener; a path that exists already is
    /// `.addressInUse` (nothing is unlinked: see `UnixSocket.bind(to:)`).
    public static func unixListener(address: SocketAddress, backlog: Int32 = 128) throws(EvError) -> Self {
        guard address.family == AF_UNIX else { throw .invalidArgument }
        let socket = UnixSocket(fd: try SocketCalls.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), blocking: false))
        do {
            try socket.bind(to: address)
            try socket.listen(backlog: backlog)
            return Self(sockets: [socket], address: try socket.localAddress())
        } catch {
            _ = Glibc.close(socket.fd)
            throw error
        }
    }
}

extension ReusePortSockets where Socket == UDPSocket {
    /// `count` UDP sockets bound to `address` (IPv4 or IPv6); the kernel hashes each sender
    /// to one of them.
    public static func datagramSockets(count: Int, address: SocketAddress) throws(EvError) -> Self {
        try Self(count: count, address: address,
                 make: { a throws(EvError) in
                     UDPSocket(fd: try SocketCalls.open(family: a.family, type: Int32(SOCK_DGRAM.rawValue), blocking: false))
                 })
    }
}

extension LoopGroup {
    /// One listening TCP socket per loop of this group, on `address` with SO_REUSEPORT
    /// (see `ReusePortSockets.listeners`): each loop's set-up takes its own with
    /// `listeners.socket(member.index, preparedFor: member.loop)`.
    public func makeReusePortListeners(address: SocketAddress,
                                       backlog: Int32 = 128) throws(EvError) -> ReusePortSockets<TCPSocket> {
        try ReusePortSockets.listeners(count: count, address: address, backlog: backlog)
    }
}
