/// When an operation must have finished: part of the operation, kept in its `Completion`
/// (DESIGN.md invariant 10).
///
/// Why on the completion, and not a timer next to it: a timer, a cancel and a third
/// completion per operation is what a timeout costs on loops without deadlines, and that
/// recipe has a race a caller cannot see (a timer that fires in the tick where the
/// operation rearms cancels the *next* activation). A deadline belongs to one activation:
/// when it passes first, that activation completes once, with `.failure(.timedOut)`; when
/// the operation finishes first, its real result is reported and the deadline is gone.
/// There is no second callback and nothing to cancel.
///
/// - `.at(instant)`: an absolute instant on the loop's clock, the same for every
///   activation (a connect that must succeed before a moment; a request's overall budget).
/// - `.within(duration)`: measured from the start of each activation (`add`, or `.rearm`),
///   so a rearmed read with `.within(.seconds(30))` is an idle timeout that restarts with
///   every read, without allocating.
///
/// How it is kept: natively on io_uring (a linked IORING_OP_LINK_TIMEOUT on the
/// operation's SQE, with an absolute CLOCK_MONOTONIC time), in the loop's timer heap on
/// epoll and poll (the waiting operation is withdrawn when it expires).
///
/// Honest partial progress (PITFALLS D5): a deadline never discards a result. An
/// operation that moved bytes reports the count, even if the deadline passed meanwhile;
/// `.timedOut` means the operation did nothing. File I/O that a pool thread (epoll, poll)
/// or the kernel has already started cannot be interrupted: it reports its real result
/// when it finishes. A deadline that has already passed when the operation starts lets
/// it try once, without waiting: ready data is read, otherwise it times out.
///
/// Deadlines apply to operations that can wait: accept, connect, read, write, pread,
/// pwrite, recv, send, recvmsg, sendmsg, poll, and pool work (`.work`, kept in the timer
/// heap on every backend: a job that has not started is withdrawn and a resolver's lookup
/// abandoned, with `.timedOut`; a closure that runs cannot be stopped and reports its real
/// result). Timers have their own instant; nop, cancel, shutdown and close never wait, and
/// ignore the completion's deadline.
///
/// ```swift
/// let reading = Completion()
/// reading.deadline = .within(.seconds(30))        // idle timeout, restarted by each read
/// try socket.read(loop: loop, completion: reading, buffer: buffer) { c, result in
///     switch result {
///     case .success(let n): handle(n); return .rearm
///     case .failure(.timedOut): closeIdle(); return .disarm
///     case .failure: return .disarm
///     }
/// }
/// ```
public enum Deadline: Sendable, Hashable {
    /// No deadline: the operation waits as long as it takes.
    case none
    /// Finished by this instant (the same for every activation).
    case at(LoopInstant)
    /// Finished within this long after each activation starts (negative counts as zero).
    case within(Duration)
}

extension OperationKind {
    /// Whether an operation of this kind can wait, and so honours a deadline.
    @inlinable package var takesDeadline: Bool {
        switch self {
        case .accept, .connect, .read, .write, .pread, .pwrite, .recv, .send, .recvmsg, .sendmsg, .poll, .work:
            return true
        case .nop, .timer, .cancel, .shutdown, .close:
            return false
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            // File-system operations run in a kernel worker or on a pool thread, which
            // cannot be interrupted once started; a local file system answers without
            // waiting on a peer (see `FileSystem`).
            return false
        }
    }
}
