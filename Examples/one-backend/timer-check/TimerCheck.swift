// What epoll-only, poll-only and uring-only run on the loop each picked at compile time.
// Written once against EvLoop's `EventLoop` protocol, from the EvLoop product alone (the core
// and the watchers, no backend), so the same code serves every backend and brings none in.
import EvLoop

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
