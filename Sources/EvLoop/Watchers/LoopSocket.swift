#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What every socket watcher (`TCPSocket`, `UDPSocket`, `UnixSocket`) has: a socket
/// descriptor with options, a local address, and a close that goes through the loop.
///
/// Why a protocol: the watchers differ in their operations (accept/connect/stream I/O
/// against datagrams with addresses; see `ConnectionSocket` for the stream half) but not in
/// their set-up, so the set-up is written once here and every socket watcher gets it by
/// conforming.
///
/// ```swift
/// let socket = try UDPSocket(family: AF_INET, loop: loop)
/// try socket.setReuseAddress(true)
/// try socket.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
/// print(try socket.localAddress())      // the port the kernel chose
/// ```
public protocol LoopSocket: LoopDescriptor {}

extension LoopSocket {
    /// Puts the descriptor in the blocking mode `loop` prefers, for a socket made elsewhere
    /// (inherited from a service manager, accepted by other code): io_uring waits in the
    /// kernel and wants blocking sockets, the readiness loops need non-blocking ones.
    public func prepare(for loop: some EventLoop) throws(EvError) {
        try SocketCalls.setBlocking(fd, loop.prefersBlockingDescriptors)
    }

    /// SO_REUSEADDR: a restarted server can bind its port while old connections linger in
    /// TIME_WAIT. Set it before `bind`.
    public func setReuseAddress(_ on: Bool) throws(EvError) {
        try SocketCalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: on ? 1 : 0)
    }

    /// SO_REUSEPORT: several sockets (one per loop thread) bind the same port and the kernel
    /// spreads incoming connections (or datagrams, by source) across them. Set it on every
    /// one before `bind`.
    public func setReusePort(_ on: Bool) throws(EvError) {
        try SocketCalls.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: on ? 1 : 0)
    }

    /// IPV6_V6ONLY for an AF_INET6 socket: true to refuse IPv4-mapped peers.
    public func setIPv6Only(_ on: Bool) throws(EvError) {
        try SocketCalls.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: on ? 1 : 0)
    }

    /// Any integer socket option (SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, ...).
    public func setOption(level: Int32, name: Int32, value: Int32) throws(EvError) {
        try SocketCalls.setOption(fd, level: level, name: name, value: value)
    }

    /// Reads an integer socket option.
    public func option(level: Int32, name: Int32) throws(EvError) -> Int32 {
        try SocketCalls.getOption(fd, level: level, name: name)
    }

    /// Binds the socket to a local address (port 0: the kernel picks one; see
    /// `localAddress`). For a Unix socket path: the file is created here, an existing file
    /// is `.addressInUse` (nothing is removed for you; see `UnixSocket`), and a missing
    /// directory `.noSuchFile`.
    public func bind(to address: SocketAddress) throws(EvError) {
        try SocketCalls.bind(fd, to: address)
    }

    /// The local address (after bind; for an unbound socket, after connect or the first send).
    public func localAddress() throws(EvError) -> SocketAddress {
        try SocketCalls.address(fd, peer: false)
    }
}
