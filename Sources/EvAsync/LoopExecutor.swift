#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys
import EvLoop
import Synchronization

/// Runs Swift Concurrency jobs on an event loop's thread: the loop as a `TaskExecutor`, and
/// (through `asUnownedSerialExecutor()`) as the `SerialExecutor` of actors bound to it.
///
/// **Why.** A callback-based loop and async/await meet at two points: code awaiting an
/// operation must be resumed when the operation's callback runs, and it should be resumed
/// *on the loop thread*, right there, without handing the task to the global thread pool
/// and back (a round trip through the pool costs 11–12 µs on this project's machines; a
/// resume on the loop costs well under 1 µs). So the loop itself becomes the executor:
///
/// - `withTaskExecutorPreference(executor) { ... }`, `Task(executorPreference: executor)`
///   and the child tasks of either run their nonisolated code on the loop thread;
/// - an actor whose `unownedExecutor` is `executor.asUnownedSerialExecutor()` runs on the
///   loop thread, and loop callbacks may touch its state with `assumeIsolated`
///   (`checkIsolated()` accepts any code running on the loop thread, because every job of
///   this executor runs there, one at a time).
///
/// **Two faces, two objects.** The executor itself is the task executor; the serial executor
/// is a second object it owns (what `asUnownedSerialExecutor()` returns). Both put their
/// jobs on the same queue and run them on the loop thread, but each runs its own jobs as
/// its own kind: a task executor's job runs with no serial executor, so that a task's
/// nonisolated code, resumed by a completion, carries on in place through its next
/// `nonisolated(nonsending)` call instead of being enqueued again. (With one object for
/// both, every job had to run isolated to the loop, and the runtime then saw each step
/// of nonisolated code as a hop off an actor: about five jobs per await instead of one.)
///
/// **How jobs reach the loop.** A job enqueued *on the loop thread* (a task resumed by a
/// completion callback, a child task created by loop code) goes on a local FIFO: no lock,
/// no atomic, no system call. It runs either right away, when it was enqueued from one of
/// this module's completion callbacks (the callback drains the queue before it returns),
/// or from a `.nop` completion added to the loop, which the loop delivers on its next tick.
/// A job enqueued *from another thread* goes into a locked queue, and the loop is woken
/// through an eventfd that a background `.poll` completion (`keepsLoopAlive == false`)
/// waits on; wake-ups coalesce: an atomic "wake pending" flag makes one eventfd write serve
/// every job enqueued before the loop has looked, so a burst of remote jobs costs one
/// write and one read. (The eventfd is polled, then read with read(2) on a non-blocking
/// descriptor, never read through io_uring: Linux 6.15.4 made io_uring reads of an
/// eventfd block forever.)
///
/// **What keeps `run(.untilDone)` going.** Queued jobs do (their `.nop` is an ordinary,
/// loop-holding completion), and so do tasks suspended on this module's awaitable
/// operations, because the completions behind those are active. A task suspended on
/// something *outside* the loop (another actor, the global pool, a continuation another
/// thread resumes) does not: the remote wake-up poll is a background completion, so
/// `run(.untilDone)` can return while such a task is still waiting, and the task continues
/// the next time the loop runs. `run(_:)` on the executor is the way to keep the loop
/// running until a piece of async code has finished, whatever it waits for.
///
/// **What does not run on the loop**: code isolated to `@MainActor` (top-level code in
/// main.swift included), `Task.sleep` (a global-executor timer: the task resumes on the loop
/// through the cross-thread path, and the sleep neither holds the loop nor is cancelled
/// through it; use `sleep(for:)`), actors whose executor is not this one, and, the one
/// that fails silently, **a plain `Task {}` or `Task.detached {}` without
/// `executorPreference`**: written in main.swift's top-level code it is a main-actor task,
/// which never runs while the main thread runs the loop; written in a task on the loop it
/// does not inherit the preference (only child tasks do) and runs on the global pool.
/// Write `Task(executorPreference: executor) { ... }`, or use a child task. (The executor
/// cannot warn about the first case: such a task never reaches it.) docs/ASYNC.md has the
/// details and how to keep a program on the loop.
///
/// **Fairness.** Every job runs on the loop thread, and the loop cannot interrupt one:
/// long work should `yield()` now and then, and `reportSlowJobs(longerThan:_:)` names the
/// jobs that held the thread too long.
///
/// **Binding.** A loop runs on one thread; create its executor on that thread (the thread
/// that will call `run`). The executor records it, and every entry point that touches the
/// loop checks it with a precondition. Create one executor per loop. The executor is
/// `Sendable`, the loop is not: code running elsewhere hands work to the loop through the
/// executor, never by calling the loop.
///
/// **Teardown.** `shutdown()` (on the loop thread) withdraws the wake-up poll and closes the
/// eventfd through the loop, so `shutdown()` then `run(.untilDone)` leaves no completion
/// active and no descriptor open. `loop.cancelAll()` also withdraws the poll, so that
/// `cancelAll()` + `run(.untilDone)` drains the loop as a loop's deinit requires, even while
/// tasks react to the cancellation with more awaits (closing their sockets). The poll stays
/// parked until `run(_:)` or `resume()` re-arms it; jobs and task cancellations coming from
/// other threads meanwhile wait in the queue, and none is lost. Local jobs and awaited
/// operations keep working.
///
/// **Ownership.** The executor creates its eventfd and is its only owner: `shutdown()`
/// closes it through the loop's `.close`, and `deinit` closes it directly if `shutdown()`
/// never did. It never closes the loop, which the caller owns.
public final class LoopExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: everything below the "loop thread only" mark is touched only on
    // the thread that created the executor (checked by `preconditionOnLoopThread`); the
    // fields above it are immutable, atomic or locked.

    /// The thread the executor was created on: the loop's thread.
    private let owner: pthread_t
    /// The kernel thread id of that thread (for diagnostics and tests).
    public let loopThreadID: Int32
    /// The eventfd remote threads write to; non-blocking and close-on-exec. Owned by the
    /// executor (see "Teardown").
    private let eventFD: EventFD
    /// True from the first remote enqueue after the loop last looked, until it looks again.
    private let wakePending = Atomic<Bool>(false)
    /// Work handed over by other threads, and whether the eventfd may still be written.
    private let remote = Mutex(RemoteQueue())
    /// How many times a remote enqueue wrote the eventfd (for tests of the coalescing).
    private let wakeWrites = Atomic<Int>(0)

    // MARK: loop thread only

    private let _loop: LoopCore
    /// The serial-executor face (see "Two faces, two objects"); made in `init`, never nil after.
    private var serial: LoopSerialExecutor!
    // The properties read on every await are `@exclusivity(unchecked)`: they are touched on
    // the loop thread only, never while another access to them is open, and a checked
    // access costs a runtime call and a thread-local lookup each.
    @exclusivity(unchecked) private var local = JobQueue()
    /// True while jobs run (or are about to be drained by the code that set it): a job
    /// enqueued meanwhile will be picked up by that drain, so no `.nop` is needed.
    @exclusivity(unchecked) private var draining = false
    /// The `.nop` that makes the loop drain `local` on its next tick.
    private let kick = Completion()
    /// The background `.poll` on `eventFD`.
    private let wakePoll = Completion()
    /// The remote queue's contents while they are processed (swapped with `remote`, so
    /// neither side allocates in steady state).
    private var remoteBatch: [RemoteItem] = []
    /// Free operation slots (see `AwaitSlot`), reused so an await allocates nothing: a
    /// list linked through `AwaitSlot.nextFree`, each link holding its slot retained.
    /// (An array cost a uniqueness check on each pop and push, and a capacity check on
    /// each push: about 60 instructions per await.)
    @exclusivity(unchecked) private var freeSlots: Unmanaged<AwaitSlot>?
    @exclusivity(unchecked) private var freeSlotCount = 0
    private var phase = Phase.running
    /// Set when the eventfd's close has been handed to the loop.
    private var closeStarted = false
    /// Completions used by `shutdown()`.
    private var shutdownCompletions: (cancel: Completion, close: Completion)?
    /// The slow-job report, when on (`reportSlowJobs`, SlowJobs.swift); nil, the default,
    /// costs one predictable branch per job.
    @exclusivity(unchecked) var slowJobs: SlowJobWatch?
#if DEBUG
    /// How many jobs the executor has run, in debug builds only: what the test of "one job
    /// per await" counts (release builds do not pay for the count).
    package private(set) var jobsRun = 0
    /// For tests, in debug builds only: called by an await whose operation did not finish
    /// as it started, just before the await installs its cancellation record, so a test can
    /// cancel the task inside that window (`AwaitSlot.perform`). Given the await's completion.
    package var beforeCancellationRecord: ((Completion) -> Void)?
#endif

    /// How many local jobs one drain runs before it lets the loop do I/O (the rest run on
    /// the next tick), so a task that keeps yielding cannot starve the loop's completions.
    static let drainBudget = 1024
    /// How many idle slots the pool keeps.
    static let slotPoolLimit = 1024

    /// How many awaits one job may finish without suspending (an operation that finished
    /// while it was started: `LoopCore.addTakingImmediateResult`); the next await suspends
    /// until its callback, on a later tick. Why a budget: a task whose every send goes out
    /// at once (a fast reader at the other end) would otherwise never give the loop thread
    /// back, and its loop's other connections and timers would wait for it; with the budget
    /// the loop looks at I/O at least once every 64 such awaits (two budgets, when the
    /// readiness backends skip one zero-timeout wait), as it does between callbacks. The
    /// callback form needs none: each send's callback comes on a tick of its own.
    package static let immediateResultBudget = 64
    /// This loop's budget per job: `immediateResultBudget`, or 0 on a loop whose backend
    /// never finishes an operation while starting it (io_uring: `triesOperationsAtOnce`),
    /// where looking for an immediate result would only cost each await a look at the
    /// task's cancellation flag (see `AwaitSlot.perform`).
    private let immediateResultsPerJob: Int
    /// What is left of the running job's budget (reset as each job starts).
    @exclusivity(unchecked) private var immediateResultsLeft = 0

    /// Whether the await being started may take its operation's result at once; counts it
    /// against the running job's budget (an await whose operation does not finish at once
    /// suspends, which ends the job, so counting every try is counting every result taken).
    @inline(__always)
    func mayTakeImmediateResult() -> Bool {
        guard immediateResultsLeft > 0 else { return false }
        immediateResultsLeft &-= 1
        return true
    }

    private enum Phase {
        /// The wake-up poll is armed (or is being re-armed by its own callback).
        case running
        /// The poll was cancelled by `cancelAll()`; `run(_:)` or `resume()` re-arms it.
        case parked
        /// `shutdown()` was called; the eventfd is being closed through the loop.
        case shuttingDown
        /// The eventfd is closed; remote jobs can no longer wake the loop.
        case closed
    }

    /// The locked half of the hand-off.
    struct RemoteQueue: Sendable {
        var items: [RemoteItem] = []
        /// Set (on the loop thread) before the eventfd is closed: from then on no enqueue
        /// writes to the descriptor number, which the kernel may hand to someone else.
        var closed = false
    }

    /// Something another thread hands to the loop.
    enum RemoteItem: Sendable {
        case job(LoopJob)
        /// Cancel the operation a task is awaiting (see `AwaitSlot`).
        case cancel(CancelTicket)
    }

    /// Creates the executor of `loop`. Call it on the thread that runs the loop.
    ///
    /// Arms the background wake-up poll at once (remote threads can enqueue jobs as soon as
    /// they can see the executor). Throws when the eventfd cannot be created (out of
    /// descriptors).
    public init(_ loop: LoopCore) throws(EvError) {
        let eventFD = try EventFD()
        self.eventFD = eventFD
        self.owner = pthread_self()
        self.loopThreadID = cevsys_gettid()
        self._loop = loop
        immediateResultsPerJob = loop.triesOperationsAtOnce ? Self.immediateResultBudget : 0
        kick.operation = .nop
        kick.callback = { c, _ in
            let executor = unsafeDowncast(c.userData.unsafelyUnwrapped, to: LoopExecutor.self)
            c.userData = nil
            executor.drainLocal()
            return .disarm
        }
        wakePoll.operation = .poll(fd: eventFD.descriptor, events: .readable)
        wakePoll.keepsLoopAlive = false
        wakePoll.callback = { c, result in
            unsafeDowncast(c.userData.unsafelyUnwrapped, to: LoopExecutor.self).wakeFired(c, result)
        }
        serial = LoopSerialExecutor(self)
        try armWakePoll()
    }

    deinit {
        // Normally `shutdown()` closed the eventfd through the loop. Otherwise nothing waits
        // on it any more (an armed poll would have kept the executor alive), so a plain
        // close is safe.
        if !closeStarted { eventFD.close() }
        // The pool's retains (see `freeSlots`).
        while let head = freeSlots {
            freeSlots = head.takeUnretainedValue().nextFree
            head.release()
        }
    }

    // MARK: Thread binding

    /// True on the loop's thread.
    @inline(__always)
    public var isOnLoopThread: Bool { pthread_equal(pthread_self(), owner) != 0 }

    /// Stops the program with a clear message when called off the loop thread.
    @inline(__always)
    public func preconditionOnLoopThread(_ what: @autoclosure () -> String = "this operation",
                                         file: StaticString = #fileID, line: UInt = #line) {
        precondition(isOnLoopThread,
                     "EvAsync: \(what()) must run on the loop's thread (thread \(loopThreadID)); it ran on thread \(cevsys_gettid()). Await it from a task with this executor as its preference, or from an actor bound to it.",
                     file: file, line: line)
    }

    /// The loop. Only on the loop thread (the loop is not `Sendable`).
    public var loop: LoopCore {
        preconditionOnLoopThread("LoopExecutor.loop")
        return _loop
    }

    /// The loop, for this module's code that has already checked the thread.
    @inline(__always)
    var loopUnchecked: LoopCore { _loop }

    // MARK: Executor

    /// Called by the Swift runtime (any thread) to schedule a job of a task that prefers
    /// this executor (its nonisolated code) on the loop: on the loop thread onto the
    /// lock-free local queue, from elsewhere through the locked queue and the coalesced
    /// eventfd wake-up.
    public func enqueue(_ job: consuming ExecutorJob) {
        schedule(LoopJob(job: UnownedJob(job), isolated: false))
    }

    /// Queues `job` for the loop thread (either face's enqueue).
    @inline(__always)
    fileprivate func schedule(_ job: LoopJob) {
        if isOnLoopThread {
            local.push(job)
            if !draining { armKick() }
        } else {
            enqueueRemote(.job(job))
        }
    }

    /// The reference an actor returns from `unownedExecutor` to run on this loop: the
    /// executor's serial face (see "Two faces, two objects").
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: serial)
    }

    /// Every job of this executor runs on the loop thread, one at a time, and loop callbacks
    /// run on that thread between jobs: code on the loop thread is isolated to this
    /// executor. Stops the program elsewhere (what the serial face answers the runtime).
    public func checkIsolated() {
        preconditionOnLoopThread("code isolated to this loop's executor")
    }

    /// True on the loop thread (see `checkIsolated()`), false elsewhere.
    public func isIsolatingCurrentContext() -> Bool? {
        isOnLoopThread
    }

    /// Whether `other` drives the same loop (one executor per loop; this only matters if
    /// a program made two).
    fileprivate func drivesSameLoop(as other: LoopExecutor) -> Bool {
        self === other || _loop === other._loop
    }

    // MARK: Running jobs

    @inline(__always)
    private func runJob(_ job: LoopJob) {
#if DEBUG
        jobsRun += 1
#endif
        immediateResultsLeft = immediateResultsPerJob
        if let watch = slowJobs {
            watch.time(job) { runUnwatched($0) }
        } else {
            runUnwatched(job)
        }
    }

    @inline(__always)
    private func runUnwatched(_ job: LoopJob) {
        if job.isolated {
            // An actor's job: isolated to the serial face, and with the task executor too,
            // so that a task moving from the actor to nonisolated code stays on the loop.
            job.job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        } else {
            // A task's nonisolated code: on the task executor only (see "Two faces").
            job.job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// Runs queued local jobs, up to `drainBudget` (jobs they enqueue included); schedules
    /// the rest for the next tick.
    func drainLocal() {
        if draining { return }
        draining = true
        var budget = Self.drainBudget
        while budget > 0, let job = local.pop() {
            runJob(job)
            budget -= 1
        }
        draining = false
        if !local.isEmpty { armKick() }
    }

    /// Runs `body` (which resumes a continuation from a completion callback), then runs the
    /// resumed task at once instead of waiting a tick for a `.nop`: the task continues on
    /// the loop thread in the very callback that completed its operation.
    @inline(__always)
    func resumeInCallback(_ body: () -> Void) {
        if draining {
            body()
            return
        }
        draining = true
        body()
        draining = false
        drainLocal()
    }

    private func armKick() {
        guard kick.state == .dead else { return }
        kick.userData = self
        do {
            try _loop.add(kick)
        } catch {
            preconditionFailure("EvAsync: could not add the executor's drain completion: \(error)")
        }
    }

    // MARK: Remote hand-off

    private func enqueueRemote(_ item: RemoteItem) {
        remote.withLock { queue in
            queue.items.append(item)
            // One write per batch: only the enqueue that finds no wake-up pending writes.
            // The write happens under the lock so that `closeEventFD` (which sets `closed`
            // under it) can never race with a write to a descriptor it is closing. After
            // `shutdown()` the item stays queued: nothing will run it (see `shutdown()`).
            guard !queue.closed, !wakePending.exchange(true, ordering: .sequentiallyConsistent) else { return }
            wakeWrites.add(1, ordering: .relaxed)
            // (EAGAIN, the counter at its maximum, cannot happen with one write per
            // wake-up, and would mean the eventfd is readable anyway.)
            eventFD.signal()
        }
    }

    private func armWakePoll() throws(EvError) {
        wakePoll.userData = self
        do {
            try _loop.add(wakePoll)
        } catch {
            wakePoll.userData = nil
            throw error
        }
        phase = .running
    }

    /// Re-arms the wake-up poll after `loop.cancelAll()` withdrew it; a no-op while the poll
    /// is armed or after `shutdown()`.
    @inline(__always)
    func ensureAwake() {
        if phase == .parked, wakePoll.state == .dead {
            try? armWakePoll()
        }
    }

    /// Re-arms the remote wake-up after `loop.cancelAll()` withdrew it (see the type's
    /// "Teardown"); `run(_:)` does this by itself. Until then, jobs and task cancellations
    /// coming from other threads wait in the queue.
    public func resume() {
        preconditionOnLoopThread("LoopExecutor.resume()")
        ensureAwake()
    }

    private func wakeFired(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        guard case .poll(let outcome) = result else {
            preconditionFailure("EvAsync: unexpected result for the executor's eventfd poll: \(result)")
        }
        switch outcome {
        case .success:
            // Clear the flag before taking the queue: a thread that enqueues after this
            // point writes the eventfd again, so no job can be left without a wake-up.
            wakePending.store(false, ordering: .sequentiallyConsistent)
            // Any outcome is fine: EAGAIN (nothing pending) only means the jobs that
            // caused this wake-up were taken by an earlier look at the queue.
            eventFD.drain()
            processRemote()
            if phase == .running { return .rearm }
            c.userData = nil
            if phase == .shuttingDown { closeEventFD() }
            return .disarm
        case .failure(let error):
            c.userData = nil
            if phase == .shuttingDown {
                closeEventFD()
            } else if error == .canceled {
                phase = .parked
            } else {
                preconditionFailure("EvAsync: the executor's eventfd poll failed: \(error)")
            }
            return .disarm
        }
    }

    private func processRemote() {
        remote.withLock { swap(&$0.items, &remoteBatch) }
        if remoteBatch.isEmpty { return }
        draining = true
        for item in remoteBatch {
            switch item {
            case .job(let job): runJob(job)
            case .cancel(let ticket): ticket.target.cancelOnLoop(ticket.id)
            }
        }
        remoteBatch.removeAll(keepingCapacity: true)
        draining = false
        drainLocal()
    }

    // MARK: Cancellation requests

    /// Asks the loop to cancel the operation `ticket` names; callable from any thread (a
    /// task's cancellation handler runs on whichever thread cancels the task).
    func requestCancel(_ ticket: CancelTicket) {
        if isOnLoopThread {
            ticket.target.cancelOnLoop(ticket.id)
        } else {
            enqueueRemote(.cancel(ticket))
        }
    }

    // MARK: Slots

    @inline(__always)
    func takeSlot() -> AwaitSlot {
        guard let head = freeSlots else { return AwaitSlot(executor: self) }
        let slot = head.takeUnretainedValue()
        freeSlots = slot.nextFree
        slot.nextFree = nil
        freeSlotCount &-= 1
        // The list's retain becomes the caller's reference.
        return head.takeRetainedValue()
    }

    @inline(__always)
    func putSlot(_ slot: AwaitSlot) {
        guard freeSlotCount < Self.slotPoolLimit else { return }
        slot.prepareForReuse()
        slot.nextFree = freeSlots
        freeSlots = Unmanaged.passRetained(slot)
        freeSlotCount &+= 1
    }

    // MARK: Running the loop for async code

    /// Runs the loop on this thread until `body`, started as a task that prefers this
    /// executor, has finished; returns its result or rethrows its error.
    ///
    /// The loop stays up for as long as `body` runs, even while it waits for something that
    /// does not hold the loop open (another thread, another actor): this is how a program
    /// keeps its async code on the loop. Other work (other tasks, completions) is left as it
    /// is when `body` finishes; run the loop again to continue it. Call it on the loop
    /// thread, outside the loop's callbacks and tasks (there it throws `EvError.nestedRun`).
    public func run<T>(_ body: sending @escaping () async throws -> T) throws -> T {
        preconditionOnLoopThread("LoopExecutor.run(_:)")
        // From inside the loop (a callback, or a task on this executor) the loop cannot be
        // run again; refuse before anything is added that would then hold the loop open.
        if _loop.isRunning { throw EvError.nestedRun }
        ensureAwake()
        let box = RunBox<T>()
        // A timer that never fires holds the loop open while `body` runs (the remote wake-up
        // poll alone would not: it is a background completion).
        let hold = Completion(.timer(deadline: .distantFuture))
        try _loop.add(hold)
        Task(executorPreference: self) {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            box.outcome = outcome
            // This runs on the loop thread, inside one of the loop's callbacks (the job
            // runs from a completion's callback or the executor's drain), so it ends the
            // `run(.untilDone)` below after that callback.
            self.loopUnchecked.stop()
        }
        // One `run` for the whole body rather than `run(.once)` per tick: the readiness
        // backends trust a registration kept idle across callbacks only within one run
        // (a new run means the caller's code ran), so returning after every tick cost the
        // async ping-pong on epoll an `epoll_ctl` per receive. The loop returns early only
        // if someone else stops it; then it is run again.
        while !box.finished {
            try _loop.run(.untilDone)
        }
        let cancel = Completion()
        try _loop.cancel(hold, using: cancel)
        while hold.state == .active || cancel.state == .active {
            try _loop.run(.noWait)
        }
        return try box.outcome!.get()
    }

    // MARK: Introspection (tests)

    /// How many eventfd writes remote enqueues have made (one per coalesced batch).
    package var remoteWakeWrites: Int { wakeWrites.load(ordering: .relaxed) }
    /// True once `shutdown()` has closed the eventfd (loop thread only).
    package var isClosed: Bool { phase == .closed }
    /// True while the remote wake-up poll is armed (loop thread only).
    package var isWakeArmed: Bool { wakePoll.state == .active }
    /// Idle operation slots in the pool (loop thread only).
    package var pooledSlots: Int { freeSlotCount }

    // MARK: Teardown

    /// Withdraws the wake-up poll and closes the eventfd through the loop; follow with
    /// `run(.untilDone)` (or any run that delivers the callbacks). Call it on the loop
    /// thread once no task will be scheduled on this executor again: after it, jobs from
    /// other threads are no longer run (they stay queued; a job cannot be dropped without
    /// leaking its task), while local jobs still run.
    public func shutdown() {
        preconditionOnLoopThread("LoopExecutor.shutdown()")
        switch phase {
        case .shuttingDown, .closed:
            return
        case .parked:
            phase = .shuttingDown
            closeEventFD()
        case .running:
            phase = .shuttingDown
            if wakePoll.state == .active {
                let cancel = Completion()
                shutdownCompletions = (cancel, Completion())
                try? _loop.cancel(wakePoll, using: cancel)
            } else {
                closeEventFD()
            }
        }
    }

    /// Closes the eventfd with the loop's `.close` (which withdraws anything the backend
    /// still keeps for the descriptor, e.g. a readiness registration).
    private func closeEventFD() {
        // Once only: `shutdown()` may run inside the wake-up poll's own callback (a remote
        // job calling it), and that callback then also sees the shutting-down phase.
        guard !closeStarted else { return }
        closeStarted = true
        remote.withLock { $0.closed = true }
        let closer = shutdownCompletions?.close ?? Completion()
        shutdownCompletions = nil
        closer.operation = .close(fd: eventFD.descriptor)
        closer.callback = { c, result in
            let executor = unsafeDowncast(c.userData.unsafelyUnwrapped, to: LoopExecutor.self)
            c.userData = nil
            // A `cancelAll()` that caught the close before it ran leaves the descriptor open;
            // nothing waits on it any more (the poll has delivered), so close it directly.
            if case .close(.failure(.canceled)) = result { executor.eventFD.close() }
            executor.phase = .closed
            return .disarm
        }
        closer.userData = self
        do {
            try _loop.add(closer)
        } catch {
            preconditionFailure("EvAsync: could not close the executor's eventfd: \(error)")
        }
    }
}

/// Something a task awaits that the loop can cancel: `cancelOnLoop` runs on the loop thread.
protocol LoopCancellable: AnyObject {
    /// Cancels await `id` if it is still in flight; its completion's callback then runs
    /// once, with `.canceled` or with its real result.
    func cancelOnLoop(_ id: UInt64)
}

/// Names one await of one slot, so a late cancellation can never reach a later operation
/// that reuses the slot.
struct CancelTicket: @unchecked Sendable {
    // @unchecked: the target is only dereferenced on the loop thread (the ticket merely
    // carries the reference across threads, in the executor's locked queue).
    let target: any LoopCancellable
    let id: UInt64
}

/// The result of `LoopExecutor.run(_:)`'s body, written by the task and read by the caller
/// after the loop has run it. Both happen on the loop thread, one after the other.
private final class RunBox<T>: @unchecked Sendable {
    var outcome: Result<T, any Error>? {
        didSet { finished = true }
    }
    /// Set with `outcome`: what `run(_:)` checks each time the loop returns (testing the
    /// generic `outcome` for nil copied it through its value witnesses, about 190
    /// instructions under callgrind).
    private(set) var finished = false
}

/// The serial-executor face of a `LoopExecutor` (see its "Two faces, two objects"): what an
/// actor bound to the loop runs on. Its jobs go to the same queue as the task executor's,
/// marked to run isolated to this executor.
final class LoopSerialExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked Sendable: it holds only the (Sendable) executor.

    /// The executor that owns this face, and outlives it: an actor holds its serial
    /// executor unowned, and keeps the `LoopExecutor` itself alive (a strong reference back
    /// would be a cycle).
    unowned(unsafe) let owner: LoopExecutor

    init(_ owner: LoopExecutor) { self.owner = owner }

    func enqueue(_ job: consuming ExecutorJob) {
        owner.schedule(LoopJob(job: UnownedJob(job), isolated: true))
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func isSameExclusiveExecutionContext(other: LoopSerialExecutor) -> Bool {
        owner.drivesSameLoop(as: other.owner)
    }

    func checkIsolated() {
        owner.checkIsolated()
    }

    func isIsolatingCurrentContext() -> Bool? {
        owner.isIsolatingCurrentContext()
    }
}
