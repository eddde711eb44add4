#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The readiness backends' pool for I/O that cannot be made non-blocking: reads and writes
/// on regular files, which readiness APIs report as always ready (poll) or refuse (epoll).
///
/// The loop thread copies an operation's arguments into a `Job` (the worker never touches
/// a `Completion`, which is not thread-safe), a worker performs the blocking system call,
/// and the result comes back through `drainResults`; the `wake` closure (an eventfd write)
/// makes the loop look at once instead of at its next timeout (libxev#4 waited 100 ms).
///
/// Built on the same machinery as `WorkPool`, so that the library has one way to run work
/// on threads and hand it back: the threads and their queue are a `WorkThreads` (threads
/// start on first use, so a loop that never touches a file never spawns one; a queued job
/// can be withdrawn), and results come back through a `WorkInbox`. What stays here is the
/// readiness engine's side: jobs named by id (the engine finds the completion, and the
/// descriptor a parked close waits for), and results drained inside the engine's own wait,
/// on its own eventfd, rather than through a `.poll` completion as `.work` does (a file
/// operation's result is delivered in the tick it arrives).
///
/// `shutdown()` cancels the queued jobs, finishes the jobs already taken and joins every
/// thread (libxev PR #113, #130: the pool's shutdown must neither use freed memory nor
/// deadlock). Each submission allocates the pool's job (an object and its closure); the
/// system calls and thread wake-ups around it cost far more.
package final class BlockingPool: @unchecked Sendable {
    // @unchecked Sendable: `threads` and `inbox` are thread-safe; `inFlight`, `free` and
    // `failedAtOnce` are touched only by the loop thread (submit, cancel, drainResults).

    /// One blocking operation, by value.
    package struct Job: Sendable {
        package var id: UInt64
        /// `.read`, `.write`, `.pread` or `.pwrite`.
        package var kind: OperationKind
        package var fd: Int32
        package var address: UInt          // buffer base address
        package var count: Int
        package var offset: UInt64

        package init(id: UInt64, kind: OperationKind, fd: Int32, address: UInt, count: Int, offset: UInt64) {
            precondition(Syscalls.isFileIO(kind), "EvLoop: \(kind) cannot run on the thread pool")
            self.id = id; self.kind = kind; self.fd = fd
            self.address = address; self.count = count; self.offset = offset
        }

        /// Builds a job for a read/write/pread/pwrite completion; nil for anything else.
        package init?(id: UInt64, completion c: Completion) {
            guard Syscalls.isFileIO(c.kind) else { return nil }
            self.init(id: id, kind: c.kind, fd: c.fd, address: UInt(bitPattern: c.bufferBase),
                      count: c.bufferCount, offset: c.offset)
        }

        func perform() -> Int {
            Syscalls.fileIO(kind, fd: fd, base: UnsafeMutableRawPointer(bitPattern: address), count: count, offset: offset)
        }
    }

    /// What a worker hands back: the job's id and its raw result.
    private struct Finished: Sendable {
        var id: UInt64
        var raw: Int
    }

    private let threads: WorkThreads
    private let inbox: WorkInbox
    /// What a closure of the pool reads: the job the loop thread stored before submitting
    /// it. `@unchecked Sendable`: written only by the loop thread while the job is idle, and
    /// read by the worker after it took the job from the queue (the queue's mutex orders
    /// the two).
    private final class Arguments: @unchecked Sendable {
        var job = Job(id: 0, kind: .read, fd: -1, address: 0, count: 0, offset: 0)
    }

    /// A reusable pool job with its arguments.
    private struct Slot {
        let work: WorkPool.Job
        let args: Arguments
    }

    /// Submitted jobs not yet drained, by id (loop thread only).
    private var inFlight: [UInt64: Slot] = [:]
    /// Idle slots, for the next submissions (loop thread only).
    private var free: [Slot] = []
    /// Jobs refused at submission (no thread could start), reported by the next drain.
    private var failedAtOnce: [Finished] = []
    private let wake: @Sendable () -> Void

    /// `wake` is called (from a worker thread) when a result is posted and the loop has not
    /// been woken for an earlier one yet.
    package init(threads: Int = 2, wake: @escaping @Sendable () -> Void) {
        self.threads = WorkThreads(maxThreads: max(1, threads), threadName: "ev-file")
        self.inbox = WorkInbox(wake: wake)
        self.wake = wake
    }

    deinit { shutdown() }

    /// Queues a job; a worker will perform it and post its result.
    package func submit(_ job: Job) {
        let slot = takeSlot()
        slot.args.job = job
        switch threads.submit(slot.work, to: inbox) {
        case .queued:
            inFlight[job.id] = slot
        case .noThread:
            // Out of threads: fail this job (pthread_create's EAGAIN as out of resources;
            // EAGAIN itself would send the engine back to waiting for readiness).
            free.append(slot)
            failedAtOnce.append(Finished(id: job.id, raw: -Int(ENOMEM)))
            wake()
        case .stopped, .busy:
            // After shutdown() nothing runs any more (a fresh job is never busy).
            free.append(slot)
        }
    }

    /// A pool job and the arguments its closure reads, reused from job to job: a file
    /// operation allocates nothing in steady state (DESIGN invariant 6; a job and a closure
    /// per operation were two allocations each).
    private func takeSlot() -> Slot {
        if let slot = free.popLast() { return slot }
        let args = Arguments()
        let work = WorkPool.Job(threads: threads) { () throws(EvError) -> any Sendable in
            Finished(id: args.job.id, raw: args.job.perform())
        }
        return Slot(work: work, args: args)
    }

    /// Withdraws a job that no worker has started. Returns false when it is running or
    /// finished (its result will arrive, or has arrived, through `drainResults`).
    package func cancel(id: UInt64) -> Bool {
        guard let slot = inFlight[id], threads.withdraw(slot.work) == .withdrawn else { return false }
        inFlight[id] = nil
        free.append(slot)
        return true
    }

    /// Hands every posted result to `body` (on the caller's thread, the loop's).
    package func drainResults(_ body: (UInt64, Int) -> Void) {
        if !failedAtOnce.isEmpty {
            let failed = failedAtOnce
            failedAtOnce.removeAll()
            for f in failed { body(f.id, f.raw) }
        }
        inbox.takeAll { work in
            threads.markDelivered(work)
            switch work.takeOutcome() {
            case .success(let value):
                guard let finished = value as? Finished else { return }
                if let slot = inFlight.removeValue(forKey: finished.id) { free.append(slot) }
                body(finished.id, finished.raw)
            case .failure:
                // Cancelled by shutdown() before it ran: nobody waits for it any more.
                break
            }
        }
    }

    /// Cancels the queued jobs, lets the running ones finish and joins the threads.
    package func shutdown() {
        threads.shutdown()
    }
}
