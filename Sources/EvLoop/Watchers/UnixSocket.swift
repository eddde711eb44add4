#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// A Unix domain socket (stream or datagram) whose accepts, connects, reads, writes,
/// datagrams, shutdowns and close run on an event loop.
///
/// Why a watcher of its own: local services (a daemon's control socket, a database on the
/// same machine) talk over Unix sockets, which need no port, are reachable only on this
/// machine, are guarded by file permissions (a path) or by the peer's identity
/// (`peerCredentials()`), and cost less than loopback TCP. Like `TCPSocket`, the socket is
/// created the way the loop needs it: close-on-exec always (it never leaks into a child),
/// blocking for io_uring and non-blocking for the readiness loops, as
/// `loop.prefersBlockingDescriptors` says.
///
/// - **Addresses** are `SocketAddress(unixPath:)` (a socket file) or
///   `SocketAddress(abstractUnixName:)` (Linux's abstract namespace: no file). A path
///   longer than `sun_path` holds is `.nameTooLong` before any socket call; connecting to a
///   path that does not exist is `.noSuchFile`, and to a socket file nobody listens on,
///   `.connectionRefused`.
/// - **Stream sockets** (`.stream`) have the `ConnectionSocket` operations: `listen`,
///   `accept`, `connect`, `read`, `write` (recv/send with MSG_NOSIGNAL: `.brokenPipe`,
///   never SIGPIPE), `shutdown`; a read of 0 bytes is `.failure(.endOfFile)`. Use
///   `WriteQueue(socket:)` for ordered writes.
/// - **Datagram sockets** (`.datagram`) keep message boundaries (`DatagramSocket`): `send(loop:completion:buffer:to:callback:)`
///   sends one datagram to an address (or to the connected peer), and
///   `receive(loop:completion:buffer:callback:)` receives one with its sender's address
///   (through recvmsg, the same on every backend; a sender that never bound a name is
///   unnamed, `SocketAddress.isUnnamedUnix` or an empty address). A datagram client that
///   wants replies binds a name of its own first.
/// - **Socket files are never removed for you.** `bind` to a path that exists fails with
///   `.addressInUse`, and closing a bound socket leaves its file behind (as libuv and the
///   kernel do). Removing a file before bind is not offered as an option on purpose: the
///   library cannot tell a stale file from the socket of a server that is still running,
///   or from a file that is not a socket at all, and unlinking either breaks someone else.
///   A program that owns its path unlinks it itself (before bind, after close); an
///   abstract name needs neither, as it disappears with the last socket bound to it.
/// - **Ownership:** the value is the descriptor (`Sendable`, free to copy) and never
///   closes it on its own: close it through the loop (`close(loop:completion:callback:)`),
///   which cancels anything still waiting on it first. Both ends of `pair` and every
///   accepted socket are the caller's to close the same way.
///
/// ```swift
/// let address = try SocketAddress(abstractUnixName: "my-service")
/// let server = try UnixSocket(kind: .stream, loop: loop)
/// try server.bind(to: address)
/// try server.listen()
/// try server.accept(loop: loop, completion: accepting) { _, result in
///     guard case .success(let client) = result else { return .disarm }
///     print("peer:", (try? client.peerCredentials()).map { "\($0)" } ?? "?")
///     startEchoing(client)        // client.read(loop:completion:buffer:callback:) ...
///     return .rearm
/// }
/// ```
public struct UnixSocket: ConnectionSocket, DatagramSocket, Hashable {
    /// The socket descriptor.
    public let fd: Int32

    /// Accepted connections: the new socket, owned by the callback (close it through the loop).
    public typealias SocketCallback = (Completion, Result<UnixSocket, EvError>) -> CallbackAction
    /// Connect, shutdown and close: success or the error.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction
    /// Reads, writes and sent datagrams: the byte count (a stream write may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction
    /// A received datagram: its size, its sender and whether it was truncated.
    public typealias MessageCallback = (Completion, Result<ReceivedMessage, EvError>) -> CallbackAction

    /// What the socket carries, chosen when it is created.
    public enum Kind: Sendable, Hashable {
        /// SOCK_STREAM: a connection, a byte stream without message boundaries.
        case stream
        /// SOCK_DGRAM: separate messages, each delivered whole or not at all (and reliable
        /// and in order, unlike UDP: a Unix datagram socket never drops or reorders).
        case datagram

        var socketType: Int32 {
            switch self {
            case .stream: return Int32(SOCK_STREAM.rawValue)
            case .datagram: return Int32(SOCK_DGRAM.rawValue)
            }
        }
    }

    /// Who is at the other end of a connected Unix socket, as the kernel recorded it when
    /// the connection was made (SO_PEERCRED): the peer cannot lie about it, which is what
    /// lets a local service decide whom to trust without passwords.
    public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
        /// The peer's process id (of the process that connected, or made the socketpair).
        public var pid: pid_t
        /// The peer's effective user id.
        public var uid: uid_t
        /// The peer's effective group id.
        public var gid: gid_t

        public init(pid: pid_t, uid: uid_t, gid: gid_t) {
            self.pid = pid
            self.uid = uid
            self.gid = gid
        }

        public var description: String { "pid \(pid), uid \(uid), gid \(gid)" }
    }

    /// Wraps an existing Unix socket descriptor (for example one inherited from a service
    /// manager). Use `prepare(for:)` if it was not created in the mode `loop` prefers.
    public init(fd: Int32) { self.fd = fd }

    /// Creates an unbound Unix socket of `kind`, close-on-exec, blocking or non-blocking
    /// as `loop.prefersBlockingDescriptors` says. Bind it (`bind(to:)`) to serve or to
    /// receive datagrams by name; connect it to reach a server.
    public init(kind: Kind = .stream, loop: some EventLoop) throws(EvError) {
        fd = try SocketCalls.open(family: AF_UNIX, type: kind.socketType, blocking: loop.prefersBlockingDescriptors)
    }

    /// A connected pair of Unix sockets (socketpair(2)), both close-on-exec and in the mode
    /// `loop` prefers: a channel between two parts of one program, or (with one end handed
    /// to `Subprocess.spawn` as `StdioTarget.fd`) to a child process. Both ends are the
    /// caller's to close, through the loop.
    public static func pair(kind: Kind = .stream, loop: some EventLoop) throws(EvError) -> (UnixSocket, UnixSocket) {
        let (a, b) = try SocketCalls.pair(type: kind.socketType, blocking: loop.prefersBlockingDescriptors)
        return (UnixSocket(fd: a), UnixSocket(fd: b))
    }

    /// The connected peer's process, user and group ids (SO_PEERCRED). `.notConnected` on
    /// a socket that is neither connected nor one end of a pair.
    public func peerCredentials() throws(EvError) -> PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        guard cevsys_peer_credentials(fd, &pid, &uid, &gid) == 0 else { throw EvError(errno: cevsys_errno()) }
        // A listening or unconnected socket reports no peer as pid 0 and the overflow ids.
        guard pid != 0 else { throw .notConnected }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }
}
