import EvLoop

/// A bounded FIFO channel between tasks on one loop: `send` suspends while the channel is
/// full, `receive` suspends while it is empty, and `close()` wakes every waiter.
///
/// ```swift
/// let jobs = LoopChannel<Request>(capacity: 64, on: executor)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask {                                   // the consumer
///         for await request in jobs { try await handle(request, on: executor) }
///     }
///     for try await client in listener.connections(on: executor) {
///         try await jobs.send(Request(client))          // waits while 64 are queued
///     }
///     jobs.close()                                      // the consumer drains and ends
/// }
/// ```
///
/// **Why.** Tasks on one loop already run on one thread, one at a time, so handing values
/// between them needs no lock, no atomic operation and no thread hop (zigcoro's channel
/// over libxev, in Swift): a send that finds a waiting receiver resumes it, and the
/// receiver runs on the loop thread as soon as the sender suspends or returns to the
/// loop. `AsyncStream` would do the same job with a lock per element and unbounded
/// buffering by default; the bound is what makes a fast producer wait for a slow consumer
/// (backpressure) instead of filling memory.
///
/// **Semantics.**
/// - **Capacity** is the number of elements the channel holds without a receiver taking
///   them, at least 1 (`init` stops the program with a precondition message otherwise: a
///   channel that can hold nothing would make every send wait for a receiver, which is a
///   different tool). The buffer is a ring allocated once; elements are moved, never
///   boxed, so in steady state a send and a receive allocate nothing.
/// - **Order**: elements come out in the order they went in, whether they waited in the
///   buffer or in a suspended sender; senders and receivers are served first come, first
///   served.
/// - **Close** (`close()`): later sends throw `ChannelClosedError` at once, suspended
///   senders are woken and throw it (their elements are dropped), receivers get the
///   elements already buffered and then nil, and suspended receivers are woken with nil.
/// - **Cancellation**: cancelling a task suspended in `send` or `receive` removes it from
///   the wait list and makes the call throw `CancellationError` (a sender's element is not
///   sent). The cancellation handler may run on another thread; it only asks the loop
///   thread to do this, through the executor, like the awaited operations. A call made by
///   a task that is already cancelled throws `CancellationError` without touching the
///   channel. If the waiter was served in the same moment (its element taken, or an
///   element handed to it), that result stands and the next call throws.
/// - **Iteration**: the channel is an `AsyncSequence` of its elements, ending when it is
///   closed and drained, or when the consuming task is cancelled.
/// - **Waiting does not hold the loop**: a task suspended on a channel has no completion
///   in the loop, so `run(.untilDone)` may return while it waits (see docs/ASYNC.md);
///   `executor.run { ... }` keeps the loop running until its body is done.
///
/// **Ownership.** The channel holds no descriptor; elements still buffered when it goes
/// away are released with it (a channel of sockets should be drained with `tryReceive()`
/// and the sockets closed, see the DocC article "Sequences and channels").
///
/// **Thread.** Every method must be called on the loop's thread (from a task or actor on
/// the loop's executor, or from a loop callback: `trySend(_:)` and `close()` do not
/// suspend); anything else stops the program with a precondition message. The channel is
/// `Sendable` so that the tasks sharing it can each hold it; `LoopInbox` is the channel
/// for values coming from other threads.
public final class LoopChannel<Element: Sendable>: AsyncSequence, LoopCancellable, @unchecked Sendable {
    // @unchecked Sendable: all mutable state is touched only on the loop thread (every
    // entry point checks it with `preconditionOnLoopThread`; cancellation requests from
    // other threads go through the executor's queue to the loop thread).

    public typealias Failure = Never

    /// How many elements the channel holds without a receiver taking them.
    public let capacity: Int
    /// The executor whose loop thread the channel belongs to.
    public let executor: LoopExecutor

    private var buffer: RingBuffer<Element>
    /// Receivers suspended on an empty channel (so `buffer` is empty while this is not).
    private var receivers = RingBuffer<Waiter<ReceiveOutcome<Element>>>()
    /// Senders suspended on a full channel (so `buffer` is full while this is not).
    private var senders = RingBuffer<WaitingSender<Element>>()
    private var nextWaiterID: UInt64 = 0
    private var closed = false

    /// Creates an open, empty channel that holds up to `capacity` elements, for tasks on
    /// `executor`'s loop. `capacity` must be at least 1 (a precondition).
    ///
    /// May be called on any thread (the channel is only used on the loop thread).
    public init(capacity: Int, on executor: LoopExecutor) {
        precondition(capacity >= 1, "EvAsync: a LoopChannel needs a capacity of at least 1 (got \(capacity))")
        self.capacity = capacity
        self.executor = executor
        self.buffer = RingBuffer(minimumCapacity: capacity)
    }

    /// The number of elements waiting in the buffer.
    public var count: Int {
        executor.preconditionOnLoopThread("LoopChannel.count")
        return buffer.count
    }

    /// True once `close()` has been called.
    public var isClosed: Bool {
        executor.preconditionOnLoopThread("LoopChannel.isClosed")
        return closed
    }

    // MARK: Sending

    /// Sends `element`: hands it to a waiting receiver, or buffers it, or suspends until a
    /// receiver has made room.
    ///
    /// Throws `ChannelClosedError` when the channel is closed (before or while waiting; the
    /// element is dropped), and `CancellationError` when the task is cancelled (before or
    /// while waiting; the element is not sent).
    nonisolated(nonsending)
    public func send(_ element: Element) async throws {
        executor.preconditionOnLoopThread("LoopChannel.send(_:)")
        try Task.checkCancellation()
        if closed { throw ChannelClosedError() }
        if offer(element) { return }
        let id = takeWaiterID()
        let outcome = await suspendAsWaiter(id: id, in: self, executor: executor, cancelled: SendOutcome.cancelled,
                                            suspendingIn: "LoopChannel.send(_:)") { continuation in
            // Again: receivers may have made room, or the channel closed, meanwhile.
            if closed {
                continuation.resume(returning: .closed)
            } else if offer(element) {
                continuation.resume(returning: .sent)
            } else {
                senders.append(WaitingSender(id: id, continuation: continuation, element: element))
            }
        }
        switch outcome {
        case .sent: return
        case .closed: throw ChannelClosedError()
        case .cancelled: throw CancellationError()
        }
    }

    /// Sends `element` if that needs no waiting: true when it went to a receiver or into the
    /// buffer, false when the channel is full (nothing changed). Throws
    /// `ChannelClosedError` when the channel is closed.
    ///
    /// For code that cannot suspend, such as a loop callback feeding tasks.
    public func trySend(_ element: Element) throws(ChannelClosedError) -> Bool {
        executor.preconditionOnLoopThread("LoopChannel.trySend(_:)")
        if closed { throw ChannelClosedError() }
        return offer(element)
    }

    /// Gives `element` to the first waiting receiver, or puts it in the buffer; false when
    /// the buffer is full.
    private func offer(_ element: Element) -> Bool {
        if let receiver = receivers.popFirst() {
            receiver.continuation.resume(returning: .element(element))
            return true
        }
        guard buffer.count < capacity else { return false }
        buffer.append(element)
        return true
    }

    // MARK: Receiving

    /// Receives the oldest element, suspending while the channel is empty; nil once the
    /// channel is closed and every buffered element has been received.
    ///
    /// Throws `CancellationError` when the task is cancelled (before or while waiting).
    nonisolated(nonsending)
    public func receive() async throws(CancellationError) -> Element? {
        executor.preconditionOnLoopThread("LoopChannel.receive()")
        if Task.isCancelled { throw CancellationError() }
        if let element = take() { return element }
        if closed { return nil }
        let id = takeWaiterID()
        let outcome = await suspendAsWaiter(id: id, in: self, executor: executor, cancelled: ReceiveOutcome<Element>.cancelled,
                                            suspendingIn: "LoopChannel.receive()") { continuation in
            // Again: a sender may have filled the buffer, or the channel closed, meanwhile.
            if let element = take() {
                continuation.resume(returning: .element(element))
            } else if closed {
                continuation.resume(returning: .closed)
            } else {
                receivers.append(Waiter(id: id, continuation: continuation))
            }
        }
        switch outcome {
        case .element(let element): return element
        case .closed: return nil
        case .cancelled: throw CancellationError()
        case .failed, .lead: preconditionFailure("EvAsync: a LoopChannel receiver resumed with \(outcome)")
        }
    }

    /// Takes the oldest buffered element without waiting; nil when there is none (the
    /// channel is empty, closed or not). A waiting sender's element takes its place.
    ///
    /// For code that cannot suspend (a loop callback consuming what tasks produce), and for
    /// closing what is left in a channel once the tasks that would have received it are
    /// gone: `receive()` in a cancelled task throws instead of taking anything.
    public func tryReceive() -> Element? {
        executor.preconditionOnLoopThread("LoopChannel.tryReceive()")
        return take()
    }

    /// Takes the oldest buffered element; the first waiting sender's element takes its
    /// place (so order is kept), and that sender resumes.
    private func take() -> Element? {
        guard let element = buffer.popFirst() else { return nil }
        if let sender = senders.popFirst() {
            buffer.append(sender.element)
            sender.continuation.resume(returning: .sent)
        }
        return element
    }

    // MARK: Closing

    /// Closes the channel: suspended senders throw `ChannelClosedError` (their elements are
    /// dropped), suspended receivers get nil, later sends throw, and later receives get the
    /// buffered elements and then nil. Closing twice does nothing.
    public func close() {
        executor.preconditionOnLoopThread("LoopChannel.close()")
        guard !closed else { return }
        closed = true
        while let receiver = receivers.popFirst() { receiver.continuation.resume(returning: .closed) }
        while let sender = senders.popFirst() { sender.continuation.resume(returning: .closed) }
    }

    // MARK: Cancellation

    private func takeWaiterID() -> UInt64 {
        nextWaiterID &+= 1
        return nextWaiterID
    }

    /// Removes waiter `id` (loop thread; see `suspendAsWaiter`) and resumes it as cancelled;
    /// nothing when it has been resumed already.
    func cancelOnLoop(_ id: UInt64) {
        if let receiver = receivers.remove(firstWhere: { $0.id == id }) {
            receiver.continuation.resume(returning: .cancelled)
        } else if let sender = senders.remove(firstWhere: { $0.id == id }) {
            sender.continuation.resume(returning: .cancelled)
        }
    }

    // MARK: AsyncSequence

    public func makeAsyncIterator() -> Iterator { Iterator(channel: self) }

    /// Receives one element per `next()`; nil once the channel is closed and drained, or
    /// once the consuming task is cancelled.
    public struct Iterator: AsyncIteratorProtocol {
        let channel: LoopChannel<Element>

        /// The next element; nil at the end (closed and drained) or when the task has been
        /// cancelled.
        nonisolated(nonsending)
        public mutating func next() async -> Element? {
            do {
                return try await channel.receive()
            } catch {
                return nil
            }
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> Element? {
            await next()
        }
    }
}
