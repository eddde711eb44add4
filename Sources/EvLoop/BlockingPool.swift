#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A small pool of threads for I/O that cannot be made non-blocking: reads and writes on
/// regular files, which readiness APIs report as always ready (poll) or refuse (epoll).
///
/// The loop thread copies an operation's arguments into a `Job` (the worker never touches
/// a `Completion`, which is not thread-safe), a worker performs the blocking system call,
/// and the result comes back through `drainResults`; the `wake` closure (an eventfd write)
/// makes the loop look at once instead of at its next timeout (libxev#4 waited 100 ms).
/// Threads start on first use, so a loop that never touches a file never spawns one.
/// `shutdown()` finishes the jobs already taken and joins every thread (libxev PR #113,
/// #130: the pool's shutdown must neither use freed memory nor deadlock).
package final class BlockingPool: @unchecked Sendable {
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

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let wake: @Sendable () -> Void
    private let maxThreads: Int
    private var threads: [pthread_t] = []
    private var pending: [Job] = []
    private var pendingHead = 0
    private var running: Set<UInt64> = []
    private var results: [(id: UInt64, raw: Int)] = []
    private var stopping = false

    /// `wake` is called (from a worker thread) after each result is posted.
    package init(threads: Int = 2, wake: @escaping @Sendable () -> Void) {
        self.maxThreads = max(1, threads)
        self.wake = wake
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        shutdown()
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// Queues a job; a worker will perform it and post its result.
    package func submit(_ job: Job) {
        lock()
        pending.append(job)
        let needThread = threads.count < maxThreads && (pending.count - pendingHead) > idleWorkers
        pthread_cond_signal(condition)
        unlock()
        if needThread { spawnWorker() }
    }

    private var idleWorkers = 0

    /// Withdraws a job that no worker has started. Returns false when it is running or
    /// finished (its result will arrive, or has arrived, through `drainResults`).
    package func cancel(id: UInt64) -> Bool {
        lock(); defer { unlock() }
        if let i = pending[pendingHead...].firstIndex(where: { $0.id == id }) {
            pending.remove(at: i)
            return true
        }
        return false
    }

    /// Hands every posted result to `body` (on the caller's thread, outside the lock).
    package func drainResults(_ body: (UInt64, Int) -> Void) {
        lock()
        if results.isEmpty { unlock(); return }
        // Swap the posted results with the (empty) spare array instead of copying, so a
        // drain does not allocate once both arrays have grown to the working size.
        swap(&results, &draining)
        unlock()
        for r in draining { body(r.id, r.raw) }
        draining.removeAll(keepingCapacity: true)
    }

    /// Only touched by the thread that calls `drainResults` (the loop thread).
    private var draining: [(id: UInt64, raw: Int)] = []

    /// Stops the workers after the jobs they are running, drops queued jobs, joins.
    package func shutdown() {
        lock()
        stopping = true
        pthread_cond_broadcast(condition)
        let ts = threads
        threads.removeAll()
        unlock()
        for t in ts { pthread_join(t, nil) }
    }

    private func spawnWorker() {
        lock()
        guard !stopping, threads.count < maxThreads else { unlock(); return }
        var t = pthread_t()
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&t, nil, { arg in
            let pool = Unmanaged<BlockingPool>.fromOpaque(arg!).takeRetainedValue()
            pool.workerLoop()
            return nil
        }, ctx)
        if rc == 0 {
            threads.append(t)
        } else {
            Unmanaged<BlockingPool>.fromOpaque(ctx).release()
        }
        unlock()
    }

    private func workerLoop() {
        lock()
        while true {
            while pendingHead >= pending.count && !stopping {
                idleWorkers += 1
                pthread_cond_wait(condition, mutex)
                idleWorkers -= 1
            }
            if stopping { break }
            let job = pending[pendingHead]
            pendingHead += 1
            if pendingHead > 64 && pendingHead * 2 > pending.count {
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
            running.insert(job.id)
            unlock()
            let raw = job.perform()
            lock()
            running.remove(job.id)
            results.append((job.id, raw))
            unlock()
            wake()
            lock()
        }
        unlock()
    }
}
