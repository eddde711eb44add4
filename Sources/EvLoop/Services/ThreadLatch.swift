#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A countdown latch: threads call `countDown()`, and `wait()` blocks until the count has
/// reached zero. `LoopGroup.start` waits on one for every loop's set-up.
///
/// `@unchecked Sendable` is safe here because the one piece of mutable state, `remaining`,
/// is only read or written while `blocking` is locked (`BlockingLock` is thread-safe).
package final class ThreadLatch: @unchecked Sendable {
    private let blocking = BlockingLock()
    /// Guarded by `blocking`.
    private var remaining: Int

    /// A latch that opens after `count` calls to `countDown()` (at once if `count <= 0`).
    package init(count: Int) {
        remaining = count
    }

    /// Counts one down; the last one wakes every waiter.
    package func countDown() {
        blocking.lock()
        remaining -= 1
        if remaining == 0 { blocking.broadcast() }
        blocking.unlock()
    }

    /// Blocks until the count is zero.
    package func wait() {
        blocking.lock()
        // A loop, not an `if`: condition variables may wake spuriously (POSIX allows it).
        while remaining > 0 { blocking.wait() }
        blocking.unlock()
    }
}
