#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with one condition variable: the blocking primitive of the library's
/// threads (the pool workers waiting for jobs, a loop group's start waiting for every
/// set-up).
///
/// Why not `Synchronization.Mutex`: these threads must sleep until another thread changes
/// the guarded state, and `Mutex` has no wait. Why a class: the mutex and the condition
/// must stay at one address for their whole life (a pthread object must not move), so they
/// are allocated once here and freed in `deinit`, when no thread can hold the lock.
///
/// `@unchecked Sendable`: pthread mutexes and condition variables are made to be used from
/// many threads at once, and the two pointers never change.
package final class BlockingLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    package init() {
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

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }

    /// Releases the lock, sleeps until signalled, and takes it again. Callers loop on
    /// their condition: a condition variable may wake spuriously (POSIX allows it).
    package func wait() { pthread_cond_wait(condition, mutex) }
    /// Wakes one waiter (call with the lock held).
    package func signal() { pthread_cond_signal(condition) }
    /// Wakes every waiter (call with the lock held).
    package func broadcast() { pthread_cond_broadcast(condition) }
}
