// Swift Testing tags for the pitfall IDs of docs/PITFALLS.md: a test that covers pitfall Xn
// carries `.pitfallXn`, so the tests of one pitfall are found by tag wherever the feature
// they exercise puts them (docs/PITFALLS.md, "Finding the tests of a pitfall").
// Every ID has a tag here, also those with no test (handled in code, not applicable or
// informational), so the list is complete; docs/PITFALLS.md says which those are.
import Testing

extension Tag {
    /// A1. A cancel by `user_data` is ambiguous when the completion is reused
    @Tag static var pitfallA1: Self
    /// A2. The cancel must check the target's state
    @Tag static var pitfallA2: Self
    /// A3. A stale event for a completion retired earlier in the same batch must not run its callback
    @Tag static var pitfallA3: Self
    /// A4. A "fast path" rearm must leave the state consistent
    @Tag static var pitfallA4: Self
    /// A5. Backend-owned resources are released on every retirement path
    @Tag static var pitfallA5: Self
    /// A6. A completion and its buffer belong to the kernel until the target's own CQE
    @Tag static var pitfallA6: Self
    /// A7. A cancel can lose the race
    @Tag static var pitfallA7: Self
    /// A8. An accept or open may succeed despite its cancel; its result must not be dropped
    @Tag static var pitfallA8: Self
    /// A9. Cancel of an operation still in the userspace overflow queue
    @Tag static var pitfallA9: Self
    /// A10. Cancelling a cancel
    @Tag static var pitfallA10: Self
    /// A11. `close(fd)` does not cancel in-flight io_uring requests
    @Tag static var pitfallA11: Self
    /// A12. A close off-loaded to a thread races cancel
    @Tag static var pitfallA12: Self
    /// B1. Submission queue full
    @Tag static var pitfallB1: Self
    /// B2. `io_uring_enter` returns EBUSY/EAGAIN
    @Tag static var pitfallB2: Self
    /// B3. Partial submission
    @Tag static var pitfallB3: Self
    /// B4. A submit error after the SQE is in the ring
    @Tag static var pitfallB4: Self
    /// B5. Completion queue overflow
    @Tag static var pitfallB5: Self
    /// B6. A multishot request ends on CQ overflow
    @Tag static var pitfallB6: Self
    /// B7. EINTR
    @Tag static var pitfallB7: Self
    /// B8. Re-entrancy
    @Tag static var pitfallB8: Self
    /// B9. SINGLE_ISSUER / DEFER_TASKRUN / COOP_TASKRUN
    @Tag static var pitfallB9: Self
    /// B10. SQPOLL is a CPU and privilege trap
    @Tag static var pitfallB10: Self
    /// B11. An io_uring request is tied to the task that submitted it
    @Tag static var pitfallB11: Self
    /// B12. fork: ring and epoll descriptors
    @Tag static var pitfallB12: Self
    /// C1. Android: seccomp kills the process on `io_uring_setup`
    @Tag static var pitfallC1: Self
    /// C2. Container seccomp profiles block io_uring (EPERM)
    @Tag static var pitfallC2: Self
    /// C3. `kernel.io_uring_disabled`
    @Tag static var pitfallC3: Self
    /// C4. ENOSYS
    @Tag static var pitfallC4: Self
    /// C5. ENOMEM at setup (RLIMIT_MEMLOCK)
    @Tag static var pitfallC5: Self
    /// C6. Setup succeeds but `io_uring_enter` is blocked
    @Tag static var pitfallC6: Self
    /// C7. Opcode support varies by kernel
    @Tag static var pitfallC7: Self
    /// C8. Known-bad kernels; an environment override
    @Tag static var pitfallC8: Self
    /// C9. Silent fallback
    @Tag static var pitfallC9: Self
    /// C10. A privilege drop keeps io_uring credentials
    @Tag static var pitfallC10: Self
    /// D1. Never IORING_OP_READ on eventfd/timerfd/signalfd/pidfd
    @Tag static var pitfallD1: Self
    /// D2. Spurious eventfd wake-up (EAGAIN)
    @Tag static var pitfallD2: Self
    /// D3. IORING_OP_TIMEOUT's completion count
    @Tag static var pitfallD3: Self
    /// D4. Timer remove and reset races
    @Tag static var pitfallD4: Self
    /// D5. Linked timeouts
    @Tag static var pitfallD5: Self
    /// D6. Short writes and short reads
    @Tag static var pitfallD6: Self
    /// D7. send/recv return -EAGAIN on io_uring
    @Tag static var pitfallD7: Self
    /// D8. Multishot receive and provided buffers
    @Tag static var pitfallD8: Self
    /// D9. Result mapping edge cases
    @Tag static var pitfallD9: Self
    /// D10. SIGPIPE
    @Tag static var pitfallD10: Self
    /// D11. Registered files, fixed buffers, buffer rings
    @Tag static var pitfallD11: Self
    /// E1. Regular files and /dev/null cannot be epolled
    @Tag static var pitfallE1: Self
    /// E2. The same descriptor registered twice
    @Tag static var pitfallE2: Self
    /// E3. epoll tracks open file descriptions, not numbers
    @Tag static var pitfallE3: Self
    /// E4. Level-triggered vs EPOLLONESHOT
    @Tag static var pitfallE4: Self
    /// E5. HUP/ERR must complete pending operations
    @Tag static var pitfallE5: Self
    /// E6. POLLNVAL
    @Tag static var pitfallE6: Self
    /// E7. Millisecond timeout precision
    @Tag static var pitfallE7: Self
    /// E8. EMFILE on accept
    @Tag static var pitfallE8: Self
    /// E9. Thread-pool completions wake the loop; wake-ups drain
    @Tag static var pitfallE9: Self
    /// F1. Reset needs a defined state machine
    @Tag static var pitfallF1: Self
    /// F2. A stale cached `now`
    @Tag static var pitfallF2: Self
    /// F3. A self-rearming 0 ms timer starves I/O
    @Tag static var pitfallF3: Self
    /// F4. Repeat and drift semantics
    @Tag static var pitfallF4: Self
    /// F5. Huge durations
    @Tag static var pitfallF5: Self
    /// F6. Never early
    @Tag static var pitfallF6: Self
    /// G1. Coalescing without a lost wake-up
    @Tag static var pitfallG1: Self
    /// G2. Stop from another thread
    @Tag static var pitfallG2: Self
    /// G3. Internal descriptors are close-on-exec
    @Tag static var pitfallG3: Self
    /// H1. pidfd_open fails with ENOSYS, EPERM or EMFILE
    @Tag static var pitfallH1: Self
    /// H2. Exit status; a child that already exited
    @Tag static var pitfallH2: Self
    /// H3. No `waitpid(-1)`, no SIGCHLD handler
    @Tag static var pitfallH3: Self
    /// H4. Spawn with stdio, no descriptor leaks
    @Tag static var pitfallH4: Self
    /// H5. A signals watcher
    @Tag static var pitfallH5: Self
    /// I1. connect/shutdown error mapping
    @Tag static var pitfallI1: Self
    /// I2. Spurious readiness (EAGAIN after a wake-up)
    @Tag static var pitfallI2: Self
    /// I3. UDP source address and truncation
    @Tag static var pitfallI3: Self
    /// I4. Current-offset file I/O
    @Tag static var pitfallI4: Self
    /// I5. Queued-write code and an empty queue
    @Tag static var pitfallI5: Self
    /// I6. Pool shutdown with work in flight
    @Tag static var pitfallI6: Self
    /// J1. Teardown with in-flight operations
    @Tag static var pitfallJ1: Self
    /// J2. Active-count accounting
    @Tag static var pitfallJ2: Self
    /// J3. A pending accept; stop and cancel-all
    @Tag static var pitfallJ3: Self
    /// K1. Pointers from `&`
    @Tag static var pitfallK1: Self
    /// K2. -errno vs errno
    @Tag static var pitfallK2: Self
    /// K3. liburing inline helpers need shims
    @Tag static var pitfallK3: Self
    /// K4. SwiftNIO's io_uring lessons
    @Tag static var pitfallK4: Self
    /// K5. Runtime threads come and go
    @Tag static var pitfallK5: Self
}
