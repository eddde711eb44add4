// epoll-async: async/await on an epoll loop, from the EvEpoll and EvAsync products (no
// liburing). The loop is the task's executor; the awaited sleep is a loop timer.
import EvLoop
import EvBackendEpoll
import EvAsync

let loop = try EpollLoop()
let executor = try LoopExecutor(loop)
try executor.run {
    try await executor.sleep(for: .milliseconds(10))
    print("epoll: slept 10 ms on the loop executor")
}
executor.shutdown()
try loop.run(.untilDone)
