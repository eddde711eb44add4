extension WorkPool {
    /// One closure for a `WorkPool`, with the outcome of its last run: the payload of
    /// `Operation.work(job:)`.
    ///
    /// Why a class of its own: the closure runs on a pool thread while its `Completion`
    /// (not thread-safe) stays with the loop, so everything the two sides share lives here,
    /// each field with a rule for who may touch it (below), and the completion keeps the
    /// job retained in its operation, as a cancel keeps its target.
    ///
    /// Jobs are made by `WorkPool.run(loop:completion:_:callback:)` and by `Resolver`; there
    /// is no public initializer. A job runs for one activation at a time: `.rearm` runs the
    /// same closure again once the previous run has been delivered, and adding a second
    /// completion with the same job while it is in flight completes that second one with
    /// `.invalidArgument`.
    ///
    /// A job is `Sendable` because its pool's threads hold it while they run it; nothing in
    /// its public interface can be touched from two threads at once.
    public final class Job: @unchecked Sendable {
        // @unchecked Sendable: each field has one rule, and the rules make every access
        // ordered by a lock or by the inbox's atomic hand-off:
        // - `body`, `threads`, `abandonsWhenCanceledRunning`: immutable.
        // - `phase`, `abandoned`, `inbox`, `pendingNext`, `pendingPrev`: only under the
        //   mutex of `threads`.
        // - `outcome`: written by the worker that runs the job (or by `shutdown()`, under
        //   the mutex, for a job that never ran), read by the loop only after the job came
        //   back through the inbox (whose exchange acquires what the post released).
        // - `inboxNext`: written by the thread that posts the job, before the inbox's
        //   releasing compare-and-swap; read by the loop after its acquiring exchange.
        // - `completion`: the loop thread only.

        /// The closure, with its value type erased (`WorkPool.run` casts it back).
        let body: @Sendable () throws(EvError) -> any Sendable
        /// The threads that run it.
        let threads: WorkThreads
        /// Whether a cancel that finds the closure running ends the activation at once with
        /// `.canceled`, leaving the run to finish unobserved (its outcome is dropped), instead
        /// of reporting `.inProgress` and waiting for it. For closures whose result is a
        /// plain value nobody needs to clean up: the resolver's getaddrinfo, which cannot
        /// be interrupted and may take as long as the name server's timeout.
        let abandonsWhenCanceledRunning: Bool

        /// Where the job is between submission and delivery.
        enum Phase {
            /// Not submitted, or delivered.
            case idle
            /// In the pool's queue, not started: a cancel withdraws it.
            case queued
            /// A worker runs the closure.
            case running
            /// Ran (or was cancelled by `shutdown()`), posted to its loop's inbox, not yet
            /// delivered.
            case finished
        }
        var phase = Phase.idle
        /// Set by a cancel that abandoned the running closure: the worker drops the outcome
        /// instead of posting it.
        var abandoned = false
        /// The inbox of the loop that submitted the job, while it is queued or running.
        var inbox: WorkInbox?
        /// Links in the pool's queue (retained while queued).
        var pendingNext: Unmanaged<Job>?
        var pendingPrev: Unmanaged<Job>?
        /// The outcome of the last run, until the loop takes it for the callback.
        var outcome: Result<any Sendable, EvError>?
        /// Link in the inbox's list of posted jobs (retained while posted).
        var inboxNext: UnsafeMutableRawPointer?
        /// The completion of the activation in flight (the loop keeps it alive while active).
        var completion: Unmanaged<Completion>?

        init(threads: WorkThreads, abandonsWhenCanceledRunning: Bool = false,
             body: @escaping @Sendable () throws(EvError) -> any Sendable) {
            self.threads = threads
            self.abandonsWhenCanceledRunning = abandonsWhenCanceledRunning
            self.body = body
        }

        /// Runs the closure and keeps what it returned or threw (on a worker thread).
        func execute() {
            do {
                outcome = .success(try body())
            } catch {
                outcome = .failure(error)
            }
        }

        /// The outcome of the run just delivered, which the job lets go of (a large value is
        /// not kept until the next run). Loop thread, after the hand-off.
        func takeOutcome() -> Result<any Sendable, EvError> {
            // Only a job whose delivery was forged (a completion whose operation was
            // replaced while in flight) can have none.
            let o = outcome ?? .failure(.invalidArgument)
            outcome = nil
            return o
        }

        /// A job with the same closure and rules, idle, for a completion whose job was
        /// abandoned while running (the abandoned one is still the worker's).
        func makeReplacement() -> Job {
            Job(threads: threads, abandonsWhenCanceledRunning: abandonsWhenCanceledRunning, body: body)
        }
    }
}
