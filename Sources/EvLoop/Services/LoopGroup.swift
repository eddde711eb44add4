import Synchronization

/// N loops on N threads, on one backend, started and stopped together (libuv has no such
/// thing; SwiftNIO's `MultiThreadedEventLoopGroup`, Netty's `EventLoopGroup`).
///
/// Why: a server that wants more than one CPU runs one loop per thread, each serving its
/// own share of the work (typically its own SO_REUSEPORT listener, see `ReusePortSockets`),
/// sharing nothing while it serves. Doing that by hand takes a thread per loop, a loop made
/// on that thread, a cross-thread stop for every loop, draining each loop before it is
/// released, and collecting the errors of every thread; this class does all of it once.
///
/// Life of a group:
/// - `init(loops:makeLoop:)` checks the count and creates one stop notifier (an eventfd) per
///   loop, so `stop()` can never fail later. It starts nothing.
/// - `start(setUp:)` starts the threads. Each makes its loop with the factory (on its own
///   thread: a loop belongs to the thread that runs it, and an io_uring ring made with
///   SINGLE_ISSUER accepts work only from its creator), arms the group's stop wait, runs
///   `setUp` with its `Member`, and then runs the loop until the group stops. The loop is
///   held open by the stop wait, so a loop with nothing to do yet (a server between
///   connections) keeps running. `start` returns once every set-up has returned; if any
///   loop could not be made or set up, it stops every loop, drains and joins them, and
///   throws every failure: a group is started together, and half a server running with the
///   failure noticed only at shutdown would hide it.
/// - `stop()`, from any thread (a signal handler's loop, another thread, a loop of the
///   group itself), wakes every loop through its `AsyncNotifier`; each then runs its stop
///   handlers, finishes its work and is drained (`cancelAll()` and `run`, until no
///   completion is active: see `Member`).
/// - `join()` waits until every thread has finished and throws the failures of running or
///   draining, if any.
///
/// The factory takes the loop's index and returns any `EventLoop`, so the group lives in
/// EvLoop and works with the one-backend products (`LoopGroup { _ in try EpollLoop() }`);
/// `Ev` adds `LoopGroup(loops:backend:)` and `makeBestLoopGroup` to pick the backend at
/// runtime.
///
/// A loop's `stop()` (on its own thread) only makes the current `run` return; the group runs
/// the loop again, because the group decides when its loops end. Likewise a `cancelAll()` of
/// the loop's own cancels the group's stop wait, which the group arms again at once.
///
/// Ownership: the group owns its threads and its notifiers' eventfds (closed when the group
/// is released); it never closes descriptors the set-up code opened. The threads hold the
/// group, so it lives at least as long as they run; a group released without `join()` lets
/// its (finished) threads go by detaching them.
///
/// `Sendable`: the group holds the factory and set-up closures (`@Sendable`), the
/// notifiers (`Sendable`) and its state behind a `Mutex`; the loops are never stored in it,
/// each stays on its thread. (`Loop: SendableMetatype` because the threads' closures use
/// the loop *type*, never a loop; every loop type without actor-isolated conformances is.)
///
/// ```swift
/// let group = try LoopGroup(loops: 4) { _ in try EpollLoop() }
/// try group.start { member in
///     try armServer(on: member.loop, index: member.index)
/// }
/// startWorkerThread { group.stop() }     // any thread
/// try group.join()                       // every loop stopped, drained, its thread ended
/// ```
public final class LoopGroup<Loop: EventLoop & SendableMetatype>: Sendable {
    /// Makes the loop with index `index`, on that loop's thread.
    public typealias MakeLoop = @Sendable (_ index: Int) throws -> Loop
    /// Sets up one loop, on its thread, before it runs (arms its listener, its timers).
    public typealias SetUp = @Sendable (_ member: Member) throws -> Void

    /// The number of loops (and threads).
    public let count: Int

    private let makeLoop: MakeLoop
    /// One per loop: `stop()` notifies them all, and each loop's stop wait polls its own.
    private let notifiers: [AsyncNotifier]
    private let stopRequested = Atomic<Bool>(false)
    private let state = Mutex<State>(State())
    /// Held by `join` while it joins the threads (never by a loop thread, which may need
    /// `state` meanwhile), so two `join`s cannot join one thread twice. It guards no value
    /// of its own: `State.joinOutcome` says whether the threads were joined.
    private let joining = Mutex<Void>(())

    private enum Phase: Sendable { case idle, starting, running, finished }

    private struct State: Sendable {
        var phase = Phase.idle
        var threads: [LoopThread] = []
        /// Failures not yet thrown by `start` or `join`.
        var failures: [LoopGroupFailure] = []
        /// What `join` threw (or nil: nothing), so a later `join` reports the same.
        var joinOutcome: [LoopGroupFailure]?
    }

    /// How often draining repeats `cancelAll()` and `run` before it gives up on a loop
    /// whose callbacks keep starting new work (see `drain`).
    static var drainRounds: Int { 100 }

    /// A group of `loops` loops, each made by `makeLoop` on its own thread once the group
    /// starts. Throws `.invalidLoopCount` for zero or fewer loops and
    /// `.notifierUnavailable` when the stop notifiers cannot be created; nothing is left
    /// open then.
    public init(loops: Int, makeLoop: @escaping MakeLoop) throws(LoopGroupError) {
        guard loops > 0 else { throw .invalidLoopCount(loops) }
        count = loops
        self.makeLoop = makeLoop
        var made: [AsyncNotifier] = []
        made.reserveCapacity(loops)
        do {
            for _ in 0..<loops { made.append(try AsyncNotifier()) }
        } catch {
            // The notifiers made so far close their eventfds as `made` goes away.
            throw .notifierUnavailable(error)
        }
        notifiers = made
    }

    deinit {
        // The threads hold the group, so when this runs every thread has finished its body
        // (or none was started). Threads nobody joined are detached so that their resources
        // go back to the system; one of them may be the thread running this deinit.
        let threads = state.withLock { s in s.joinOutcome == nil ? s.threads : [] }
        for t in threads { t.detach() }
    }

    /// Whether `stop()` has been called (by anyone, or by the group after a failure).
    public var isStopRequested: Bool { stopRequested.load(ordering: .acquiring) }

    /// Starts the threads: each makes its loop, runs `setUp` with its `Member` (on its own
    /// thread), then runs the loop until the group stops. Returns once every set-up has
    /// returned.
    ///
    /// Throws `.alreadyStarted` on a second call, and `.loopsFailed` with every failure if
    /// a thread could not be created or a loop could not be made or set up. Every loop that
    /// did start has then been stopped, drained and joined, and the group is finished
    /// (`join()` returns at once).
    /// A `stop()` that comes before or during `start` is not lost: the loops stop as soon
    /// as their set-up has run.
    public func start(setUp: @escaping SetUp = { _ in }) throws(LoopGroupError) {
        try state.withLock { s throws(LoopGroupError) in
            guard s.phase == .idle else { throw .alreadyStarted }
            s.phase = .starting
        }
        let setUpDone = ThreadLatch(count: count)
        var threads: [LoopThread] = []
        threads.reserveCapacity(count)
        for index in 0..<count {
            do {
                threads.append(try LoopThread(name: "ev-loop-\(index)") { [self] in
                    self.threadMain(index: index, setUp: setUp, setUpDone: setUpDone)
                })
            } catch {
                // The threads already running see the stop right after their set-up; the
                // ones not created never count down, so they are counted down here.
                record(index, .startThread, error)
                stop()
                for _ in index..<count { setUpDone.countDown() }
                break
            }
        }
        setUpDone.wait()
        let failed = state.withLock { s in
            s.threads = threads
            return !s.failures.isEmpty
        }
        guard failed else {
            state.withLock { $0.phase = .running }
            return
        }
        // The failing loop asked the group to stop already; the others are stopping too.
        stop()
        for t in threads { t.join() }
        let failures = state.withLock { s in
            let f = s.failures.sorted { $0.index < $1.index }
            s.failures.removeAll()
            s.joinOutcome = []
            s.phase = .finished
            return f
        }
        throw .loopsFailed(failures)
    }

    /// Stops every loop: each runs its stop handlers on its own thread, finishes its work
    /// and is drained, and its thread ends (`join()` waits for that). Safe from any thread,
    /// including a loop of this group, any number of times; before `start`, the loops stop
    /// right after their set-up.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        for n in notifiers { n.notify() }
    }

    /// Waits until every loop's thread has finished: its loop stopped, drained (no completion
    /// active) and released. Throws `.loopsFailed` with the failures of running or draining
    /// the loops, if any, and `.notStarted` if `start` has not returned yet. Any number of
    /// threads may join, any number of times: each gets the same outcome.
    ///
    /// Never call it from one of the group's own loops (a callback, a handler): that thread
    /// would wait for itself. That is a precondition failure.
    public func join() throws(LoopGroupError) {
        let phase = state.withLock { s in
            precondition(!s.threads.contains { $0.isCurrent },
                         "EvLoop: LoopGroup.join() called on one of the group's own loop threads, which would wait for itself")
            return s.phase
        }
        switch phase {
        case .idle, .starting: throw .notStarted
        case .running, .finished: break
        }
        let failures = joining.withLock { _ -> [LoopGroupFailure] in
            // Joined already (by an earlier `join`, or by a `start` that failed): a thread
            // must never be joined twice, so only the outcome is handed out again.
            if let outcome = state.withLock({ $0.joinOutcome }) { return outcome }
            let threads = state.withLock { $0.threads }
            for t in threads { t.join() }
            return state.withLock { s in
                let outcome = s.failures.sorted { $0.index < $1.index }
                s.joinOutcome = outcome
                s.failures.removeAll()
                s.phase = .finished
                return outcome
            }
        }
        if !failures.isEmpty { throw .loopsFailed(failures) }
    }

    // MARK: On each loop's thread

    /// Records a failure of loop `index`, which `join()` (or a failing `start`) throws.
    /// Package-internal for EvAsync's tasks per loop, whose errors are the loop's failures.
    package func record(_ index: Int, _ stage: LoopGroupFailure.Stage, _ error: any Error) {
        state.withLock { $0.failures.append(LoopGroupFailure(index: index, stage: stage, error: error)) }
    }

    /// The body of loop `index`'s thread.
    private func threadMain(index: Int, setUp: SetUp, setUpDone: ThreadLatch) {
        let loop: Loop
        do {
            loop = try makeLoop(index)
        } catch {
            record(index, .makeLoop, error)
            stop()
            setUpDone.countDown()
            return
        }
        let member = Member(loop: loop, index: index, group: self)
        let async = Async(notifier: notifiers[index])
        let stopWait = Completion()
        var ready = true
        // Armed before the set-up, so that a stop requested meanwhile is already waiting
        // for the loop when it starts to run (the notifier's eventfd keeps it).
        do {
            try armStopWait(async, stopWait, member)
        } catch {
            record(index, .setUp, error)
            ready = false
        }
        if ready {
            do {
                try setUp(member)
            } catch {
                record(index, .setUp, error)
                ready = false
            }
        }
        if !ready { stop() }
        setUpDone.countDown()

        if ready {
            runUntilStopped(member, async, stopWait)
        }
        member.isDraining = true
        let left: Int
        do {
            left = try Self.drain(loop)
        } catch {
            record(index, .drain, error)
            // The loop cannot be run any more; it may still have work in flight, so it is
            // kept (leaked) rather than released onto the kernel's pending writes.
            _ = Unmanaged.passRetained(loop)
            member.runFinishHandlers()
            return
        }
        if left > 0 {
            record(index, .drain, LoopGroupError.loopNotDrained(activeCount: left))
            _ = Unmanaged.passRetained(loop)   // deliberately leaked: see `loopNotDrained`
        }
        member.runFinishHandlers()
    }

    /// Arms the group's stop wait on the member's loop. It keeps the loop alive (so the loop
    /// runs until the group stops, even with nothing else to do); when a stop arrives it
    /// runs the member's stop handlers and ends, so the loop can run out of work.
    private func armStopWait(_ async: Async, _ completion: Completion, _ member: Member) throws(EvError) {
        try async.wait(loop: member.loop, completion: completion) { [unowned self, unowned member] c, result in
            // While the group drains the loop (after its stop, or after a failed set-up,
            // whose stop handlers must not run), the wait only ends: the poll may still win
            // the race with the drain's cancel and report the pending stop as a success.
            if member.isDraining { return .disarm }
            switch result {
            case .success:
                if !member.isStopping { member.runStopHandlers() }
            case .failure(.canceled):
                // The loop's own cancelAll(): listen again at once, so that a stop still reaches a loop whose other
                // work goes on. A stop that came meanwhile is still pending in the eventfd.
                guard !member.isStopping else { break }
                do throws(EvError) {
                    try self.armStopWait(async, c, member)
                } catch {
                    self.lostStopWait(member, error)
                }
            case .failure(let error):
                self.lostStopWait(member, error)
            }
            return .disarm
        }
    }

    /// The loop can no longer hear a stop (its eventfd cannot be read, or the wait cannot be
    /// armed again): the failure is reported by `join`, and this loop stops with the group.
    private func lostStopWait(_ member: Member, _ error: EvError) {
        record(member.index, .run, error)
        stop()
        if !member.isStopping { member.runStopHandlers() }
    }

    /// Runs the loop until the stop has reached it and its work has finished.
    private func runUntilStopped(_ member: Member, _ async: Async, _ stopWait: Completion) {
        let loop = member.loop
        while true {
            do {
                try loop.run(.untilDone)
            } catch {
                record(member.index, .run, error)
                stop()
                return
            }
            if member.isStopping { return }
            // `run` returned before the stop: the loop's own `stop()`, so it runs again (the
            // stop wait, armed, holds it open).
            if stopWait.state == .dead {
                do {
                    try armStopWait(async, stopWait, member)
                } catch {
                    lostStopWait(member, error)
                }
            }
        }
    }

    /// Cancels everything on `loop` and runs it until no completion is active, or gives up
    /// after `drainRounds` rounds; returns the number still active (0 when drained).
    ///
    /// Why rounds: the drain (`cancelAll` then `run(.untilDone)`) waits for everything that
    /// was active, background completions included, but a callback that answers its
    /// cancellation by starting new background work (a wake-up poll armed again) leaves
    /// that work behind; it is cancelled in the next round. One that never stops doing so
    /// leaves the loop undrained, which the caller reports.
    static func drain(_ loop: Loop) throws(EvError) -> Int {
        for _ in 0..<drainRounds {
            loop.cancelAll()
            try loop.run(.untilDone)
            if loop.activeCount == 0 { return 0 }
        }
        loop.cancelAll()
        try loop.run(.untilDone)
        return loop.activeCount
    }
}
