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
public struct TCPSocket: LoopSocket, Hashable {
    /// The socket descriptor.
    public let fd: Int32

    /// Accepted connections: the new socket, owned by the callback (close it through the loop).
    public typealias AcceptCallback = (Completion, Result<TCPSocket, EvError>) -> CallbackAction
    /// Connect, shutdown and close: success or the error.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction
    /// Reads and writes: the byte count (a write may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction

    /// Wraps an existing socket descriptor (for example one accepted elsewhere). Use
    /// `prepare(for:)` if it was not created in the mode `loop` prefers.
    public init(fd: Int32) { self.fd = fd }

    /// Creates an unconnected TCP socket of `family` (`AF_INET` or `AF_INET6`),
    /// close-on-exec, blocking or non-blocking as `loop.prefersBlockingDescriptors` says.
    public init(family: Int32, loop: some EventLoop) throws(EvError) {
        fd = try SocketCalls.open(family: family, type: Int32(SOCK_STREAM.rawValue),
                                  blocking: loop.prefersBlockingDescriptors)
    }

    /// Creates a socket of the family of `address` (for a later bind or connect to it).
    public init(for address: SocketAddress, loop: some EventLoop) throws(EvError) {
        try self.init(family: address.family, loop: loop)
    }

    /// Puts the descriptor in the blocking mode `loop` prefers (for sockets made elsewhere).
    public func prepare(for loop: some EventLoop) throws(EvError) {
        try SocketCalls.setBlocking(fd, loop.prefersBlockingDescriptors)
    }

    // MARK: Options servers need



    /// TCP_NODELAY: send small writes at once instead of waiting to coalesce them (Nagle),
    /// which request/response protocols want.
    public func setNoDelay(_ on: Bool) throws(EvError) {
        try SocketCalls.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: on ? 1 : 0)
    }



    // MARK: Synchronous set-up (never blocks)


    /// Marks the socket as listening; `backlog` is the queue of completed connections
    /// waiting for accept (the kernel caps it at net.core.somaxconn).
    public func listen(backlog: Int32 = 128) throws(EvError) {
        try SocketCalls.listen(fd, backlog: backlog)
    }


    /// The connected peer's address.
    public func peerAddress() throws(EvError) -> SocketAddress {
        try SocketCalls.address(fd, peer: true)
    }

    // MARK: Loop operations

    /// Accepts one connection. The accepted socket is close-on-exec (and non-blocking on
    /// readiness backends) and belongs to the callback. `.rearm` accepts the next one.
    /// Out of descriptors is reported as `.systemResources`, never retried silently (a
    /// full table would otherwise spin the loop, PITFALLS E8): back off with a timer.
    public func accept(loop: some EventLoop, completion: Completion,
                       callback: @escaping AcceptCallback) throws(EvError) {
        completion.operation = .accept(socket: fd)
        completion.callback = { c, result in
            switch result {
            case .accept(let r): return callback(c, r.map { TCPSocket(fd: $0) })
            default: return callback(c, .failure(.invalidArgument))
            }
        }
        try loop.add(completion)
    }

    /// Connects to `address`: `.connectionRefused` when nothing listens there.
    public func connect(loop: some EventLoop, completion: Completion, to address: SocketAddress,
                        callback: @escaping VoidCallback) throws(EvError) {
        completion.operation = .connect(socket: fd, address: address)
        completion.callback = { c, result in callback(c, result.voidResult) }
        try loop.add(completion)
    }

    /// Reads up to `buffer.count` bytes. The buffer is the kernel's until the callback runs,
    /// even after a cancel. `.failure(.endOfFile)` when the peer closed its side.
    public func read(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                     callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .recv(socket: fd, buffer: buffer)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Writes (sends) up to `buffer.count` bytes; the count written may be short. To write
    /// everything, in order, use `WriteQueue`.
    public func write(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                      callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .send(socket: fd, buffer: buffer)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Shuts down one or both directions (`.write` sends FIN after queued data, so the peer
    /// reads end of file). `.notConnected` on a socket that is not connected.
    public func shutdown(loop: some EventLoop, completion: Completion, how: ShutdownHow = .write,
                         callback: @escaping VoidCallback) throws(EvError) {
        completion.operation = .shutdown(socket: fd, how: how)
        completion.callback = { c, result in callback(c, result.voidResult) }
        try loop.add(completion)
    }

}
