// What epoll-only, poll-only and uring-only run on the loop each picked at compile time.
// Written once against EvLoop's `EventLoop` protocol, from the EvLoop product alone (the core
// and the watchers, no backend), so the same code serves every backend and brings none in.
import EvLoop
import Synchronization

/// Arms a 10 ms timer on `loop`, runs the loop until it has fired, and prints
/// "BACKEND: the 10 ms timer fired" (the line scripts/check-products.sh shows for each run).
public func fireTimer(on loop: some EventLoop) throws(EvError) {
    let backend = loop.backend
    let timer = Completion()
    try loop.timer(timer, after: .milliseconds(10)) { _, result in
        guard case .timer(.success) = result else { fatalError("the timer failed: \(result)") }
        print("\(backend): the 10 ms timer fired")
        return .disarm
    }
    try loop.run(.untilDone)
}

/// Runs a `LoopGroup` of two loops that `makeLoop` makes (each on its own thread), fires a
/// 10 ms timer on each, stops the group from its last timer and joins it, then prints
/// "BACKEND: a loop group of 2 fired its timers". The group lives in the core (EvLoop), so
/// a program built on one backend's product has it too.
public func fireTimersOnAGroup<L: EventLoop & SendableMetatype>(
    _ makeLoop: @escaping @Sendable (Int) throws -> L
) throws {
    let group = try LoopGroup(loops: 2, makeLoop: makeLoop)
    let fired = Fired()
    try group.start { member in
        let timer = Completion()
        try member.loop.timer(timer, after: .milliseconds(10)) { _, result in
            guard case .timer(.success) = result else { fatalError("the timer failed: \(result)") }
            if fired.add(member.loop.backend) == 2 { member.group.stop() }
            return .disarm
        }
    }
    try group.join()
    guard let backend = fired.backend, fired.count == 2 else { fatalError("only \(fired.count) of 2 timers fired") }
    print("\(backend): a loop group of 2 fired its timers")
}

/// The timers the group's loops fired, counted across their threads.
private final class Fired: Sendable {
    private let state = Mutex<(count: Int, backend: Backend?)>((0, nil))
    /// Counts one; returns the count so far.
    func add(_ backend: Backend) -> Int {
        state.withLock { s in
            s.count += 1
            s.backend = backend
            return s.count
        }
    }
    var count: Int { state.withLock { $0.count } }
    var backend: Backend? { state.withLock { $0.backend } }
}
