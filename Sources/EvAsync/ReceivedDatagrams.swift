import EvLoop

/// A datagram socket EvAsync receives from with an awaited
/// `receive(into:deadline:on:)`, and so has `datagrams(into:deadline:on:)`: `UDPSocket`,
/// and `UnixSocket` of the datagram kind.
///
/// Why a protocol: receiving a datagram with its sender is the same awaited operation on
/// both, so the sequence is written once.
public protocol DatagramReceiver: Sendable {
    /// Receives one datagram into `buffer`: its size, sender and whether it was truncated.
    nonisolated(nonsending)
    func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline,
                 on executor: LoopExecutor) async throws -> ReceivedMessage
}

extension UDPSocket: DatagramReceiver {}
extension UnixSocket: DatagramReceiver {}

extension DatagramReceiver {
    /// The datagrams this socket receives, one `receive(into:deadline:on:)` per element,
    /// as an asynchronous sequence.
    ///
    /// ```swift
    /// for try await datagram in socket.datagrams(into: buffer, on: executor) {
    ///     _ = try await socket.send(datagram.bytes, to: datagram.sender, on: executor)   // an echo
    /// }
    /// ```
    ///
    /// Why a sequence: a datagram server is a receive loop; the sequence hands each
    /// datagram over with its bytes already cut to size and its sender, from the awaited
    /// receive underneath (nothing is received ahead of the consumer, nothing allocated
    /// per datagram).
    ///
    /// - **Each element's `bytes` is the filled part of `buffer`**, valid until the next
    ///   iteration; `truncated` says the datagram was longer than `buffer` and its tail was
    ///   discarded. `buffer` must stay valid while the sequence is iterated (an empty one
    ///   is allowed: each datagram then arrives as 0 bytes, truncated unless it was empty).
    /// - UDP has no end of stream: the sequence goes on until the consuming task is
    ///   **cancelled, which ends it** (the pending receive is cancelled through the loop),
    ///   or an error is **thrown** as `EvError` (`.canceled` when the loop cancelled the
    ///   receive, for instance because another task closed the socket; `.timedOut` when
    ///   `deadline` passed first).
    /// - `deadline` applies to each receive.
    ///
    /// Iterate on the loop's executor. The sequence never closes the socket (the caller
    /// owns it).
    public func datagrams(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                          on executor: LoopExecutor) -> ReceivedDatagrams<Self> {
        ReceivedDatagrams(socket: self, buffer: buffer, deadline: deadline, executor: executor)
    }
}

/// One datagram from `DatagramReceiver.datagrams(into:deadline:on:)`: a view of its bytes
/// in the caller's buffer, and who sent it.
public struct ReceivedDatagram {
    /// The received bytes: the filled part of the caller's buffer, valid until the next
    /// iteration of the sequence.
    public let bytes: UnsafeRawBufferPointer
    /// The sender's address (where a reply goes; for a Unix datagram socket whose sender
    /// never bound a name, an unnamed address).
    public let sender: SocketAddress
    /// The datagram was longer than the buffer; its tail was discarded (MSG_TRUNC).
    public let truncated: Bool

    /// Made by the sequence's (inlinable) iterator only.
    @usableFromInline init(bytes: UnsafeRawBufferPointer, sender: SocketAddress, truncated: Bool) {
        self.bytes = bytes
        self.sender = sender
        self.truncated = truncated
    }
}

/// The datagrams a socket receives: see `DatagramReceiver.datagrams(into:deadline:on:)`.
///
/// Not `Sendable`: it hands out views of one buffer, which one task reads at a time.
public struct ReceivedDatagrams<Socket: DatagramReceiver>: AsyncSequence {
    public typealias Element = ReceivedDatagram
    public typealias Failure = EvError

    /// The socket received from.
    public let socket: Socket
    @usableFromInline let buffer: UnsafeMutableRawBufferPointer
    @usableFromInline let deadline: Deadline
    @usableFromInline let executor: LoopExecutor

    public func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    /// Receives one datagram per `next()`; nil once the consuming task is cancelled.
    /// Both `next` methods are inlined into the consuming loop (see `sequenceStep`).
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let sequence: ReceivedDatagrams
        @usableFromInline var finished = false

        @usableFromInline init(sequence: ReceivedDatagrams) { self.sequence = sequence }

        /// The next datagram; nil when the task has been cancelled.
        @inlinable @inline(__always) nonisolated(nonsending)
        public mutating func next() async throws(EvError) -> ReceivedDatagram? {
            let s = sequence
            return try await sequenceStep(&finished) {
                let message = try await s.socket.receive(into: s.buffer, deadline: s.deadline, on: s.executor)
                return ReceivedDatagram(bytes: UnsafeRawBufferPointer(rebasing: s.buffer[..<message.count]),
                                        sender: message.address, truncated: message.truncated)
            }
        }

        @inlinable @inline(__always)
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvError) -> ReceivedDatagram? {
            try await next()
        }
    }
}
