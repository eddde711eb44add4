import EvLoop

extension ConnectionSocket {
    /// The connections this listening socket (a `TCPSocket` or a stream `UnixSocket`)
    /// accepts, one `accept(deadline:on:)` per element, as an asynchronous sequence.
    ///
    /// ```swift
    /// await withDiscardingTaskGroup { group in
    ///     for try await client in listener.connections(on: executor) {
    ///         group.addTask { await serve(client, on: executor) }
    ///     }
    /// }
    /// ```
    ///
    /// Why a sequence: a server's accept loop is the thing that repeats forever, and a
    /// `for try await` loop says so without the bookkeeping of a `while` around an await.
    /// It is the awaited accept underneath (nothing is accepted ahead of the consumer, and
    /// nothing is allocated per connection), so it behaves exactly as that accept does:
    ///
    /// - Each element is a new connection that belongs to the consumer: close it with
    ///   `close(on:)`.
    /// - **Cancelling the consuming task ends the sequence** (the pending accept is
    ///   cancelled through the loop, and the loop returns nil). An accept that completed in
    ///   the same moment still hands its connection over first, so none is dropped.
    /// - **Errors end it by being thrown**, as `EvError`: an accept that fails (`.errno`
    ///   with EMFILE when the process is out of descriptors), `.canceled` when the loop
    ///   cancelled the accept (`loop.cancelAll()`, or another task closed the listener),
    ///   `.timedOut` when `deadline` passed before a connection came. A server that wants
    ///   to survive EMFILE awaits `accept(deadline:on:)` in a loop of its own instead.
    /// - `deadline` applies to each accept (`.within(...)`: the longest wait for the next
    ///   connection).
    ///
    /// Iterate on the loop's executor (a task that prefers it, or an actor bound to it);
    /// elsewhere the first element stops the program with a precondition message. The
    /// sequence never closes the listener (the caller owns it: docs/API.md, rule 6).
    public func connections(deadline: Deadline = .none, on executor: LoopExecutor) -> IncomingConnections<Self> {
        IncomingConnections(listener: self, deadline: deadline, executor: executor)
    }
}

/// The connections a listening socket accepts: see `ConnectionSocket.connections(deadline:on:)`.
public struct IncomingConnections<Socket: ConnectionSocket>: AsyncSequence, Sendable {
    public typealias Element = Socket
    public typealias Failure = EvError

    /// The listening socket.
    public let listener: Socket
    /// The deadline of each accept.
    public let deadline: Deadline
    @usableFromInline let executor: LoopExecutor

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    /// Accepts one connection per `next()`; nil once the consuming task is cancelled.
    /// Both `next` methods are inlined into the consuming loop (see `sequenceStep`).
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let sequence: IncomingConnections
        @usableFromInline var finished = false

        @usableFromInline init(sequence: IncomingConnections) { self.sequence = sequence }

        /// The next accepted connection; nil when the task has been cancelled.
        @inlinable @inline(__always) nonisolated(nonsending)
        public mutating func next() async throws(EvError) -> Socket? {
            let s = sequence
            return try await sequenceStep(&finished) {
                try await s.listener.accept(deadline: s.deadline, on: s.executor)
            }
        }

        @inlinable @inline(__always)
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvError) -> Socket? {
            try await next()
        }
    }
}
