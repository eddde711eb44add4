#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Waiting, and turning what the poller reports into completed operations.
extension ReadinessLoop {
    package final func backendPoll(timeout requested: UInt64?) -> Int32 {
        // A new run: the caller's code ran since the last poll (see `tick`).
        if runs != tickRun {
            tickRun = runs
            tick &+= 1
        }
        let callbacksQueued = hasQueuedCallbacks
        var i = 0
        while i < dirty.count {
            let fd = dirty[i]
            i += 1
            if table[Int(fd)].isDirty { settle(fd, dropIdle: false) }
        }
        dirty.removeAll()
        // A registration that failed just now completed its waiters: deliver, don't wait.
        let timeout = !hasQueuedCallbacks ? cappingForConnectRetries(requested) : 0

        // Callbacks are already queued (an immediate send, a nop): the core asks for a
        // zero-timeout wait only so that I/O is not starved. Skipping every other such
        // wait still polls I/O at least every second tick, and saves a system call per
        // request/response (the send that completed at once would otherwise cost an
        // epoll_wait of its own before its callback).
        // Never two rounds of a rearmed operation for one look at readiness, though: see
        // `takeRearmFinishedAtOnce`.
        let rearmedAtOnce = takeRearmFinishedAtOnce()
        if callbacksQueued && requested == 0 && !skippedLastWait && !rearmedAtOnce {
            skippedLastWait = true
            return 0
        }
        skippedLastWait = false

        waitCount &+= 1
        tick &+= 1
        let n = poller.wait(timeout: timeout)
        if n < 0 {
            // EINTR: a signal arrived; the core recomputes the remaining time and calls
            // again (PITFALLS B7).
            if n == -Int(EINTR) { return 0 }
            return Int32(-n)
        }
        let ready = poller.readyEvents
        for k in 0..<n {
            handleReady(fd: ready[k].fd, events: ready[k].events)
        }
        retryConnects()
        return 0
    }

    func handleReady(fd: Int32, events revents: UInt32) {
        if fd == wake.descriptor { drainWake(); return }
        guard fd >= 0, Int(fd) < tableCapacity else {
            // Not a descriptor the engine ever registered: a registration it cannot name
            // (see `ReadinessPoller.reset`). Only a fresh epoll set gets rid of it.
            if registrationsAreKernelState { rebuildPoller() }
            return
        }
        let s = table + Int(fd)
        if revents & ReadyBits.invalid != 0 {
            // POLLNVAL (poll only): the descriptor was closed behind the loop's back.
            // Report EBADF and forget it; ignoring it would wake the loop forever
            // (PITFALLS E6).
            forget(fd, failingWaitersWith: -Int(EBADF))
            return
        }
        let failure = revents & (ReadyBits.error | ReadyBits.hangup) != 0
        var consumed: UInt32 = 0   // bits some waiter tried to use
        var blocked: UInt32 = 0    // directions that got EAGAIN in this round
        var spurious = false
        IntrusiveList.walk(from: s.pointee.waiters._head) { c in
            let want = needs(c)
            if c.kind == .poll {
                let hit = revents & (c.pollEvents | ReadyBits.error | ReadyBits.hangup)
                if hit != 0 {
                    consumed |= want
                    removeWaiter(c, slot: s)
                    complete(c, raw: Int(hit))
                }
                return
            }
            guard revents & want != 0 || failure else { return }
            consumed |= want
            // After one EAGAIN in a direction the others in line would get it too; and
            // trying them would let a later write overtake an earlier one.
            if blocked & want != 0 { return }
            var r = attempt(c)
            if r == -Int(EAGAIN) {
                if !failure {
                    blocked |= want
                    spurious = true
                    return
                }
                // ERR/HUP are level-triggered and reported whether asked for or not; a
                // waiter left in place would wake the loop forever. The system call could
                // not name the error, so take it from SO_ERROR, else report the hang-up.
                let pending = Syscalls.finishConnect(fd)
                if pending < 0 && pending != -Int(ENOTSOCK) {
                    r = pending
                } else {
                    r = want & ReadyBits.writable != 0 ? -Int(EPIPE) : -Int(ECONNRESET)
                }
            }
            removeWaiter(c, slot: s)
            noteRead(c, raw: r, slot: s)
            complete(c, raw: r)
        }
        if spurious {
            // Repeated readiness with nothing to read is a registration for another file
            // that once had this number (see `ReadinessPoller.reset`); a few in a row are
            // ordinary races (several processes accepting on one socket).
            s.pointee.spuriousWakes &+= 1
            if s.pointee.spuriousWakes >= 8 && registrationsAreKernelState {
                s.pointee.spuriousWakes = 0
                rebuildPoller()
            }
        } else {
            s.pointee.spuriousWakes = 0
        }
        // A reported bit that no waiter wanted means the registration is stale (its
        // operation was cancelled or finished earlier). Skipping the event would spin a
        // level-triggered loop (libxev#234), so the registration is corrected now.
        let stale = (revents & ReadyBits.interest & ~consumed) != 0
            || (failure && s.pointee.waiters.isEmpty)
        if stale {
            if s.pointee.waiters.isEmpty {
                let r = s.pointee.isRegistered ? settle(fd, dropIdle: true) : ENOENT
                if (r == ENOENT || r == EBADF) && registrationsAreKernelState {
                    // The event came from a registration that can no longer be named:
                    // its number was closed with close(2) while a dup kept the file open.
                    rebuildPoller()
                }
            } else {
                settle(fd, dropIdle: true)
            }
        }
    }

    /// Runs a waiting operation's system call now that its descriptor is ready.
    @inline(__always)
    func attempt(_ c: Completion) -> Int {
        if c.kind == .connect { return Syscalls.finishConnect(c.fd) }
        return Syscalls.perform(c)
    }

    /// Remembers whether the next read on this descriptor should be tried before waiting,
    /// and after EBADF (any operation) forgets what it knew of the file: the number is closed.
    @inline(__always)
    func noteRead(_ c: Completion, raw: Int, slot s: UnsafeMutablePointer<FdSlot>) {
        switch c.kind {
        case .accept:
            s.pointee.readEagerly = raw >= 0
        case .read, .recv, .recvmsg:
            s.pointee.readEagerly = raw > 0 && raw == c.bufferCount
        default:
            break
        }
        if raw == -Int(EBADF) {
            s.pointee.kind = .unknown
            s.pointee.isListening = false
        }
    }
}
