// epoll-only: a program that depends on the EvEpoll product alone, so it builds and runs
// without liburing. The concrete loop type is chosen here, at compile time; what runs on it
// is TimerCheck, shared with the other one-backend programs: a timer on one loop, then a
// timer on each loop of a two-loop LoopGroup.
import EvBackendEpoll
import TimerCheck

try fireTimer(on: EpollLoop())
try fireTimersOnAGroup { _ in try EpollLoop() }
