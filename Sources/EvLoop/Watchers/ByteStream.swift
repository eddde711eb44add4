#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// Any stream of bytes the loop can read and write: a pipe, a pty, a character device, a
/// Unix or TCP stream socket.
///
/// Why one watcher: code that consumes a stream (a line reader, a protocol parser, a copy
/// loop) should not care whether the bytes come from a child's stdout pipe, a terminal or a
/// socket; libuv has `uv_stream_t` for the same reason. The difference that matters is
/// kept inside: on a socket, reads and writes are recv/send (a write to a peer that has
/// gone reports `.brokenPipe` through MSG_NOSIGNAL), on anything else read/write.
///
/// - **End of stream:** a read of 0 bytes into a non-empty buffer is `.failure(.endOfFile)`
///   (the writer closed its end), as for `TCPSocket`.
/// - **SIGPIPE on pipes:** write(2) to a pipe whose reader has exited raises SIGPIPE, which
///   ends a process that has not ignored it, before the write can fail with `.brokenPipe`.
///   A library does not change process-wide signal dispositions (PITFALLS D10), so a
///   program that writes to pipes (a child's stdin) ignores SIGPIPE once at start
///   (`signal(SIGPIPE, SIG_IGN)`, inherited by no child: `Subprocess.spawn` resets every
///   disposition). Sockets never raise it.
/// - **Ordered writes:** `WriteQueue(stream:)` writes many buffers in order with partial
///   writes resumed, using read/write or recv/send as this stream does.
/// - **Readiness:** pipes, ptys and sockets are pollable, so the readiness backends wait
///   for them; a regular file is not a stream (use `File`).
/// - **Ownership:** the value is the descriptor and a flag (`Sendable`, free to copy) and
///   never closes the descriptor on its own: close it through the loop
///   (`close(loop:completion:callback:)`), which cancels anything still waiting on it first.
///   Both ends from `pipe(loop:)` and the parent ends `Subprocess.spawn` creates are the
///   caller's to close that way.
///
/// ```swift
/// let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
/// try writeEnd.write(loop: loop, completion: writing, buffer: hello) { _, result in
///     try? writeEnd.close(loop: loop, completion: closing)   // the reader sees end of stream
///     return .disarm
/// }
/// try readEnd.read(loop: loop, completion: reading, buffer: buffer) { _, result in
///     switch result {
///     case .success(let n): print("read \(n) bytes"); return .rearm
///     case .failure(.endOfFile): return .disarm
///     case .failure(let error): print(error); return .disarm
///     }
/// }
/// ```
public struct ByteStream: LoopDescriptor, Hashable {
    /// The descriptor.
    public let fd: Int32
    /// Whether the descriptor is a socket: reads and writes are then recv/send (MSG_NOSIGNAL),
    /// otherwise read/write.
    public let isSocket: Bool

    /// Reads and writes: the byte count (a write may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction
    /// Shutdown and close: success or the error.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction

    /// Wraps a stream descriptor whose kind the caller knows.
    public init(fd: Int32, isSocket: Bool) {
        self.fd = fd
        self.isSocket = isSocket
    }

    /// Wraps a stream descriptor, asking the kernel (fstat) whether it is a socket.
    /// `.badFileDescriptor` if it is not open. Use `prepare(for:)` if it was not created in
    /// the mode `loop` prefers (a descriptor inherited from the parent process).
    public init(fd: Int32) throws(EvError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw EvError(errno: cevsys_errno()) }
        self.init(fd: fd, isSocket: st.st_mode & S_IFMT == S_IFSOCK)
    }

    /// The stream of a connected TCP socket (the same descriptor: close one of the two).
    public init(_ socket: TCPSocket) { self.init(fd: socket.fd, isSocket: true) }

    /// The stream of a connected Unix stream socket (the same descriptor: close one of the two).
    public init(_ socket: UnixSocket) { self.init(fd: socket.fd, isSocket: true) }

    /// A new pipe: bytes written to `writeEnd` are read from `readEnd`. Both ends are
    /// close-on-exec (created so atomically, with pipe2: a child spawned by another thread
    /// meanwhile inherits neither) and in the mode `loop` prefers. Both are the caller's to
    /// close, through the loop; closing `writeEnd` is what makes the reader see end of stream.
    public static func pipe(loop: some EventLoop) throws(EvError) -> (readEnd: ByteStream, writeEnd: ByteStream) {
        let (r, w) = try PipeCalls.open(flags: loop.prefersBlockingDescriptors ? 0 : O_NONBLOCK)
        return (ByteStream(fd: r, isSocket: false), ByteStream(fd: w, isSocket: false))
    }

    /// Puts the descriptor in the blocking mode `loop` prefers (for descriptors made
    /// elsewhere, such as an inherited stdin). Note that the mode belongs to the open file,
    /// which a terminal or an inherited pipe may share with other processes.
    public func prepare(for loop: some EventLoop) throws(EvError) {
        try SocketCalls.setBlocking(fd, loop.prefersBlockingDescriptors)
    }

    /// Reads up to `buffer.count` bytes. The buffer is the kernel's until the callback runs,
    /// even after a cancel. `.failure(.endOfFile)` once the writer has closed its end and
    /// everything written has been read.
    public func read(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                     callback: @escaping CountCallback) throws(EvError) {
        try completion.start(readOperation(into: buffer), on: loop,
                             viewing: { $1.countResult }, callback: callback)
    }

    /// Writes up to `buffer.count` bytes; the count written may be short (a pipe holds 64 KiB
    /// by default). To write everything, in order, use `WriteQueue(stream:)`.
    public func write(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                      callback: @escaping CountCallback) throws(EvError) {
        try completion.start(writeOperation(from: buffer), on: loop,
                             viewing: { $1.countResult }, callback: callback)
    }

    /// The read as the loop performs it: recv on a socket, read(2) otherwise (shared with
    /// the awaitable form).
    package func readOperation(into buffer: UnsafeMutableRawBufferPointer) -> Operation {
        isSocket ? .recv(socket: fd, buffer: buffer) : .read(fd: fd, buffer: buffer)
    }

    /// The write as the loop performs it: send with MSG_NOSIGNAL on a socket, write(2)
    /// otherwise.
    package func writeOperation(from buffer: UnsafeRawBufferPointer) -> Operation {
        isSocket ? .send(socket: fd, buffer: buffer) : .write(fd: fd, buffer: buffer)
    }

    /// Shuts down one or both directions of a socket (`.write`: the peer reads end of stream
    /// after the data already sent, and this end can still read). A pipe has one direction
    /// per end, so there is nothing to shut down: close the end instead; on a stream that is
    /// not a socket this reports `.errno(ENOTSOCK)`, from the kernel, like any other error.
    public func shutdown(loop: some EventLoop, completion: Completion, how: ShutdownHow = .write,
                         callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.shutdown(socket: fd, how: how), on: loop,
                             viewing: { $1.voidResult }, callback: callback)
    }
}

extension WriteQueue {
    /// A queue writing to `stream` (read/write or recv/send, as the stream does). The queue
    /// does not own the descriptor: close the stream once the queue is empty.
    public convenience init(stream: ByteStream) { self.init(fd: stream.fd, isSocket: stream.isSocket) }

    /// A queue writing to a Unix stream socket.
    public convenience init(socket: UnixSocket) { self.init(fd: socket.fd, isSocket: true) }
}

/// Pipe creation for `ByteStream.pipe` and for the stdio pipes of `Subprocess.spawn`.
package enum PipeCalls {
    /// pipe2(O_CLOEXEC | `flags`): (read end, write end).
    package static func open(flags: Int32) throws(EvError) -> (Int32, Int32) {
        var fds: (Int32, Int32) = (-1, -1)
        let r = withUnsafeMutableBytes(of: &fds) {
            cevsys_pipe2($0.baseAddress!.assumingMemoryBound(to: Int32.self), O_CLOEXEC | flags)
        }
        guard r == 0 else { throw EvError(errno: cevsys_errno()) }
        return fds
    }
}
