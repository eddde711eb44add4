#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import EvReadiness
import CEvSys

/// The epoll(7) backend: the readiness engine (`ReadinessLoop`) waiting on an epoll set.
///
/// Chosen when io_uring is unavailable (containers whose seccomp profile blocks it, the
/// `kernel.io_uring_disabled` sysctl, old kernels). Each descriptor has one level-triggered
/// registration while operations wait on it, with interest = the union of their needs,
/// changed with EPOLL_CTL_MOD; an idle read registration is kept for the next operation,
/// so a request/response loop costs epoll_wait + read + write per round trip and no
/// epoll_ctl (libxev's epoll backend dup()s and ADDs/DELs per operation).
///
/// Waits use epoll_pwait2 (Linux 5.11+) for a nanosecond timeout; where it is missing the
/// loop falls back, once, to epoll_wait with milliseconds rounded *up*, so a sub-millisecond
/// timer neither fires early nor turns into a zero-timeout spin (PITFALLS E7).
///
/// Ownership: the loop owns its epoll set (closed by its poller's deinit) and its eventfd
/// (closed by `ReadinessLoop`'s deinit); the descriptors given to operations stay the
/// caller's, closed by the loop only through a `.close` operation.
public final class EpollLoop: ReadinessLoop {
    /// Creates an epoll loop: an epoll set and an eventfd, both close-on-exec.
    /// Fails when epoll_create1 fails (ENOSYS under some sandboxes, EMFILE).
    public init() throws(BackendUnavailable) {
        try super.init(backend: .epoll, poller: EpollPoller(nanosecondWaits: true))
    }

    /// For tests: `nanosecondWaits: false` starts on the epoll_wait fallback, as a kernel
    /// without epoll_pwait2 would.
    package init(nanosecondWaits: Bool) throws(BackendUnavailable) {
        try super.init(backend: .epoll, poller: EpollPoller(nanosecondWaits: nanosecondWaits))
    }
}

/// The epoll set, and the buffer its ready events are read into. Owns the epoll descriptor
/// and closes it in deinit (and when `reset` replaces it); never closes a watched one.
package final class EpollPoller: ReadinessPoller {
    private var epfd: Int32
    private let events: UnsafeMutablePointer<cevsys_ready_event>
    /// Events read per wait (CEvSys reads at most 256: more wait for the next tick).
    private let maxEvents: Int32 = 256
    /// False once epoll_pwait2 has failed with ENOSYS (kernel < 5.11) or EPERM (a seccomp
    /// filter that predates it): from then on the loop uses epoll_wait.
    private var hasPwait2: Bool

    package init(nanosecondWaits: Bool) throws(BackendUnavailable) {
        hasPwait2 = nanosecondWaits
        epfd = cevsys_epoll_create()
        guard epfd >= 0 else {
            let e = cevsys_errno()
            throw BackendUnavailable(backend: .epoll, reason: "epoll_create1 failed: \(String(cString: strerror(e)))", errno: e)
        }
        events = .allocate(capacity: Int(maxEvents))
    }

    deinit {
        close(epfd)
        events.deallocate()
    }

    package var registrationsAreKernelState: Bool { true }

    @inline(__always)
    private func control(_ op: Int32, _ fd: Int32, _ bits: UInt32) -> Int32 {
        cevsys_epoll_ctl(epfd, op, fd, bits) == 0 ? 0 : cevsys_errno()
    }

    package func add(fd: Int32, events bits: UInt32) -> Int32 {
        control(Int32(CEVSYS_EPOLL_CTL_ADD), fd, bits)
    }

    package func modify(fd: Int32, events bits: UInt32) -> Int32 {
        control(Int32(CEVSYS_EPOLL_CTL_MOD), fd, bits)
    }

    package func remove(fd: Int32) -> Int32 {
        control(Int32(CEVSYS_EPOLL_CTL_DEL), fd, 0)
    }

    package func wait(timeout: UInt64?) -> Int {
        if hasPwait2 {
            let (seconds, nanoseconds) = timespecParts(timeout)
            let n = cevsys_epoll_pwait2(epfd, events, maxEvents, seconds, nanoseconds)
            if n >= 0 { return Int(n) }
            let e = cevsys_errno()
            guard e == ENOSYS || e == EPERM else { return -Int(e) }
            // ENOSYS: kernel older than 5.11. EPERM: a seccomp profile written before the
            // call existed. Latch the fallback so the failed call is not repeated.
            hasPwait2 = false
        }
        let ms: Int32
        if let t = timeout {
            // Round up: truncating would turn a 0.3 ms deadline into a 0 ms wait, and the
            // loop would spin until it passed (PITFALLS E7).
            let clamped = min(t, maximumWaitNanoseconds)
            ms = Int32((clamped + 999_999) / 1_000_000)
        } else {
            ms = -1
        }
        let n = cevsys_epoll_wait(epfd, events, maxEvents, ms)
        return n >= 0 ? Int(n) : -Int(cevsys_errno())
    }

    package var readyEvents: UnsafePointer<cevsys_ready_event> { UnsafePointer(events) }

    package func reset() -> Int32 {
        let fresh = cevsys_epoll_create()
        guard fresh >= 0 else { return cevsys_errno() }
        close(epfd)
        epfd = fresh
        return 0
    }
}
