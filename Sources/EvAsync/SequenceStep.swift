import EvLoop

/// One element of an asynchronous sequence built on an awaited operation (`connections`,
/// `reads`, `datagrams`, `signals`): what `body` returns, nil when the consuming task has
/// been cancelled, or the operation's `EvError`.
///
/// Why cancellation ends the sequence instead of throwing: a `for await` loop is how a task
/// consumes the sequence, and cancelling that task is how a program tells it to stop (a
/// task group shutting down); ending the loop quietly, like `AsyncStream` does, lets the
/// code after the loop clean up without a `catch` for the one error that is not a failure.
/// Loop-level cancellation (`loop.cancelAll()`, or another task closing the descriptor) is
/// not the consumer's request and is thrown as `EvError.canceled`, as the awaits do.
///
/// The state of the iterator (`finished`) makes every call after the end, or after an
/// error, return nil at once: an iterator that has ended stays ended.
///
/// Inlined, with the iterators' `next()` and `next(isolation:)` that call it, into the
/// caller's `for try await` loop, where the sequence's generic parameter is known. Compiled
/// in this module instead, each element asked the runtime for the sequence type's metadata
/// twice (a locked cache lookup: about 980 user-space instructions per request in
/// ev-http-async on epoll, callgrind) and went through three more async frames, each a task
/// allocation and most a `swift_task_switch`; inlined, ev-http-async's user space fell from
/// 8,718 to 7,520 instructions per request (the difference of a 3 s and a 9 s run under wrk,
/// issue 14).
@inlinable @inline(__always) nonisolated(nonsending)
func sequenceStep<Element>(_ finished: inout Bool,
                           _ body: nonisolated(nonsending) () async throws -> Element?) async throws(EvError) -> Element? {
    if finished { return nil }
    do {
        guard let element = try await body() else {
            finished = true
            return nil
        }
        return element
    } catch let error as EvError {
        finished = true
        throw error
    } catch is CancellationError {
        finished = true
        return nil
    } catch {
        preconditionFailure("EvAsync: an awaited operation threw \(error), neither an EvError nor a CancellationError")
    }
}
