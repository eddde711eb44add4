#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A POSIX thread running one closure. (Loops are not `Sendable`: each benchmark thread
/// creates its own loop inside `body`.)
public final class BenchThread: @unchecked Sendable {
    // @unchecked: `handle` is written once in init, before any other thread can see self,
    // and read only by `join`, on the creating thread.
    private var handle = pthread_t()

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    public init(_ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&handle, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    public func join() {
        pthread_join(handle, nil)
    }
}

/// A value handed from one thread to another, once (the server thread's port, say).
public final class Handoff<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)

    public init() {}

    public func put(_ v: Value) {
        value.withLock { $0 = v }
    }

    /// Waits (politely: the threads may share one CPU) until a value has been put.
    public func take() -> Value {
        while true {
            if let v = value.withLock({ $0 }) { return v }
            usleep(200)
        }
    }
}
