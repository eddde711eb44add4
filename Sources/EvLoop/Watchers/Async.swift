import Synchronization

/// The thread-safe half of an `Async`: an eventfd that any thread may signal.
///
/// Why a separate type: a loop and its completions belong to one thread (not `Sendable`),
/// and the one thing other threads may touch is this notifier (PITFALLS G2, libxev#173).
/// Keeping it a small immutable `Sendable` class that holds nothing but the descriptor
/// lets Swift 6 check that claim: hand the notifier, never the `Async` or the loop, to
/// other threads.
///
/// Ownership: the notifier creates its eventfd and closes it in `deinit`, when the last
/// reference goes away, so a thread that still holds the notifier can never write to a
/// closed (or reused) descriptor number. Do not close `fd` yourself.
///
/// One notifier, one wait at a time: any number of threads may notify, but only one wait
/// (`Async.wait`, through any `Async` wrapping the notifier, or the awaitable `wait(deadline:on:)`)
/// may be armed on it; another is refused with `.notifierInUse` (see `Async` for why).
///
/// ```swift
/// let async = try Async()
/// let notifier = async.notifier            // Sendable: give this to the other thread
/// startWorkerThread { notifier.notify() }  // safe from any thread
/// ```
///
/// Every `notify()` writes the eventfd (as libxev's does); the callbacks still coalesce: several
/// notifications before the waiter runs give one callback. Why not coalesce before the
/// system call as well, with a "pending" flag that lets only the first notify write (libuv's
/// `uv_async_send`)? It was built and measured (issue 11, BENCHMARKS.md "Async notifier"):
/// with one write per callback, that write lands just after the waiter has read the
/// counter, and a fast loop often reaches its kernel wait first and sleeps, then is woken
/// (and must win a CPU back) once per callback. On epoll, with spinning notifiers, runs fell
/// into a mode where the loop slept on 35-75 % of its callbacks and served 15-50k callbacks/s
/// against 100-500k with a write per notify (async_pummel_2/4/8, same build otherwise, rounds
/// interleaved). A stream of writes keeps the eventfd readable while notifiers keep
/// notifying, so the loop does not sleep between them. The price is a write(2) per
/// `notify()`: code that notifies in bursts should coalesce at its own level, as
/// `LoopExecutor` does with its wake-pending flag.
public final class AsyncNotifier: Sendable {
    /// The eventfd (close-on-exec, non-blocking). Owned by the notifier: do not close it,
    /// and do not read it yourself (poll it if you must): only the notifier's own wait
    /// consumes it, and a counter read behind its back is a notification the wait never sees.
    public var fd: Int32 { eventFD.descriptor }
    private let eventFD: EventFD

    /// Whether a wait is armed on the notifier. Atomic, not loop state: the notifier is
    /// `Sendable`, so waits on two loops on two threads may race for it. `notify()` never
    /// touches it; it changes only when a wait is armed and when its callback runs.
    private let waitArmed = Atomic<Bool>(false)

    /// Claims the notifier for one wait: false when a wait is armed already.
    package func claimWait() -> Bool {
        waitArmed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    /// Ends the claim taken by `claimWait`.
    package func releaseWait() {
        waitArmed.store(false, ordering: .releasing)
    }

    /// Creates the eventfd (EFD_CLOEXEC | EFD_NONBLOCK).
    public init() throws(EvError) {
        eventFD = try EventFD()
    }

    /// Wakes the loop waiting on this notifier. Safe from any thread, any number of times;
    /// notifications that arrive before the waiter runs coalesce into one callback, and a
    /// notification after a callback began always causes another callback: the waiter reads
    /// (and so resets) the counter before the callback, so a later write makes it readable
    /// again. One write(2) per call (see the type's comment for why).
    @inline(__always)
    public func notify() {
        eventFD.signal()
    }

    /// Reads (and so resets) the counter: true if a notification was pending, false when
    /// there was none (EAGAIN: a spurious wake-up, PITFALLS D2; the caller polls again; see
    /// `EventFD.drain`). Called on the loop thread after a poll reported readable, before the
    /// callback, so that every notification made after it gives another callback.
    package func consume() -> Result<Bool, EvError> {
        eventFD.drain()
    }

    /// The notifier owns its eventfd and closes it here, when the last reference goes.
    deinit { eventFD.close() }
}

/// A cross-thread wake-up for an event loop: other threads call `notifier.notify()`, and
/// the loop runs the callback given to `wait`, on its own thread.
///
/// Why it is built this way (PITFALLS D1, D2, G1):
/// - It waits with the `.poll(fd, .readable)` operation and then reads the eventfd with a
///   non-blocking read(2) on the loop thread; never with an io_uring read of the eventfd,
///   which Linux 6.15.4 broke (anon inodes looked like regular files and the read hung).
/// - Notifications coalesce: several `notify()` calls before the callback give one
///   callback (each writes the eventfd; see `AsyncNotifier` for why). No wake-up is lost:
///   the counter is reset *before* the callback runs, so a `notify()` that happens after
///   the callback started makes the eventfd readable again and the next wait fires. A read that finds nothing (EAGAIN) is a spurious wake-up:
///   the wait is re-armed without calling the callback.
/// - Return `.rearm` from the callback to keep listening (the usual case). Set the
///   completion's `keepsLoopAlive` to false if the wait alone should not keep
///   `run(.untilDone)` running.
/// - **One wait per notifier at a time.** A second `wait` while one is armed -- on this
///   `Async`, on another `Async` wrapping the same notifier, or through the awaitable
///   `wait(on:)` -- throws `.notifierInUse`. A wait ends when its callback starts, so the
///   callback may arm a new wait on the notifier (then it must return `.disarm`; returning
///   `.rearm` as well would make two waits, and stops with a precondition failure). Why
///   (issue 16): two waits on one eventfd both wake for one notification and only the
///   first read gets it; the other's poll has completed, so a cancel from the first's
///   callback reports `.notFound`, and the other, finding nothing to read, can only wait
///   again -- its callback never ran and it stayed active, so `run(.untilDone)` never
///   returned. With one wait per notifier every wait gets exactly one callback per
///   activation and a cancel's outcome agrees with it; one wait whose callback fans out
///   does whatever several waits would.
///
/// Not `Sendable`: the loop side belongs to the loop thread. Only `notifier` crosses threads.
///
/// Ownership: an `Async` opens no descriptor of its own; its `notifier` owns the eventfd and
/// closes it when the last reference to the notifier goes.
///
/// ```swift
/// let async = try Async()
/// let wakeUp = Completion()
/// try async.wait(loop: loop, completion: wakeUp) { _, result in
///     guard case .success = result else { return .disarm }   // cancelled
///     drainWorkQueue()       // whatever the other threads posted
///     return .rearm
/// }
/// let notifier = async.notifier
/// startWorkerThread { postWork(); notifier.notify() }   // any thread
/// ```
public final class Async {
    /// The callback: `.success` after one or more notifications, `.failure(.canceled)` when
    /// the wait was cancelled.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction

    /// The thread-safe handle: give this to other threads.
    public let notifier: AsyncNotifier

    /// Creates a notifier and its loop side.
    public init() throws(EvError) {
        notifier = try AsyncNotifier()
    }

    /// Wraps an existing notifier: several `Async`s may take turns waiting on it, one
    /// wait at a time (a second armed wait is refused with `.notifierInUse`).
    public init(notifier: AsyncNotifier) {
        self.notifier = notifier
    }

    /// Notifies from the loop thread itself (same as `notifier.notify()`).
    public func notify() { notifier.notify() }

    /// Arms `completion` to wait for the next notification (one that already happened and
    /// was not consumed counts: it fires on the next tick).
    ///
    /// Throws `.completionActive` if `completion` is still active (it is left untouched) and
    /// `.notifierInUse` if the notifier already has a wait armed.
    public func wait(loop: some EventLoop, completion: Completion,
                     callback: @escaping VoidCallback) throws(EvError) {
        // Checked before anything changes: an active completion keeps its operation and
        // callback, and a refused wait leaves the armed one's claim alone.
        guard completion.state == .dead else { throw .completionActive }
        guard notifier.claimWait() else { throw .notifierInUse }
        completion.operation = .poll(fd: notifier.fd, events: .readable)
        completion.callback = { [notifier] c, result in
            let outcome: Result<Void, EvError>
            switch result {
            case .poll(.success):
                switch notifier.consume() {
                case .success(true): outcome = .success(())
                // Spurious readiness (PITFALLS D2, or a reader outside the loop): the same
                // wait goes on, still holding the claim, and the callback does not run.
                // (A cancel issued in the very tick of a spurious wake-up finds the poll
                // finished and reports .notFound; the wait then goes on until the next
                // cancel. Only a foreign reader or the D2 kernel bug can cause that tick.)
                case .success(false): return .rearm
                case .failure(let e): outcome = .failure(e)
                }
            case .poll(.failure(let e)):
                outcome = .failure(e)
            default:
                outcome = .failure(.invalidArgument)
            }
            // The wait ends as its callback starts, so the callback may arm a new one.
            notifier.releaseWait()
            let action = callback(c, outcome)
            if action == .rearm {
                precondition(notifier.claimWait(),
                             "EvLoop: an Async callback armed another wait on its notifier and returned .rearm; one notifier, one wait at a time")
            }
            return action
        }
        do {
            try loop.add(completion)
        } catch {
            notifier.releaseWait()
            throw error
        }
    }
}

/// The thread-safe handle of a `LoopStopper`: `requestStop()` may be called from any thread.
///
/// Why a type of its own: it is the only part of a stopper that may cross threads, and as
/// an immutable `Sendable` class holding just the notifier, Swift 6 checks that nothing
/// else (the loop, the stopper's completion) goes with it.
///
/// Ownership: holds a reference to the stopper's notifier, which owns and closes the eventfd.
///
/// ```swift
/// let requester = try LoopStopper(loop: loop).requester
/// startWorkerThread { requester.requestStop() }   // any thread
/// ```
public final class StopRequester: Sendable {
    let notifier: AsyncNotifier

    init(notifier: AsyncNotifier) { self.notifier = notifier }

    /// Makes the loop's current `run` return after the callbacks of the tick in which the
    /// request is seen (or, if the loop is not running, its next `run` after one tick).
    public func requestStop() { notifier.notify() }
}

/// Stops a loop from another thread (PITFALLS G2, libxev#173).
///
/// Ownership: the stopper's eventfd belongs to its notifier (shared with `requester`), which
/// closes it when the last of them goes away.
///
/// Why: `EventLoop.stop()` only sets a flag that the loop thread reads, so calling it from
/// another thread is a data race and does not wake a loop blocked in the kernel. The
/// stopper is an `Async` whose callback calls `stop()` on the loop thread; other threads
/// hold only the `Sendable` `requester`.
///
/// The stopper's wait does not keep `run(.untilDone)` alive on its own
/// (`keepsLoopAlive = false`) and stays armed across requests, so every request stops the
/// run it lands in. `cancelAll()` ends it (its callback then sees `.canceled`); `start`
/// arms it again.
///
/// ```swift
/// let stopper = try LoopStopper(loop: loop)
/// let requester = stopper.requester                 // Sendable
/// startWorkerThread { sleep(1); requester.requestStop() }   // any thread
/// try loop.run(.untilDone)                          // returns about a second later
/// ```
public final class LoopStopper {
    /// Give this to other threads.
    public let requester: StopRequester
    /// The completion of the stopper's wait (caller-visible so it can be cancelled).
    public let completion = Completion()
    private let async: Async
    /// How many stop requests the loop has acted on (several coalesced requests count once).
    public private(set) var stops = 0

    /// Creates the stopper and arms it on `loop`.
    public init(loop: some EventLoop) throws(EvError) {
        async = try Async()
        requester = StopRequester(notifier: async.notifier)
        completion.keepsLoopAlive = false
        try start(loop: loop)
    }

    /// Arms the stopper (again, after a `cancelAll`). Throws `.completionActive` if armed.
    public func start<L: EventLoop>(loop: L) throws(EvError) {
        // Unowned: the callback only ever runs inside `loop.run`, so the loop is alive, and
        // a strong capture would make loop -> completion -> callback -> loop a cycle.
        try async.wait(loop: loop, completion: completion) { [unowned loop, weak self] _, result in
            guard case .success = result else { return .disarm }
            self?.stops += 1
            loop.stop()
            return .rearm
        }
    }
}
