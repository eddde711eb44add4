#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A socket that connects to a peer, or listens for and accepts connections, and then
/// reads and writes its peer: what `TCPSocket` and `UnixSocket` have in common.
///
/// Why a protocol: a TCP connection and a Unix stream connection are the same thing to the
/// loop (accept, connect, recv, send, shutdown), and only their creation and their options
/// differ, so the operations are written once here and both watchers get them by
/// conforming. Every operation follows the one watcher shape (docs/API.md): the loop, a
/// caller-owned completion, the operation's arguments, and a callback that gets the
/// completion and a `Result` and answers `.rearm` (the same operation again, without
/// allocating) or `.disarm`.
///
/// Reads and writes use recv/send: a write to a peer that has gone reports `.brokenPipe`
/// (MSG_NOSIGNAL, never a process-killing SIGPIPE), and a read of 0 bytes into a non-empty
/// buffer is `.failure(.endOfFile)`. A conforming value only wraps its descriptor and never
/// closes it on its own: close it through the loop (`close(loop:completion:callback:)`).
///
/// ```swift
/// func echoOnce(_ socket: some ConnectionSocket, loop: some EventLoop,
///               buffer: UnsafeMutableRawBufferPointer) throws(EvError) {
///     try socket.read(loop: loop, completion: Completion(), buffer: buffer) { _, result in
///         guard case .success(let n) = result else { return .disarm }
///         try? socket.write(loop: loop, completion: Completion(),
///                           buffer: UnsafeRawBufferPointer(rebasing: buffer[..<n])) { _, _ in .disarm }
///         return .disarm
///     }
/// }
/// ```
public protocol ConnectionSocket: LoopSocket {
    /// Wraps a socket descriptor (an accepted connection is handed over this way).
    init(fd: Int32)
}

extension ConnectionSocket {
    /// Marks the socket as listening; `backlog` is the queue of completed connections
    /// waiting for accept (the kernel caps it at net.core.somaxconn).
    public func listen(backlog: Int32 = 128) throws(EvError) {
        try SocketCalls.listen(fd, backlog: backlog)
    }

    /// The connected peer's address (for a Unix socket whose peer never bound a name, an
    /// unnamed address: `isUnnamedUnix`).
    public func peerAddress() throws(EvError) -> SocketAddress {
        try SocketCalls.address(fd, peer: true)
    }

    /// Accepts one connection. The accepted socket is close-on-exec (and non-blocking on
    /// readiness backends) and belongs to the callback. `.rearm` accepts the next one.
    /// Out of descriptors is reported as `.systemResources`, never retried silently (a
    /// full table would otherwise spin the loop, PITFALLS E8): back off with a timer.
    public func accept(loop: some EventLoop, completion: Completion,
                       callback: @escaping (Completion, Result<Self, EvError>) -> CallbackAction) throws(EvError) {
        completion.operation = .accept(socket: fd)
        completion.callback = { c, result in
            switch result {
            case .accept(let r): return callback(c, r.map { Self(fd: $0) })
            default: return callback(c, .failure(.invalidArgument))
            }
        }
        try loop.add(completion)
    }

    /// Connects to `address`: `.connectionRefused` when nothing listens there, and for a
    /// Unix socket path that does not exist, `.noSuchFile`.
    public func connect(loop: some EventLoop, completion: Completion, to address: SocketAddress,
                        callback: @escaping (Completion, Result<Void, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.connect(socket: fd, address: address), on: loop,
                             viewing: { $1.voidResult }, callback: callback)
    }

    /// Reads up to `buffer.count` bytes. The buffer is the kernel's until the callback runs,
    /// even after a cancel. `.failure(.endOfFile)` when the peer closed its side.
    public func read(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                     callback: @escaping (Completion, Result<Int, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.recv(socket: fd, buffer: buffer), on: loop,
                             viewing: { $1.countResult }, callback: callback)
    }

    /// Writes (sends) up to `buffer.count` bytes; the count written may be short. To write
    /// everything, in order, use `WriteQueue`.
    public func write(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                      callback: @escaping (Completion, Result<Int, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.send(socket: fd, buffer: buffer), on: loop,
                             viewing: { $1.countResult }, callback: callback)
    }

    /// Shuts down one or both directions (`.write` sends FIN after queued data, so the peer
    /// reads end of file). `.notConnected` on a socket that is not connected.
    public func shutdown(loop: some EventLoop, completion: Completion, how: ShutdownHow = .write,
                         callback: @escaping (Completion, Result<Void, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.shutdown(socket: fd, how: how), on: loop,
                             viewing: { $1.voidResult }, callback: callback)
    }
}
