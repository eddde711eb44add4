#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Awaitable forms of the socket watchers' operations: the stream operations of every
// `ConnectionSocket` (TCPSocket, UnixSocket), and UDP's datagrams. (UnixSocket's own and
// ByteStream's are in AsyncUnixAndStreams.swift.)
//
// They perform the same loop operations the callback forms do (accept, connect, recv, send,
// recvmsg, sendmsg, shutdown, close) through `LoopExecutor.perform`, so they behave
// identically on every backend; only the delivery differs: the completion's callback resumes
// the awaiting task on the loop thread. The socket watchers are `Sendable` values
// (just the descriptor), so a task hands a connection to a child task by value.
//
// Every method must be awaited from code running on the loop's executor (see
// `LoopExecutor.perform`), and each one is `nonisolated(nonsending)`: it runs on its
// caller's executor, never hopping to the global pool and back. A socket may have one read
// and one write awaited at the same time (from two tasks); two reads at once are allowed by
// the loop but deliver data in an unspecified order between them.
//
// Cancellation: cancelling the awaiting task cancels the operation; the method then throws
// `CancellationError` (see `LoopExecutor.perform` for the race with completion).
// Names: each method has the base name of its callback form (accept, connect, read, write,
// shutdown, close; a datagram socket's receive and send), and throws the errors that form
// reports in its `Result`.
// End of stream: as in the callback form, a read at the end of a stream (the peer closed or
// shut down its side) throws `EvError.endOfFile`; a read into an empty buffer returns 0.
// Deadlines: every operation that does I/O takes a `deadline` (`Deadline`, as in the
// callback forms' `Completion.deadline`); on expiry it throws `EvError.timedOut`. Closing a
// descriptor ignores cancellation: a close always happens.

extension ConnectionSocket {
    /// Accepts one connection. The new socket is close-on-exec (non-blocking on readiness
    /// backends) and belongs to the caller: close it with `close(on:)`.
    ///
    /// An accept that completes at the same moment the task is cancelled returns its
    /// connection (nothing leaks); the next await in the task throws `CancellationError`.
    nonisolated(nonsending)
    public func accept(deadline: Deadline = .none, on executor: LoopExecutor) async throws -> Self {
        let result = try await executor.perform(.accept(socket: fd), deadline: deadline)
        guard case .accept(let r) = result else { unexpected(result) }
        return Self(fd: try r.get())
    }

    /// Connects this socket to `address` (`.connectionRefused` when nothing listens there;
    /// `.noSuchFile` for a Unix socket path that does not exist).
    nonisolated(nonsending)
    public func connect(to address: SocketAddress, deadline: Deadline = .none, on executor: LoopExecutor) async throws {
        let result = try await executor.perform(.connect(socket: fd, address: address), deadline: deadline)
        guard case .connect(let r) = result else { unexpected(result) }
        try r.get()
    }

    /// Reads up to `buffer.count` bytes into `buffer` and returns the count. Throws
    /// `EvError.endOfFile` when the peer has closed its side (end of stream), as the
    /// callback form reports `.failure(.endOfFile)`; returns 0 only for an empty `buffer`.
    ///
    /// The buffer only needs to stay valid for the duration of the call: the method returns
    /// after the loop (and the kernel) are done with it, cancellation included.
    ///
    /// Inlinable (as `write` is): compiled into the caller for its socket type, an awaited
    /// read or write is one async frame (a task allocation) fewer. (`reads(into:)` still
    /// reaches it through `ReadableStream`'s witness, which is a frame of its own.)
    @inlinable nonisolated(nonsending)
    public func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                     on executor: LoopExecutor) async throws -> Int {
        let result = try await executor.perform(.recv(socket: fd, buffer: buffer), deadline: deadline)
        return try readCount(result)
    }

    /// Writes up to `buffer.count` bytes; returns how many were written (possibly fewer).
    /// `.brokenPipe` or `.connectionReset` when the peer has gone (never SIGPIPE).
    @inlinable nonisolated(nonsending)
    public func write(_ buffer: UnsafeRawBufferPointer, deadline: Deadline = .none,
                      on executor: LoopExecutor) async throws -> Int {
        let result = try await executor.perform(.send(socket: fd, buffer: buffer), deadline: deadline)
        return try writeCount(result)
    }

    /// Writes all of `buffer`, resuming after short writes. `deadline` covers the whole
    /// write (a `.within` duration is counted from the call, not from each partial write);
    /// on expiry it throws `EvError.timedOut`, and the bytes already written stay written.
    nonisolated(nonsending)
    public func writeAll(_ buffer: UnsafeRawBufferPointer, deadline: Deadline = .none,
                         on executor: LoopExecutor) async throws {
        try await writeEverything(buffer, deadline: deadline, on: executor) { .send(socket: fd, buffer: $0) }
    }

    /// Writes all of `bytes`, resuming after short writes: the awaited form of an
    /// owned-bytes write (`WriteQueue.enqueue(loop:bytes:callback:)`), for bytes that no
    /// caller's buffer holds (the await keeps them alive until they are written).
    /// `deadline` covers the whole write, as for `writeAll(_:deadline:on:)`.
    nonisolated(nonsending)
    public func writeAll(_ bytes: OwnedBytes, deadline: Deadline = .none, on executor: LoopExecutor) async throws {
        try await writeOwned(bytes.unsafeBuffer, bytes, deadline: deadline, on: executor) { .send(socket: fd, buffer: $0) }
    }

    /// Shuts down one or both directions (`.write`: the peer reads end of stream after the
    /// data already sent).
    nonisolated(nonsending)
    public func shutdown(_ how: ShutdownHow = .write, on executor: LoopExecutor) async throws {
        try await shutdownDescriptor(fd, how, on: executor)
    }
}

extension TCPSocket {
    /// Creates a socket for `address` (in the mode the executor's loop prefers), connects
    /// it, and returns it. On failure or cancellation the socket is closed before this throws.
    nonisolated(nonsending)
    public static func connect(to address: SocketAddress, deadline: Deadline = .none,
                               on executor: LoopExecutor) async throws -> TCPSocket {
        try await connected(TCPSocket(for: address, loop: executor.loop), to: address, deadline: deadline, on: executor)
    }
}

extension UDPSocket {
    /// Creates a UDP socket bound to `address` (port 0: the kernel picks one, see
    /// `localAddress()`), in the mode the executor's loop prefers. Call it on the loop thread.
    public static func bound(to address: SocketAddress, on executor: LoopExecutor) throws(EvError) -> UDPSocket {
        let socket = try UDPSocket(for: address, loop: executor.loop)
        do {
            try socket.bind(to: address)
        } catch {
            closeNow(socket.fd)
            throw error
        }
        return socket
    }
}

// MARK: Shared result handling

/// Connects `socket` (just created, so the caller holds no other reference to it) to
/// `address` and returns it; on failure or cancellation closes it before rethrowing, so a
/// failed connect leaks nothing.
nonisolated(nonsending)
func connected<S: ConnectionSocket>(_ socket: S, to address: SocketAddress, deadline: Deadline,
                                    on executor: LoopExecutor) async throws -> S {
    do {
        try await socket.connect(to: address, deadline: deadline, on: executor)
    } catch {
        try? await socket.close(on: executor)
        throw error
    }
    return socket
}

/// Writes all of `buffer` with the write operation `operation` makes for each remaining
/// part, resuming after short writes, within one overall `deadline`.
nonisolated(nonsending)
func writeEverything(_ buffer: UnsafeRawBufferPointer, deadline: Deadline, on executor: LoopExecutor,
                     _ operation: (UnsafeRawBufferPointer) -> Operation) async throws {
    executor.preconditionOnLoopThread("an awaited write")
    let overall = deadline.fixed(from: executor.loopUnchecked.now)
    var offset = 0
    while offset < buffer.count {
        let rest = UnsafeRawBufferPointer(rebasing: buffer[offset...])
        offset += try writeCount(try await executor.perform(operation(rest), deadline: overall))
    }
}

/// `writeEverything` of owned bytes: `owner` (the `OwnedBytes` whose storage `buffer`
/// points into) is held until the last write has finished.
nonisolated(nonsending)
func writeOwned(_ buffer: UnsafeRawBufferPointer, _ owner: OwnedBytes, deadline: Deadline, on executor: LoopExecutor,
              _ operation: (UnsafeRawBufferPointer) -> Operation) async throws {
    defer { withExtendedLifetime(owner) {} }
    try await writeEverything(buffer, deadline: deadline, on: executor, operation)
}

extension Deadline {
    /// The same deadline for a sequence of operations started from `now` on: `.within(d)`
    /// becomes the instant `now + d` (so that it bounds them all, instead of restarting
    /// with each); the others are already fixed.
    func fixed(from now: LoopInstant) -> Deadline {
        if case .within(let duration) = self { return .at(now + duration) }
        return self
    }
}

extension LoopDescriptor {
    /// Closes the descriptor through the loop: operations other tasks still await on it are
    /// cancelled first (they throw `EvError.canceled`), then it is closed (see
    /// `LoopDescriptor`). Cancelling the task does not stop the close.
    nonisolated(nonsending)
    public func close(on executor: LoopExecutor) async throws {
        try await closeDescriptor(fd, on: executor)
    }
}

extension DatagramSocket {
    /// Receives one datagram into `buffer`: its size, its sender (an empty address for a
    /// Unix sender that never bound a name) and whether its tail was cut off because the
    /// buffer was too small. An empty datagram is a 0-byte message.
    nonisolated(nonsending)
    public func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                        on executor: LoopExecutor) async throws -> ReceivedMessage {
        executor.preconditionOnLoopThread("an awaited loop operation")
        try Task.checkCancellation()
        return try await executor.performChecked(.recvmsg(socket: fd, buffer: buffer), cancellable: true,
                                                 deadline: deadline) { c, result in result.message(of: c) }.get()
    }

    /// Sends `buffer` as one datagram to `address` (nil: the connected peer); returns the
    /// bytes sent.
    nonisolated(nonsending)
    public func send(_ buffer: UnsafeRawBufferPointer, to address: SocketAddress?, deadline: Deadline = .none,
                     on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(.sendmsg(socket: fd, buffer: buffer, address: address), deadline: deadline))
    }
}

/// shutdown(2) of `fd` through the loop.
nonisolated(nonsending)
func shutdownDescriptor(_ fd: Int32, _ how: ShutdownHow, on executor: LoopExecutor) async throws {
    let result = try await executor.perform(.shutdown(socket: fd, how: how))
    guard case .shutdown(let r) = result else { unexpected(result) }
    try r.get()
}

/// close(2) outside the loop, for a descriptor the loop has never seen. EINTR is not
/// retried: Linux has released the descriptor already, and a retry could close a number
/// another thread was just given.
@inline(__always)
func closeNow(_ fd: Int32) {
    _ = close(fd)
}

/// A read's byte count; the end of a stream is thrown as `EvError.endOfFile`, as the
/// callback form reports it.
@inlinable @inline(__always)
func readCount(_ result: CompletionResult) throws -> Int {
    guard case .read(let r) = result else { unexpected(result) }
    return try r.get()
}

@inlinable @inline(__always)
func writeCount(_ result: CompletionResult) throws -> Int {
    guard case .write(let r) = result else { unexpected(result) }
    return try r.get()
}

/// Closes `fd` through the loop, whatever the task's cancellation state.
nonisolated(nonsending)
func closeDescriptor(_ fd: Int32, on executor: LoopExecutor) async throws {
    executor.preconditionOnLoopThread("closing a descriptor")
    let result = try await executor.performChecked(.close(fd: fd), cancellable: false)
    guard case .close(let r) = result else { unexpected(result) }
    try r.get()
}
