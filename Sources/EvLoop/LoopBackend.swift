/// What a backend implements: the written checklist for a new one (as SwiftNIO's
/// `_SelectorBackendProtocol` is for NIO's selectors). Package-internal: users see
/// `EventLoop`, the concrete loops and `LoopCore`, never these hooks.
///
/// A backend is a subclass of `LoopCore` that conforms to this protocol and passes its
/// `ForwardingBackendHooks` to `LoopCore.init`: the compiler checks that every requirement
/// is there. Everything with semantics (run modes, timers, cancellation rules,
/// the completed FIFO) stays in the core, written once; a backend only moves work to the
/// kernel and reports raw results through `LoopCore.complete(_:raw:)`.
///
/// Adding a backend: conform, then pass the conformance suite (Tests/EvConformanceTests)
/// unchanged.
package protocol LoopBackend: AnyObject {
    /// Starts an I/O operation (any kind but nop, timer, cancel and work, which the core
    /// handles). The outcome is reported later through `complete(_:raw:)`, never from
    /// inside this call's caller's callback.
    func backendSubmit(_ completion: Completion)

    /// Cancels the I/O operation `target` (active, no result yet) on behalf of `cancel`.
    /// Completes both: the target with `-ECANCELED` or its real result, the cancel with 0,
    /// `-ENOENT` or `-EALREADY`.
    func backendCancel(_ cancel: Completion, target: Completion)

    /// Submits queued work and waits up to `timeout` nanoseconds (nil: until something
    /// happens) for completions, reporting them through `complete(_:raw:)`. Returns 0, or
    /// the errno that makes `run` throw (the wait itself failed). Returns early, with 0,
    /// when a signal interrupts the wait: the core recomputes the timeout.
    /// (An errno, not a typed throw: errors cannot cross the hooks' unretained forwarding
    /// without a capture per tick.)
    func backendPoll(timeout: UInt64?) -> Int32

    /// Cancels every I/O operation in flight (each target completes as cancelled, or with
    /// its real result if it won the race).
    func backendCancelAll()
}

/// How the core holds its backend: each backend module declares one small final class
/// that conforms to this protocol and forwards the four hooks to its loop (the `LoopCore`
/// subclass), held unretained in an `Unmanaged`.
///
/// Why not a reference to the loop typed `any LoopBackend`: it would have to be unowned
/// (a loop must not keep itself alive), and every call through an unowned reference
/// retains and releases it (measured: +500 instructions per epoll ping-pong roundtrip,
/// callgrind). The holder is owned by the loop and reached through a `let`, so a hook
/// costs one more direct call and no reference counting. Why concrete classes and not one
/// generic holder here, or a protocol extension: both stay unspecialized across modules
/// (witness-table calls and metadata look-ups per hook: +200 and +1,400 instructions per
/// roundtrip, measured).
package protocol AttachableBackendHooks: LoopBackend {
    /// Called once, from `LoopCore.init`, with the loop being created.
    func attach(_ loop: LoopCore)
}

/// What a backend implements when it leaves operation deadlines to the core (epoll and
/// poll): the core keeps each active deadline in its timer heap, next to the timers, and
/// calls `backendExpire` when one passes. A backend that keeps deadlines itself (io_uring
/// links a kernel timeout to the operation's SQE) does not conform, and the core never
/// puts an operation's deadline in the heap for it. The hooks object passed to
/// `LoopCore.init` conforms to both protocols or to `AttachableBackendHooks` alone.
package protocol DeadlineExpiring: AnyObject {
    /// The deadline of `target` (an active I/O operation, no result yet) has passed:
    /// withdraw it and complete it with `-ETIMEDOUT`. An operation that can no longer be
    /// withdrawn (a pool thread is running it) completes later with its real result.
    func backendExpire(_ target: Completion)
}
