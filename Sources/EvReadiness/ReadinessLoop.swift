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
/// descriptor closed and reopened under the same number in a callback, and waited on again
/// before the loop next waits for I/O (in that callback, or in the callback of an operation
/// that completed at once), may miss its wake-up, because the loop keeps an idle
/// registration across its callbacks to avoid an epoll_ctl per operation. Whether a
/// descriptor number is a regular file is looked up once (fstat) and remembered until it
/// is closed through the loop: after close(2) and reuse of the number by a different kind
/// of file, reads and writes still complete correctly, but may run on the loop thread (a
/// file taken for a socket) or wait for readiness after a trip through the pool (the
/// reverse). Likewise whether a socket listens is asked once, by its first accept: an
/// accept on a number closed with close(2) and reused by a socket that does not listen
/// waits instead of failing with EINVAL.
///
/// Ownership: the loop owns and closes only what it creates -- its eventfd (closed in
/// `deinit`, after the pool's threads are joined) and, through its poller, the epoll set.
/// Descriptors handed to operations stay the caller's: the loop closes one only when asked
/// to, by a `.close` operation.
open class ReadinessLoop: LoopCore, LoopBackend, DeadlineExpiring {
    // Hot stored properties are `@exclusivity(unchecked)`; see the comment in LoopCore.
    // The engine's state is internal (not private) because its methods are spread over
    // this module's Readiness*.swift files; `final`, so no subclass can override it.
    package let poller: any ReadinessPoller
    /// `poller.registrationsAreKernelState`, read once: the engine asks on every wait,
    /// and each ask through the existential was a witness call.
    final let registrationsAreKernelState: Bool
    /// Per-descriptor state, indexed by descriptor number; grows only when a higher
    /// descriptor appears.
    @exclusivity(unchecked)
    final var table: UnsafeMutablePointer<FdSlot>
    @exclusivity(unchecked)
    final var tableCapacity: Int
    /// Descriptors whose registration must be brought in line with their waiters before
    /// the next wait (capacity kept: appending does not allocate in steady state).
    @exclusivity(unchecked)
    final var dirty = DescriptorList()
    /// The loop's wake-up: the thread pool signals it when a result is posted. Owned by the
    /// loop, closed in deinit after the pool's workers are joined.
    final let wake: EventFD
    final let pool: BlockingPool
    /// Completions whose operation is in the pool (linked through waiterNext/Prev).
    @exclusivity(unchecked)
    final var poolJobs = IntrusiveList()
    /// `.close` operations waiting for pool jobs on the same descriptor to finish.
    @exclusivity(unchecked)
    final var parkedCloses = IntrusiveList()
    /// Connects refused with EAGAIN (a full Unix listener), tried again each tick
    /// (ReadinessConnectRetry.swift). Unchecked like the fields above: read on every tick,
    /// a checked access cost about 400 instructions per epoll ping-pong roundtrip.
    @exclusivity(unchecked)
    final var connectRetries = IntrusiveList()
    @exclusivity(unchecked)
    final var nextJobID: UInt64 = 1
    /// Advanced by every wait in the kernel and by the first poll of every `run`, not by a
    /// poll that skips its wait: two polls in one `tick` have only the loop's own callbacks
    /// between them, which is the window in which a kept registration is trusted without
    /// a confirmation (see `addWaiter`). (Advancing it on a skipped wait too cost the async
    /// ping-pong an `epoll_ctl` per roundtrip per side: its receive waits again in the
    /// callback of its send, one skipped wait after the receive went idle.)
    @exclusivity(unchecked)
    final var tick: UInt64 = 0
    /// `runs` of the core at the last poll: a different value means `run` was left and
    /// entered again since (the caller's code ran in between).
    @exclusivity(unchecked)
    final var tickRun: UInt64 = 0
    /// Whether the previous `backendPoll` skipped its zero-timeout wait.
    @exclusivity(unchecked)
    final var skippedLastWait = false

    // The two counters below are for tests, and kept in release builds because they are
    // free there: each is a plain wrapping increment (`&+=`: no overflow check) of a stored
    // Int marked `@exclusivity(unchecked)` (no access check), so one add to memory, paid
    // once per kernel wait or per epoll_ctl -- next to the system call it counts. A steady
    // ping-pong changes no registration at all.

    /// How many times the loop waited in the kernel (epoll_pwait2/epoll_wait/ppoll).
    /// For tests: a spinning loop shows up as a count far above the number of events.
    @exclusivity(unchecked)
    package internal(set) final var waitCount = 0

    /// How many times the engine changed a registration (add, modify or remove), the
    /// eventfd's excepted. For tests: a request/response loop in steady state makes none.
    @exclusivity(unchecked)
    package private(set) final var registrationChanges = 0

    /// `poller` supplies registration and waiting; `backend` names it.
    package init(backend: Backend, poller: any ReadinessPoller) throws(BackendUnavailable) {
        let wake: EventFD
        do {
            wake = try EventFD()
        } catch {
            let e = error.errnoValue ?? 0
            throw BackendUnavailable(backend: backend, reason: "eventfd failed: \(String(cString: strerror(e)))", errno: e)
        }
        let r = poller.add(fd: wake.descriptor, events: ReadyBits.readable)
        guard r == 0 else {
            wake.close()
            throw BackendUnavailable(backend: backend, reason: "cannot watch the loop's eventfd: \(String(cString: strerror(r)))", errno: r)
        }
        self.poller = poller
        self.registrationsAreKernelState = poller.registrationsAreKernelState
        self.wake = wake
        self.pool = BlockingPool(threads: 2, wake: { wake.signal() })
        self.tableCapacity = 64
        self.table = .allocate(capacity: 64)
        self.table.initialize(repeating: FdSlot(), count: 64)
        // Readiness needs O_NONBLOCK descriptors: a ready-then-empty read must not block.
        super.init(backend: backend, prefersBlockingDescriptors: false, triesOperationsAtOnce: true,
                   hooks: BackendHooks(
            submit: { unsafeDowncast($0, to: ReadinessLoop.self).backendSubmit($1) },
            cancel: { unsafeDowncast($0, to: ReadinessLoop.self).backendCancel($1, target: $2) },
            poll: { unsafeDowncast($0, to: ReadinessLoop.self).backendPoll(timeout: $1) },
            cancelAll: { unsafeDowncast($0, to: ReadinessLoop.self).backendCancelAll() },
            // A readiness wait has no kernel timer: deadlines wait in the core's heap.
            expire: { unsafeDowncast($0, to: ReadinessLoop.self).backendExpire($1) }
        ))
    }

    deinit {
        // The pool's workers signal the eventfd: join them before closing it.
        pool.shutdown()
        wake.close()
        table.deallocate()
        dirty.deallocate()
    }

    final func register(fd: Int32, events: UInt32) -> Int32 {
        registrationChanges &+= 1
        return poller.add(fd: fd, events: events)
    }

    final func reregister(fd: Int32, events: UInt32) -> Int32 {
        registrationChanges &+= 1
        return poller.modify(fd: fd, events: events)
    }

    final func unregister(fd: Int32) -> Int32 {
        registrationChanges &+= 1
        return poller.remove(fd: fd)
    }

    /// Whether `fd` currently has a registration with the poller (for tests).
    package func isRegistered(_ fd: Int32) -> Bool {
        fd >= 0 && Int(fd) < tableCapacity && table[Int(fd)].isRegistered
    }

    // MARK: Submitting

    // Always inlined into the `submit` hook's closure, its only caller on the hot path
    // (one call and frame fewer per operation).
    @inline(__always)
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
            startConnect(c)
        case .shutdown:
            complete(c, raw: Syscalls.perform(c))
        case .close:
            submitClose(c, fd: fd)
        case .poll:
            guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
            addWaiter(c, fd: fd, needs: c.pollEvents & ReadyBits.interest)
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            // File-system calls block (there is no readiness to wait for): the core's file pool.
            runOnFilePool(c)
        case .nop, .timer, .cancel, .work:
            preconditionFailure("EvLoop: the core handles \(c.kind) itself")
        }
    }

    /// Tries `c`'s system call now: true when it completed (with a result or an error),
    /// false when it would block (EAGAIN) and must wait.
    @inline(__always)
    private func finishedAtOnce(_ c: Completion, slot s: UnsafeMutablePointer<FdSlot>) -> Bool {
        let r = Syscalls.perform(c)
        if r == -Int(EAGAIN) { return false }
        noteRead(c, raw: r, slot: s)
        complete(c, raw: r)
        return true
    }

    private func submitRead(_ c: Completion, fd: Int32, emptyBuffer: Bool = false) {
        guard fd >= 0 else { complete(c, raw: -Int(EBADF)); return }
        ensureSlot(fd)
        let s = table + Int(fd)
        // Try at once when the last read on this descriptor suggested more is queued, or
        // for an empty buffer (which returns at once, as on io_uring) -- but never ahead
        // of a read already waiting, which would reorder the stream.
        if (s.pointee.readEagerly || emptyBuffer) && !hasWaiter(s, needing: ReadyBits.readable) {
            if finishedAtOnce(c, slot: s) { return }
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
                if finishedAtOnce(c, slot: s) { return }
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
        // (Not `finishedAtOnce`: its read bookkeeping cost this hot path 22 instructions
        // per epoll ping-pong roundtrip under callgrind, for nothing.)
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
            // Everything still waiting on the descriptor ends now, and the registration
            // goes before the descriptor does: a registration outliving close(2) could
            // no longer be deleted by number (epoll(7) Q6, PITFALLS E3).
            forget(fd, failingWaitersWith: -Int(ECANCELED))
        }
        withdrawConnectRetries(where: { $0.fd == fd }, raw: -Int(ECANCELED))
        // File-system operations (fsync, ftruncate...) on the core's file pool: the same
        // rule, kept by the core.
        if closeWaitsForFilePool(c) { return }
        // Pool jobs on this descriptor that have not started are withdrawn. One that is
        // running keeps the descriptor until it finishes: closing under it could let its
        // read land on a new file that reused the number.
        if withdrawPoolJobs(where: { $0.fd == fd }) {
            c.backendState = Self.parkedCloseTag
            parkedCloses.append(c)
            return
        }
        complete(c, raw: Syscalls.perform(c))
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
}
