#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import EvReadiness
import CEvSys

/// The poll(2) backend: the portable fallback when neither io_uring nor epoll can be used
/// (a sandbox that filters both, an exotic kernel build).
///
/// It is the shared readiness engine (`ReadinessLoop`) waiting with ppoll(2), which takes
/// a nanosecond timespec, so sub-millisecond timers neither fire early nor spin the loop
/// (PITFALLS E7). Its registrations are a userland array of pollfds handed to the kernel
/// on every wait: changing interest costs no system call, but each wait costs time
/// proportional to the number of watched descriptors, which is why epoll is preferred.
/// A descriptor closed behind the loop's back is reported by poll as POLLNVAL and fails
/// its waiting operations with `.badFileDescriptor` (PITFALLS E6).
///
/// Ownership: the loop owns only its eventfd (closed by `ReadinessLoop`'s deinit); the
/// descriptors given to operations stay the caller's, closed by the loop only through a
/// `.close` operation.
public final class PollLoop: ReadinessLoop {
    /// Creates a poll loop. Fails only when the loop's eventfd cannot be created
    /// (out of descriptors).
    public init() throws(BackendUnavailable) {
        try super.init(backend: .poll, poller: PollPoller())
    }
}

/// Interest as an array of `pollfd`s (swap-remove, so adding and removing are O(1)) and an
/// index from descriptor number to array position. Both grow only when more descriptors
/// are watched at once than ever before, so steady-state waits allocate nothing. Opens no
/// descriptor and closes none.
package final class PollPoller: ReadinessPoller {
    private var fds: UnsafeMutablePointer<pollfd>
    private var count = 0
    private var capacity = 64
    /// position of each descriptor in `fds`, or -1
    private var index: UnsafeMutablePointer<Int32>
    private var indexCapacity = 64
    /// the ready entries of the last wait; grown only in `wait` (see `readyEvents`)
    private var ready: UnsafeMutablePointer<cevsys_ready_event>
    private var readyCapacity = 64

    package init() {
        fds = .allocate(capacity: 64)
        ready = .allocate(capacity: 64)
        index = .allocate(capacity: 64)
        index.initialize(repeating: -1, count: 64)
    }

    deinit {
        fds.deallocate()
        ready.deallocate()
        index.deallocate()
    }

    package var registrationsAreKernelState: Bool { false }

    @inline(__always)
    private func position(_ fd: Int32) -> Int {
        Int(fd) < indexCapacity ? Int(index[Int(fd)]) : -1
    }

    package func add(fd: Int32, events: UInt32) -> Int32 {
        guard fd >= 0 else { return EBADF }
        if position(fd) >= 0 { return EEXIST }
        if Int(fd) >= indexCapacity {
            var n = indexCapacity * 2
            while n <= Int(fd) { n *= 2 }
            let fresh = UnsafeMutablePointer<Int32>.allocate(capacity: n)
            fresh.moveInitialize(from: index, count: indexCapacity)
            (fresh + indexCapacity).initialize(repeating: -1, count: n - indexCapacity)
            index.deallocate()
            index = fresh
            indexCapacity = n
        }
        if count == capacity {
            let n = capacity * 2
            let fresh = UnsafeMutablePointer<pollfd>.allocate(capacity: n)
            fresh.moveInitialize(from: fds, count: count)
            fds.deallocate()
            fds = fresh
            capacity = n
        }
        fds[count] = pollfd(fd: fd, events: Int16(truncatingIfNeeded: events), revents: 0)
        index[Int(fd)] = Int32(count)
        count += 1
        return 0
    }

    package func modify(fd: Int32, events: UInt32) -> Int32 {
        let p = position(fd)
        guard p >= 0 else { return ENOENT }
        fds[p].events = Int16(truncatingIfNeeded: events)
        return 0
    }

    package func remove(fd: Int32) -> Int32 {
        let p = position(fd)
        guard p >= 0 else { return ENOENT }
        count -= 1
        if p != count {
            fds[p] = fds[count]
            index[Int(fds[p].fd)] = Int32(p)
        }
        index[Int(fd)] = -1
        return 0
    }

    package func wait(timeout: UInt64?) -> Int {
        let (seconds, nanoseconds) = timespecParts(timeout)
        if readyCapacity < count {
            // Between waits only: the engine reads the last wait's events while it may
            // register more descriptors (`readyEvents`).
            ready.deallocate()
            ready = .allocate(capacity: capacity)
            readyCapacity = capacity
        }
        let n = cevsys_ppoll(fds, UInt64(count), seconds, nanoseconds)
        if n < 0 { return -Int(cevsys_errno()) }
        var k = 0
        var i = 0
        while k < Int(n) && i < count {
            let revents = fds[i].revents
            if revents != 0 {
                ready[k] = cevsys_ready_event(fd: fds[i].fd, events: UInt32(UInt16(bitPattern: revents)))
                k += 1
            }
            i += 1
        }
        return k
    }

    package var readyEvents: UnsafePointer<cevsys_ready_event> { UnsafePointer(ready) }

    /// poll has no kernel-side registrations to go stale.
    package func reset() -> Int32 { 0 }
}
