#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A plain OS thread for a loop.
///
/// A loop is driven by one long-lived thread for its whole life (DESIGN invariant 8): an
/// io_uring request belongs to the thread that submitted it, and Swift concurrency's or
/// Dispatch's pool threads come and go (PITFALLS B11, K5). So the multi-threaded server
/// starts its own pthreads rather than tasks.
public struct LoopThread: Sendable {
    private let handle: pthread_t

    private final class Start: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts a thread running `body`. It inherits the caller's signal mask.
    public init(_ body: @escaping @Sendable () -> Void) {
        var t = pthread_t()
        let start = Unmanaged.passRetained(Start(body)).toOpaque()
        let r = pthread_create(&t, nil, { raw in
            let s = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            s.body()
            return nil
        }, start)
        if r != 0 {
            Report.fail("evloop-example", "pthread_create failed: errno \(r)")
        }
        handle = t
    }

    /// Waits for the thread to finish.
    public func join() {
        pthread_join(handle, nil)
    }
}
