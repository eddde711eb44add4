#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Waiter lists and registrations: which completions wait on which descriptor, and how each
// descriptor's registration with the poller follows them.
extension ReadinessLoop {
    /// backendState of a completion waiting on its descriptor: this tag plus the events
    /// it needs in the low 32 bits. A pool job's is minus its job id; 0 means the engine
    /// holds nothing for it (it finished, or was never started here).
    static let waitingTag = 1 << 40
    static let parkedCloseTag = 1 << 41

    @inline(__always)
    func needs(_ c: Completion) -> UInt32 { UInt32(truncatingIfNeeded: c.backendState) }

    @inline(__always)
    func jobID(_ c: Completion) -> UInt64 { UInt64(-c.backendState) }

    @inline(__always)
    func ensureSlot(_ fd: Int32) {
        if Int(fd) >= tableCapacity { growTable(toHold: fd) }
    }

    /// Out of line: the table grows a few times in a loop's life, and `ensureSlot` runs
    /// on every operation (a call to the whole function cost ~27 instructions each).
    @inline(never)
    private func growTable(toHold fd: Int32) {
        let needed = Int(fd) + 1
        var newCapacity = tableCapacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let t = UnsafeMutablePointer<FdSlot>.allocate(capacity: newCapacity)
        t.moveInitialize(from: table, count: tableCapacity)
        (t + tableCapacity).initialize(repeating: FdSlot(), count: newCapacity - tableCapacity)
        table.deallocate()
        table = t
        tableCapacity = newCapacity
    }

    func hasWaiter(_ s: UnsafeMutablePointer<FdSlot>, needing bits: UInt32) -> Bool {
        var found = false
        IntrusiveList.walk(from: s.pointee.waiters._head) { c in found = found || needs(c) & bits != 0 }
        return found
    }

    func wanted(_ s: UnsafeMutablePointer<FdSlot>) -> UInt32 {
        var bits: UInt32 = 0
        IntrusiveList.walk(from: s.pointee.waiters._head) { bits |= needs($0) }
        return bits
    }

    func markDirty(_ fd: Int32, _ s: UnsafeMutablePointer<FdSlot>) {
        if !s.pointee.isDirty {
            s.pointee.isDirty = true
            dirty.append(fd)
        }
    }

    func addWaiter(_ c: Completion, fd: Int32, needs bits: UInt32) {
        ensureSlot(fd)
        let s = table + Int(fd)
        let wasIdle = s.pointee.waiters.isEmpty
        c.backendState = Self.waitingTag | Int(bits)
        s.pointee.waiters.append(c)
        if !s.pointee.isRegistered {
            markDirty(fd, s)
        } else if wasIdle && registrationsAreKernelState
                    && !(s.pointee.idleSinceTick == tick && isRunning) {
            // A registration kept from an earlier operation. In the callbacks the loop
            // runs before it next waits for I/O (the tick that made it idle; a skipped
            // wait does not end it), within one `run`, the descriptor cannot have been
            // closed and reopened unless a callback did both itself; any later, it may
            // have been closed with close(2) (which silently drops an epoll
            // registration), so confirm it with EPOLL_CTL_MOD (ENOENT -> ADD) before
            // waiting on it.
            s.pointee.needsConfirm = true
            markDirty(fd, s)
        } else if bits & ~s.pointee.registered != 0 {
            markDirty(fd, s)
        }
        // The descriptor's only waiter again wants exactly what is registered (typically
        // an operation rearmed in the callback of the one that just finished): settling
        // would change nothing, so it is skipped (about 110 instructions per operation,
        // callgrind). `settle` checks `isDirty`, so the descriptor's entry in `dirty` is
        // then passed over.
        if s.pointee.isDirty && s.pointee.isRegistered && !s.pointee.needsConfirm
            && s.pointee.waiters.count == 1 && bits & ReadyBits.interest == s.pointee.registered {
            s.pointee.isDirty = false
        }
    }

    /// Unlinks a waiter. The registration is brought up to date before the next wait.
    func removeWaiter(_ c: Completion, slot s: UnsafeMutablePointer<FdSlot>) {
        s.pointee.waiters.remove(c)
        c.backendState = 0
        // A slot's index is a descriptor number, an Int32 by construction: no range check.
        let fd = Int32(truncatingIfNeeded: s - table)
        if s.pointee.waiters.isEmpty { s.pointee.idleSinceTick = tick }
        markDirty(fd, s)
    }

    /// Completes every operation waiting on slot `s` with `raw` (a negated errno), in line
    /// order; the registration is brought up to date before the next wait.
    func failWaiters(of s: UnsafeMutablePointer<FdSlot>, raw: Int) {
        while let w = s.pointee.waiters.head {
            removeWaiter(w, slot: s)
            complete(w, raw: raw)
        }
    }

    /// Ends all the engine knows about `fd` (before a close, or after POLLNVAL): its waiters
    /// complete with `raw`, its registration goes, and its slot starts afresh.
    func forget(_ fd: Int32, failingWaitersWith raw: Int) {
        let s = table + Int(fd)
        failWaiters(of: s, raw: raw)
        if s.pointee.isRegistered { _ = unregister(fd: fd) }
        s.pointee.reset()
    }

    /// Brings the registration of `fd` in line with its waiters. With `dropIdle`, a
    /// descriptor nobody waits on loses its registration even where the engine would
    /// normally keep it for the next operation. Returns the errno of a failed removal.
    @discardableResult
    func settle(_ fd: Int32, dropIdle: Bool) -> Int32 {
        let s = table + Int(fd)
        s.pointee.isDirty = false
        guard !s.pointee.waiters.isEmpty else {
            s.pointee.needsConfirm = false
            guard s.pointee.isRegistered else { return 0 }
            // epoll: keep an idle read registration -- the next read on this descriptor
            // (typically the rearm of the one that just finished) then costs no epoll_ctl.
            // If data arrives first, the event finds no waiter and the registration is
            // dropped then (see `handleReady`). A writable interest would fire at once, so
            // it is never kept; poll's registrations cost nothing to drop.
            let keep = !dropIdle && registrationsAreKernelState
                && s.pointee.registered & ReadyBits.writable == 0
            if keep { return 0 }
            let r = unregister(fd: fd)
            s.pointee.isRegistered = false
            s.pointee.registered = 0
            return r
        }
        let desired = wanted(s) & ReadyBits.interest
        var r: Int32 = 0
        if !s.pointee.isRegistered {
            r = register(fd: fd, events: desired)
            // The kernel still has a registration we had given up for lost.
            if r == EEXIST { r = reregister(fd: fd, events: desired) }
        } else if desired != s.pointee.registered || s.pointee.needsConfirm {
            r = reregister(fd: fd, events: desired)
            // ENOENT: the descriptor was closed (the kernel dropped the registration with
            // it) and the number reused; register the new file.
            if r == ENOENT { r = register(fd: fd, events: desired) }
        }
        s.pointee.needsConfirm = false
        if r == 0 {
            s.pointee.isRegistered = true
            s.pointee.registered = desired
        } else {
            s.pointee.isRegistered = false
            s.pointee.registered = 0
            registrationFailed(fd, errno: r)
        }
        return 0
    }

    /// The poller refused to watch `fd`: every waiter gets an answer now.
    func registrationFailed(_ fd: Int32, errno e: Int32) {
        let s = table + Int(fd)
        if e == EPERM {
            // epoll refuses descriptors that are always ready (regular files, directories,
            // /dev/null: epoll_ctl(2) EPERM; PITFALLS E1). Reads and writes go to the pool,
            // a poll reports "ready" as poll(2) would, and anything else runs now (a
            // socket call on a file fails with ENOTSOCK).
            s.pointee.kind = .alwaysReady
            while let w = s.pointee.waiters.head {
                removeWaiter(w, slot: s)
                switch w.kind {
                case .read, .write:
                    submitToPool(w)
                case .poll:
                    complete(w, raw: Int(w.pollEvents & (ReadyBits.readable | ReadyBits.writable)))
                default:
                    complete(w, raw: attempt(w))
                }
            }
        } else {
            // EBADF (closed), ENOMEM, ENOSPC (fs.epoll.max_user_watches): report it.
            failWaiters(of: s, raw: -Int(e))
            if e == EBADF { s.pointee.kind = .unknown }
        }
        s.pointee.isDirty = false
    }

    /// Rebuilds the poller from the table (see `ReadinessPoller.reset`).
    func rebuildPoller() {
        guard registrationsAreKernelState, poller.reset() == 0 else { return }
        _ = poller.add(fd: wake.descriptor, events: ReadyBits.readable)
        for i in 0..<tableCapacity where table[i].isRegistered {
            let fd = Int32(i)
            let s = table + i
            s.pointee.isRegistered = false
            s.pointee.registered = 0
            s.pointee.needsConfirm = false
            // Idle registrations are simply not recreated.
            guard !s.pointee.waiters.isEmpty else { continue }
            let events = wanted(s) & ReadyBits.interest
            let r = register(fd: fd, events: events)
            if r == 0 {
                s.pointee.isRegistered = true
                s.pointee.registered = events
            } else {
                registrationFailed(fd, errno: r)
            }
        }
    }
}
