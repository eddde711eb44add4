import EvLoop

/// A stream whose bytes EvAsync reads with an awaited `read(into:deadline:on:)`, and so
/// has `reads(into:deadline:on:)`: `TCPSocket` and `UnixSocket` (every `ConnectionSocket`
/// of this package) and `ByteStream` (pipes, ptys, any stream descriptor).
///
/// Why a protocol: "read into a buffer, `EvError.endOfFile` at the end" is the same awaited
/// operation on every stream, so the sequence is written once for all of them. A conforming
/// type's `read` must throw `EvError.endOfFile` at the end of the stream, as the callback
/// forms report it (and as every read of this package does).
public protocol ReadableStream: Sendable {
    /// Reads up to `buffer.count` bytes into `buffer`; throws `EvError.endOfFile` at the end
    /// of the stream.
    nonisolated(nonsending)
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline, on executor: LoopExecutor) async throws -> Int
}

extension TCPSocket: ReadableStream {}
extension UnixSocket: ReadableStream {}
extension ByteStream: ReadableStream {}

extension ReadableStream {
    /// What the peer sends, read into `buffer` one `read(into:deadline:on:)` at a time, as
    /// an asynchronous sequence of chunks; it ends at the end of the stream.
    ///
    /// ```swift
    /// let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
    /// defer { buffer.deallocate() }
    /// for try await chunk in client.reads(into: buffer, on: executor) {
    ///     try await client.writeAll(chunk, on: executor)     // an echo
    /// }
    /// ```
    ///
    /// Why a sequence: "read until the peer is done" is the loop every stream consumer
    /// writes, and its two easy mistakes (treating the end of the stream as a failure,
    /// handing on more than the bytes read) are taken care of here.
    ///
    /// - **Each chunk is the filled part of `buffer`**, valid until the next iteration
    ///   (the next read writes into the same memory): copy or consume it inside the loop.
    ///   Nothing is allocated per chunk. `buffer` must stay valid while the sequence is
    ///   iterated, and must not be empty: an empty buffer would read 0 bytes forever
    ///   (a precondition failure says so).
    /// - **The end of the stream ends the sequence** (the peer closed or shut down its
    ///   side: the read threw `EvError.endOfFile`, which the sequence does not rethrow).
    /// - **Cancelling the consuming task ends it** too (the pending read is cancelled
    ///   through the loop; bytes it had already received are delivered first).
    /// - **Errors are thrown** as `EvError` (`.connectionReset` when the peer reset the
    ///   connection, `.canceled` when the loop cancelled the read, `.timedOut` when
    ///   `deadline` passed), and end the sequence.
    /// - `deadline` applies to each read: `.within(.seconds(30))` is an idle timeout.
    ///
    /// Iterate on the loop's executor. One reader at a time: two iterations of reads over
    /// one socket would split the stream between them unpredictably. The sequence never
    /// closes the socket, not even at the end of the stream (the caller owns it).
    public func reads(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                      on executor: LoopExecutor) -> StreamReads<Self> {
        precondition(buffer.count > 0,
                     "EvAsync: reads(into:) needs a buffer of at least one byte (an empty read reads nothing, forever)")
        return StreamReads(stream: self, buffer: buffer, deadline: deadline, executor: executor)
    }
}

/// The chunks read from a stream: see `ReadableStream.reads(into:deadline:on:)`.
///
/// Not `Sendable`: it hands out views of one buffer, which one task reads at a time.
public struct StreamReads<Stream: ReadableStream>: AsyncSequence {
    /// The filled part of the caller's buffer, valid until the next iteration.
    public typealias Element = UnsafeRawBufferPointer
    public typealias Failure = EvError

    /// The stream read from.
    public let stream: Stream
    @usableFromInline let buffer: UnsafeMutableRawBufferPointer
    @usableFromInline let deadline: Deadline
    @usableFromInline let executor: LoopExecutor

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    /// Reads one chunk per `next()`; nil at the end of the stream or once the consuming
    /// task is cancelled.
    /// Both `next` methods are inlined into the consuming loop (see `sequenceStep`).
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let sequence: StreamReads
        @usableFromInline var finished = false

        @usableFromInline init(sequence: StreamReads) { self.sequence = sequence }

        /// The next chunk; nil at the end of the stream or when the task has been cancelled.
        @inlinable @inline(__always) nonisolated(nonsending)
        public mutating func next() async throws(EvError) -> UnsafeRawBufferPointer? {
            let s = sequence
            return try await sequenceStep(&finished) {
                do {
                    let n = try await s.stream.read(into: s.buffer, deadline: s.deadline, on: s.executor)
                    return UnsafeRawBufferPointer(rebasing: s.buffer[..<n])
                } catch EvError.endOfFile {
                    return nil
                }
            }
        }

        /// The form a `for try await` loop calls.
        @inlinable @inline(__always)
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvError) -> UnsafeRawBufferPointer? {
            try await next()
        }
    }
}
