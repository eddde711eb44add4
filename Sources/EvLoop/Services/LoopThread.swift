#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// A plain POSIX thread that runs one closure: the thread a `LoopGroup` gives each loop.
///
/// Why not a Swift concurrency task or a Dispatch queue: a loop is driven by one long-lived
/// thread for its whole life (DESIGN invariant 8). Its completions are not `Sendable`, an
/// io_uring ring created with SINGLE_ISSUER only accepts submissions from the thread that
/// created it, and the pool threads of Swift concurrency and Dispatch come and go
/// (PITFALLS B11, K5). So the group starts threads of its own, and joins them.
///
/// The thread inherits the creating thread's signal mask, which is what a server that
/// blocks SIGINT and SIGTERM before starting its loops (to read them from a signalfd) needs.
package struct LoopThread: Sendable {
    /// The pthread handle (an integer on Linux, so the value is `Sendable`).
    package let handle: pthread_t

    /// The closure, boxed so it can cross `pthread_create`'s `void *` argument.
    private final class Start: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts a thread running `body`. Throws the errno of pthread_create (EAGAIN: the process or system thread
    /// limit) when the thread cannot be created; nothing is left behind then.
    package init(name: String, _ body: @escaping @Sendable () -> Void) throws(EvError) {
        var t = pthread_t()
        let start = Unmanaged.passRetained(Start({
            // Named from inside (pthread_setname_np on another thread needs its handle
            // before it runs): what `top -H` and debuggers show.
            _ = cevsys_set_thread_name(name)
            body()
        }))
        let r = pthread_create(&t, nil, { raw in
            Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, start.toOpaque())
        guard r == 0 else {
            start.release()   // the thread never started: the retain for it is ours to drop
            throw EvError(errno: r)
        }
        handle = t
    }

    /// Whether the calling thread is this one.
    package var isCurrent: Bool { pthread_equal(pthread_self(), handle) != 0 }

    /// Waits for the thread to finish and releases its resources. Call it once.
    package func join() {
        _ = pthread_join(handle, nil)
    }

    /// Lets the thread release its resources by itself when it ends (for a thread nobody
    /// will join). Call it at most once, and never after `join`.
    package func detach() {
        _ = pthread_detach(handle)
    }
}
