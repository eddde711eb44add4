import EvLoop
import Synchronization

/// A channel from any number of threads to the tasks of one loop: `send(_:)` from any
/// thread never blocks, and tasks on the loop receive the elements in the order they were
/// sent, each exactly once.
///
/// ```swift
/// let results = try LoopInbox<Result>(on: executor)
/// for _ in 0..<4 {
///     startWorkerThread {                        // plain threads, not tasks
///         for job in jobs() { try? results.send(compute(job)) }
///     }
/// }
/// try executor.run {
///     for try await result in results { record(result) }   // on the loop thread
/// }
/// // ... and once every worker is done: results.close()  (any thread)
/// ```
///
/// **Why.** The loop and everything on it belong to one thread; other threads may only
/// hand it work through an `AsyncNotifier` (DESIGN invariant 8). The inbox is that hand-off
/// for values: a locked queue on the sending side, and one wake-up of the loop per batch
/// of sends (a flag under the same lock makes only the first send after the loop has
/// looked write the notifier's eventfd; the rest ride along). On the loop side a receiving
/// task takes elements from the queue directly, and when there are none it awaits the
/// notifier with `AsyncNotifier.wait(on:)`, the ordinary awaited operation: when several
/// tasks receive at once, the first waits on the notifier for all of them and hands the
/// others their elements, first come, first served.
///
/// **Semantics.**
/// - **Unbounded**: `send` never waits, so a producer thread is never blocked by the loop
///   (a bounded hand-off would have to block a thread, or fail the send). Producers that
///   can outrun the loop need a bound of their own (a counter of elements in flight, say).
/// - **Order and delivery**: elements from one thread arrive in the order it sent them;
///   every element sent before `close()` is received exactly once (elements of different
///   threads interleave in the order the lock admitted them).
/// - **Close** (`close()`, any thread): later sends throw `ChannelClosedError`; receivers
///   get the elements already sent, then nil. Closing twice does nothing.
/// - **Cancellation**: cancelling a task suspended in `receive()` ends its wait (it throws
///   `CancellationError`) and nothing is lost: an element is only taken from the queue for
///   a receiver that is still waiting. As an `AsyncSequence`, the inbox ends instead.
/// - **Loop cancellation** (`loop.cancelAll()`) cancels the notifier wait like any awaited
///   operation: the receivers waiting then throw `EvError.canceled`.
/// - **Waiting holds the loop**: a receiver waits through an awaited notifier wait, which
///   keeps `run(.untilDone)` running, as `AsyncNotifier.wait(on:)` does.
/// - In steady state nothing is allocated per element: the queue is a ring buffer that
///   only grows, and the awaited wait uses the executor's pooled slots.
///
/// **Thread.** `send(_:)` and `close()`: any thread. `receive()` and iteration: the loop's
/// thread (a task or actor on its executor), checked with a precondition.
///
/// **Ownership.** The inbox creates an `AsyncNotifier` (an eventfd) for itself; the
/// notifier closes it when the inbox, and any wait still using it, are gone.
public final class LoopInbox<Element: Sendable>: AsyncSequence, LoopCancellable, @unchecked Sendable {
    // @unchecked Sendable: `shared` is locked; the notifier is Sendable; everything under
    // "loop thread only" is touched only on the loop thread (checked by
    // `preconditionOnLoopThread`; cancellation requests come through the executor's queue).

    public typealias Failure = EvError

    /// The executor whose tasks receive.
    public let executor: LoopExecutor
    private let notifier: AsyncNotifier
    private let shared = Mutex(Shared())

    /// The part the sending threads touch.
    private struct Shared: ~Copyable {
        var queue = RingBuffer<Element>()
        var closed = false
        /// A send has written (or is about to write) the eventfd and the loop has not taken
        /// the queue since: later sends need not write it again.
        var wakePending = false
    }

    // MARK: loop thread only

    /// Receivers waiting behind the one that waits on the notifier.
    private var followers = RingBuffer<Waiter<ReceiveOutcome<Element>>>()
    /// True while one receiver waits on the notifier (or has been told to).
    private var leading = false
    private var nextWaiterID: UInt64 = 0

    /// Creates an open, empty inbox whose elements are received on `executor`'s loop.
    /// Throws when the notifier's eventfd cannot be created (out of descriptors). May be
    /// called on any thread.
    public init(on executor: LoopExecutor) throws(EvError) {
        self.executor = executor
        self.notifier = try AsyncNotifier()
    }

    // MARK: Any thread

    /// Queues `element` for the loop's receivers and wakes the loop if it has not been
    /// woken for an earlier send yet. Never blocks on the loop. Throws
    /// `ChannelClosedError` once the inbox is closed.
    public func send(_ element: Element) throws(ChannelClosedError) {
        let wake = try shared.withLock { (state: inout Shared) throws(ChannelClosedError) -> Bool in
            if state.closed { throw ChannelClosedError() }
            state.queue.append(element)
            if state.wakePending { return false }
            state.wakePending = true
            return true
        }
        // Outside the lock: an eventfd write cannot block (it only fails when the counter
        // is full, which means the loop has a wake-up pending anyway).
        if wake { notifier.notify() }
    }

    /// Closes the inbox: later sends throw `ChannelClosedError`, and once the elements
    /// already sent have been received, receivers get nil. Any thread; twice is harmless.
    public func close() {
        let wake = shared.withLock { (state: inout Shared) -> Bool in
            if state.closed { return false }
            state.closed = true
            if state.wakePending { return false }
            state.wakePending = true
            return true
        }
        if wake { notifier.notify() }
    }

    // MARK: Receiving (loop thread)

    /// Receives the next element, suspending while there is none; nil once the inbox is
    /// closed and every element sent before has been received.
    ///
    /// Throws `CancellationError` when the task is cancelled (before or while waiting), and
    /// `EvError` when the loop cancelled the wait (`.canceled`, from `loop.cancelAll()`) or
    /// the notifier failed.
    nonisolated(nonsending)
    public func receive() async throws -> Element? {
        executor.preconditionOnLoopThread("LoopInbox.receive()")
        try Task.checkCancellation()
        if !leading {
            // Nobody waits: take what is there, or become the one who waits.
            switch takeOne() {
            case .element(let element): return element
            case .closed: return nil
            default:
                leading = true   // now, before anything can suspend: one leader at a time
                return try await lead()
            }
        }
        let id = takeWaiterID()
        let outcome = await suspendAsWaiter(id: id, in: self, executor: executor, cancelled: ReceiveOutcome<Element>.cancelled,
                                            suspendingIn: "LoopInbox.receive()") { continuation in
            if leading {
                followers.append(Waiter(id: id, continuation: continuation))
            } else {
                // The leader left meanwhile (see `suspendAsWaiter`): this one leads.
                leading = true
                continuation.resume(returning: .lead)
            }
        }
        switch outcome {
        case .element(let element): return element
        case .closed: return nil
        case .cancelled: throw CancellationError()
        case .failed(let error): throw error
        case .lead: return try await lead()
        }
    }

    /// Waits on the notifier for every receiver until this one has an element (or the
    /// inbox is closed and drained); hands the elements that come meanwhile to the
    /// followers in order, and passes the waiting on when it leaves.
    ///
    /// Called with `leading` already set for this receiver (by `receive()` or `passLead()`,
    /// so that no other receiver can take the role while this one is on its way here). It
    /// looks at the queue before each wait: a receiver that was handed the role may find
    /// elements that arrived while nobody was waiting on the notifier.
    nonisolated(nonsending)
    private func lead() async throws -> Element? {
        while true {
            let (mine, ended) = deliver()
            if let mine {
                if ended { endFollowers() } else { passLead() }
                return mine
            }
            if ended {
                endFollowers()
                return nil
            }
            do {
                try await notifier.wait(on: executor)
            } catch let error as EvError {
                // The loop cancelled the wait (or the poll failed): it would fail the same
                // way for everyone waiting.
                leading = false
                while let follower = followers.popFirst() { follower.continuation.resume(returning: .failed(error)) }
                throw error
            } catch {
                // This task was cancelled: someone else waits from now on.
                passLead()
                throw error
            }
            // Woken: the next round takes what the senders queued. (A wake-up can also find
            // nothing for this receiver: a receive() that came first took the elements, or
            // a notification was left over from before; then it waits again.)
        }
    }

    /// Takes the queue's elements for this leader and its followers, oldest first; returns
    /// the leader's element and whether the inbox is closed with nothing left.
    private func deliver() -> (Element?, Bool) {
        shared.withLock { (state: inout Shared) -> (Element?, Bool) in
            // Reset before taking: a send after this point writes the eventfd again, so
            // no element can be left without a wake-up.
            state.wakePending = false
            let mine = state.queue.popFirst()
            if mine != nil {
                while !followers.isEmpty, let element = state.queue.popFirst() {
                    followers.popFirst().unsafelyUnwrapped.continuation.resume(returning: .element(element))
                }
            }
            return (mine, state.closed && state.queue.isEmpty)
        }
    }

    /// The leader leaves: the oldest follower, if any, waits on the notifier next.
    private func passLead() {
        if let next = followers.popFirst() {
            next.continuation.resume(returning: .lead)   // `leading` stays set for it
        } else {
            leading = false
        }
    }

    /// Closed and drained: every follower gets nil.
    private func endFollowers() {
        leading = false
        while let follower = followers.popFirst() { follower.continuation.resume(returning: .closed) }
    }

    /// One element from the queue, without waiting.
    private func takeOne() -> ReceiveOutcome<Element> {
        shared.withLock { (state: inout Shared) -> ReceiveOutcome<Element> in
            if let element = state.queue.popFirst() { return .element(element) }
            return state.closed ? .closed : .lead
        }
    }

    private func takeWaiterID() -> UInt64 {
        nextWaiterID &+= 1
        return nextWaiterID
    }

    /// Removes follower `id` (loop thread; see `suspendAsWaiter`) and resumes it as
    /// cancelled; nothing when it has been resumed already. (The leader is cancelled
    /// through its notifier wait instead.)
    func cancelOnLoop(_ id: UInt64) {
        if let follower = followers.remove(firstWhere: { $0.id == id }) {
            follower.continuation.resume(returning: .cancelled)
        }
    }

    // MARK: AsyncSequence

    public func makeAsyncIterator() -> Iterator { Iterator(inbox: self) }

    /// Receives one element per `next()`; nil once the inbox is closed and drained, or
    /// once the consuming task is cancelled. Loop cancellation is thrown as `EvError`.
    public struct Iterator: AsyncIteratorProtocol {
        let inbox: LoopInbox<Element>
        var finished = false

        /// The next element; nil at the end (closed and drained) or when the task has been
        /// cancelled.
        nonisolated(nonsending)
        public mutating func next() async throws(EvError) -> Element? {
            let inbox = self.inbox
            return try await sequenceStep(&finished) { try await inbox.receive() }
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(EvError) -> Element? {
            try await next()
        }
    }
}
