#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The half of every loop that does not depend on the kernel interface: the run modes,
/// the timer heap, the queue of finished work, activation and cancellation rules.
///
/// Backends subclass it and conform to `LoopBackend` (four package-internal hooks);
/// everything a user calls is `final` here, so the three backends cannot drift apart in semantics, and a `LoopCore`
/// reference is itself the loop chosen at runtime (calls are direct; only the hooks are
/// dynamically dispatched, once per operation or per tick).
///
/// One tick: the backend submits what is queued and waits (no longer than the nearest
/// timer, not at all when work is already finished), the clock is read once, expired
/// timers move to the completed queue, and the callbacks of everything completed so far
/// run in FIFO order. Work completed by those callbacks (a nop, a 0 ms timer) waits for the
/// next tick, so a callback that rearms itself cannot starve I/O.
open class LoopCore: EventLoop {
    // Stored properties on the hot path are `@exclusivity(unchecked)`: Swift's dynamic
    // exclusivity checks on class properties were more than half of the user-space
    // instructions of a ping-pong roundtrip (callgrind: 22,760 per roundtrip on epoll with
    // the checks). The loop never calls user code while it is inside an access to one of
    // these properties (callbacks run after a completion is popped), which is the overlap
    // the checks exist to catch; the conformance suite runs in debug builds either way.
    public final let backend: Backend
    @exclusivity(unchecked)
    package final let timers = TimerHeap()
    @exclusivity(unchecked) @usableFromInline
    package final var completed = CompletionQueue()
    /// Whether finished work waits for its callback (for backends: then they must not
    /// block in the kernel).
    @inlinable package final var hasQueuedCallbacks: Bool { !completed.isEmpty }
    @exclusivity(unchecked)
    public final private(set) var activeCount = 0
    /// Active completions with `keepsLoopAlive == false`: they do not hold `run` open.
    @exclusivity(unchecked)
    private var backgroundCount = 0
    @exclusivity(unchecked)
    public final private(set) var now: LoopInstant
    @exclusivity(unchecked) @usableFromInline
    final var running = false
    /// True while `run` executes (its waits and callbacks). A readiness backend trusts a
    /// registration it kept across a callback only while the loop is still inside `run`.
    /// (Inlinable: the engine reads it on every wait, and a getter call from its module
    /// cost more than the load.)
    @inlinable package final var isRunning: Bool { running }
    @exclusivity(unchecked) @usableFromInline
    final var runCount: UInt64 = 0
    /// How many times `run` has been entered. Between two runs the caller's own code runs,
    /// and may have closed any descriptor with close(2) and reused its number: a readiness
    /// backend trusts a registration it kept idle only within one run (see
    /// `ReadinessLoop.addWaiter`). (Inlinable, like `isRunning`: the engine reads it on
    /// every poll, and an access from its module was a getter call with an exclusivity
    /// check, about 85 instructions per poll.)
    @inlinable package final var runs: UInt64 { runCount }
    @exclusivity(unchecked)
    private var stopRequested = false
    /// Background completions active at the last `cancelAll` whose callbacks have not run.
    @exclusivity(unchecked)
    private var drainingBackground = 0
    /// Incremented by `cancelAll`; each activation records it (`Completion.drainEpoch`).
    @exclusivity(unchecked)
    private var drainEpoch: UInt8 = 0
    /// True while a callback's `.rearm` restarts its operation.
    @exclusivity(unchecked) @usableFromInline
    final var rearming = false
    /// A rearmed operation finished at once (a readiness backend's eager send): see
    /// `takeRearmFinishedAtOnce`.
    @exclusivity(unchecked) @usableFromInline
    package final var rearmFinishedAtOnce = false
    /// The opt-in timing of callbacks (`reportSlowCallbacks`, SlowCallbacks.swift); nil, the
    /// default, costs one predictable branch per callback.
    @exclusivity(unchecked)
    final var slowCallbacks: SlowCallbackWatch?

    /// Whether, since the last call, an operation restarted by `.rearm` finished at once,
    /// without waiting. A readiness backend then must not skip its next zero-timeout
    /// wait: an operation rearmed as fast as it completes (a UDP sender) would otherwise
    /// run on every tick while readiness, and so every receive, was looked at on every
    /// other one (udp_pummel on epoll: half the datagrams dropped, issue 11).
    @inlinable
    package final func takeRearmFinishedAtOnce() -> Bool {
        let r = rearmFinishedAtOnce
        rearmFinishedAtOnce = false
        return r
    }

    /// `.work` in flight and the inbox its results come back through (see `LoopWork`);
    /// created by the first `.work` the loop starts.
    final var work: LoopWork?

    /// The threads file-system operations run on when the backend does not run them in the
    /// kernel (epoll and poll always, io_uring for an opcode its kernel lacks): two, started
    /// on first use, so a loop that never touches the file system starts none. Shut down
    /// with the loop. Package-visible so that tests can occupy its threads (to cancel an
    /// operation before it starts).
    package final var filePool: WorkPool {
        if let p = filePoolStorage { return p }
        // Two threads cannot be refused (`WorkPool.init` throws only for fewer than one).
        let p = try! WorkPool(threads: 2, name: "ev-file")
        filePoolStorage = p
        return p
    }
    private var filePoolStorage: WorkPool?

    /// The backend's hooks (see `BackendHooks`): immutable, capturing nothing, each called
    /// with `self`, so a call costs no reference counting.
    private let hooks: BackendHooks

    /// True when descriptors used with this loop work best in blocking mode (io_uring
    /// waits inside the kernel); false for readiness backends, which need O_NONBLOCK.
    public final let prefersBlockingDescriptors: Bool

    /// Whether the backend may finish an operation while it is being started, so that
    /// `addTakingImmediateResult` can return a result: the readiness backends try writes,
    /// sends, shutdowns and closes at once, and reads and accepts after one that suggested
    /// more was queued. False for io_uring, where an operation finishes in the kernel after
    /// the next submit; EvAsync then does not look for immediate results at all.
    package final let triesOperationsAtOnce: Bool

    /// For backends: a subclass that conforms to `LoopBackend` passes the hooks that call
    /// it (see `BackendHooks`); `backend` names the kernel interface it implements.
    package init(backend: Backend, prefersBlockingDescriptors: Bool, triesOperationsAtOnce: Bool,
                 hooks: BackendHooks) {
        self.backend = backend
        self.prefersBlockingDescriptors = prefersBlockingDescriptors
        self.triesOperationsAtOnce = triesOperationsAtOnce
        self.now = .now()
        self.hooks = hooks
    }

    // MARK: Public API

    public final func updateNow() { now = .now() }

    public final func stop() { stopRequested = true }

    public final func add(_ completion: Completion) throws(EvError) {
        guard completion.state == .dead else { throw .completionActive }
        _ = Unmanaged.passRetained(completion)   // balanced in dispatchCompleted
        activate(completion)
        start(completion)
    }

    /// `add`, except that an operation which finishes while it is being started comes back
    /// here as its raw result (a count, a descriptor or a negated errno) instead of through
    /// its callback on a later tick; nil when it is in flight, and its callback then runs as
    /// usual. For EvAsync's awaits (`AwaitSlot`): a task whose send went out at once goes
    /// on without suspending and without a callback, resume and job, on the same tick
    /// (callgrind, epoll async ping-pong: 15,042 to 11,223 user-space instructions per
    /// roundtrip, two such sends in each; BENCHMARKS.md "Where an await's instructions go").
    ///
    /// What finishes at once is the backend's business: the readiness backends (epoll,
    /// poll) try writes, sends, shutdowns and closes before they wait, and reads and accepts
    /// after one that suggested more was queued (`triesOperationsAtOnce`); io_uring finishes
    /// nothing inside `add` but a request it refuses before it reaches the kernel (a path
    /// with a NUL byte). The core's own kinds
    /// (`.nop`, `.timer`, `.cancel`, `.work`) are always delivered through the callback:
    /// an awaited nop or due timer is how a task waits for the next tick.
    ///
    /// The result is taken back only when it is the one callback the start queued (a start
    /// that also finished other completions, as a close ending waiters does, delivers them
    /// all in order, this one included, through their callbacks). Taken back, the
    /// completion is dead again, as after a callback that returned `.disarm`, and no
    /// callback runs for that activation.
    package final func addTakingImmediateResult(_ completion: Completion) throws(EvError) -> Int? {
        guard completion.state == .dead else { throw .completionActive }
        switch completion.kind {
        case .nop, .timer, .cancel, .work:
            try add(completion)
            return nil
        default:
            break
        }
        let tailBefore = completed._tail
        _ = Unmanaged.passRetained(completion)   // dropped below, or in dispatchCompleted
        activate(completion)
        start(completion)
        guard completion.resultReady, completed.removeLast(completion, after: tailBefore) else { return nil }
        // Back to dead, as `dispatch` leaves it for a callback that returns `.disarm`.
        deactivate(completion)
        Unmanaged.passUnretained(completion).release()
        return completion.rawResult
    }

    public final func run(_ mode: RunMode) throws(EvError) {
        if running { throw .nestedRun }
        running = true
        runCount &+= 1
        stopRequested = false
        defer { running = false }
        while !stopRequested {
            // Nothing in flight that holds the loop open, and nothing left to deliver.
            // Background completions that `cancelAll` cancelled count until their callbacks
            // have run (`drainingBackground`): io_uring reports each cancellation later, as
            // a completion of its own, and a loop released before then would let the
            // kernel write into freed memory. Background work started since does not.
            if activeCount == backgroundCount && drainingBackground == 0 && completed.isEmpty { return }
            let timeout: UInt64?
            if mode == .noWait || !completed.isEmpty {
                timeout = 0
            } else if !timers.isEmpty, let next = timers.minDeadline {
                // (The emptiness test first: like `expireTimers` below, a call into the
                // heap on every wait with no timer cost ~10 instructions.)
                timeout = next > now.nanoseconds ? next - now.nanoseconds : 0
            } else {
                timeout = nil
            }
            let failed = hooks.poll(self, timeout)
            if failed != 0 { throw EvError(errno: failed) }
            updateNow()
            // Checked here: a call into the heap on every tick with no timer cost ~24
            // instructions (callgrind, epoll ping-pong).
            if !timers.isEmpty { expireTimers() }
            let delivered = dispatchCompleted()
            switch mode {
            case .noWait: return
            case .once: if delivered > 0 { return }
            case .untilDone: continue
            }
        }
    }

    public final func resetTimer(_ completion: Completion, deadline: LoopInstant) throws(EvError) {
        if completion.state == .dead {
            completion.operation = .timer(deadline: deadline)
            try add(completion)
            return
        }
        guard completion.kind == .timer else { throw .invalidArgument }
        // Cancelled (by a cancel that has reported, or will report, success, or by
        // cancelAll) and waiting for its callback: the cancel has won, and the timer is left
        // as it is. Moving it would withdraw the cancellation, and the cancel's report would
        // be false: the timer fired later with .success (issue 16, found by the
        // differential tester).
        if !completion.isTimerPending && completion.resultReady && completion.rawResult != 0 { throw .canceled }
        completion.setTimerDeadline(deadline)
        if completion.isTimerPending {
            timers.update(completion, deadline: deadline.nanoseconds)
        } else if completion.resultReady, completed.remove(completion) {
            // It expired this tick but its callback has not run: the old arm is withdrawn
            // and only the new deadline will fire.
            completion.resultReady = false
            timers.insert(completion, deadline: deadline.nanoseconds)
        }
    }

    /// Cancels everything in flight; the next `run(.untilDone)` then drains: it returns
    /// only once every completion that was active here has called back, background ones
    /// included, so that the loop can be released.
    public final func cancelAll() {
        // Every completion active now has an older epoch than the one that starts here.
        drainEpoch &+= 1
        drainingBackground = backgroundCount
        // The heap also holds the deadlines of waiting operations (epoll, poll): those
        // only leave it here; the backend cancels the operations themselves.
        for t in timers.removeAll() where t.kind == .timer { complete(t, raw: -Int(ECANCELED)) }
        // Pool work that has not started; running work delivers its real result.
        work?.cancelAll()
        hooks.cancelAll(self)
    }

    /// Where this loop runs positional reads and writes of `file` when it is open for
    /// direct I/O (`File.OpenOptions.direct`), and why (see `DirectIOPath`). The readiness
    /// backends (epoll, poll) answer `.pool`: they have no asynchronous file I/O, so every
    /// read and write of a regular file runs on their thread pool; io_uring probes the
    /// file's device for polled I/O (`UringLoop.directIOPath(for:)`).
    open func directIOPath(for file: File) -> DirectIOPath {
        .pool(reason: "\(backend) has no asynchronous file I/O: reads and writes of regular files, O_DIRECT or not, run on the loop's thread pool")
    }

    // MARK: Shared machinery for backends

    /// Gives a `.close` that waited for the file pool (`closeWaitsForFilePool`) back to
    /// the backend.
    final func resubmitDeferredClose(_ c: Completion) {
        c.runsOnFilePool = false
        hooks.submit(self, c)
    }

    /// Records the raw result of an active completion (a count or descriptor, or -errno)
    /// and queues its callback for this or the next tick. Never calls back directly.
    // Inlinable and always inlined: every backend (another module) calls it once per
    // operation, and each call across modules was a call and a frame around a body of
    // about 30 instructions (`@inlinable` alone: the optimizer still called it). Its rare
    // path (a deadline to withdraw) stays out of line.
    @inlinable @inline(__always)
    package final func complete(_ c: Completion, raw: Int) {
        precondition(c.state == .active && !c.resultReady, "EvLoop: completing a completion that is not in flight")
        c.rawResult = raw
        c.resultReady = true
        // An operation that finished before its deadline leaves the heap (epoll, poll).
        // Timers have left it already, so this is one compare on the hot path.
        if c.heapIndex != -1 { withdrawDeadline(c) }
        if rearming { rearmFinishedAtOnce = true }
        completed.push(c)
    }

    /// `complete`'s rare path, out of line: the heap gives up `c`'s deadline.
    @usableFromInline
    final func withdrawDeadline(_ c: Completion) { timers.remove(c) }

    // Inlined into its two callers (`add` and a `.rearm`): one call fewer per operation.
    @inline(__always)
    private func activate(_ c: Completion) {
        c.state = .active
        c.resultReady = false
        c.generation &+= 1
        c._flags &= ~(Completion.deadlineActiveFlag | Completion.filePoolFlag)
        activeCount += 1
        c.activatedInBackground = !c.keepsLoopAlive
        if c.activatedInBackground {
            backgroundCount += 1
            c.drainEpoch = drainEpoch
        }
    }

    /// Ends an activation whose result has been taken (its callback is about to run, or
    /// `addTakingImmediateResult` returns it): dead, and counted out. Undoes `activate`.
    @inline(__always)
    private func deactivate(_ c: Completion) {
        c.resultReady = false
        c.state = .dead
        activeCount -= 1
        if c.activatedInBackground {
            backgroundCount -= 1
            if drainingBackground > 0 && c.drainEpoch != drainEpoch { drainingBackground -= 1 }
        }
    }

    // Inlined into its two callers (`add` and a `.rearm`), like `activate`.
    @inline(__always)
    private func start(_ c: Completion) {
        switch c.kind {
        case .nop:
            complete(c, raw: 0)
        case .timer:
            timers.insert(c, deadline: c.deadlineNanoseconds)
        case .cancel:
            startCancel(c, target: c.cancelTarget!)
        case .work:
            startWork(c)
        default:
            if c.hasDeadline, let deadline = c.startDeadline(now: now.nanoseconds) {
                if hooks.expire != nil {
                    // Kept in the heap; `expireTimers` hands it to the backend to withdraw.
                    timers.insert(c, deadline: deadline)
                } else {
                    // The backend links a kernel timeout to the operation (io_uring).
                    c.storeLinkTimeout(deadline)
                }
            }
            hooks.submit(self, c)
        }
    }

    private func startCancel(_ c: Completion, target: Completion) {
        if target === c {
            complete(c, raw: -Int(EvError.cancelOfCancelCode))
            return
        }
        if target.kind == .cancel, target.state == .active {
            complete(c, raw: -Int(EvError.cancelOfCancelCode))
            return
        }
        // A dead target, or one that has finished and waits for its callback: nothing to
        // cancel. The target's own state decides this, never the cancel's (libxev#230).
        guard target.state == .active, !target.resultReady else {
            complete(c, raw: -Int(ENOENT))
            return
        }
        c.cancelTargetGeneration = target.generation
        switch target.kind {
        case .timer:
            if timers.remove(target) {
                complete(target, raw: -Int(ECANCELED))
                complete(c, raw: 0)
            } else {
                complete(c, raw: -Int(ENOENT))
            }
        case .nop:
            complete(c, raw: -Int(ENOENT))
        case .work:
            cancelWork(c, target: target)
        default:
            // A file-system operation on the file pool is the core's, like `.work`.
            if target.runsOnFilePool {
                cancelWork(c, target: target)
            } else {
                hooks.cancel(self, c, target)
            }
        }
    }

    private func expireTimers() {
        let t = now.nanoseconds
        while let c = timers.popExpired(now: t) {
            if c.kind == .timer {
                complete(c, raw: 0)
            } else if c.kind == .work {
                // Pool work keeps its deadline here on every backend (the core runs it).
                expireWork(c)
            } else {
                // An operation's deadline (only backends that keep deadlines in the heap
                // put one there): it completes with -ETIMEDOUT unless it can no longer
                // be withdrawn, and then reports its real result (see `Deadline`).
                hooks.expire.unsafelyUnwrapped(self, c)
            }
        }
    }

    /// Runs the callbacks of everything completed before this call; returns how many ran.
    private func dispatchCompleted() -> Int {
        var remaining = completed.count
        var delivered = 0
        // Unretained: the retain `add` took keeps each completion alive while its callback
        // runs, and is dropped only after (a `Completion` value here cost a retain and a
        // release per callback).
        while remaining > 0, let u = completed.popUnretained() {
            remaining -= 1
            delivered += 1
            if u._withUnsafeGuaranteedRef({ dispatch($0) }) == .disarm {
                u.release()   // the retain taken by `add`
            }
            if stopRequested { break }
        }
        return delivered
    }

    /// Runs one completed operation's callback and rearms it if it asks; returns what it
    /// asked (on `.disarm` the caller drops the activation's retain).
    @inline(__always)
    private func dispatch(_ c: Completion) -> CallbackAction {
        let result = c.makeResult(raw: c.rawResult)
        deactivate(c)
        let action = slowCallbacks == nil ? c.callBorrowedCallback(result) : slowCallbacks.unsafelyUnwrapped.run(c, result)
        if action == .rearm {
            precondition(c.state == .dead,
                         "EvLoop: a callback returned .rearm for a completion it had already added again")
            // The retain taken by `add` carries over to the new activation.
            activate(c)
            rearming = true
            start(c)
            rearming = false
        }
        return action
    }

    deinit {
        // Tearing down a loop with work in flight would let the kernel write into freed
        // buffers (io_uring) or leak the loop's references. Drain first:
        // `cancelAll()` then `run(.untilDone)`.
        // A precondition, not an assert: in a release build the alternative is the kernel
        // writing into freed memory later (issue 15).
        precondition(activeCount == 0, "EvLoop: loop deinitialized with \(activeCount) active completions; cancelAll() and run(.untilDone) first")
    }
}
