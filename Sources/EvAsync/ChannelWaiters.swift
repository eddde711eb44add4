import EvLoop

// The waiting tasks of EvAsync's channels (`LoopChannel`, `LoopInbox`): each suspended
// sender or receiver is an entry in a wait list of its channel, holding the continuation
// that resumes it (in the task's own frame: nothing is allocated per wait) and an id that
// a cancellation request names.

/// How a suspended receiver was resumed.
enum ReceiveOutcome<Element: Sendable>: Sendable {
    /// It was handed an element.
    case element(Element)
    /// The channel was closed and has nothing left for it.
    case closed
    /// Its task was cancelled; it has left the wait list.
    case cancelled
    /// The loop cancelled the wait it depended on (`LoopInbox` only).
    case failed(EvError)
    /// It is to wait on the inbox's notifier for everyone (`LoopInbox` only).
    case lead
}

/// How a suspended sender was resumed.
enum SendOutcome: Sendable {
    /// Its element went into the buffer or to a receiver.
    case sent
    /// The channel was closed; its element was dropped.
    case closed
    /// Its task was cancelled; it has left the wait list, element and all.
    case cancelled
}

/// A task suspended in a channel until `continuation` is resumed.
struct Waiter<Outcome: Sendable> {
    /// Names the wait for a cancellation request (unique per channel).
    let id: UInt64
    let continuation: UnsafeContinuation<Outcome, Never>
}

/// A sender suspended on a full `LoopChannel`, with the element it brings.
struct WaitingSender<Element: Sendable> {
    let id: UInt64
    let continuation: UnsafeContinuation<SendOutcome, Never>
    let element: Element
}

/// Suspends the calling task (on the loop thread) until a channel resumes it; returns how
/// it was resumed.
///
/// `settleOrWait` runs on the loop thread once the task is ready to be suspended, with the
/// continuation: it must either resume the continuation at once (the channel's state
/// allows the operation now) or put it on one of the channel's wait lists. It has to look
/// at the channel again, even though the caller just did: entering the cancellation
/// handler can re-enqueue the task on the loop (a switch of executor, which the runtime
/// makes through the executor's queue), and other tasks may run in between, so the state
/// the caller saw may have changed (an element taken, a leader gone).
///
/// Cancellation: the task's cancellation handler may run on any thread, so it never
/// touches the channel; it sends `id` to the loop thread through the executor
/// (`requestCancel`), where `channel.cancelOnLoop(id)` removes the waiter and resumes it
/// with `cancelled`, unless the waiter was resumed first (then the request finds nothing
/// and the real outcome stands). A task that is already cancelled does not wait at all.
nonisolated(nonsending)
func suspendAsWaiter<Outcome: Sendable>(id: UInt64, in channel: some LoopCancellable, executor: LoopExecutor,
                                        cancelled: Outcome, suspendingIn what: StaticString,
                                        settleOrWait: (UnsafeContinuation<Outcome, Never>) -> Void) async -> Outcome {
    // Here, before anything can suspend: see `LoopExecutor.noteSuspension`.
    executor.noteSuspension(what)
    let ticket = CancelTicket(target: channel, id: id)
    return await withTaskCancellationHandler {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Outcome, Never>) in
            // The handler may have run already (the task was cancelled before it was
            // installed, or concurrently on another thread): the flag is set by then.
            if Task.isCancelled {
                continuation.resume(returning: cancelled)
                return
            }
            settleOrWait(continuation)
        }
    } onCancel: {
        executor.requestCancel(ticket)
    }
}
