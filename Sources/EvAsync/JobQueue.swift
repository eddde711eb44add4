/// A job for the loop thread, and which of the executor's two faces it was enqueued on.
///
/// Why the face matters: a job enqueued on the serial executor (an actor bound to the loop)
/// must run isolated to it, while a job enqueued on the task executor (nonisolated code of
/// a task that prefers the loop) must run with no serial executor, only the task executor.
/// Running the latter "isolated to the loop" makes the task's next nonisolated step look
/// like a hop away from an actor: the runtime enqueues it again (a second job, a task
/// switch) instead of carrying on in place.
struct LoopJob {
    let job: UnownedJob
    /// Enqueued on the serial executor (actor code), not the task executor.
    let isolated: Bool
}

/// A FIFO of jobs for the loop thread: a growable ring buffer with no lock.
///
/// Only the loop thread touches it, so a push is a store and an index increment; the
/// buffer doubles when full and never shrinks, so in steady state (a program whose number
/// of runnable tasks stays bounded) enqueuing a job allocates nothing. `UnownedJob` is a
/// plain pointer to the runtime's job, so the buffer holds no references to retain.
struct JobQueue: ~Copyable {
    private var storage: UnsafeMutablePointer<LoopJob>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = capacity
        self.storage = .allocate(capacity: capacity)
    }

    deinit {
        // Jobs still queued here belong to tasks that never ran again: the executor only
        // goes away once its loop has stopped using it, and a job cannot be destroyed
        // without running it, so they are dropped with the storage.
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    // Push and pop always inlined into the executor's enqueue and drain, their only
    // callers (a call each per await, about 25 instructions); growing stays out of line.
    @inline(__always)
    mutating func push(_ job: LoopJob) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: job)
        count += 1
    }

    @inline(__always)
    mutating func pop() -> LoopJob? {
        guard count > 0 else { return nil }
        let job = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return job
    }

    @inline(never)
    private mutating func grow() {
        let newCapacity = capacity * 2
        let newStorage = UnsafeMutablePointer<LoopJob>.allocate(capacity: newCapacity)
        for i in 0..<count {
            (newStorage + i).initialize(to: (storage + ((head + i) & (capacity - 1))).move())
        }
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
        head = 0
    }
}
