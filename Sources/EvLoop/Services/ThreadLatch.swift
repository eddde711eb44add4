#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A countdown latch: threads call `countDown()`, and `wait()` blocks until the count has
/// reached zero. `LoopGroup.start` waits on one for every loop's set-up.
///
/// Why a condition variable and not `Synchronization.Mutex`: the waiting thread must sleep
/// until another thread counts down, and `Mutex` has no wait; a pthread mutex and condition
/// variable are the plain blocking primitive for that.
///
/// `@unchecked Sendable` is safe here because: `mutex` and `condition` are allocated once in
/// `init`, never reassigned, and freed only in `deinit` (when no thread can hold a reference
/// any more); pthread mutexes and condition variables are made to be used from many threads
/// at once; and the one piece of mutable state, `remaining`, is only read or written while
/// `mutex` is held.
package final class ThreadLatch: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// Guarded by `mutex`.
    private var remaining: Int

    /// A latch that opens after `count` calls to `countDown()` (at once if `count <= 0`).
    package init(count: Int) {
        remaining = count
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Counts one down; the last one wakes every waiter.
    package func countDown() {
        pthread_mutex_lock(mutex)
        remaining -= 1
        if remaining == 0 { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// Blocks until the count is zero.
    package func wait() {
        pthread_mutex_lock(mutex)
        // A loop, not an `if`: condition variables may wake spuriously (POSIX allows it).
        while remaining > 0 { pthread_cond_wait(condition, mutex) }
        pthread_mutex_unlock(mutex)
    }
}
