// uring-only: a program that depends on the EvUring product alone: io_uring through
// liburing, chosen at compile time (building it needs liburing-dev). What runs on the loop
// is TimerCheck, shared with the other one-backend programs.
import EvBackendUring
import TimerCheck

try fireTimer(on: UringLoop())
