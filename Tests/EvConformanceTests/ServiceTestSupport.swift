// Helpers for the tests of the services (WorkPool, Resolver, connect by name): a gate that
// holds pool threads, a counter for closures that ran, a record of callbacks' results,
// and a cancel that runs the loop until the outcome is in.
import Testing
import Ev
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A flag a test opens and pool closures wait for, so that a job is known to be running
/// (or a pool thread known to be busy) while the test does something. The wait is bounded,
/// so a test that forgets to open it fails instead of hanging the suite.
final class Gate: Sendable {
    private let opened = Atomic<Bool>(false)
    /// How many closures have reached `wait()` (each of them is running).
    private let reached = Atomic<Int>(0)

    func open() { opened.store(true, ordering: .releasing) }

    var isOpen: Bool { opened.load(ordering: .acquiring) }

    /// How many closures have reached `wait()`.
    var waiters: Int { reached.load(ordering: .acquiring) }

    /// Waits (on the test's thread, without running the loop: nothing would wake it) until
    /// `count` closures have reached `wait()`; false after `timeout`.
    func awaitWaiters(_ count: Int, timeout: Duration = .seconds(5)) -> Bool {
        spinUntil(timeout: timeout) { waiters >= count }
    }

    /// Waits (on a pool thread) until the gate is opened, at most `timeout`.
    func wait(timeout: Duration = .seconds(10)) {
        reached.add(1, ordering: .acquiringAndReleasing)
        _ = spinUntil(timeout: timeout) { isOpen }
    }
}

/// Waits on this thread, without running any loop, until `condition()` holds (something
/// another thread changes: a pool thread's progress); false after `timeout`.
@discardableResult
func spinUntil(timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = LoopInstant.now() + timeout
    while !condition() && LoopInstant.now() < deadline { usleep(200) }
    return condition()
}

/// Counts events from pool threads (closures that ran).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// The results a callback received, in order (loop thread only).
final class Outcomes<Value> {
    private(set) var all: [Result<Value, EvError>] = []

    /// A callback that records its result and ends the operation.
    var record: (Completion, Result<Value, EvError>) -> CallbackAction {
        { [self] _, r in
            all.append(r)
            return .disarm
        }
    }

    var count: Int { all.count }
    var last: Result<Value, EvError>? { all.last }
}

extension WorkPool {
    /// Runs a job that holds a pool thread until `gate` opens, then returns `value`.
    func runHeld<Value: Sendable>(loop: LoopCore, completion: Completion = Completion(), by gate: Gate,
                                  returning value: Value, into outcomes: Outcomes<Value>) throws {
        try run(loop: loop, completion: completion, { () throws(EvError) -> Value in
            gate.wait()
            return value
        }, callback: outcomes.record)
    }

    /// Runs a job that counts its run in `ran` and returns `value` (one that must never
    /// run, in the cancellation tests).
    func runCounted<Value: Sendable>(loop: LoopCore, completion: Completion = Completion(), ran: Counter,
                                     returning value: Value, into outcomes: Outcomes<Value>) throws {
        try run(loop: loop, completion: completion, { () throws(EvError) -> Value in
            ran.add()
            return value
        }, callback: outcomes.record)
    }
}

/// Cancels `target` through `loop` and runs the loop until the cancel has reported and
/// `until()` holds; returns the cancel's result.
func cancelAndRun(_ target: Completion, on loop: LoopCore, timeout: Duration = .seconds(5),
                  until: () -> Bool = { true }, sourceLocation: SourceLocation = #_sourceLocation) throws -> CompletionResult? {
    var cancelResult: CompletionResult?
    try loop.cancel(target, using: Completion()) { _, r in cancelResult = r; return .disarm }
    #expect(try runUntil(loop, timeout: timeout) { cancelResult != nil && until() }, sourceLocation: sourceLocation)
    return cancelResult
}

/// Two loopback ports for connect tests, owned by `h`: one with a listener (blocking, for
/// the test's accepts) and one bound without listening, so connecting there is refused.
struct LoopbackTargets {
    let listener: Int32
    let listening: SocketAddress
    let refusing: SocketAddress

    init(_ h: Harness) throws {
        let (l, port) = try Sock.listener()
        h.own(l)
        let (holder, closedPort) = try Sock.boundNotListening()
        h.own(holder)
        listener = l
        listening = try Sock.loopback(ipv6: false, port: port)
        refusing = try Sock.loopback(ipv6: false, port: closedPort)
    }
}

/// The calling thread's name as the kernel keeps it (/proc/thread-self/comm, newline cut).
func currentThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 32)
    let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return "" }
    return String(decoding: bytes[..<n].filter { $0 != 10 }, as: UTF8.self)
}
