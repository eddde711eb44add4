import Synchronization

/// Where pool threads hand finished jobs back to one loop: a lock-free list that many
/// threads push onto and the loop takes whole, and a wake-up (an eventfd's signal) that
/// tells the loop to look.
///
/// Why lock-free: a worker posts once per job, the loop takes everything posted in one
/// exchange, and neither side ever waits for the other (a worker never blocks on a loop
/// that is busy running callbacks). The list is a Treiber stack of retained jobs linked
/// through `Job.inboxNext`; the loop reverses what it takes, so jobs are delivered in the
/// order they were posted.
///
/// Why no wake-up is lost, and why bursts cost one wake-up: a post calls `wake` only when
/// it finds the list empty. The loop first resets its eventfd, then takes the list: a post
/// that lands before the take is taken with it (and found the list non-empty, or woke the
/// loop after the reset), and a post after the take finds the list empty and wakes the loop
/// again. At worst the loop wakes once more and finds nothing.
///
/// Two loops' worth of users: `LoopWork` (a loop's `.work`, woken through an
/// `AsyncNotifier`) and `BlockingPool` (the readiness backends' file I/O, woken through the
/// readiness loop's own eventfd). The inbox owns no descriptor: `wake` keeps alive whatever
/// it signals (the notifier closes its eventfd when the last reference goes, so a worker
/// that posts late never writes to a closed descriptor number).
package final class WorkInbox: @unchecked Sendable {
    // @unchecked Sendable: `head` is atomic, `wake` immutable; the jobs' `inboxNext` links
    // are ordered by `head`'s release and acquire (see `WorkPool.Job`).
    private let head = Atomic<UnsafeMutableRawPointer?>(nil)
    private let wake: @Sendable () -> Void

    /// `wake` is called (on the posting thread) when a post finds the list empty.
    package init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
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
    }

    /// Hands a finished job to the loop (any thread).
    package func post(_ job: WorkPool.Job) {
        let raw = Unmanaged.passRetained(job).toOpaque()
        var old = head.load(ordering: .relaxed)
        while true {
            job.inboxNext = old
            let (exchanged, current) = head.compareExchange(
                expected: old, desired: raw, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        if old == nil { wake() }
    }

    /// Calls `body` with every job posted so far, oldest first (loop thread). Reset the
    /// eventfd `wake` signals *before* calling this (see the type's comment).
    package func takeAll(_ body: (WorkPool.Job) -> Void) {
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
