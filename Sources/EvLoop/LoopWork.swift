#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A loop's side of `.work`: the activations in flight on pools, and the background wait
/// through which their results come back.
///
/// Why the core handles `.work`, like nop, timer and cancel, and no backend does: a closure
/// on a thread is the same on io_uring, epoll and poll, and so are its rules (one callback
/// per activation, cancellable until it starts, `activeCount` and `run(.untilDone)` honest,
/// `cancelAll()` withdraws what is queued). Written once here, they cannot drift apart.
///
/// How a result comes back: the pool's worker posts the job to the loop's `WorkInbox`,
/// which signals the eventfd of an `AsyncNotifier`; a `.poll` of that eventfd (an ordinary
/// operation on every backend; never an io_uring read of an eventfd, which Linux 6.15.4
/// broke) resets it, takes what was posted and completes each job's completion with
/// `complete(_:raw:)`, so its callback runs on the loop thread on the next tick. The poll
/// is armed only while work is in flight, and does not hold the loop open itself
/// (`keepsLoopAlive == false`): the work completions do, and when the last one is
/// delivered (or withdrawn) the poll ends, so an idle loop has no completion of its own
/// active.
///
/// Created on the first `.work` a loop starts (a loop that never uses a pool opens no
/// eventfd); lives as long as the loop. Loop thread only. The notifier closes its eventfd
/// when the last reference goes: the loop's, and the inbox's, which jobs in flight hold.
/// (The readiness backends' file pool posts to an inbox of its own, which their engine
/// drains inside its wait: see `BlockingPool`.)
package final class LoopWork {
    /// The loop is the owner of this object, so it outlives it.
    private unowned(unsafe) let loop: LoopCore
    let inbox: WorkInbox
    /// The eventfd the inbox signals and the poll waits on.
    private let notifier: AsyncNotifier
    /// The background wait on the inbox's eventfd.
    private let poll = Completion()
    /// Withdraws the wait when the last job in flight was withdrawn rather than delivered.
    private let pollCancel = Completion()
    /// Active `.work` completions whose job is queued, running or posted (linked through
    /// `waiterNext`/`waiterPrev`, which no backend uses for work: the core keeps them).
    private var inFlight = IntrusiveList()
    /// The jobs of file-system operations run on the loop's file pool
    /// (`LoopCore.runOnFilePool`), by completion: unlike `.work`, their completion holds no
    /// job (its fields hold the operation's arguments).
    private var fileJobs: [ObjectIdentifier: WorkPool.Job] = [:]
    /// `.close`s waiting for a file-system job that runs on their descriptor (see
    /// `LoopCore.closeWaitsForFilePool`).
    private var deferredCloses: [Completion] = []

    init(loop: LoopCore) throws(EvError) {
        self.loop = loop
        let notifier = try AsyncNotifier()
        self.notifier = notifier
        inbox = WorkInbox(wake: { notifier.notify() })
        poll.operation = .poll(fd: notifier.fd, events: .readable)
        poll.keepsLoopAlive = false
        // Unowned: the callback runs only inside `loop.run`, while the loop (which owns
        // this object) is alive; a strong capture would be a cycle.
        poll.callback = { [unowned(unsafe) self] _, result in
            self.inboxReadable(result)
        }
    }

    /// Hands a file-system operation's job to the file pool (see `LoopCore.runOnFilePool`).
    func submitFileOperation(_ c: Completion, job: WorkPool.Job) {
        fileJobs[ObjectIdentifier(c)] = job
        submit(c, job: job)
    }

    /// The job `c` runs: its `.work` job, or its file-system operation's.
    private func job(of c: Completion) -> WorkPool.Job? {
        c.workJob ?? fileJobs[ObjectIdentifier(c)]
    }

    /// A finished file-system job's raw result (the `Int` its closure returned; a job the
    /// pool's shutdown cancelled before it ran is `-ECANCELED`).
    private static func rawResult(of job: WorkPool.Job) -> Int {
        switch job.takeOutcome() {
        case .success(let value): return value as? Int ?? -Int(EINVAL)
        case .failure(let e): return -Int(e.errnoValue ?? EINVAL)
        }
    }

    /// Withdraws the file-system jobs on `fd` that no thread has taken (`.canceled`); true
    /// when one is running (it still uses the descriptor number).
    func withdrawFileJobs(onDescriptor fd: Int32) -> Bool {
        var running = false
        var p = inFlight.head
        while let c = p {
            p = c.waiterNext
            guard c.kind != .work, c.fd == fd else { continue }
            if !withdraw(c, raw: -Int(ECANCELED)) { running = true }
        }
        return running
    }

    /// Holds `close` until no file-system job runs on its descriptor.
    func deferClose(_ close: Completion) { deferredCloses.append(close) }

    /// Hands back to the backend the deferred closes whose descriptor no job uses any more.
    private func releaseDeferredCloses() {
        var waiting: [Completion] = []
        for close in deferredCloses {
            var busy = false
            var p = inFlight.head
            while let c = p {
                if c.kind != .work && c.fd == close.fd { busy = true; break }
                p = c.waiterNext
            }
            if busy { waiting.append(close) } else { loop.resubmitDeferredClose(close) }
        }
        deferredCloses = waiting
    }

    /// Hands `c`'s job to its pool.
    func submit(_ c: Completion, job: WorkPool.Job) {
        let queued = job.threads.submit(job, to: inbox)
        if queued != .queued && c.kind != .work { fileJobs[ObjectIdentifier(c)] = nil }
        switch queued {
        case .queued:
            // Set after the submission, yet before the job can be delivered: delivery
            // happens on this thread, later.
            job.completion = Unmanaged.passUnretained(c)
            inFlight.append(c)
            armPoll()
            if c.hasDeadline, let deadline = c.startDeadline(now: loop.now.nanoseconds) {
                // In the core's heap on every backend; `expire` withdraws the job.
                loop.timers.insert(c, deadline: deadline)
            }
        case .stopped:
            loop.complete(c, raw: -Int(ECANCELED))
        case .busy:
            // The job belongs to the activation that submitted it (its completion link is
            // left alone); this one fails.
            loop.complete(c, raw: -Int(EINVAL))
        case .noThread:
            // pthread_create's EAGAIN is reported as out of resources: EAGAIN itself never
            // reaches a callback.
            loop.complete(c, raw: -Int(ENOMEM))
        }
    }

    /// Cancels `target`'s work on behalf of `cancel` (both active, the target without a
    /// result yet; the core checked).
    func cancel(_ cancel: Completion, target: Completion) {
        if withdraw(target, raw: -Int(ECANCELED)) {
            loop.complete(cancel, raw: 0)
        } else {
            // Running (or finished and posted): the real result is on its way.
            loop.complete(cancel, raw: -Int(EALREADY))
        }
    }

    /// Withdraws every job that has not started and abandons the running ones that allow
    /// it; the others deliver their real results (see `LoopCore.cancelAll`, whose
    /// `backendCancelAll` then withdraws the inbox's wait; it goes on if jobs still run).
    func cancelAll() {
        var p = inFlight.head
        while let c = p {
            p = c.waiterNext
            _ = withdraw(c, raw: -Int(ECANCELED), retiringPoll: false)
        }
    }

    /// `c`'s deadline passed: it completes with `.timedOut` if its job can still be
    /// withdrawn (or abandoned); a running closure reports its real result instead.
    func expire(_ c: Completion) {
        _ = withdraw(c, raw: -Int(ETIMEDOUT))
    }

    /// Ends `c`'s activation with `raw` (`-ECANCELED`, `-ETIMEDOUT`) if its job has not
    /// started (or runs and may be abandoned). False when the real result will come. The
    /// last job in flight withdrawn, the inbox's wait is withdrawn too, unless `cancelAll`
    /// (which withdraws it itself) is the caller.
    private func withdraw(_ c: Completion, raw: Int, retiringPoll: Bool = true) -> Bool {
        guard let job = job(of: c), job.completion?.toOpaque() == Unmanaged.passUnretained(c).toOpaque() else {
            return false
        }
        switch job.threads.withdraw(job) {
        case .withdrawn:
            job.completion = nil
        case .abandoned:
            job.completion = nil
            // The worker still holds the abandoned job; a rearm must not wait for it.
            c.replaceWorkJob(with: job.makeReplacement())
        case .tooLate:
            return false
        }
        inFlight.remove(c)
        if c.kind != .work { fileJobs[ObjectIdentifier(c)] = nil }
        loop.complete(c, raw: raw)
        if retiringPoll && inFlight.isEmpty { retirePoll() }
        return true
    }

    /// Withdraws the inbox's wait once nothing is in flight, so that an idle loop has no
    /// completion of its own active. (A wait whose result is already in sees the empty
    /// list in its callback and ends there; one being withdrawn ends in its callback too.)
    private func retirePoll() {
        guard poll.state == .active, !poll.resultReady, pollCancel.state == .dead else { return }
        do {
            try loop.cancel(poll, using: pollCancel)
        } catch {
            preconditionFailure("EvLoop: could not withdraw the work inbox's poll: \(error)")
        }
    }

    private func armPoll() {
        guard poll.state == .dead else { return }
        do {
            try loop.add(poll)
        } catch {
            preconditionFailure("EvLoop: could not arm the work inbox's poll: \(error)")
        }
    }

    private func inboxReadable(_ result: CompletionResult) -> CallbackAction {
        switch result {
        case .poll(.success), .poll(.failure(.canceled)):
            // Cancelled: `cancelAll()` (or `retirePoll`) withdrew the wait. Results already
            // posted are delivered all the same, and the wait goes on while jobs still run.
            deliverPosted()
        default:
            preconditionFailure("EvLoop: the work inbox's eventfd poll failed: \(result)")
        }
        return inFlight.isEmpty ? .disarm : .rearm
    }

    /// Completes the completion of every job posted so far; their callbacks run on the
    /// next tick.
    private func deliverPosted() {
        // First the reset, then the take (see `WorkInbox`). A failed reset (EAGAIN: nothing
        // to reset) is a wake-up whose jobs an earlier take got.
        _ = notifier.consume()
        inbox.takeAll { job in
            guard let u = job.completion else { return }
            job.completion = nil
            job.threads.markDelivered(job)
            let c = u.takeUnretainedValue()
            inFlight.remove(c)
            if c.kind == .work {
                loop.complete(c, raw: 0)   // the outcome stays in the job, for `makeResult`
            } else {
                fileJobs[ObjectIdentifier(c)] = nil
                loop.complete(c, raw: Self.rawResult(of: job))
            }
        }
        if !deferredCloses.isEmpty { releaseDeferredCloses() }
    }
}

extension LoopCore {
    /// Starts a `.work` activation (see `LoopWork`).
    func startWork(_ c: Completion) {
        guard let job = c.workJob else {
            complete(c, raw: -Int(EINVAL))
            return
        }
        guard let work = ensureWork(for: c) else { return }
        work.submit(c, job: job)
    }

    /// The loop's `LoopWork`, created on first use; nil (with `c` completed with the error)
    /// when its eventfd cannot be opened.
    private func ensureWork(for c: Completion) -> LoopWork? {
        if let work { return work }
        do {
            let made = try LoopWork(loop: self)
            work = made
            return made
        } catch {
            complete(c, raw: -Int(error.errnoValue ?? EMFILE))
            return nil
        }
    }

    /// Runs a file-system operation on the loop's file pool: on epoll and poll always, on
    /// io_uring when the kernel lacks the operation's opcode (the opcode probe at init).
    /// Its result comes back like a `.work` job's (the core's `LoopWork`), so cancelling
    /// it before a thread takes it withdraws it (`.canceled`), on every backend alike.
    package final func runOnFilePool(_ c: Completion) {
        if let f = c.fileScratch, f.pointee.pathInvalid {
            complete(c, raw: -Int(EINVAL))
            return
        }
        guard let work = ensureWork(for: c) else { return }
        let call = FileSystemCall(c)
        let job = WorkPool.Job(threads: filePool.threads) { () throws(EvError) -> any Sendable in call.perform() }
        c.runsOnFilePool = true
        work.submitFileOperation(c, job: job)
    }

    /// For a backend's `.close`: file-system operations on the file pool that use the same
    /// descriptor and have not started are withdrawn (`.canceled`); when one is running,
    /// the close waits for it (returns true: the backend must stop there, and gets the
    /// close again, through `backendSubmit`, once that job has delivered). The job would
    /// otherwise run fsync or ftruncate on whatever file reuses the number. Meanwhile a
    /// cancel of the close is too late (`.inProgress`), as for a running job.
    package final func closeWaitsForFilePool(_ c: Completion) -> Bool {
        guard c.fd >= 0, let work, work.withdrawFileJobs(onDescriptor: c.fd) else { return false }
        c.runsOnFilePool = true
        work.deferClose(c)
        return true
    }

    /// A `.work` activation's deadline passed (see `LoopWork.expire`).
    func expireWork(_ c: Completion) {
        work.unsafelyUnwrapped.expire(c)
    }

    /// Cancels the `.work` activation `target` (active, no result yet).
    func cancelWork(_ cancel: Completion, target: Completion) {
        guard let work else {
            complete(cancel, raw: -Int(ENOENT))
            return
        }
        work.cancel(cancel, target: target)
    }
}
