// Helpers for the async/await conformance tests: a loop with its executor, torn down in
// the one safe order, and a bounded way to run async code on it.
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The async body of a test ran past its time limit (a missing wake-up, a lost resume).
struct AsyncTestTimeout: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "the async test body did not finish within \(limit)" }
}

/// A loop on `backend`, its executor and a `Harness`, created on this thread (the thread the
/// executor binds to). Afterwards the executor is shut down and the loop drained; the test
/// fails if the executor's eventfd was not closed or a completion was left active.
func withAsyncLoop(_ backend: Backend, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: (LoopCore, LoopExecutor, Harness) throws -> Void) throws {
    let loop = try makeTestLoop(backend)
    let h = Harness(loop)
    let executor = try LoopExecutor(loop)
    defer {
        executor.shutdown()
        h.finish(sourceLocation: sourceLocation)
        #expect(executor.isClosed, "the executor's eventfd was not closed by shutdown() + drain", sourceLocation: sourceLocation)
    }
    try body(loop, executor, h)
}

/// `executor.run(body)`, bounded: a loop timer racing the body cancels it after `limit`
/// (so a hang fails the test instead of the suite), and the error says so.
func runAsync<T: Sendable>(_ executor: LoopExecutor, limit: Duration = .seconds(10),
                           _ body: @escaping @Sendable () async throws -> T) throws -> T {
    try executor.run {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await executor.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw AsyncTestTimeout(limit: limit)
            }
            return value
        }
    }
}

/// Like `runUntil`, but the loop is held open meanwhile by a foreground timer (at the
/// time limit), so the loop waits in the kernel for background completions too, such as
/// the executor's wake-up poll that jobs from other threads arrive through.
@discardableResult
func runUntilHeld(_ loop: LoopCore, timeout: Duration = .seconds(5), _ condition: () -> Bool) throws -> Bool {
    if condition() { return true }
    let hold = Completion()
    try loop.timer(hold, deadline: LoopInstant.now() + timeout) { _, _ in .disarm }
    while !condition() && hold.state == .active {
        try loop.run(.once)
    }
    if hold.state == .active {
        let cancel = Completion()
        try loop.cancel(hold, using: cancel)
        while hold.state == .active || cancel.state == .active { try loop.run(.noWait) }
    }
    return condition()
}

/// The calling thread's kernel id.
func currentThreadID() -> Int32 { cevsys_gettid() }

/// A buffer for async I/O tests: allocated, zero-filled, freed by `free()`.
final class TestBuffer: @unchecked Sendable {
    // @unchecked: the tests touch it only on the loop thread, one task at a time.
    let raw: UnsafeMutableRawBufferPointer
    init(_ count: Int, fill: UInt8 = 0) {
        raw = .allocate(byteCount: count, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: fill)
    }
    init(_ bytes: [UInt8]) {
        raw = .allocate(byteCount: bytes.count, alignment: 16)
        raw.copyBytes(from: bytes)
    }
    var bytes: [UInt8] { Array(raw) }
    deinit { raw.deallocate() }
}

/// A value shared between the loop thread and other threads in a test (a class, so that
/// escaping closures can capture it; `Mutex` itself is not copyable).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { value in body(&value) }
    }
    var value: Value { withLock { $0 } }
}
