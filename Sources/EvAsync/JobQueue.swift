/// A FIFO of jobs for the loop thread: a growable ring buffer with no lock.
///
/// Only the loop thread touches it, so a push is a store and an index increment; the
/// buffer doubles when full and never shrinks, so in steady state (a program whose number
/// of runnable tasks stays bounded) enqueuing a job allocates nothing. `UnownedJob` is a
/// plain pointer to the runtime's job, so the buffer holds no references to retain.
struct JobQueue: ~Copyable {
    private var storage: UnsafeMutablePointer<UnownedJob>
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

    mutating func push(_ job: UnownedJob) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: job)
        count += 1
    }

    mutating func pop() -> UnownedJob? {
        guard count > 0 else { return nil }
        let job = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return job
    }

    private mutating func grow() {
        let newCapacity = capacity * 2
        let newStorage = UnsafeMutablePointer<UnownedJob>.allocate(capacity: newCapacity)
        for i in 0..<count {
            (newStorage + i).initialize(to: (storage + ((head + i) & (capacity - 1))).move())
        }
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
        head = 0
    }
}
