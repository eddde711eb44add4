#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// Readiness bits, in poll(2)'s numbering. epoll(7) uses the same values for every bit the
/// engine asks for or reads (EPOLLIN == POLLIN, EPOLLOUT == POLLOUT, EPOLLERR, EPOLLHUP,
/// EPOLLRDHUP == POLLRDHUP), so the pollers pass them through untranslated.
package enum ReadyBits {
    package static let readable: UInt32 = 0x001
    package static let priority: UInt32 = 0x002
    package static let writable: UInt32 = 0x004
    package static let error: UInt32 = 0x008
    package static let hangup: UInt32 = 0x010
    package static let invalid: UInt32 = 0x020
    package static let readHangup: UInt32 = 0x2000
    /// The bits a registration can ask for; ERR and HUP are reported whether asked or not.
    package static let interest: UInt32 = readable | priority | writable | readHangup
}

/// The part of a readiness backend that differs between epoll and poll: how interest is
/// registered and how the loop waits. Everything else (waiter lists, retries, the thread
/// pool, cancellation) lives once in `ReadinessLoop`, so the two backends cannot drift
/// apart in semantics.
///
/// A poller keeps at most one registration per descriptor; the engine tells it the union
/// of what every operation waiting on that descriptor needs. Results are errno values
/// (0 for success), never thrown: the engine decides per errno what a waiting operation
/// sees.
package protocol ReadinessPoller: AnyObject {
    /// True when registrations are kernel state (epoll): changing one costs a system call,
    /// so the engine keeps an idle read registration for the next operation instead of
    /// deleting it; and a registration can vanish when its descriptor is closed with
    /// close(2), so a kept one must be confirmed (EPOLL_CTL_MOD) before it is relied on
    /// again, unless the engine can tell the descriptor cannot have changed.
    /// False (poll) when registrations are a userland array rebuilt into every wait.
    var registrationsAreKernelState: Bool { get }
    /// Starts watching `fd` for `events`. Returns 0 or an errno (EEXIST, EPERM, EBADF, ...).
    func add(fd: Int32, events: UInt32) -> Int32
    /// Changes the events of a registered `fd`. Returns 0 or an errno (ENOENT, ...).
    func modify(fd: Int32, events: UInt32) -> Int32
    /// Stops watching `fd`. Returns 0 or an errno (ENOENT, EBADF).
    func remove(fd: Int32) -> Int32
    /// Waits up to `timeout` nanoseconds (nil: until something is ready). Returns the
    /// number of ready descriptors, readable afterwards in `readyEvents`, or -errno
    /// (-EINTR when a signal interrupted the wait).
    func wait(timeout: UInt64?) -> Int
    /// The ready descriptors of the last `wait`, with their reported bits, as many as it
    /// returned. The memory stays put until the next `wait`, whatever the engine registers
    /// meanwhile, so the engine reads this once per wait: asking through the existential
    /// for each event was a witness call per ready descriptor (about 11 instructions each,
    /// callgrind).
    var readyEvents: UnsafePointer<cevsys_ready_event> { get }
    /// Replaces the kernel object by a fresh, empty one (every registration is lost; the
    /// engine adds them again). Returns 0 or an errno. Only meaningful for epoll, where it
    /// is the one way to drop a registration whose descriptor number was closed while a
    /// dup kept the file open (epoll(7), "Q6"): such a registration can no longer be
    /// named in EPOLL_CTL_DEL and would report forever.
    func reset() -> Int32
}

/// The longest single wait: about 24.8 days (Int32.max milliseconds, the most epoll_wait
/// accepts). A longer timeout (a timer at `LoopInstant.distantFuture`) is cut to this, and
/// the loop simply waits again; clamping here keeps every conversion below from overflowing.
/// A computed constant rather than a stored global: a global read from another module (the
/// pollers) goes through a lazy-initialization addressor and `swift_once` on every wait
/// with a timeout (12 instructions per datagram of udp_pummel on epoll, callgrind).
@inlinable package var maximumWaitNanoseconds: UInt64 { UInt64(Int32.max) * 1_000_000 }

/// Splits a timeout into seconds and nanoseconds for a timespec; (-1, 0) means "forever".
@inline(__always)
package func timespecParts(_ timeout: UInt64?) -> (seconds: Int64, nanoseconds: Int64) {
    guard let t = timeout else { return (-1, 0) }
    let ns = min(t, maximumWaitNanoseconds)
    return (Int64(ns / 1_000_000_000), Int64(ns % 1_000_000_000))
}
