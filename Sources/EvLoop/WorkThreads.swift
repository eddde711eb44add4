#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// The threads of a `WorkPool` and the queue of jobs they take from.
///
/// Why a type apart from `WorkPool`: the threads and the queued jobs must keep this state
/// alive, while the user's handle must be free to go away (its `deinit` shuts the threads
/// down). If the threads held the handle, it could never be released; if its last
/// reference went away on a pool thread, the join in its `deinit` would wait for itself.
///
/// How a job travels: the loop thread `submit`s it (FIFO queue, intrusive, no allocation);
/// an idle worker takes it, runs the closure outside the lock, and posts the finished job
/// to the inbox of the loop that submitted it, which wakes that loop. A cancel `withdraw`s
/// a job that has not started. Threads start on demand, up to the limit, so a pool that is
/// never used costs no thread, and stay until `shutdown()`.
package final class WorkThreads: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is touched only with `blocking` locked.
    private let blocking = BlockingLock()
    private let maxThreads: Int
    private var threads: [pthread_t] = []
    private var idleWorkers = 0
    private var stopping = false
    /// Queued jobs, oldest first (each retained while queued).
    private var head: Unmanaged<WorkPool.Job>?
    private var tail: Unmanaged<WorkPool.Job>?
    private var queued = 0
    private var running = 0

    /// What each worker is named (`cevsys_set_thread_name`), so a debugger or `top -H`
    /// tells the pools apart.
    private let threadName: String

    package init(maxThreads: Int, threadName: String) {
        self.maxThreads = maxThreads
        self.threadName = threadName
    }

    // No deinit work: every thread holds a reference until it exits, so none is left when
    // this goes, and `BlockingLock` frees its own mutex.

    private func lock() { blocking.lock() }
    private func unlock() { blocking.unlock() }

    // MARK: The loop's side

    /// What `submit` did with a job.
    enum SubmitOutcome {
        /// Queued: it will run and come back through the inbox.
        case queued
        /// The pool is shut down: the job is refused (the loop reports `.canceled`).
        case stopped
        /// The job is already in flight for another activation.
        case busy
        /// No thread could be started and none runs: the job would wait forever.
        case noThread
    }

    /// Queues `job` for a worker; its result will be posted to `inbox`.
    func submit(_ job: WorkPool.Job, to inbox: WorkInbox) -> SubmitOutcome {
        lock()
        defer { unlock() }
        if stopping { return .stopped }
        guard job.phase == .idle else { return .busy }
        job.phase = .queued
        job.abandoned = false
        job.inbox = inbox
        append(job)
        if threads.count < maxThreads && queued > idleWorkers && !spawnWorker() && threads.isEmpty {
            unlink(job).release()
            job.phase = .idle
            job.inbox = nil
            return .noThread
        }
        blocking.signal()
        return .queued
    }

    /// What `withdraw` could do about a job.
    enum WithdrawOutcome {
        /// It had not started: taken out of the queue, it will never run.
        case withdrawn
        /// It was running and allows abandoning: its outcome will be dropped.
        case abandoned
        /// It is running (or has finished): its real result will come back.
        case tooLate
    }

    /// Takes back a job that has not started (or abandons a running one that allows it).
    func withdraw(_ job: WorkPool.Job) -> WithdrawOutcome {
        lock()
        defer { unlock() }
        switch job.phase {
        case .queued:
            unlink(job).release()
            job.phase = .idle
            job.inbox = nil
            return .withdrawn
        case .running where job.abandonsWhenCanceledRunning:
            job.abandoned = true
            job.inbox = nil
            return .abandoned
        case .running, .finished, .idle:
            return .tooLate
        }
    }

    /// Marks a job that came back through the inbox as delivered, so that it may run again.
    func markDelivered(_ job: WorkPool.Job) {
        lock()
        job.phase = .idle
        unlock()
    }

    // MARK: Shutting down

    /// Cancels the queued jobs (each is delivered to its loop as `.canceled`), lets the
    /// running ones finish and deliver their results, and joins every thread. Later
    /// submissions are refused. Returns at once if an earlier call has begun shutting down.
    /// Called on one of the pool's own threads (from a closure), it waits for the others
    /// and leaves that one to exit when its closure returns.
    func shutdown() {
        lock()
        if stopping {
            unlock()
            return
        }
        stopping = true
        var canceled: [(WorkPool.Job, WorkInbox?)] = []
        while let first = head {
            let job = unlink(first.takeUnretainedValue()).takeRetainedValue()
            job.phase = .finished
            job.outcome = .failure(.canceled)
            canceled.append((job, job.inbox))
            job.inbox = nil
        }
        blocking.broadcast()
        let joining = threads
        threads.removeAll()
        unlock()
        for (job, inbox) in canceled { inbox?.post(job) }
        let me = pthread_self()
        for t in joining {
            if pthread_equal(t, me) != 0 {
                pthread_detach(t)
            } else {
                pthread_join(t, nil)
            }
        }
    }

    // MARK: For tests

    /// Jobs queued or running.
    package var jobsInFlight: Int {
        lock()
        defer { unlock() }
        return queued + running
    }

    /// Jobs a worker is running (abandoned ones included, until they return).
    package var jobsRunning: Int {
        lock()
        defer { unlock() }
        return running
    }

    /// Threads started and not yet joined.
    package var threadCount: Int {
        lock()
        defer { unlock() }
        return threads.count
    }

    // MARK: The workers

    /// Starts one worker (the lock is held; the new thread waits for it). False when
    /// pthread_create fails (out of threads or memory): the jobs wait for the threads
    /// that exist.
    private func spawnWorker() -> Bool {
        var t = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&t, nil, { arg in
            let threads = Unmanaged<WorkThreads>.fromOpaque(arg!).takeRetainedValue()
            _ = cevsys_set_thread_name(threads.threadName)
            threads.workerLoop()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<WorkThreads>.fromOpaque(context).release()
            return false
        }
        threads.append(t)
        return true
    }

    private func workerLoop() {
        lock()
        while true {
            while head == nil && !stopping {
                idleWorkers += 1
                blocking.wait()
                idleWorkers -= 1
            }
            // `shutdown()` takes whatever is still queued.
            if stopping { break }
            let job = unlink(head!.takeUnretainedValue()).takeRetainedValue()
            job.phase = .running
            running += 1
            unlock()
            job.execute()
            lock()
            running -= 1
            if job.abandoned {
                // Its activation ended when it was cancelled; nobody waits for this outcome.
                job.abandoned = false
                job.outcome = nil
                job.phase = .idle
            } else {
                job.phase = .finished
                let inbox = job.inbox
                job.inbox = nil
                unlock()
                inbox?.post(job)
                lock()
            }
        }
        unlock()
    }

    // MARK: The queue (lock held)

    private func append(_ job: WorkPool.Job) {
        let u = Unmanaged.passRetained(job)
        job.pendingNext = nil
        job.pendingPrev = tail
        if let t = tail { t.takeUnretainedValue().pendingNext = u } else { head = u }
        tail = u
        queued += 1
    }

    /// Unlinks a queued job and returns the queue's reference to it (retained).
    private func unlink(_ job: WorkPool.Job) -> Unmanaged<WorkPool.Job> {
        let p = job.pendingPrev, n = job.pendingNext
        if let p { p.takeUnretainedValue().pendingNext = n } else { head = n }
        if let n { n.takeUnretainedValue().pendingPrev = p } else { tail = p }
        job.pendingNext = nil
        job.pendingPrev = nil
        queued -= 1
        return Unmanaged.passUnretained(job)
    }
}
