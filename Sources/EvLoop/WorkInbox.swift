import Synchronization

/// Where pool threads hand finished jobs back to one loop: a lock-free list that many
/// threads push onto and the loop takes whole, and an eventfd that wakes the loop.
///
/// Why lock-free: a worker posts once per job, the loop takes everything posted in one
/// exchange, and neither side ever waits for the other (a worker never blocks on a loop
/// that is busy running callbacks). The list is a Treiber stack of retained jobs linked
/// through `Job.inboxNext`; the loop reverses what it takes, so jobs are delivered in the
/// order they were posted.
///
/// Why no wake-up is lost, and why bursts cost one eventfd write: a post signals the
/// eventfd only when it finds the list empty. The loop first resets the eventfd, then takes
/// the list: a post that lands before the take is taken with it (and found the list
/// non-empty, or signalled after the reset), and a post after the take finds the list empty
/// and signals again. At worst the loop wakes once more and finds nothing.
///
/// Ownership: the inbox creates its eventfd and closes it in `deinit`, when the last
/// reference goes: the loop's (`LoopWork`) and those of the jobs in flight, so a worker
/// that posts late never writes to a closed (or reused) descriptor number.
package final class WorkInbox: @unchecked Sendable {
    // @unchecked Sendable: `head` is atomic, `eventFD` immutable; the jobs' `inboxNext`
    // links are ordered by `head`'s release and acquire (see `WorkPool.Job`).
    package let eventFD: EventFD
    private let head = Atomic<UnsafeMutableRawPointer?>(nil)

    /// Creates the eventfd (EFD_CLOEXEC | EFD_NONBLOCK). Throws when out of descriptors.
    package init() throws(EvError) {
        eventFD = try EventFD()
    }

    deinit {
        // Nothing is normally left: a job is posted only while its completion is active,
        // and the loop cannot go away before delivering it. Release any job anyway.
        var p = head.exchange(nil, ordering: .acquiring)
        while let raw = p {
            let job = Unmanaged<WorkPool.Job>.fromOpaque(raw).takeRetainedValue()
            p = job.inboxNext
            job.inboxNext = nil
        }
        eventFD.close()
    }

    /// Hands a finished job to the loop (any thread).
    func post(_ job: WorkPool.Job) {
        let raw = Unmanaged.passRetained(job).toOpaque()
        var old = head.load(ordering: .relaxed)
        while true {
            job.inboxNext = old
            let (exchanged, current) = head.compareExchange(
                expected: old, desired: raw, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        if old == nil { eventFD.signal() }
    }

    /// Resets the eventfd, then calls `body` with every job posted so far, oldest first
    /// (loop thread).
    func takeAll(_ body: (WorkPool.Job) -> Void) {
        // EAGAIN (nothing to reset) is fine: a wake-up whose jobs an earlier take got.
        eventFD.drain()
        var p = head.exchange(nil, ordering: .acquiring)
        // Newest first as taken: reverse the links.
        var oldestFirst: UnsafeMutableRawPointer? = nil
        while let raw = p {
            let job = Unmanaged<WorkPool.Job>.fromOpaque(raw).takeUnretainedValue()
            p = job.inboxNext
            job.inboxNext = oldestFirst
            oldestFirst = raw
        }
        while let raw = oldestFirst {
            let job = Unmanaged<WorkPool.Job>.fromOpaque(raw).takeRetainedValue()
            oldestFirst = job.inboxNext
            job.inboxNext = nil
            body(job)
        }
    }
}
