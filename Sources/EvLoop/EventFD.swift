#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// An eventfd(2) used as a wake-up: one thread `signal()`s it, the loop waits for it to be
/// readable and `drain()`s it. The one copy of that primitive: `AsyncNotifier`, the
/// readiness engine's thread-pool wake-up and `LoopExecutor` all use it.
///
/// How a loop waits on it: poll the descriptor for readability (a `.poll` operation, or a
/// readiness registration), then `drain()` with read(2) on the loop thread. Never read it
/// through io_uring: Linux 6.15.4 made io_uring reads of an eventfd block forever (anon
/// inodes looked like regular files). Always non-blocking, so a read that finds the counter
/// at zero returns EAGAIN instead of hanging the loop.
///
/// Ownership: a plain value holding the descriptor number; it does not close it by itself.
/// Whoever creates one owns the descriptor and calls `close()` once (or closes the number
/// through the loop's `.close`), after the last `signal()` that could reach it: a signal
/// after the close could write into a descriptor number the kernel has handed to someone
/// else.
package struct EventFD: Sendable {
    /// The eventfd (always non-blocking and close-on-exec).
    package let descriptor: Int32

    /// Creates the eventfd with a zero counter: EFD_NONBLOCK | EFD_CLOEXEC plus `flags`
    /// (for instance EFD_SEMAPHORE). Throws the errno of eventfd(2) (EMFILE, ENFILE, ENOMEM).
    package init(flags: Int32 = 0) throws(EvError) {
        let fd = cevsys_eventfd(0, O_CLOEXEC | O_NONBLOCK | flags)
        guard fd >= 0 else { throw EvError(errno: cevsys_errno()) }
        descriptor = fd
    }

    /// Adds one to the counter, making the descriptor readable. Safe from any thread.
    ///
    /// EINTR (a signal handler ran before the write) is retried. EAGAIN means the counter is
    /// at its maximum (2^64 - 2): the eventfd is readable already, so this signal is
    /// coalesced with the pending ones and nothing is lost. Any other error (EBADF) can only
    /// come from a closed descriptor, which the owner's rules exclude.
    @inline(__always)
    package func signal() {
        var one: UInt64 = 1
        // cevsys_write: no cancellation-point wrapper (see CEvSys.c).
        while cevsys_write(descriptor, &one, 8) == -Int(EINTR) {}
    }

    /// Reads (and so resets) the counter: `.success(true)` if it was non-zero, `.success(false)`
    /// when it was zero (EAGAIN), `.failure` for any other errno. Loop thread only.
    ///
    /// EINTR is retried. EAGAIN is harmless: a spurious wake-up, a drain earlier in the same
    /// tick that took the value already, another reader, or the Linux 5.7 eventfds that could
    /// report readable with nothing to read (PITFALLS D2); the caller just waits again.
    @discardableResult
    package func drain() -> Result<Bool, EvError> {
        var value: UInt64 = 0
        while true {
            let r = cevsys_read(descriptor, &value, 8)
            if r == 8 { return .success(true) }
            if r == -Int(EINTR) { continue }
            if r == -Int(EAGAIN) { return .success(false) }
            return .failure(EvError(errno: Int32(truncatingIfNeeded: -r)))
        }
    }

    /// Closes the descriptor (once; see "Ownership"). EINTR is not retried: Linux has
    /// released the descriptor already, and a retry could close a number another thread
    /// was just given.
    package func close() {
        _ = closeDescriptor(descriptor)
    }
}

/// close(2) under a name that a type with its own `close()` can call.
@inline(__always)
private func closeDescriptor(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Musl.close(fd)
    #endif
}
