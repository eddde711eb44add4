import EvLoop

// Awaitable forms of the UnixSocket operations that are its own (creating a connected
// socket; its datagrams are `DatagramSocket`'s, in AsyncSockets.swift) and of every
// ByteStream operation. UnixSocket's stream operations
// (accept, connect, read, write, writeAll, shutdown, close) are `ConnectionSocket`'s, in
// AsyncSockets.swift; the rules are the same for all of them: await them on the loop's
// executor, cancellation throws `CancellationError`, closes always happen, and a read at the
// end of a stream throws `EvError.endOfFile` (as the callback form reports it). Every
// operation that does I/O takes a `deadline`, as its callback form does through
// `Completion.deadline` (`EvError.timedOut` on expiry).

extension UnixSocket {
    /// Creates a Unix socket of `kind` (in the mode the executor's loop prefers), connects
    /// it to `address` and returns it: `.noSuchFile` when the path does not exist,
    /// `.connectionRefused` when nothing listens there. On failure or cancellation the
    /// socket is closed before this throws.
    nonisolated(nonsending)
    public static func connect(to address: SocketAddress, kind: Kind = .stream, deadline: Deadline = .none,
                               on executor: LoopExecutor) async throws -> UnixSocket {
        try await connected(UnixSocket(kind: kind, loop: executor.loop), to: address, deadline: deadline, on: executor)
    }
}

extension ByteStream {
    /// Reads up to `buffer.count` bytes and returns the count. Throws `EvError.endOfFile`
    /// at the end of the stream (the writer closed its end), as the callback form reports
    /// it; returns 0 only for an empty buffer.
    nonisolated(nonsending)
    public func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                     on executor: LoopExecutor) async throws -> Int {
        try readCount(try await executor.perform(readOperation(into: buffer), deadline: deadline))
    }

    /// Writes up to `buffer.count` bytes; returns how many were written (possibly fewer).
    /// `.brokenPipe` when the reader has gone (on a pipe only if SIGPIPE is ignored; see
    /// `ByteStream`).
    nonisolated(nonsending)
    public func write(_ buffer: UnsafeRawBufferPointer, deadline: Deadline = .none,
                      on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(writeOperation(from: buffer), deadline: deadline))
    }

    /// Writes all of `buffer`, resuming after short writes, within one overall `deadline`
    /// (see `ConnectionSocket.writeAll(_:deadline:on:)`).
    nonisolated(nonsending)
    public func writeAll(_ buffer: UnsafeRawBufferPointer, deadline: Deadline = .none,
                         on executor: LoopExecutor) async throws {
        try await writeEverything(buffer, deadline: deadline, on: executor) { writeOperation(from: $0) }
    }

    /// Writes all of `bytes` (kept alive by the await until written), within one overall
    /// `deadline`: the awaited owned-bytes write.
    nonisolated(nonsending)
    public func writeAll(_ bytes: OwnedBytes, deadline: Deadline = .none, on executor: LoopExecutor) async throws {
        try await writeOwned(bytes.unsafeBuffer, bytes, deadline: deadline, on: executor) { writeOperation(from: $0) }
    }

    /// Shuts down one or both directions of a socket stream (`.errno(ENOTSOCK)` on a pipe:
    /// close its end instead).
    nonisolated(nonsending)
    public func shutdown(_ how: ShutdownHow = .write, on executor: LoopExecutor) async throws {
        try await shutdownDescriptor(fd, how, on: executor)
    }
}
