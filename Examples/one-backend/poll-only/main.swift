// poll-only: a program that depends on the EvPoll product alone, so it builds and runs
// without liburing. The concrete loop type is chosen here, at compile time.
import EvLoop
import EvBackendPoll

let loop = try PollLoop()
let timer = Completion()
try loop.timer(timer, after: .milliseconds(10)) { _, result in
    guard case .timer(.success) = result else { fatalError("the timer failed: \(result)") }
    print("\(loop.backend): the 10 ms timer fired")
    return .disarm
}
try loop.run(.untilDone)
