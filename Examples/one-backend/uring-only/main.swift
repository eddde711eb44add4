// uring-only: a program that depends on the EvUring product alone: io_uring through
// liburing, chosen at compile time (building it needs liburing-dev). What runs on the loop
// is TimerCheck, shared with the other one-backend programs: a timer on one loop, then a
// timer on each loop of a two-loop LoopGroup.
import EvBackendUring
import TimerCheck

try fireTimer(on: UringLoop())
try fireTimersOnAGroup { _ in try UringLoop() }
