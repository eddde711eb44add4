import EvLoop

/// A task job that held the loop thread longer than the budget given to
/// `LoopExecutor.reportSlowJobs(longerThan:_:)`.
///
/// A job is one slice of a task: from where it was resumed to where it next suspended (or
/// finished). The executor cannot see into a job, so the report says what EvAsync saw at
/// its edges: how long it ran, its priority, and, when the job ended by entering one of
/// EvAsync's awaits after running past the budget, the task's name and that await. Name
/// the tasks you want to recognise here: `Task(name: "client \(peer)", executorPreference: executor) { ... }`
/// (and `group.addTask(name:)`).
public struct SlowJob: Sendable, CustomStringConvertible {
    /// How long the job ran.
    public let duration: Duration
    /// The budget it went over.
    public let budget: Duration
    /// The priority the job ran at.
    public let priority: JobPriority
    /// The name of the job's task (`Task(name:)`), when the job ended by entering one of
    /// EvAsync's awaits and the task has a name; nil otherwise.
    public let taskName: String?
    /// Where the job ended, when that was one of EvAsync's awaits: the loop operation it
    /// was about to start ("recv", "timer", "accept", ...) or the call it entered
    /// ("LoopChannel.receive()", "LoopExecutor.yield()", "SignalWatcher.wait(deadline:on:)"); nil
    /// when it finished, or suspended on something else (another actor, a continuation of
    /// its own).
    public let suspendedIn: String?

    public var description: String {
        var text = "a job"
        if let taskName { text += " of task \"\(taskName)\"" }
        text += " held the loop thread for \(duration) (budget \(budget))"
        if let suspendedIn { text += ", then awaited \(suspendedIn)" }
        return text
    }
}

/// Where a task suspended in EvAsync, for `SlowJob.suspendedIn`. Cheap to make (no string
/// is built unless the job turns out to be slow).
enum SuspensionPoint {
    /// An awaited loop operation of this kind.
    case operation(OperationKind)
    /// A call of EvAsync that suspends without a loop operation of its own.
    case call(StaticString)
    /// A watcher's own wait (`WatcherAwait`), named by the value it delivers.
    case watcherWait(Any.Type)

    var description: String {
        switch self {
        case .operation(let kind): return "\(kind)"
        case .call(let name): return "\(name)"
        case .watcherWait(let value):
            if value == SignalInfo.self { return "SignalWatcher.wait(deadline:on:)" }
            if value == Subprocess.ExitStatus.self { return "Subprocess.wait(deadline:on:)" }
            return "a watcher's wait for \(value)"
        }
    }
}

/// The timing behind `reportSlowJobs`: two clock reads around each job while it is on; at
/// EvAsync's suspension points, one more, and the task's name once the job is over budget.
final class SlowJobWatch {
    let budget: Duration
    let report: (SlowJob) -> Void
    /// When the job that runs now started.
    private var started = LoopInstant.now()
    /// What the running job's suspension point told (see `noteSuspension`).
    private var taskName: String?
    private var suspendedIn: String?

    init(budget: Duration, report: @escaping (SlowJob) -> Void) {
        self.budget = budget
        self.report = report
    }

    /// Runs `job` with `run`, timing it; reports it when it went over the budget.
    @inline(never)
    func time(_ job: LoopJob, _ run: (LoopJob) -> Void) {
        // Read before the job runs: a job that finishes its task may free it.
        let priority = job.job.priority
        taskName = nil
        suspendedIn = nil
        started = LoopInstant.now()
        run(job)
        let elapsed = LoopInstant.now() - started
        if elapsed > budget {
            report(SlowJob(duration: elapsed, budget: budget, priority: priority,
                           taskName: taskName, suspendedIn: suspendedIn))
        }
        taskName = nil
        suspendedIn = nil
    }

    /// Called inside the running job, as its task enters one of EvAsync's awaits: the one
    /// moment the executor runs code in the task, where `Task.name` can be read. Only a job
    /// already over budget pays for the name; the first note of a job wins (the await the
    /// task called, not the awaits that one is built on).
    @inline(never)
    func noteSuspension(_ point: SuspensionPoint) {
        guard suspendedIn == nil, LoopInstant.now() - started > budget else { return }
        taskName = Task.name
        suspendedIn = point.description
    }
}

extension LoopExecutor {
    /// Reports every task job that runs longer than `budget` on the loop thread, by calling
    /// `report` on the loop thread right after it (until `stopReportingSlowJobs()`).
    ///
    /// **Why.** Every task on the loop shares its one thread: a task that computes for
    /// 50 ms between two awaits delays every other task, callback and timer by 50 ms, and
    /// the loop cannot interrupt it (io2's preempt budget, as a diagnostic). The report
    /// names the job after the fact (see `SlowJob`), so that the work can be split with
    /// `yield()`, or moved to another thread. With the report on, each job is timed with
    /// two reads of the monotonic clock (a vDSO call each), and each suspension in an
    /// EvAsync await with one more; off, which is the default, it costs one predictable
    /// branch per job and per such suspension.
    ///
    /// `report` runs on the loop thread between jobs; calling this again replaces the
    /// budget and the report. `budget` must not be negative (a precondition); `.zero`
    /// reports every job. Call it on the loop thread.
    ///
    /// ```swift
    /// executor.reportSlowJobs(longerThan: .milliseconds(10)) { slow in
    ///     print("slow:", slow)   // a job of task "client 7" held the loop thread for 0.031 seconds ..., then awaited recv
    /// }
    /// ```
    ///
    /// The loop's `reportSlowCallbacks(longerThan:_:)` reports slow callbacks, which
    /// include the jobs the executor runs inside its own completions' callbacks.
    public func reportSlowJobs(longerThan budget: Duration, _ report: @escaping (SlowJob) -> Void) {
        preconditionOnLoopThread("LoopExecutor.reportSlowJobs(longerThan:_:)")
        precondition(budget >= .zero, "EvAsync: the slow-job budget must not be negative (got \(budget))")
        slowJobs = SlowJobWatch(budget: budget, report: report)
    }

    /// Stops the reports of `reportSlowJobs(longerThan:_:)`; jobs are no longer timed.
    public func stopReportingSlowJobs() {
        preconditionOnLoopThread("LoopExecutor.stopReportingSlowJobs()")
        slowJobs = nil
    }

    /// Tells the slow-job report, if it is on, that the running job's task is about to
    /// suspend at `point`. EvAsync's awaits call it on entry, before anything that can
    /// suspend: the job that did the long work ends at the first suspension point, which
    /// may be earlier than the await's own (entering a cancellation handler can re-enqueue
    /// the task on the loop), and only that job can report what it was about to await.
    /// (`point` is an autoclosure so that an await pays nothing for it while the report is
    /// off: the operation's kind is read from a copy of the whole `Operation`.)
    @inline(__always)
    func noteSuspension(_ point: @autoclosure () -> SuspensionPoint) {
        if let watch = slowJobs { watch.noteSuspension(point()) }
    }

    /// `noteSuspension(.call(name))`.
    @inline(__always)
    func noteSuspension(_ name: StaticString) {
        if let watch = slowJobs { watch.noteSuspension(.call(name)) }
    }
}
