// uring-only: a program that depends on the EvUring product alone: io_uring through
// liburing, chosen at compile time (building it needs liburing-dev).
import EvLoop
import EvBackendUring

let loop = try UringLoop()
let timer = Completion()
try loop.timer(timer, after: .milliseconds(10)) { _, result in
    guard case .timer(.success) = result else { fatalError("the timer failed: \(result)") }
    print("\(loop.backend): the 10 ms timer fired")
    return .disarm
}
try loop.run(.untilDone)
