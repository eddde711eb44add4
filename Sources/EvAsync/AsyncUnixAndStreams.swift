import EvLoop

// Awaitable forms of the UnixSocket operations that are its own (creating a connected
// socket, datagrams) and of every ByteStream operation. UnixSocket's stream operations
// (accept, connect, read, write, writeAll, shutdown, close) are `ConnectionSocket`'s, in
// AsyncSockets.swift; the rules are the same for all of them: await them on the loop's
// executor, cancellation throws `CancellationError`, closes always happen, and a read
// returns 0 at the end of a stream. The operations that can wait take a `deadline`, as
// their callback forms do through `Completion.deadline` (`EvError.timedOut` on expiry).

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

    /// Receives one datagram into `buffer`: its size, its sender (an empty address for a
    /// sender that never bound a name) and whether its tail was cut off because the buffer
    /// was too small.
    nonisolated(nonsending)
    public func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                        on executor: LoopExecutor) async throws -> ReceivedMessage {
        try await receiveDatagram(fd, into: buffer, deadline: deadline, on: executor)
    }

    /// Sends `buffer` as one datagram to `address` (nil: the connected peer); returns the
    /// bytes sent.
    nonisolated(nonsending)
    public func send(_ buffer: UnsafeRawBufferPointer, to address: SocketAddress?, on executor: LoopExecutor) async throws -> Int {
        try await sendDatagram(fd, buffer, to: address, on: executor)
    }
}

extension ByteStream {
    /// Reads up to `buffer.count` bytes; returns the count, or 0 at the end of the stream
    /// (the writer closed its end) or for an empty buffer.
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

    /// Writes all of `buffer`, resuming after short writes.
    nonisolated(nonsending)
    public func writeAll(_ buffer: UnsafeRawBufferPointer, on executor: LoopExecutor) async throws {
        try await writeEverything(buffer, on: executor) { writeOperation(from: $0) }
    }

    /// Shuts down one or both directions of a socket stream (`.errno(ENOTSOCK)` on a pipe:
    /// close its end instead).
    nonisolated(nonsending)
    public func shutdown(_ how: ShutdownHow = .write, on executor: LoopExecutor) async throws {
        try await shutdownDescriptor(fd, how, on: executor)
    }

    /// Closes the stream through the loop: operations other tasks still await on it are
    /// cancelled first (they throw `EvError.canceled`). Cancelling the task does not stop
    /// the close.
    nonisolated(nonsending)
    public func close(on executor: LoopExecutor) async throws {
        try await closeDescriptor(fd, on: executor)
    }
}
