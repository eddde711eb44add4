#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import CEvSys

/// The readiness engine shared by the epoll and poll backends: it turns "this descriptor
/// is ready" into "this operation is done".
///
/// Why one engine: epoll and poll differ only in how interest is registered and how the
/// loop waits, so those two things are a small `ReadinessPoller` and everything else is
/// written once here (the same retries, the same cancellation, the same bugs fixed once).
///
/// How an operation runs:
/// - Writes, sends, connects, shutdowns and closes are tried at once: a socket is usually
///   writable, and a try that succeeds saves a wait. Reads, receives and accepts wait for
///   readiness first, because in request/response traffic the answer is rarely there yet
///   and a failed try is a wasted system call; after a read that filled its whole buffer
///   (or an accept that succeeded) the next one on that descriptor is tried at once, since
///   more is probably queued.
/// - An operation that must wait joins its descriptor's waiter list (intrusive, through
///   `Completion.waiterNext/waiterPrev`: no allocation). Each descriptor has one
///   registration while anything waits on it, whose interest is the union of its waiters'
///   needs; several operations may wait on one descriptor at once (a read and a write, many
///   accepts) without dup(). Interest changes are batched and applied just before the next
///   wait, so a read that completes and is rearmed in its callback costs no epoll_ctl.
/// - When the descriptor is ready the operation's system call is tried; EAGAIN (a spurious
///   wake-up, PITFALLS I2) puts it back to waiting and never reaches a callback. ERR, HUP
///   and POLLNVAL complete the waiting operations with the real error of their system call
///   (EOF, ECONNRESET, EPIPE, EBADF) instead of waking the loop forever (PITFALLS E5, E6).
/// - Reads and writes on regular files, directories and block devices (which readiness
///   APIs report always ready, or refuse) and every pread/pwrite run on a small thread pool;
///   its results wake the loop through an internal eventfd.
/// - `.close` first completes everything still waiting on the descriptor with `.canceled`
///   and removes the registration, then closes: the peer sees the close at once and a
///   reused descriptor number never meets stale state (PITFALLS A11, E3).
///
/// Descriptors: close them through the loop (`.close`). A descriptor closed with close(2)
/// directly is safe once its operations have finished, with one exception on epoll: a
/// descriptor closed and reopened under the same number *within one callback* and waited
/// on again in that same callback may miss its wake-up, because the loop keeps an idle
/// registration across the callback to avoid an epoll_ctl per operation. Whether a
/// descriptor number is a regular file is looked up once (fstat) and remembered until it
/// is closed through the loop: after close(2) and reuse of the number by a different kind
/// of file, reads and writes still complete correctly, but may run on the loop thread (a
/// file taken for a socket) or wait for readiness after a trip through the pool (the
/// reverse). Likewise whether a socket listens is asked once, by its first accept: an
/// accept on a number closed with close(2) and reused by a socket that does not listen
/// waits instead of failing with EINVAL.
open class ReadinessLoop: LoopCore, LoopBackend {
    // Hot stored properties are `@exclusivity(unchecked)`; see the comment in LoopCore.
    package let poller: any ReadinessPoller
    /// Per-descriptor state, indexed by descriptor number; grows only when a higher
    /// descriptor appears.
    @exclusivity(unchecked)
    private var table: UnsafeMutablePointer<FdSlot>
    @exclusivity(unchecked)
    private var tableCapacity: Int
    /// Descriptors whose registration must be brought in line with their waiters before
    /// the next wait (capacity kept: appending does not allocate in steady state).
    @exclusivity(unchecked)
    private var dirty = DescriptorList()
    /// The loop's eventfd: the thread pool writes it when a result is posted.
    private let wakeFd: Int32
    private let pool: BlockingPool
    /// Completions whose operation is in the pool (linked through waiterNext/Prev).
    @exclusivity(unchecked)
    private var poolJobs = IntrusiveList()
    /// `.close` operations waiting for pool jobs on the same descriptor to finish.
    @exclusivity(unchecked)
    private var parkedCloses = IntrusiveList()
    @exclusivity(unchecked)
    private var nextJobID: UInt64 = 1
    /// Incremented by every `backendPoll`.
    @exclusivity(unchecked)
    private var tick: UInt64 = 0
    /// Whether the previous `backendPoll` skipped its zero-timeout wait.
    @exclusivity(unchecked)
    private var skippedLastWait = false

    /// How many times the loop waited in the kernel (epoll_pwait2/epoll_wait/ppoll).
    /// For tests: a spinning loop shows up as a count far above the number of events.
    @exclusivity(unchecked)
    package private(set) var waitCount = 0

    /// `poller` supplies registration and waiting; `backend` names it.
    package init(backend: Backend, poller: any ReadinessPoller) throws(BackendUnavailable) {
        let efd = cevsys_eventfd(0, O_CLOEXEC | O_NONBLOCK)
        guard efd >= 0 else {
            let e = cevsys_errno()
            throw BackendUnavailable(backend: backend, reason: "eventfd failed: \(String(cString: strerror(e)))", errno: e)
        }
        let r = poller.add(fd: efd, events: ReadyBits.readable)
        guard r == 0 else {
            close(efd)
            throw BackendUnavailable(backend: backend, reason: "cannot watch the loop's eventfd: \(String(cString: strerror(r)))", errno: r)
        }
        self.poller = poller
        self.wakeFd = efd
        self.pool = BlockingPool(threads: 2, wake: {
            var one: UInt64 = 1
            // EAGAIN only if the counter is at its maximum: the loop is woken anyway.
            _ = write(efd, &one, 8)
        })
        self.tableCapacity = 64
        self.table = .allocate(capacity: 64)
        self.table.initialize(repeating: FdSlot(), count: 64)
        // Readiness needs O_NONBLOCK descriptors: a ready-then-empty read must not block.
        super.init(backend: backend, prefersBlockingDescriptors: false, hooks: ReadinessHooks())
    }

    deinit {
        // The pool's workers write the eventfd: join them before closing it.
        pool.shutdown()
        close(wakeFd)
        table.deallocate()
        dirty.deallocate()
    }


    /// How many times the engine changed a registration (add, modify or remove), the
    /// eventfd's excepted. For tests: a request/response loop in steady state makes none.
    @exclusivity(unchecked)
    package private(set) var registrationChanges = 0

    private func register(fd: Int32, events: UInt32) -> Int32 {
        registrationChanges += 1
        return poller.add(fd: fd, events: events)
    }

    private func reregister(fd: Int32, events: UInt32) -> Int32 {
        registrationChanges += 1
        return poller.modify(fd: fd, events: events)
    }

    private func unregister(fd: Int32) -> Int32 {
        registrationChanges += 1
        return poller.remove(fd: fd)
    }

    /// Whether `fd` currently has a registration with the poller (for tests).
    package func isRegistered(_ fd: Int32) -> Bool {
        fd >= 0 && Int(fd) < tableCapacity && table[Int(fd)].isRegistered
    }

    // MARK: Submitting

    package final func backendSubmit(_ c: Completion) {
        let fd = c.fd
        switch c.kind {
        case .accept:
            submitAccept(c, fd: fd)
        case .recv, .recvmsg:
            submitRead(c, fd: fd, emptyBuffer: c.bufferCount == 0)
        case .read:
            switch classify(fd) {
            case .alwaysReady: submitToPool(c)
            case .pollable, .unknown: submitRead(c, fd: fd, emptyBuffer: c.bufferCount == 0)
            case .invalid: complete(c, raw: -Int(EBADF))
            }
        case .send, .sendmsg:
            submitWrite(c, fd: fd)
        case .write:
            switch classify(fd) {
            case .alwaysReady: submitToPool(c)
            case .pollable, .unknown: submitWrite(c, fd: fd)
            case .invalid: complete(c, raw: -Int(EBADF))
            }
        case .pread, .pwrite:
            // Positional I/O only makes sense on files (sockets and pipes give ESPIPE), so
            // it always goes to the pool without looking at the descriptor.
            submitToPool(c)
        case .connect:
            guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
            let r = Syscalls.perform(c)
            if r == -Int(EINPROGRESS) {
                // Non-blocking connect: the socket becomes writable when the handshake
                // ends either way; SO_ERROR then tells which (Syscalls.finishConnect).
                addWaiter(c, fd: fd, needs: ReadyBits.writable)
            } else {
                complete(c, raw: r)
            }
        case .shutdown:
            complete(c, raw: Syscalls.perform(c))
        case .close:
            submitClose(c, fd: fd)
        case .poll:
            guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
            addWaiter(c, fd: fd, needs: c.pollEvents & ReadyBits.interest)
        case .nop, .timer, .cancel:
            preconditionFailure("EvLoop: the core handles \(c.kind) itself")
        }
    }

    private func submitRead(_ c: Completion, fd: Int32, emptyBuffer: Bool = false) {
        guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
        ensureSlot(fd)
        let s = table + Int(fd)
        // Try at once when the last read on this descriptor suggested more is queued, or
        // for an empty buffer (which returns at once, as on io_uring) -- but never ahead
        // of a read already waiting, which would reorder the stream.
        if (s.pointee.readEagerly || emptyBuffer) && !hasWaiter(s, needing: ReadyBits.readable) {
            let r = Syscalls.perform(c)
            if r != -Int(EAGAIN) {
                noteRead(c, raw: r, slot: s)
                complete(c, raw: r)
                return
            }
            s.pointee.readEagerly = false
        }
        addWaiter(c, fd: fd, needs: ReadyBits.readable)
    }

    /// An accept waits for readability like a read, except on a socket that does not
    /// listen: accept(2) fails on it at once (EINVAL; EOPNOTSUPP for a datagram socket, as
    /// io_uring reports too), but it never becomes readable for want of connections, so a
    /// waiting accept would never complete (issue 16). Whether the socket listens is asked
    /// once per descriptor (SO_ACCEPTCONN, which never blocks, unlike an accept on a blocking
    /// listener) and remembered in its slot until it is closed through the loop, so a steady
    /// accept loop makes no extra system call.
    private func submitAccept(_ c: Completion, fd: Int32) {
        guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
        ensureSlot(fd)
        let s = table + Int(fd)
        if !s.pointee.isListening {
            var listening: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening != 0 {
                s.pointee.isListening = true
            } else {
                // Not listening, or not a socket at all: accept(2) gives the real error at
                // once (EINVAL, EOPNOTSUPP, ENOTSOCK, EBADF). EAGAIN means it started to
                // listen meanwhile: wait as usual.
                let r = Syscalls.perform(c)
                if r != -Int(EAGAIN) {
                    noteRead(c, raw: r, slot: s)
                    complete(c, raw: r)
                    return
                }
            }
        }
        submitRead(c, fd: fd)
    }

    private func submitWrite(_ c: Completion, fd: Int32) {
        guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
        ensureSlot(fd)
        let s = table + Int(fd)
        // A socket is almost always writable: try now, unless an earlier write is still
        // waiting (going first would reorder the bytes).
        if !hasWaiter(s, needing: ReadyBits.writable) {
            let r = Syscalls.perform(c)
            if r != -Int(EAGAIN) {
                if r == -Int(EBADF) { s.pointee.kind = .unknown }
                complete(c, raw: r)
                return
            }
        }
        addWaiter(c, fd: fd, needs: ReadyBits.writable)
    }

    private func submitClose(_ c: Completion, fd: Int32) {
        if fd >= 0 && Int(fd) < tableCapacity {
            let s = table + Int(fd)
            // Everything still waiting on the descriptor ends now, and the registration
            // goes before the descriptor does: a registration outliving close(2) could
            // no longer be deleted by number (epoll(7) Q6, PITFALLS E3).
            while let w = s.pointee.waiters.head {
                removeWaiter(w, slot: s)
                complete(w, raw: -Int(ECANCELED))
            }
            if s.pointee.isRegistered { _ = unregister(fd: fd) }
            s.pointee.reset()
        }
        // Pool jobs on this descriptor that have not started are withdrawn. One that is
        // running keeps the descriptor until it finishes: closing under it could let its
        // read land on a new file that reused the number.
        var running = false
        var p = poolJobs.head
        while let j = p {
            p = j.waiterNext
            guard j.fd == fd else { continue }
            if pool.cancel(id: jobID(j)) {
                poolJobs.remove(j)
                j.backendState = 0
                complete(j, raw: -Int(ECANCELED))
            } else {
                running = true
            }
        }
        if running {
            c.backendState = Self.parkedCloseTag
            parkedCloses.append(c)
            return
        }
        complete(c, raw: Syscalls.perform(c))
    }

    // MARK: Waiters and registrations

    /// backendState of a completion waiting on its descriptor: this tag plus the events
    /// it needs in the low 32 bits. A pool job's is minus its job id; 0 means the engine
    /// holds nothing for it (it finished, or was never started here).
    private static let waitingTag = 1 << 40
    private static let parkedCloseTag = 1 << 41

    @inline(__always)
    private func needs(_ c: Completion) -> UInt32 { UInt32(truncatingIfNeeded: c.backendState) }

    @inline(__always)
    private func jobID(_ c: Completion) -> UInt64 { UInt64(-c.backendState) }

    private func ensureSlot(_ fd: Int32) {
        let needed = Int(fd) + 1
        guard needed > tableCapacity else { return }
        var newCapacity = tableCapacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let t = UnsafeMutablePointer<FdSlot>.allocate(capacity: newCapacity)
        t.moveInitialize(from: table, count: tableCapacity)
        (t + tableCapacity).initialize(repeating: FdSlot(), count: newCapacity - tableCapacity)
        table.deallocate()
        table = t
        tableCapacity = newCapacity
    }

    private func hasWaiter(_ s: UnsafeMutablePointer<FdSlot>, needing bits: UInt32) -> Bool {
        var w = s.pointee.waiters.head
        while let c = w {
            if needs(c) & bits != 0 { return true }
            w = c.waiterNext
        }
        return false
    }

    private func wanted(_ s: UnsafeMutablePointer<FdSlot>) -> UInt32 {
        var bits: UInt32 = 0
        var w = s.pointee.waiters.head
        while let c = w {
            bits |= needs(c)
            w = c.waiterNext
        }
        return bits
    }

    private func markDirty(_ fd: Int32, _ s: UnsafeMutablePointer<FdSlot>) {
        if !s.pointee.isDirty {
            s.pointee.isDirty = true
            dirty.append(fd)
        }
    }

    private func addWaiter(_ c: Completion, fd: Int32, needs bits: UInt32) {
        ensureSlot(fd)
        let s = table + Int(fd)
        let wasIdle = s.pointee.waiters.isEmpty
        c.backendState = Self.waitingTag | Int(bits)
        s.pointee.waiters.append(c)
        if !s.pointee.isRegistered {
            markDirty(fd, s)
        } else if wasIdle && poller.registrationsAreKernelState
                    && !(s.pointee.idleSinceTick == tick && isRunning) {
            // A registration kept from an earlier operation. Inside the callbacks of the
            // tick that made it idle, the descriptor cannot have been closed and reopened
            // unless the callback did both itself; any later, it may have been closed with
            // close(2) (which silently drops an epoll registration), so confirm it with
            // EPOLL_CTL_MOD (ENOENT -> ADD) before waiting on it.
            s.pointee.needsConfirm = true
            markDirty(fd, s)
        } else if bits & ~s.pointee.registered != 0 {
            markDirty(fd, s)
        }
    }

    /// Unlinks a waiter. The registration is brought up to date before the next wait.
    private func removeWaiter(_ c: Completion, slot s: UnsafeMutablePointer<FdSlot>) {
        s.pointee.waiters.remove(c)
        c.backendState = 0
        let fd = Int32(s - table)
        if s.pointee.waiters.isEmpty { s.pointee.idleSinceTick = tick }
        markDirty(fd, s)
    }

    /// Brings the registration of `fd` in line with its waiters. With `dropIdle`, a
    /// descriptor nobody waits on loses its registration even where the engine would
    /// normally keep it for the next operation. Returns the errno of a failed removal.
    @discardableResult
    private func settle(_ fd: Int32, dropIdle: Bool) -> Int32 {
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
            let keep = !dropIdle && poller.registrationsAreKernelState
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
    private func registrationFailed(_ fd: Int32, errno e: Int32) {
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
            while let w = s.pointee.waiters.head {
                removeWaiter(w, slot: s)
                complete(w, raw: -Int(e))
            }
            if e == EBADF { s.pointee.kind = .unknown }
        }
        s.pointee.isDirty = false
    }

    /// Rebuilds the poller from the table (see `ReadinessPoller.reset`).
    private func rebuildPoller() {
        guard poller.registrationsAreKernelState, poller.reset() == 0 else { return }
        _ = poller.add(fd: wakeFd, events: ReadyBits.readable)
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

    // MARK: Classification

    private func classify(_ fd: Int32) -> FdKind {
        guard fd >= 0 else { return .invalid }
        ensureSlot(fd)
        let s = table + Int(fd)
        if s.pointee.kind != .unknown { return s.pointee.kind }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            return cevsys_errno() == EBADF ? .invalid : .pollable
        }
        let type = st.st_mode & S_IFMT
        let kind: FdKind = (type == S_IFREG || type == S_IFDIR || type == S_IFBLK) ? .alwaysReady : .pollable
        s.pointee.kind = kind
        return kind
    }

    // MARK: The thread pool

    private func submitToPool(_ c: Completion) {
        let id = nextJobID
        nextJobID &+= 1
        guard let job = BlockingPool.Job(id: id, completion: c) else {
            preconditionFailure("EvLoop: \(c.kind) cannot run on the thread pool")
        }
        c.backendState = -Int(id)
        poolJobs.append(c)
        pool.submit(job)
    }

    /// A pool result: job ids are unique per activation, so the id alone names the
    /// activation that submitted it (a cancelled job never posts a result).
    private func finishJob(id: UInt64, raw: Int) {
        var p = poolJobs.head
        while let c = p {
            if c.backendState < 0 && jobID(c) == id {
                poolJobs.remove(c)
                c.backendState = 0
                if raw == -Int(EAGAIN), c.fd >= 0 {
                    let fd = c.fd
                    // The descriptor was non-blocking after all: a socket or pipe that got
                    // a number the loop had seen as a file. Wait for readiness instead.
                    ensureSlot(fd)
                    table[Int(fd)].kind = .pollable
                    addWaiter(c, fd: fd, needs: c.kind.readinessNeeded)
                } else {
                    complete(c, raw: raw)
                }
                break
            }
            p = c.waiterNext
        }
        // A close waits for running jobs on its descriptor; run it once they are done.
        var q = parkedCloses.head
        while let close = q {
            q = close.waiterNext
            let fd = close.fd
            var busy = false
            var j = poolJobs.head
            while let x = j {
                if x.fd == fd { busy = true; break }
                j = x.waiterNext
            }
            if !busy {
                parkedCloses.remove(close)
                close.backendState = 0
                complete(close, raw: Syscalls.perform(close))
            }
        }
    }

    private func drainWake() {
        var value: UInt64 = 0
        // EAGAIN: already drained by an earlier wake-up in this batch; harmless.
        _ = read(wakeFd, &value, 8)
        pool.drainResults { id, raw in finishJob(id: id, raw: raw) }
    }

    // MARK: Waiting

    package final func backendPoll(timeout requested: UInt64?) -> Int32 {
        tick &+= 1
        let callbacksQueued = hasQueuedCallbacks
        var i = 0
        while i < dirty.count {
            let fd = dirty[i]
            i += 1
            if table[Int(fd)].isDirty { settle(fd, dropIdle: false) }
        }
        dirty.removeAll()
        // A registration that failed just now completed its waiters: deliver, don't wait.
        let timeout = !hasQueuedCallbacks ? requested : 0

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

        waitCount += 1
        let n = poller.wait(timeout: timeout)
        if n < 0 {
            // EINTR: a signal arrived; the core recomputes the remaining time and calls
            // again (PITFALLS B7).
            if n == -Int(EINTR) { return 0 }
            return Int32(-n)
        }
        for k in 0..<n {
            let e = poller.ready(k)
            handleReady(fd: e.fd, events: e.events)
        }
        return 0
    }

    private func handleReady(fd: Int32, events revents: UInt32) {
        if fd == wakeFd { drainWake(); return }
        guard fd >= 0, Int(fd) < tableCapacity else {
            // Not a descriptor the engine ever registered: a registration it cannot name
            // (see `ReadinessPoller.reset`). Only a fresh epoll set gets rid of it.
            if poller.registrationsAreKernelState { rebuildPoller() }
            return
        }
        let s = table + Int(fd)
        if revents & ReadyBits.invalid != 0 {
            // POLLNVAL (poll only): the descriptor was closed behind the loop's back.
            // Report EBADF and forget it; ignoring it would wake the loop forever
            // (PITFALLS E6).
            while let w = s.pointee.waiters.head {
                removeWaiter(w, slot: s)
                complete(w, raw: -Int(EBADF))
            }
            if s.pointee.isRegistered { _ = unregister(fd: fd) }
            s.pointee.reset()
            return
        }
        let failure = revents & (ReadyBits.error | ReadyBits.hangup) != 0
        var consumed: UInt32 = 0   // bits some waiter tried to use
        var blocked: UInt32 = 0    // directions that got EAGAIN in this round
        var spurious = false
        var w = s.pointee.waiters.head
        while let c = w {
            w = c.waiterNext
            let want = needs(c)
            if c.kind == .poll {
                let hit = revents & (c.pollEvents | ReadyBits.error | ReadyBits.hangup)
                if hit != 0 {
                    consumed |= want
                    removeWaiter(c, slot: s)
                    complete(c, raw: Int(hit))
                }
                continue
            }
            guard revents & want != 0 || failure else { continue }
            consumed |= want
            // After one EAGAIN in a direction the others in line would get it too; and
            // trying them would let a later write overtake an earlier one.
            if blocked & want != 0 { continue }
            var r = attempt(c)
            if r == -Int(EAGAIN) {
                if !failure {
                    blocked |= want
                    spurious = true
                    continue
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
            if s.pointee.spuriousWakes >= 8 && poller.registrationsAreKernelState {
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
                if (r == ENOENT || r == EBADF) && poller.registrationsAreKernelState {
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
    private func attempt(_ c: Completion) -> Int {
        if c.kind == .connect { return Syscalls.finishConnect(c.fd) }
        return Syscalls.perform(c)
    }

    /// Remembers whether the next read on this descriptor should be tried before waiting.
    @inline(__always)
    private func noteRead(_ c: Completion, raw: Int, slot s: UnsafeMutablePointer<FdSlot>) {
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

    // MARK: Cancelling

    package final func backendCancel(_ cancel: Completion, target: Completion) {
        let state = target.backendState
        if state < 0 {
            // In the pool: withdrawn if no worker has taken it; otherwise too late, and
            // the target reports its real result when the worker finishes.
            if pool.cancel(id: jobID(target)) {
                poolJobs.remove(target)
                target.backendState = 0
                complete(target, raw: -Int(ECANCELED))
                complete(cancel, raw: 0)
            } else {
                complete(cancel, raw: -Int(EALREADY))
            }
        } else if state & Self.parkedCloseTag != 0 {
            parkedCloses.remove(target)
            target.backendState = 0
            complete(target, raw: -Int(ECANCELED))
            complete(cancel, raw: 0)
        } else if state & Self.waitingTag != 0, target.fd >= 0 {
            let fd = target.fd
            let s = table + Int(fd)
            removeWaiter(target, slot: s)
            // A cancelled operation leaves no registration behind (PITFALLS A5): the
            // descriptor may be closed right after this, without the loop.
            settle(fd, dropIdle: true)
            complete(target, raw: -Int(ECANCELED))
            complete(cancel, raw: 0)
        } else {
            // Every operation the engine starts either waits, is in the pool, or has
            // already completed (the core reports `.notFound` for those).
            complete(cancel, raw: -Int(ENOENT))
        }
    }

    package final func backendCancelAll() {
        for i in 0..<tableCapacity where !table[i].waiters.isEmpty {
            let s = table + i
            while let w = s.pointee.waiters.head {
                removeWaiter(w, slot: s)
                complete(w, raw: -Int(ECANCELED))
            }
            settle(Int32(i), dropIdle: true)
        }
        var p = poolJobs.head
        while let j = p {
            p = j.waiterNext
            if pool.cancel(id: jobID(j)) {
                poolJobs.remove(j)
                j.backendState = 0
                complete(j, raw: -Int(ECANCELED))
            }
        }
        while let close = parkedCloses.head {
            parkedCloses.remove(close)
            close.backendState = 0
            complete(close, raw: -Int(ECANCELED))
        }
    }
}

/// What the engine knows about a descriptor number's file.
enum FdKind: UInt8 {
    case unknown
    /// A socket, pipe, tty, eventfd...: wait for readiness.
    case pollable
    /// A regular file, directory or block device: always "ready", so blocking I/O runs on
    /// the thread pool.
    case alwaysReady
    /// Not an open descriptor (EBADF); never cached.
    case invalid
}

/// A growable list of descriptor numbers in raw memory: appending and clearing are a
/// store and a count (a Swift array paid a uniqueness check on every append and a
/// `replaceSubrange` on every clear, about 300 instructions per ping-pong roundtrip).
struct DescriptorList {
    private var base: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private(set) var count = 0

    init() {
        capacity = 64
        base = .allocate(capacity: 64)
    }

    subscript(i: Int) -> Int32 { base[i] }

    mutating func append(_ fd: Int32) {
        if count == capacity {
            let grown = UnsafeMutablePointer<Int32>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        base[count] = fd
        count += 1
    }

    mutating func removeAll() { count = 0 }

    func deallocate() { base.deallocate() }
}

/// The engine's state for one descriptor number (plain data: the table is raw memory).
struct FdSlot {
    var waiters = IntrusiveList()
    /// The events the poller watches for (valid when `isRegistered`).
    var registered: UInt32 = 0
    var isRegistered = false
    /// Listed in `dirty`: the registration must be recomputed before the next wait.
    var isDirty = false
    /// A kept registration must be confirmed with the kernel before it is relied on.
    var needsConfirm = false
    var kind = FdKind.unknown
    /// The last read filled its buffer (or the last accept succeeded): try the next first.
    var readEagerly = false
    /// SO_ACCEPTCONN said the socket listens (asked by the first accept; see `submitAccept`).
    var isListening = false
    var spuriousWakes: UInt8 = 0
    /// The tick in which the last waiter left.
    var idleSinceTick: UInt64 = .max

    mutating func reset() {
        self = FdSlot()
    }
}

/// How the core reaches this backend's hooks: forwards each to the loop, unretained
/// (see `AttachableBackendHooks` for why).
final class ReadinessHooks: AttachableBackendHooks {
    @exclusivity(unchecked) private var loop: Unmanaged<ReadinessLoop>? = nil

    func attach(_ loop: LoopCore) { self.loop = Unmanaged.passUnretained(unsafeDowncast(loop, to: ReadinessLoop.self)) }

    func backendSubmit(_ c: Completion) { loop.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.backendSubmit(c) } }

    func backendCancel(_ cancel: Completion, target: Completion) {
        loop.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.backendCancel(cancel, target: target) }
    }

    func backendPoll(timeout: UInt64?) -> Int32 {
        loop.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.backendPoll(timeout: timeout) }
    }

    func backendCancelAll() { loop.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.backendCancelAll() } }
}
