/// What a backend implements: the written checklist for a new one (as SwiftNIO's
/// `_SelectorBackendProtocol` is for NIO's selectors). Package-internal: users see
/// `EventLoop`, the concrete loops and `LoopCore`, never these hooks.
///
/// A backend is a final subclass of `LoopCore` (or of a class that is one, as `EpollLoop`
/// and `PollLoop` are of `ReadinessLoop`) that conforms to this protocol, so that the
/// compiler checks that every requirement is there, and passes a `BackendHooks` that calls
/// them to `LoopCore.init`. Everything with semantics (run modes, timers, cancellation rules,
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

/// How the core calls its backend: one closure per hook, each taking the loop (the
/// `LoopCore` subclass itself, at +0) and calling the backend's method on it. A backend
/// builds them in its initializer from closure literals that name its own final type
/// (`{ unsafeDowncast($0, to: UringLoop.self).backendSubmit($1) }`), so they capture
/// nothing and compile in the backend's module as direct calls.
///
/// Why not a reference to the loop typed `any LoopBackend`: the loop must not keep itself
/// alive, and a call through an `unowned` or `unowned(unsafe)` existential retains and
/// releases the loop around every call (+500 instructions per epoll ping-pong roundtrip,
/// callgrind). Why not a forwarding class per backend (the previous design): each backend
/// module wrote the same forwarding methods again. Why not a generic initializer here that
/// builds the closures from the `LoopBackend` conformance: Swift 6.3 does not specialize a
/// `package` generic in another module, so its closures called the backend through the
/// protocol witnesses with the type's metadata (+70 instructions per roundtrip, measured;
/// a generic forwarding class cost +200).
package struct BackendHooks {
    let submit: (LoopCore, Completion) -> Void
    let cancel: (LoopCore, _ cancel: Completion, _ target: Completion) -> Void
    let poll: (LoopCore, _ timeout: UInt64?) -> Int32
    let cancelAll: (LoopCore) -> Void
    /// Set when the backend leaves operation deadlines to the core (`DeadlineExpiring`).
    let expire: ((LoopCore, Completion) -> Void)?

    /// The hooks, one per `LoopBackend` requirement (and `DeadlineExpiring.backendExpire`
    /// for a backend that conforms to it, nil for one that keeps deadlines itself).
    package init(
        submit: @escaping (LoopCore, Completion) -> Void,
        cancel: @escaping (LoopCore, _ cancel: Completion, _ target: Completion) -> Void,
        poll: @escaping (LoopCore, _ timeout: UInt64?) -> Int32,
        cancelAll: @escaping (LoopCore) -> Void,
        expire: ((LoopCore, Completion) -> Void)?
    ) {
        self.submit = submit
        self.cancel = cancel
        self.poll = poll
        self.cancelAll = cancelAll
        self.expire = expire
    }
}

/// What a backend implements when it leaves operation deadlines to the core (epoll and
/// poll): the core keeps each active deadline in its timer heap, next to the timers, and
/// calls `backendExpire` when one passes. A backend that keeps deadlines itself (io_uring
/// links a kernel timeout to the operation's SQE) does not conform, and the core never
/// puts an operation's deadline in the heap for it.
package protocol DeadlineExpiring: AnyObject {
    /// The deadline of `target` (an active I/O operation, no result yet) has passed:
    /// withdraw it and complete it with `-ETIMEDOUT`. An operation that can no longer be
    /// withdrawn (a pool thread is running it) completes later with its real result.
    func backendExpire(_ target: Completion)
}
