#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A TCP socket (IPv4 or IPv6) whose connects, accepts, reads, writes, shutdowns and
/// close run on an event loop.
///
/// Why it exists: a socket has to be created the way the loop needs it (close-on-exec
/// always, so it never leaks into a child; blocking for io_uring, which waits in the
/// kernel, non-blocking for the readiness loops) and every operation has to be typed;
/// this value does both and is otherwise just the descriptor. It is a plain `Int32`
/// wrapper, `Sendable` and free to copy: it does not own or close the descriptor on its
/// own — call `close(loop:completion:callback:)` (through the loop, so anything still
/// waiting on the socket is cancelled first and the peer sees the close at once,
/// PITFALLS A11).
///
/// Each operation takes a caller-owned `Completion` (reused for the life of the
/// connection, see `Completion`) and a typed callback that runs on the loop thread;
/// returning `.rearm` from it repeats the same operation (the next read into the same
/// buffer, the next accept) without allocating. For ordered writes of many buffers, with
/// partial writes resumed and a count of queued bytes for backpressure, use `WriteQueue`.
///
/// Reads and writes use recv/send (`MSG_NOSIGNAL`: writing to a closed peer reports
/// `.brokenPipe` instead of killing the process with SIGPIPE). A read of 0 bytes into a
/// non-empty buffer is reported as `.failure(.endOfFile)`.
///
/// ```swift
/// let server = try TCPSocket(family: AF_INET, loop: loop)
/// try server.setReuseAddress(true)
/// try server.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 8080))
/// try server.listen(backlog: 128)
/// let accepting = Completion()
/// try server.accept(loop: loop, completion: accepting) { _, result in
///     guard case .success(let client) = result else { return .disarm }
///     startReading(client)      // e.g. client.read(loop:completion:buffer:callback:)
///     return .rearm             // accept the next connection
/// }
/// try loop.run(.untilDone)
/// ```
public struct TCPSocket: ConnectionSocket, Hashable {
    /// The socket descriptor.
    public let fd: Int32

    /// Accepted connections and connects by name: the new socket, owned by the callback (close
    /// it through the loop), or the error.
    public typealias SocketCallback = (Completion, Result<TCPSocket, EvError>) -> CallbackAction
    /// Connect, shutdown and close: success or the error.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction
    /// Reads and writes: the byte count (a write may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction

    /// Wraps an existing socket descriptor (for example one accepted elsewhere). Use
    /// `prepare(for:)` if it was not created in the mode `loop` prefers.
    public init(fd: Int32) { self.fd = fd }

    /// Creates an unconnected TCP socket of `family` (`AF_INET` or `AF_INET6`),
    /// close-on-exec, blocking or non-blocking as `loop.prefersBlockingDescriptors` says.
    /// Any other family is `.invalidArgument` (a Unix stream is a `UnixSocket`: a
    /// `TCPSocket` of `AF_UNIX` would refuse its TCP options at run time instead).
    public init(family: Int32, loop: some EventLoop) throws(EvError) {
        guard family == AF_INET || family == AF_INET6 else { throw .invalidArgument }
        fd = try SocketCalls.open(family: family, type: Int32(SOCK_STREAM.rawValue),
                                  blocking: loop.prefersBlockingDescriptors)
    }

    /// Creates a socket of the family of `address` (for a later bind or connect to it).
    public init(for address: SocketAddress, loop: some EventLoop) throws(EvError) {
        try self.init(family: address.family, loop: loop)
    }

    // MARK: Options servers need

    /// TCP_NODELAY: send small writes at once instead of waiting to coalesce them (Nagle),
    /// which request/response protocols want.
    public func setNoDelay(_ on: Bool) throws(EvError) {
        try SocketCalls.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: on ? 1 : 0)
    }

    // The synchronous set-up (bind, listen, the addresses) and the loop operations
    // (accept, connect, read, write, shutdown, close) are `ConnectionSocket`'s and
    // `LoopSocket`'s, shared with `UnixSocket`.
}
