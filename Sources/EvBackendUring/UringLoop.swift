#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import CLiburing
import CEvSys

/// The io_uring backend: every operation is one submission queue entry (SQE) that the
/// kernel performs and completes on its own, so a request/response costs one
/// `io_uring_enter` per loop tick (submit everything queued and wait, in one system call)
/// instead of a readiness wait plus a system call per operation.
///
/// Why these choices:
/// - **Descriptors are best left blocking** (`prefersBlockingDescriptors`). The kernel then
///   waits for readiness internally (its "fast poll") and never hands back EAGAIN. On
///   non-blocking descriptors some kernels do return -EAGAIN in the completion (PITFALLS
///   D7); the loop never shows it to a callback: it arms a one-shot POLL_ADD for the
///   needed direction and resubmits the operation when it fires.
/// - **Timers are not kernel timeouts.** They stay in the core's heap, and the nearest
///   deadline becomes the wait timeout of the tick's `io_uring_enter` (IORING_ENTER_EXT_ARG).
///   One kernel timeout per timer is what libxev's io_uring backend does, and its
///   million-timer benchmark costs 68 times the CPU of a heap (25.3 s against 0.37 s on
///   libxev's epoll backend; November 2026, a 2-vCPU KVM guest, Linux 6.18; BENCHMARKS.md,
///   "Anchors"), because the kernel keeps timeouts in a sorted list.
/// - **user_data = completion pointer + 16 bits of its generation + a kind tag** (pointers
///   fit in 48 bits on x86_64 and arm64, and objects are at least 8-byte aligned, which
///   frees the low three bits). A cancel therefore names exactly one activation of a reused
///   completion (PITFALLS A1, libxev#233). A completion is handed back to the core only
///   when every SQE that names it has produced its CQE, so a pointer decoded from a CQE
///   always refers to a live completion, and the loop's retain (taken by the core from
///   `add` until the callback) keeps it alive meanwhile.
/// - **A full submission queue never fails an operation** (PITFALLS B1): completions that
///   find no free SQE wait in a FIFO (`parked`, linked through `queueNext`: no
///   allocation) and are written to the ring, in order, as the kernel consumes entries.
///   Once something waits there, later submissions queue behind it, so two writes on one
///   socket can never swap places. Cancelling a parked operation completes it at once,
///   without ever submitting it (A9).
/// - **Cancellation** is IORING_OP_ASYNC_CANCEL aimed at the target's exact user_data:
///   0 is success, -ENOENT `.notFound`, -EALREADY `.inProgress`, and the target reports
///   whatever its own CQE says (an accept that won the race hands over its descriptor).
/// - **`.close` cancels first** (A11): IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL
///   (Linux 5.19, detected at init) for every request on the descriptor, hard-linked to the
///   close so the close runs after it whatever the cancel returns (a plain link would be
///   broken by the cancel's -ENOENT and the close would never run). On older kernels the
///   loop cancels each of its own operations on that descriptor, then closes.
/// - **Probed at init** (PITFALLS C6, C7): setup, then a NOP that must complete, then the
///   opcode probe (IORING_REGISTER_PROBE). A ring that cannot do all of that throws
///   `BackendUnavailable` naming the errno and, where readable,
///   `kernel.io_uring_disabled`, so runtime selection can fall back to epoll.
///
/// A loop belongs to one long-lived thread (io_uring requests belong to the task that
/// submitted them, PITFALLS B11). Its ring descriptor is close-on-exec. A forked child
/// must not use or deinitialize a loop created by its parent. A program that drops
/// privileges (setuid, setgid) should create its loops afterwards: work set up through a
/// ring can keep the credentials the ring was created with (CVE-2024-22017, PITFALLS C10).
/// On Android the loop is never created (seccomp kills a process that calls
/// io_uring_setup, PITFALLS C1), so runtime selection moves on to epoll.
public final class UringLoop: LoopCore, LoopBackend {
    /// io_uring setup flags the loop may use (PITFALLS B9; libxev PR #228). Only
    /// `coopTaskrun` is on by default; see `UringLoop.defaultFlags` for the measurements
    /// behind that.
    public struct SetupFlags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// IORING_SETUP_SINGLE_ISSUER (6.0): only the thread that creates the loop may
        /// submit; the loop must be created on the thread that runs it.
        public static let singleIssuer = SetupFlags(rawValue: UInt32(IORING_SETUP_SINGLE_ISSUER))
        /// IORING_SETUP_COOP_TASKRUN (5.19): no inter-processor interrupt to run completion
        /// work; it runs when the loop next enters the kernel. The loop adds
        /// IORING_SETUP_TASKRUN_FLAG, so that `run(.noWait)` sees pending work
        /// (IORING_SQ_TASKRUN) and enters the kernel to collect it.
        public static let coopTaskrun = SetupFlags(rawValue: UInt32(IORING_SETUP_COOP_TASKRUN))
        /// IORING_SETUP_DEFER_TASKRUN (6.1, needs `singleIssuer`): completions are posted
        /// only when the loop enters the kernel to wait for them.
        public static let deferTaskrun = SetupFlags(rawValue: UInt32(IORING_SETUP_DEFER_TASKRUN))
    }

    /// The flags `init` uses unless told otherwise: COOP_TASKRUN (with TASKRUN_FLAG).
    ///
    /// Why COOP_TASKRUN: without it the kernel runs the completion work of a socket that
    /// became ready (the receive it retries, the CQE it posts) by interrupting the loop's
    /// thread (task_work with TWA_SIGNAL: a rescheduling IPI when the thread is running,
    /// which in a KVM guest is also a VM exit on the sending CPU). A ping-pong never sees
    /// that (its loop is asleep in io_uring_enter when data comes), but a busy loop does:
    /// ev-http at 500 connections (server pinned to one CPU, wrk on the other) took 0.109
    /// rescheduling interrupts per request on io_uring, 0.000 on epoll and on the C
    /// io_uring floor, which sets COOP_TASKRUN; with it, 0.001 (perf stat,
    /// irq_vectors:reschedule_entry, 2 December 2026, issue 14). The work then waits for
    /// the loop's next io_uring_enter, which every tick makes anyway, and a loop asleep in
    /// its wait is still woken. It asks nothing of the threads a loop runs on (unlike
    /// SINGLE_ISSUER and DEFER_TASKRUN below), and a kernel before 5.19 drops it (`init`).
    ///
    /// Measured on this project's machine (2 vCPU KVM guest, Linux 6.18, November 2026):
    /// TCP ping-pong over loopback, 5-byte messages, client and server loops on their own
    /// threads, both pinned to one CPU, 50,000 round trips, 5 interleaved rounds; CPU time
    /// (user + system) per round trip, median (range):
    ///
    /// | flags                               | CPU per round trip    |
    /// |-------------------------------------|-----------------------|
    /// | none                                | 20.9 µs (20.3–21.2)   |
    /// | COOP_TASKRUN                        | 20.5 µs (20.4–20.7)   |
    /// | SINGLE_ISSUER                       | 20.7 µs (20.5–21.2)   |
    /// | SINGLE_ISSUER + COOP_TASKRUN        | 20.9 µs (20.6–21.6)   |
    /// | SINGLE_ISSUER + DEFER_TASKRUN       | 20.0 µs (19.7–20.5)   |
    /// | SINGLE + COOP + DEFER_TASKRUN       | 19.9 µs (19.6–20.4)   |
    /// | (epoll backend, for comparison)     | 19.6 µs (19.3–20.2)   |
    ///
    /// Round trips per second were 34–40 k for every variant, with ranges of 32–50 k (the
    /// machine was shared), so only the CPU figure separates them: DEFER_TASKRUN saves
    /// about 5%, COOP_TASKRUN alone about 2%, which is noise. DEFER_TASKRUN needs
    /// SINGLE_ISSUER, which ties the ring to the thread that creates it: a loop created on
    /// one thread and run on another (a common pattern) would fail with EEXIST. So the
    /// default leaves both out, as PITFALLS B9 advises, and a program that creates and runs
    /// its loop on one thread can opt in with `[.singleIssuer, .coopTaskrun, .deferTaskrun]`.
    /// Measured again on 1 December 2026 (AMD EPYC guest, Linux 6.18, 5 interleaved pinned
    /// rounds of the same ping-pong): SINGLE_ISSUER + DEFER_TASKRUN 21.3 µs median, none
    /// 21.2 µs: no gain to trade the thread restriction for (BENCHMARKS.md).
    ///
    /// Both ends make one io_uring_enter per loop tick, two per round trip: one that
    /// submits the send (which completes inline) and one that waits for the next receive.
    /// A C ping-pong that marks its sends IOSQE_CQE_SKIP_SUCCESS needs one, at 17.3 µs,
    /// but a completion loop must report every send to its callback.
    public static let defaultFlags: SetupFlags = [.coopTaskrun]

    private let ring: UnsafeMutablePointer<io_uring>
    private let ringFd: Int32
    /// Submission queue entries of the ring (the kernel may round the request up).
    public let entries: UInt32
    /// The setup flags the ring was created with (a requested flag the kernel does not
    /// know is dropped rather than failing the loop).
    public let setupFlags: SetupFlags
    /// Whether the kernel has IORING_SETUP_SUBMIT_ALL (5.18): a batch keeps going past an
    /// SQE that fails at submission. Without it the loop resubmits the rest (PITFALLS B3).
    package let submitsAll: Bool
    /// Whether `.close` can cancel by descriptor (IORING_ASYNC_CANCEL_FD, Linux 5.19).
    package let cancelsByDescriptor: Bool
    private let defersTaskrun: Bool
    /// Whether a receive may ask for IORING_RECVSEND_POLL_FIRST and trust the absence of
    /// IORING_CQE_F_SOCK_NONEMPTY (both Linux 5.19; told by the opcode probe, see
    /// `RingSetup.receivesPollFirst`). Older kernels would take the flag for a priority.
    package let receivesPollFirst: Bool
    /// The file-system operations this kernel's io_uring runs (bit `kind.rawValue -
    /// OperationKind.open.rawValue`, from the opcode probe); the others run on the loop's
    /// file pool, as on epoll and poll.
    private let nativeFileOperations: UInt16
    /// Direct I/O: the polled ring and what each device's probe said (DirectIOUring.swift).
    let directIO = UringDirectIO()

    #if DEBUG
    /// For tests (debug builds only): send every O_DIRECT file to the polled ring whatever
    /// its device's probe said (see `UringDirectIO.forcePolled`).
    package var forcePolledDirectIO: Bool {
        get { directIO.forcePolled }
        set { directIO.forcePolled = newValue }
    }
    #endif
    /// For tests: SQEs written to the polled ring.
    package var polledSubmissions: Int { directIO.polledSubmissions }

    /// Where this loop runs positional reads and writes (`pread`, `pwrite`) of `file`, and
    /// why: the polled ring (IORING_SETUP_IOPOLL, `PolledRing`) when the file is open with
    /// O_DIRECT and its device completes a polled read (probed once per device, st_dev, by
    /// an actual one-block O_DIRECT read on the IOPOLL ring), else the main ring, with the
    /// reason. A file opened through the loop with `.direct` is asked at its open; one
    /// opened otherwise is asked here, and from then on takes the path this returns until
    /// it is closed through the loop. Operations with a deadline stay on the main ring (an
    /// IOPOLL ring takes no linked timeout), and so do reads and writes at the current
    /// offset (`read`, `write`).
    public override func directIOPath(for file: File) -> DirectIOPath { probedDirectIOPath(for: file) }

    /// Whether io_uring runs `kind` in the kernel here (true for every kind that is not a
    /// file-system operation); false sends it to the loop's file pool. For tests and for
    /// programs that want to know where their file operations run.
    public func runsInKernel(_ kind: OperationKind) -> Bool {
        guard kind.isFileSystem else { return true }
        return nativeFileOperations & (1 << (kind.rawValue - OperationKind.open.rawValue)) != 0
    }

    /// The loop's mutable bookkeeping (parked work, tracked completions, counters), in
    /// memory of its own. Swift checks exclusive access to a class's stored `var`s at run
    /// time, on every access (swift_beginAccess, with a thread-local lookup); that cost
    /// about 2% of the CPU of a ping-pong here. Behind a pointer nothing is checked at run
    /// time, and nothing needs to be: only the loop's thread touches this state.
    private let st: UnsafeMutablePointer<UringState>

    // Test knobs. The counters are plain wrapping increments of memory the loop already
    // holds (`st`), with no check of any kind; the two that change what the loop does
    // (forced non-blocking attempts, injected enter results) exist only in debug builds,
    // so a release build never tests for them on its hot path.

    #if DEBUG
    /// For tests (debug builds only): submit socket reads and writes with MSG_DONTWAIT /
    /// RWF_NOWAIT, so the kernel answers -EAGAIN as older kernels do for non-blocking
    /// descriptors, and the poll-and-resubmit path (PITFALLS D7) runs on this kernel too.
    package var forceNonblockingAttempts: Bool {
        get { st.pointee.forceNonblocking }
        set { st.pointee.forceNonblocking = newValue }
    }
    /// For tests (fault injection, PITFALLS B2/B4; debug builds only): each io_uring_enter
    /// takes the first of these, if any, as its result instead of entering the kernel
    /// (nothing is submitted).
    package var injectedEnterResults: [Int32] {
        get { st.pointee.injectedEnterResults }
        set { st.pointee.injectedEnterResults = newValue }
    }
    #endif
    /// For tests: how many times the loop entered the kernel (io_uring_enter).
    package var enterCount: Int { st.pointee.enterCount }
    /// For tests: the -EAGAIN results absorbed by arming a poll.
    package var eagainRetries: Int { st.pointee.eagainRetries }
    /// For tests: receives submitted with IORING_RECVSEND_POLL_FIRST, because the previous
    /// receive on the same completion left its socket empty (`Flags.socketDrained`).
    package var pollFirstReceives: Int { st.pointee.pollFirstReceives }
    /// For tests: how many times CQEs the kernel kept aside (CQ overflow) were fetched.
    package var overflowFlushes: Int { st.pointee.overflowFlushes }
    /// For tests: completions waiting for a free SQE.
    package var parkedCount: Int { st.pointee.parked.count }
    /// For tests: SQEs written per operation kind (index: `OperationKind.rawValue`; the
    /// readiness poll after an EAGAIN counts as `.poll`, internal cancels as `.cancel`).
    package var sqeCounts: [Int] {
        (0..<OperationKind.allCases.count).map { st.pointee.sqeCounts[$0] }
    }
    /// For tests: the completion queue's size.
    package var completionQueueEntries: UInt32 { ring.pointee.cq.ring_entries }

    /// Creates a ring of `entries` submission entries (a power of two; the completion
    /// queue is eight times as large, 8,192 entries by default, so that thousands of
    /// connections completing in one tick do not overflow it) and checks that it works
    /// on this kernel. Memory: 64 bytes per submission and 16 per completion entry (about
    /// 200 KB by default).
    ///
    /// Throws `BackendUnavailable` when io_uring cannot be used here: the setup fails
    /// (EPERM from a seccomp filter or `kernel.io_uring_disabled`, ENOSYS from a kernel
    /// without io_uring, ENOMEM from RLIMIT_MEMLOCK after retrying with fewer entries), a
    /// NOP does not complete, or an operation the loop needs is missing.
    public convenience init(entries: UInt32 = 1024, setupFlags: SetupFlags = UringLoop.defaultFlags) throws(BackendUnavailable) {
        try self.init(entries: entries, setupFlags: setupFlags, probeOverride: nil)
    }

    /// For tests, to simulate older kernels and sandboxes: `probeOverride` sees each
    /// required opcode's name and whether the kernel supports it, and returns what the
    /// loop should believe; `allowCancelByDescriptor: false` makes `.close` take the path
    /// of kernels before 5.19 (cancel each operation on the descriptor, then close);
    /// `probeEnterResult` replaces the result of the io_uring_enter that submits the
    /// probe's NOP (a sandbox that allows io_uring_setup but not io_uring_enter, C6).
    package init(entries: UInt32, setupFlags: SetupFlags,
                 probeOverride: ((_ opcode: String, _ supported: Bool) -> Bool)?,
                 allowCancelByDescriptor: Bool = true,
                 probeEnterResult: Int32? = nil) throws(BackendUnavailable) {
        #if os(Android)
        // Android's seccomp policy kills the process (SIGSYS) instead of failing the call,
        // so even a probe is fatal there (libuv#4010, libxev PR #215).
        throw BackendUnavailable(backend: .ioUring, reason: "io_uring is not used on Android: its seccomp policy kills processes that call io_uring_setup")
        #else
        let setup = try RingSetup.make(entries: max(entries, 1), flags: setupFlags, probeOverride: probeOverride,
                                       probeEnterResult: probeEnterResult)
        self.ring = setup.ring
        self.ringFd = setup.ring.pointee.ring_fd
        self.entries = setup.ring.pointee.sq.ring_entries
        self.setupFlags = setup.flags
        self.submitsAll = setup.submitsAll
        self.cancelsByDescriptor = setup.cancelsByDescriptor && allowCancelByDescriptor
        self.defersTaskrun = setup.flags.contains(.deferTaskrun)
        self.receivesPollFirst = setup.receivesPollFirst
        self.nativeFileOperations = setup.nativeFileOperations
        self.st = .allocate(capacity: 1)
        self.st.initialize(to: UringState())
        // Descriptors are best left blocking: the kernel waits for readiness itself.
        super.init(backend: .ioUring, prefersBlockingDescriptors: true, triesOperationsAtOnce: false,
                   hooks: BackendHooks(
            submit: { unsafeDowncast($0, to: UringLoop.self).backendSubmit($1) },
            cancel: { unsafeDowncast($0, to: UringLoop.self).backendCancel($1, target: $2) },
            poll: { unsafeDowncast($0, to: UringLoop.self).backendPoll(timeout: $1) },
            cancelAll: { unsafeDowncast($0, to: UringLoop.self).backendCancelAll() },
            expire: nil  // linked kernel timeouts (IORING_OP_LINK_TIMEOUT) keep deadlines
        ))
        #endif
    }

    deinit {
        // The core asserts that nothing is in flight; exiting the ring unmaps it and
        // closes its descriptor.
        io_uring_queue_exit(ring)
        ring.deallocate()
        st.pointee.sqeCounts.deallocate()
        st.deinitialize(count: 1)
        st.deallocate()
    }


    // MARK: user_data

    private static let kindMain: UInt64 = 0
    /// The IORING_ASYNC_CANCEL_FD entry linked before a `.close`.
    private static let kindCloseCancel: UInt64 = 1
    /// An internal cancel aimed at the completion (cancelAll, close without CANCEL_FD).
    private static let kindKill: UInt64 = 2
    /// The IORING_OP_LINK_TIMEOUT linked to an operation with a deadline.
    private static let kindDeadline: UInt64 = 3
    private static let kindMask: UInt64 = 0x7
    private static let pointerMask: UInt64 = 0x0000_FFFF_FFFF_FFF8

    @inline(__always)
    private static func userData(_ c: Completion, kind: UInt64) -> UInt64 {
        let p = UInt64(UInt(bitPattern: Unmanaged.passUnretained(c).toOpaque()))
        precondition(p & ~pointerMask == 0, "EvLoop: completion address does not fit io_uring user_data packing")
        return p | kind | (UInt64(c.generation & 0xFFFF) << 48)
    }

    // MARK: Submitting

    /// Whether new work must queue behind work that is already waiting for an SQE.
    @inline(__always)
    private var mustQueue: Bool { !st.pointee.parked.isEmpty || !st.pointee.killQueue.isEmpty }

    // Always inlined into the `submit` hook's closure, its only caller on the hot path
    // (as the readiness engine's is): one call and frame fewer per operation.
    @inline(__always)
    package func backendSubmit(_ c: Completion) {
        c.uring = c.uring.added
        if c.kind.isFileSystem {
            // A path with a NUL byte never reaches the kernel; an opcode the kernel lacks
            // (the init probe) runs on the file pool, as on epoll and poll.
            if let f = c.fileScratch, f.pointee.pathInvalid {
                complete(c, raw: -Int(EINVAL))
                return
            }
            if !runsInKernel(c.kind) {
                runOnFilePool(c)
                return
            }
        }
        if goesToPolledRing(c) {
            c.uring.flags.insert(.polled)
            if submitPolled(c, userData: Self.userData(c, kind: Self.kindMain)) { return }
            c.uring.flags.remove(.polled)   // the polled ring is full: the main ring takes it
        }
        if c.kind == .close {
            submitClose(c, fd: c.fd)
            return
        }
        if mustQueue || !issue(c, .operation) { park(c, .operation) }
    }

    /// Queues `c` until an SQE is free for `step`. From a phase in flight (a resubmission
    /// that found the ring full) no SQE names it any more, so it leaves `tracked`.
    private func park(_ c: Completion, _ step: UringActivation.Step) {
        if c.uring.phase.isTracked { untrack(c) }
        c.uring.phase = step.parked
        st.pointee.parked.push(c)
    }

    /// Writes the SQE for `step` of `c` (its operation, or the poll it waits on after an
    /// EAGAIN or a non-blocking connect). False when the submission queue is full.
    private func issue(_ c: Completion, _ step: UringActivation.Step) -> Bool {
        let linked = c.hasActiveDeadline
        // A deadline is a second SQE linked to this one: both, or neither.
        if linked && io_uring_sq_space_left(ring) < 2 { return false }
        guard let sqe = io_uring_get_sqe(ring) else { return false }
        if step == .operation {
            prepare(sqe, c)
            countSQE(c.kind)
        } else {
            io_uring_prep_poll_add(sqe, c.fd, c.kind.readinessNeeded)
            countSQE(.poll)
        }
        sqe.pointee.user_data = Self.userData(c, kind: Self.kindMain)
        c.uring.sqes += 1
        if linked { linkDeadline(to: sqe, of: c) }
        if !c.uring.phase.isTracked { track(c) }
        c.uring.phase = step.inFlight
        return true
    }

    /// Links an IORING_OP_LINK_TIMEOUT to `sqe` (the operation, or the readiness poll it
    /// waits on after an EAGAIN), firing at the activation's deadline: an absolute
    /// CLOCK_MONOTONIC time, so a resubmission keeps the original deadline. When it fires
    /// the kernel cancels the operation (-ECANCELED) and posts -ETIME for the timeout (or
    /// -EALREADY / -ENOENT when a kernel worker was running it), which marks the activation
    /// `deadlineFired` (`handleCQE`); the hand-off then reports an -ECANCELED operation as
    /// -ETIMEDOUT. When the operation finishes first, its result stands and the timeout
    /// ends with -ECANCELED, which only releases the completion. A read that moved bytes
    /// reports them: the kernel never cancels a request
    /// that has produced a result (PITFALLS D5). The kernel copies the time when it
    /// takes the SQE, so the scratch memory may change after the tick's submit.
    private func linkDeadline(to sqe: UnsafeMutablePointer<io_uring_sqe>, of c: Completion) {
        io_uring_sqe_set_flags(sqe, UInt32(sqe.pointee.flags) | Self.ioSqeIoLink)
        let timeout = io_uring_get_sqe(ring)!   // room for two was checked by the caller
        let time = CompletionScratch.linkTimeoutPointer(c.scratch!)   // stored by the core at the start
        io_uring_prep_link_timeout(timeout, time.assumingMemoryBound(to: __kernel_timespec.self),
                                   UInt32(IORING_TIMEOUT_ABS))
        timeout.pointee.user_data = Self.userData(c, kind: Self.kindDeadline)
        c.uring.sqes += 1
        countSQE(.timer)   // the only kernel timer this loop submits
    }

    /// IOSQE_IO_LINK (1 << IOSQE_IO_LINK_BIT; the macro does not import).
    private static let ioSqeIoLink = UInt32(1) << 2

    @inline(__always)
    private func countSQE(_ kind: OperationKind) {
        st.pointee.sqeCounts[Int(kind.rawValue)] &+= 1
    }

    @inline(__always)
    private static func length(_ count: Int) -> UInt32 {
        // An SQE carries a 32-bit length; a larger buffer gets a short read or write,
        // which every caller of read/write must handle anyway.
        UInt32(clamping: count)
    }

    /// Whether socket reads and writes are attempted without waiting (a test knob; always
    /// false, as a constant, in release builds).
    @inline(__always)
    private var forcesNonblocking: Bool {
        #if DEBUG
        st.pointee.forceNonblocking
        #else
        false
        #endif
    }

    // Inlined into `issue`, its one caller (one call fewer per SQE).
    @inline(__always)
    private func prepare(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ c: Completion) {
        let dontWait: Int32 = forcesNonblocking ? Int32(MSG_DONTWAIT) : 0
        let fd = c.fd
        let base = c.bufferBase
        let length = Self.length(c.bufferCount)
        switch c.kind {
        case .accept:
            let s = c.scratch!
            s.pointee.addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            // Accepted sockets are close-on-exec and blocking: io_uring waits for them in
            // the kernel, and a blocking socket never gets EAGAIN back (PITFALLS D7).
            io_uring_prep_accept(sqe, fd, CompletionScratch.addressPointer(s),
                                 CompletionScratch.addressLengthPointer(s), Int32(SOCK_CLOEXEC.rawValue))
        case .connect:
            let s = c.scratch!
            io_uring_prep_connect(sqe, fd, CompletionScratch.addressPointer(s), s.pointee.addressLength)
        case .read:
            // Offset -1: the descriptor's current position (IORING_FEAT_RW_CUR_POS), so
            // sequential reads and writes on a file advance it like read(2)/write(2).
            io_uring_prep_read(sqe, fd, base, length, UInt64.max)
            if forcesNonblocking { sqe.pointee.rw_flags = Self.rwfNoWait }
        case .write:
            io_uring_prep_write(sqe, fd, base, length, UInt64.max)
            if forcesNonblocking { sqe.pointee.rw_flags = Self.rwfNoWait }
        case .pread:
            io_uring_prep_read(sqe, fd, base, length, c.offset)
        case .pwrite:
            io_uring_prep_write(sqe, fd, base, length, c.offset)
        case .recv:
            io_uring_prep_recv(sqe, fd, base, Int(length), dontWait)
            // The last receive on this completion emptied the socket, so this one (its
            // rearm, as a rule) would only find nothing: IORING_RECVSEND_POLL_FIRST
            // (Linux 5.19) has the kernel arm its poll at once instead of first trying
            // the receive, failing with EAGAIN inside the kernel and then arming it
            // (issue 14: ev-http at 500 connections made 2.02 socket receives per
            // request, 1.01 of them failing, against 1.00 and none for the C floor's
            // multishot receive). Not for an empty buffer, which a receive answers at
            // once and a poll would hold until data comes; not with the test knob's
            // MSG_DONTWAIT, where the kernel would answer EAGAIN without trying.
            if c.uring.flags.contains(.socketDrained) && length > 0 && dontWait == 0 {
                sqe.pointee.ioprio = UInt16(IORING_RECVSEND_POLL_FIRST)
                st.pointee.pollFirstReceives &+= 1
            }
        case .send:
            io_uring_prep_send(sqe, fd, base, Int(length), Int32(MSG_NOSIGNAL) | dontWait)
        case .recvmsg:
            // The msghdr lives in the completion's scratch memory: the kernel reads it
            // after this call returns (at submission, or later from a worker).
            CompletionScratch.prepareMessage(for: c)
            io_uring_prep_recvmsg(sqe, fd, CompletionScratch.messagePointer(c.scratch!), UInt32(bitPattern: dontWait))
        case .sendmsg:
            CompletionScratch.prepareMessage(for: c)
            io_uring_prep_sendmsg(sqe, fd, CompletionScratch.messagePointer(c.scratch!),
                                  UInt32(bitPattern: Int32(MSG_NOSIGNAL) | dontWait))
        case .shutdown:
            io_uring_prep_shutdown(sqe, fd, c.shutdownHow)
        case .close:
            io_uring_prep_close(sqe, fd)
        case .poll:
            // One-shot POLL_ADD; the result is the ready events (revents).
            io_uring_prep_poll_add(sqe, fd, c.pollEvents)
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            prepareFileSystem(sqe, c)
        case .nop, .timer, .cancel, .work:
            preconditionFailure("EvLoop: the core handles \(c.kind) itself")
        }
    }

    /// The SQE of a file-system operation. Its paths and statx buffer are in the
    /// completion's file scratch memory, which stays put until the callback, so the kernel
    /// may read them at submission or later from a worker (it copies paths at submission
    /// since Linux 5.x, but nothing here depends on that).
    private func prepareFileSystem(_ sqe: UnsafeMutablePointer<io_uring_sqe>, _ c: Completion) {
        let f = c.fileScratch!
        let path = UnsafePointer(f.pointee.path)
        let at = cevsys_at_fdcwd()
        let argument = c.offset
        switch c.kind {
        case .open:
            io_uring_prep_openat(sqe, at, path, FileSystemCall.openFlags(argument), FileSystemCall.openMode(argument))
        case .stat:
            let statusPointer = UnsafeMutableRawPointer(f) + MemoryLayout<FileRequestScratch>.offset(of: \.status)!
            let name = argument == 2 ? FileSystemCall.emptyPath : path
            io_uring_prep_statx(sqe, FileSystemCall.statDirectory(fd: c.fd, argument: argument), name,
                                FileSystemCall.statFlags(argument), UInt32(CEVSYS_STATX_MASK),
                                OpaquePointer(statusPointer))
        case .fsync:
            io_uring_prep_fsync(sqe, c.fd, argument != 0 ? UInt32(IORING_FSYNC_DATASYNC) : 0)
        case .fallocate:
            io_uring_prep_fallocate(sqe, c.fd, f.pointee.mode, off_t(Int64(bitPattern: argument)),
                                    off_t(Int64(bitPattern: f.pointee.length)))
        case .truncate:
            // IORING_OP_FTRUNCATE (6.9): the length travels in the offset field.
            io_uring_prep_rw(Int32(RingSetup.ftruncateOpcode), sqe, c.fd, nil, 0, argument)
        case .rename:
            io_uring_prep_renameat(sqe, at, path, at, UnsafePointer(f.pointee.secondPath), 0)
        case .unlink:
            io_uring_prep_unlinkat(sqe, at, path, argument != 0 ? cevsys_at_removedir() : 0)
        case .mkdir:
            io_uring_prep_mkdirat(sqe, at, path, mode_t(truncatingIfNeeded: argument))
        default:
            preconditionFailure("EvLoop: \(c.kind) is not a file-system operation")
        }
    }


    /// RWF_NOWAIT (linux/fs.h; not exported by Glibc to Swift).
    private static let rwfNoWait: Int32 = 0x0000_0008

    // MARK: Close

    private func submitClose(_ c: Completion, fd: Int32) {
        // A later file under this number is asked afresh (`directIOPath(for:)`).
        if !directIO.polledDescriptors.isEmpty { directIO.polledDescriptors.remove(fd) }
        // File-system operations on the file pool (a kernel without their opcode) that
        // use this descriptor: withdrawn, or waited for (`closeWaitsForFilePool`).
        if closeWaitsForFilePool(c) { return }
        // Operations on the descriptor that never reached the kernel never will.
        cancelParked(onDescriptor: fd)
        // Operations in flight on it must not be restarted after an EAGAIN or EINTR (the
        // number may belong to a new file by then); without IORING_ASYNC_CANCEL_FD they
        // are cancelled one by one, ahead of the close.
        var p = st.pointee.tracked.head
        while let t = p {
            p = t.waiterNext
            guard t.fd == fd, t.uring.phase != .stored, t.kind != .close, t.kind != .cancel else { continue }
            t.uring.flags.insert(.closing)
            if !cancelsByDescriptor { requestKill(t) }
        }
        if mustQueue || !issueClose(c) { park(c, .operation) }
    }

    private func issueClose(_ c: Completion) -> Bool {
        guard c.kind == .close else { return false }
        let fd = c.fd
        if cancelsByDescriptor {
            guard io_uring_sq_space_left(ring) >= 2,
                  let cancel = io_uring_get_sqe(ring) else { return false }
            io_uring_prep_cancel_fd(cancel, fd, UInt32(IORING_ASYNC_CANCEL_ALL))
            // Hard link: the close starts only after the cancel, and runs even when the
            // cancel fails (-ENOENT when nothing was pending), which a plain
            // IOSQE_IO_LINK would turn into -ECANCELED for the close.
            io_uring_sqe_set_flags(cancel, Self.ioSqeHardLink)
            cancel.pointee.user_data = Self.userData(c, kind: Self.kindCloseCancel)
            let close = io_uring_get_sqe(ring)!
            io_uring_prep_close(close, fd)
            close.pointee.user_data = Self.userData(c, kind: Self.kindMain)
            c.uring.sqes += 2
            countSQE(.cancel)
        } else {
            guard let close = io_uring_get_sqe(ring) else { return false }
            io_uring_prep_close(close, fd)
            close.pointee.user_data = Self.userData(c, kind: Self.kindMain)
            c.uring.sqes += 1
        }
        countSQE(.close)
        track(c)
        c.uring.phase = .submitted
        return true
    }

    /// IOSQE_IO_HARDLINK (1 << IOSQE_IO_HARDLINK_BIT; the macro does not import).
    private static let ioSqeHardLink = UInt32(1) << 3

    private func cancelParked(onDescriptor fd: Int32) {
        var p = st.pointee.parked.head
        while let x = p {
            p = x.queueNext
            guard x.fd == fd, x.kind != .close else { continue }
            _ = st.pointee.parked.remove(x)
            x.uring.phase = .idle
            complete(x, raw: -Int(ECANCELED))
        }
    }

    // MARK: Cancelling

    package func backendCancel(_ cancel: Completion, target: Completion) {
        cancel.uring = UringActivation()
        if !issueCancel(cancel, mayUseSQE: !mustQueue) { park(cancel, .operation) }
    }

    /// Starts `cancel`: settles it here when the target never reached the kernel or is
    /// already decided, else writes an ASYNC_CANCEL aimed at the target's user_data.
    /// False when that needs an SQE and none may be used now.
    private func issueCancel(_ cancel: Completion, mayUseSQE: Bool) -> Bool {
        guard cancel.kind == .cancel, let target = cancel.cancelTarget else { return true }
        guard target.generation == cancel.cancelTargetGeneration, target.state == .active,
              !target.resultReady else {
            complete(cancel, raw: -Int(ENOENT))
            return true
        }
        if target.uring.flags.contains(.polled) {
            // Polled I/O cannot be cancelled: it reports its real result (soon).
            complete(cancel, raw: -Int(EALREADY))
            return true
        }
        switch target.uring.phase {
        case .parked, .parkedForPoll, .parkedForConnectPoll:
            // Never submitted: it never will be (PITFALLS A9).
            _ = st.pointee.parked.remove(target)
            target.uring.phase = .idle
            target.uring.flags.insert(.cancelSucceeded)
            complete(target, raw: -Int(ECANCELED))
            complete(cancel, raw: 0)
            return true
        case .held:
            target.uring.flags.insert(.cancelSucceeded)
            finish(target, raw: -Int(ECANCELED))
            complete(cancel, raw: 0)
            return true
        case .stored:
            complete(cancel, raw: -Int(ENOENT))
            return true
        case .idle, .submitted, .polling, .connectPolling, .cancelling:
            break   // in the kernel: ask it
        }
        guard mayUseSQE, let sqe = io_uring_get_sqe(ring) else { return false }
        io_uring_prep_cancel64(sqe, Self.userData(target, kind: Self.kindMain), 0)
        sqe.pointee.user_data = Self.userData(cancel, kind: Self.kindMain)
        cancel.uring.sqes += 1
        countSQE(.cancel)
        track(cancel)
        cancel.uring.phase = .cancelling
        target.uring.cancels += 1
        return true
    }

    /// The CQE of an ASYNC_CANCEL submitted for `cancel`.
    private func cancelFinished(_ cancel: Completion, raw: Int) {
        var result = raw
        // Same generation: the same activation (the core bumps it on every add), even if
        // the target has been handed back since.
        if let target = cancel.cancelTarget, target.generation == cancel.cancelTargetGeneration {
            if target.state == .active && !target.resultReady {
                target.uring.cancels -= 1
                if target.uring.phase == .held {
                    // The target was between two SQEs (its EAGAIN poll had fired, or it got
                    // EINTR) when the cancel reached the kernel, so the kernel found nothing
                    // (-ENOENT) or found it running (-EALREADY); the loop held it instead of
                    // resubmitting, and cancels it here.
                    finish(target, raw: -Int(ECANCELED))
                    result = 0
                } else if result == -Int(EALREADY) {
                    // Running in a kernel worker: the kernel interrupts it, and its CQE (an
                    // EINTR, often) is still to come. It must end there, not start again.
                    target.uring.flags.insert(.cancelInterrupted)
                }
            }
            if result == 0 {
                // Two cancels of one poll-armed request in the same batch both get 0 from
                // the kernel (Linux 6.18: the request stays findable until its task work
                // runs). Only one of them cancelled it; the other found nothing to cancel.
                // The same race with the activation's linked timeout: when the timeout's
                // -ETIME came first, the deadline cancelled the operation, which reports
                // .timedOut, so the cancel found nothing (issue 16: the differential tester
                // saw a cancel report success to a read that timed out).
                if target.uring.flags.contains(.cancelSucceeded) || target.uring.flags.contains(.deadlineFired) {
                    result = -Int(ENOENT)
                } else {
                    target.uring.flags.insert(.cancelSucceeded)
                }
            }
        }
        finish(cancel, raw: result)
    }

    package func backendCancelAll() {
        // Never submitted: cancelled here, in order.
        while let c = st.pointee.parked.pop() {
            c.uring.phase = .idle
            if c.kind == .cancel {
                // A cancel whose target is also being cancelled: settle it without the
                // kernel if it can be, else it is itself cancelled.
                if !issueCancel(c, mayUseSQE: false) { complete(c, raw: -Int(ECANCELED)) }
            } else {
                complete(c, raw: -Int(ECANCELED))
            }
        }
        var p = st.pointee.tracked.head
        while let t = p {
            p = t.waiterNext
            // A cancel and a close both finish on their own, at once.
            if t.kind == .cancel || t.kind == .close { continue }
            switch t.uring.phase {
            case .held: finish(t, raw: -Int(ECANCELED))
            case .stored: break
            default: requestKill(t)
            }
        }
    }

    /// Asks the kernel to cancel `t` (an internal ASYNC_CANCEL with no completion of its
    /// own; its CQE only releases `t`), and makes sure `t` is not restarted.
    private func requestKill(_ t: Completion) {
        guard !t.uring.flags.contains(.killed) else { return }
        t.uring.flags.insert(.killed)
        if st.pointee.killQueue.isEmpty, writeKill(t) { return }
        t.uring.flags.insert(.killQueued)
        st.pointee.killQueue.push(t)
    }

    private func writeKill(_ t: Completion) -> Bool {
        // Held, or already decided: nothing in the kernel to cancel (`retry`, the held
        // activation's cancel, or the hand-off settles it). A held one may still be named by
        // its last step's linked timeout, which is no reason for a kill.
        guard t.uring.sqes > 0, t.uring.phase != .stored, t.uring.phase != .held else { return true }
        guard let sqe = io_uring_get_sqe(ring) else { return false }
        io_uring_prep_cancel64(sqe, Self.userData(t, kind: Self.kindMain), 0)
        sqe.pointee.user_data = Self.userData(t, kind: Self.kindKill)
        t.uring.sqes += 1
        countSQE(.cancel)
        return true
    }

    // MARK: Results

    /// Records the final raw result of `c`; hands it to the core once no SQE names it.
    private func finish(_ c: Completion, raw: Int) {
        c.rawResult = raw
        c.uring.phase = .stored
        if c.uring.sqes == 0 { handOff(c) }
    }

    private func handOff(_ c: Completion) {
        let u = c.uring
        assert(u.phase == .stored && u.sqes == 0, "EvLoop: io_uring hand-off of an activation in phase \(u.phase) with \(u.sqes) SQEs")
        untrack(c)   // stored is a tracked phase
        if u.flags.contains(.killQueued) { _ = st.pointee.killQueue.remove(c) }
        // -ETIME on the linked timeout means the timeout cancelled the operation (the
        // kernel cancels a request once: a user's cancel then found nothing), unless a
        // user's cancel has already been reported successful (its CQE came before the
        // timeout's, in the race `cancelFinished` describes): then the cancel won.
        if u.flags.contains(.deadlineFired) && !u.flags.contains(.cancelSucceeded) && c.rawResult == -Int(ECANCELED) {
            c.rawResult = -Int(ETIMEDOUT)
        }
        // Back to idle; only `cancelSucceeded` and `deadlineFired` outlive the hand-off
        // (see their comments).
        c.uring = u.handedOff
        complete(c, raw: c.rawResult)
    }

    /// Writes `step` of `c` after the CQE of its previous SQE (an EAGAIN, a fired poll, an
    /// EINTR), unless it has been cancelled meanwhile.
    private func retry(_ c: Completion, _ step: UringActivation.Step) {
        let u = c.uring
        if u.isDoomed || u.flags.contains(.deadlineFired) {
            // A fired deadline ends it too: the kernel has spent the linked timeout, and what
            // came back (an EINTR from a kernel worker the timeout interrupted, -EALREADY for
            // the timeout) is the deadline's doing. The hand-off reports it as -ETIMEDOUT
            // (test `deadlineOfASendBlockedInTheKernelEnds`).
            finish(c, raw: -Int(ECANCELED))
        } else if u.cancels > 0 {
            // A cancel is on its way to the kernel and would find nothing to cancel:
            // hold the operation until its CQE arrives (`cancelFinished`). With a deadline,
            // the linked timeout's CQE may still be to come: it only releases (`sqes`).
            c.uring.phase = .held
        } else if mustQueue || !issue(c, step) {
            park(c, step)
        }
    }

    @inline(__always)
    private func handleCQE(userData ud: UInt64, result res: Int32, flags cqeFlags: UInt32) {
        // 0 is never one of ours (only init's probes use it); UInt64.max is liburing's
        // internal timeout marker (LIBURING_UDATA_TIMEOUT), which this loop never causes.
        guard ud != 0, ud != UInt64.max,
              let pointer = UnsafeRawPointer(bitPattern: UInt(ud & Self.pointerMask)) else { return }
        // Borrowed, not retained: the activation's retain (taken by the core from `add`
        // until the callback has run) keeps the completion alive while its CQE is
        // handled. `takeUnretainedValue()` cost a retain and a release per CQE (callgrind,
        // ping-udp1 on io_uring: about 95 of 2,145 user-space instructions per roundtrip).
        Unmanaged<Completion>.fromOpaque(pointer)._withUnsafeGuaranteedRef {
            handleCQE($0, userData: ud, result: res, flags: cqeFlags)
        }
    }

    @inline(__always)
    private func handleCQE(_ c: Completion, userData ud: UInt64, result res: Int32, flags cqeFlags: UInt32) {
        guard UInt64(c.generation & 0xFFFF) == ud >> 48, c.uring.sqes > 0 else {
            // Cannot happen while every SQE is counted in `sqes`; a stale CQE must never
            // touch a later activation.
            assertionFailure("EvLoop: io_uring CQE for a completion that has no SQE in flight")
            return
        }
        // The common case, first: the operation's own CQE, with a result (not an error to
        // retry), for an activation that no other SQE names and that waits in no queue.
        // The general path below reaches the same hand-off through `operationFinished`,
        // `finish` and `handOff` (with this CQE, `sqes` drops to 0 in the `.submitted`
        // phase; a result >= 0 is final; `.open` learns its direct-I/O path there, and a
        // queued kill leaves the kill queue there); with `track` and `untrack` inlined, the
        // short path took 1,860 to 1,734 user-space instructions per ping-udp1 roundtrip
        // (two CQEs; callgrind).
        let u = c.uring
        if ud & Self.kindMask == Self.kindMain && res >= 0 && u.sqes == 1 && u.phase == .submitted
            && !u.flags.contains(.killQueued) && c.kind != .open {
            if c.kind == .recv && receivesPollFirst { noteReceive(c, raw: Int(res), cqeFlags: cqeFlags) }
            untrack(c)
            c.uring = c.uring.handedOff
            complete(c, raw: Int(res))
            return
        }
        c.uring.sqes -= 1
        if ud & Self.kindMask != Self.kindMain {
            // A linked timeout that ends with anything but -ECANCELED has fired: -ETIME (it
            // cancelled the operation), or -EALREADY / -ENOENT (it fired while a kernel
            // worker ran the operation, or as it finished: liburing#1208; a blocking
            // AF_UNIX connect interrupted that way gives -ENOENT on Linux 6.18). Only a
            // timeout disarmed by the operation finishing first ends with -ECANCELED. The
            // operation's -ECANCELED (its own CQE, before or after this one) then becomes
            // -ETIMEDOUT at the hand-off; a real result stays what it is.
            if ud & Self.kindMask == Self.kindDeadline && res != -ECANCELED {
                c.uring.flags.insert(.deadlineFired)
            }
            // An internal cancel's, a close's linked cancel or a deadline: it only releases `c`.
            if c.uring.sqes == 0 && c.uring.phase == .stored { handOff(c) }
            return
        }
        let raw = Int(res)
        switch c.uring.phase {
        case .cancelling:
            cancelFinished(c, raw: raw)
        case .polling:
            // The readiness poll armed after an EAGAIN has fired: try again.
            if raw < 0 { finish(c, raw: raw) } else { retry(c, .operation) }
        case .connectPolling:
            // The connect's socket is writable: SO_ERROR says how it went.
            if raw < 0 {
                finish(c, raw: raw)
            } else if c.uring.isDoomed || c.uring.flags.contains(.deadlineFired) {
                // Cancelled, closed, or its deadline cancelled the connect (reported as
                // -ETIMEDOUT at the hand-off).
                finish(c, raw: -Int(ECANCELED))
            } else {
                let r = Syscalls.finishConnect(c.fd)
                // Writable but not connected: an AF_UNIX connect interrupted in the kernel's
                // worker (see `finishConnect`), which only a cancel or the deadline's linked
                // timeout does. Reported as cancelled; the hand-off, after the timeout's own
                // CQE, turns it into -ETIMEDOUT when the deadline did it.
                finish(c, raw: r == -Int(EAGAIN) ? -Int(ECANCELED) : r)
            }
        default:
            assert(c.uring.phase == .submitted, "EvLoop: io_uring CQE for an activation in phase \(c.uring.phase)")
            if c.kind == .recv && receivesPollFirst { noteReceive(c, raw: raw, cqeFlags: cqeFlags) }
            operationFinished(c, raw: raw)
        }
    }

    /// Records whether the receive whose CQE this is left its socket empty
    /// (`UringActivation.Flags.socketDrained`): it moved bytes, and the kernel did not set
    /// IORING_CQE_F_SOCK_NONEMPTY (Linux 5.19: io_uring asks the protocol for the bytes
    /// still queued, `msg_get_inq`; TCP answers, and counts a pending FIN as one). Any
    /// other outcome (an error, EAGAIN, the end of the stream, bytes left) clears it, so
    /// a receive retried after an EAGAIN never arms its poll first twice.
    @inline(__always)
    private func noteReceive(_ c: Completion, raw: Int, cqeFlags: UInt32) {
        if raw > 0 && cqeFlags & UInt32(IORING_CQE_F_SOCK_NONEMPTY) == 0 {
            c.uring.flags.insert(.socketDrained)
        } else {
            c.uring.flags.remove(.socketDrained)
        }
    }

    /// The CQE of `c`'s own operation.
    @inline(__always)
    private func operationFinished(_ c: Completion, raw: Int) {
        if raw >= 0 {
            if c.kind == .open { opened(c, fd: raw) }
            finish(c, raw: raw)
            return
        }
        switch Int32(-raw) {
        case EAGAIN where c.kind.readinessNeeded != 0:
            // PITFALLS D7: a non-blocking descriptor (or io-wq's retry limit) returned
            // EAGAIN. Never surfaced: wait for readiness, then try again.
            st.pointee.eagainRetries &+= 1
            retry(c, .readinessPoll)
        case EINPROGRESS where c.kind == .connect, EINTR where c.kind == .connect:
            // A non-blocking connect has started (EINTR from connect(2) means the same):
            // wait until the socket is writable, then read SO_ERROR for the outcome.
            retry(c, .connectPoll)
        case EINTR where isRestartable(c.kind):
            // A signal interrupted the operation inside the kernel (seen on write and
            // pwrite CQEs: libxev PR #198, 9068c5d); it did nothing, so it starts again.
            retry(c, .operation)
        default:
            finish(c, raw: raw)
        }
    }

    /// An open succeeded: a file opened with O_DIRECT learns its direct-I/O path now (the
    /// device's probe runs once), so its reads and writes take the polled ring from the
    /// first one when the device supports it.
    private func opened(_ c: Completion, fd: Int) {
        guard FileSystemCall.openFlags(c.offset) & cevsys_o_direct() != 0 else { return }
        _ = probedDirectIOPath(for: File(fd: Int32(truncatingIfNeeded: fd)))
    }

    /// A CQE of the polled ring: the read or write of `c` is done.
    private func polledFinished(userData ud: UInt64, result res: Int32) {
        guard let pointer = UnsafeRawPointer(bitPattern: UInt(ud & Self.pointerMask)) else { return }
        let c = Unmanaged<Completion>.fromOpaque(pointer).takeUnretainedValue()
        guard UInt64(c.generation & 0xFFFF) == ud >> 48, c.uring.flags.contains(.polled) else {
            assertionFailure("EvLoop: polled-ring CQE for a completion that has no polled I/O in flight")
            return
        }
        c.uring.flags.remove(.polled)
        if res == -EAGAIN {
            // The device's queue was full (EAGAIN never reaches a callback): the main ring
            // runs it, where the kernel waits for room itself.
            if mustQueue || !issue(c, .operation) { park(c, .operation) }
            return
        }
        complete(c, raw: Int(res))
    }

    private func isRestartable(_ kind: OperationKind) -> Bool {
        switch kind {
        case .close, .connect, .shutdown: return false   // close is never retried (the number may be reused)
        default: return true
        }
    }

    /// Drains every CQE the kernel has posted, including any it kept aside while the
    /// completion queue was full (IORING_FEAT_NODROP; PITFALLS B5). Returns how many.
    @discardableResult
    private func reap() -> Int {
        var total = 0
        var flushes = 0
        while true {
            let ready = io_uring_cq_ready(ring)
            if ready > 0 {
                let head = evuring_cq_head(ring)
                for i in 0..<ready {
                    let cqe = evuring_cqe_at(ring, head &+ i)!
                    handleCQE(userData: cqe.pointee.user_data, result: cqe.pointee.res, flags: cqe.pointee.flags)
                }
                io_uring_cq_advance(ring, ready)
                total += Int(ready)
                continue
            }
            // The kernel moves overflowed CQEs into the ring only when asked to
            // (io_uring_enter with GETEVENTS); never leave them behind before a wait.
            guard evuring_sq_flags(ring) & UInt32(IORING_SQ_CQ_OVERFLOW) != 0, flushes < 1024 else { break }
            flushes += 1
            st.pointee.overflowFlushes &+= 1
            let r = enter(submit: 0, wait: 0, flags: UInt32(IORING_ENTER_GETEVENTS), timeout: nil)
            if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY { break }
        }
        return total
    }

    // MARK: Waiting

    /// Moves queued work into the ring (as many rounds as the ring's size requires),
    /// then makes one `io_uring_enter` that submits the rest and waits up to `timeout`
    /// nanoseconds for a completion, and reports every CQE that has arrived.
    package func backendPoll(timeout: UInt64?) -> Int32 {
        // Polled I/O completes without an interrupt: only polling finds it, so the polled
        // ring is polled once per tick, and while anything is in flight there the main
        // wait below does not sleep (a zero timeout, not a short bound: a bound of even
        // 50 µs would add up to that much latency to every polled read, which is what the
        // polled ring exists to save; the cost is a busy loop, only while polled I/O is in
        // flight, which is what IOPOLL means).
        if directIO.polledInFlight > 0 {
            reapPolled { ud, res in polledFinished(userData: ud, result: res) }
        }
        // Work parked because the SQ was full: submit the ring's worth without waiting,
        // and repeat until the rest fits. SQ entries free up at submission, not at
        // completion, so this loop always makes progress.
        var rounds = 0
        while !flushQueues() {
            rounds += 1
            switch submit(waitFor: false, timeout: 0) {
            case .interrupted: return 0   // EINTR: the core calls again
            case .failed(let e): return e
            case .done: break
            }
            reap()
            if rounds > 1_000_000 { break }
        }
        let hasResults = io_uring_cq_ready(ring) > 0
            || evuring_sq_flags(ring) & UInt32(IORING_SQ_CQ_OVERFLOW) != 0
        let wait = timeout != 0 && !hasResults && !hasQueuedCallbacks && directIO.polledInFlight == 0
        if case .failed(let e) = submit(waitFor: wait, timeout: timeout) { return e }
        reap()
        return 0
    }

    /// Writes parked work into free SQEs, in order. True when nothing is left waiting.
    private func flushQueues() -> Bool {
        while let t = st.pointee.killQueue.head {
            guard io_uring_sq_space_left(ring) > 0 else { return false }
            _ = st.pointee.killQueue.pop()
            t.uring.flags.remove(.killQueued)
            _ = writeKill(t)
        }
        while let c = st.pointee.parked.head {
            guard io_uring_sq_space_left(ring) >= sqesNeeded(c) else { return false }
            _ = st.pointee.parked.pop()
            // There is room, so each of these writes its SQE(s).
            switch c.kind {
            case .cancel:
                c.uring.phase = .idle   // settled here, or written as an ASYNC_CANCEL
                _ = issueCancel(c, mayUseSQE: true)
            case .close:
                _ = issueClose(c)
            default:
                switch c.uring.phase {
                case .parkedForPoll: _ = issue(c, .readinessPoll)
                case .parkedForConnectPoll: _ = issue(c, .connectPoll)
                default: _ = issue(c, .operation)
                }
            }
        }
        return true
    }

    private func isCloseWithCancel(_ c: Completion) -> Bool {
        c.kind == .close && cancelsByDescriptor
    }

    /// The SQEs a parked completion takes when it is written: two for a close that cancels
    /// by descriptor first, and for an operation with a deadline (its linked timeout, which
    /// `issue` writes only together with it). Counting one for the latter lost the
    /// operation: popped from the queue, refused by `issue`, parked nowhere (issue 14: 1,000
    /// keep-alive connections with an idle deadline, a few sends never made).
    @inline(__always)
    private func sqesNeeded(_ c: Completion) -> UInt32 {
        switch c.kind {
        case .close: return cancelsByDescriptor ? 2 : 1
        case .cancel: return 1
        default: return c.hasActiveDeadline ? 2 : 1
        }
    }

    /// One io_uring_enter with the kernel's raw result (-errno on failure).
    private func enter(submit: UInt32, wait: UInt32, flags: UInt32, timeout: UInt64?) -> Int32 {
        st.pointee.enterCount &+= 1
        #if DEBUG
        if !st.pointee.injectedEnterResults.isEmpty { return st.pointee.injectedEnterResults.removeFirst() }
        #endif
        // A wait without a timeout (or no wait) is the plain call, as liburing's
        // io_uring_submit_and_wait makes it: no argument struct for the kernel to copy in
        // and check (a loop with no timer armed, as in the ping-pongs and ping-udp1). No
        // measurable gain by itself: ping-udp1 on io_uring, 21 interleaved pinned runs,
        // 4.68 µs of CPU per roundtrip with the struct, 4.67 without (7 December 2026).
        guard flags & UInt32(IORING_ENTER_GETEVENTS) != 0, wait > 0, let timeout else {
            return io_uring_enter2(UInt32(bitPattern: ringFd), submit, wait, flags, nil, 0)
        }
        // IORING_ENTER_EXT_ARG (5.11): the wait's timeout travels with the call, so no
        // timeout SQE is needed (and none can be left behind in the kernel).
        var ts = __kernel_timespec()
        var arg = io_uring_getevents_arg()
        arg.sigmask = 0
        arg.sigmask_sz = UInt32(_NSIG / 8)
        return withUnsafeMutablePointer(to: &ts) { tsp in
            tsp.pointee.tv_sec = Int64(timeout / 1_000_000_000)
            tsp.pointee.tv_nsec = Int64(timeout % 1_000_000_000)
            arg.ts = UInt64(UInt(bitPattern: tsp))
            return withUnsafeMutablePointer(to: &arg) { argp in
                io_uring_enter2(UInt32(bitPattern: ringFd), submit, wait,
                                flags | UInt32(IORING_ENTER_EXT_ARG),
                                UnsafeMutablePointer<sigset_t>(OpaquePointer(argp)),
                                MemoryLayout<io_uring_getevents_arg>.size)
            }
        }
    }

    /// Submits everything in the SQ and, when `waitFor`, waits for one completion (up to
    /// `timeout` ns; nil waits without limit), and says whether a signal interrupted it.
    /// What one `submit` achieved.
    private enum SubmitOutcome { case done, interrupted, failed(Int32) }

    private func submit(waitFor: Bool, timeout: UInt64?) -> SubmitOutcome {
        var wantWait = waitFor
        var stalls = 0
        while true {
            let pending = evuring_publish_sq(ring)
            var flags: UInt32 = 0
            if wantWait {
                flags = UInt32(IORING_ENTER_GETEVENTS)
            } else if defersTaskrun
                        || evuring_sq_flags(ring) & UInt32(IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN) != 0 {
                // DEFER_TASKRUN posts completions only when the loop asks for events,
                // even in a non-blocking poll (PITFALLS B9); an overflowed CQ or pending
                // task work (COOP_TASKRUN) is flushed the same way.
                flags = UInt32(IORING_ENTER_GETEVENTS)
            }
            if pending == 0 && flags == 0 { return .done }
            let r = enter(submit: pending, wait: wantWait ? 1 : 0, flags: flags, timeout: timeout)
            if r >= 0 {
                let left = io_uring_sq_ready(ring)
                if left == 0 { return .done }
                // Without IORING_SETUP_SUBMIT_ALL the kernel stops at an SQE that fails
                // at submission (it gets an error CQE) and leaves the rest in the ring
                // (PITFALLS B3): submit them too, rather than losing them until later.
                if left < pending { stalls = 0 } else { stalls += 1 }
                if stalls > 8 { return .done }   // left in the ring: active, resubmitted next tick (B4)
                reap()
                wantWait = wantWait && io_uring_cq_ready(ring) == 0 && !hasQueuedCallbacks
                continue
            }
            switch -r {
            case EINTR:
                // A signal (PITFALLS B7): the core recomputes the remaining time and
                // calls again; whatever was not submitted stays in the ring.
                return .interrupted
            case ETIME:
                return .done   // the wait's timeout passed
            case EBUSY, EAGAIN, ENOMEM:
                // The kernel is short of CQ room or request memory: make room by reaping
                // completions, then try again (PITFALLS B2; SwiftNIO treats ENOMEM the same).
                // Entries not taken stay in the ring and remain active (B4).
                stalls += 1
                if reap() > 0 { wantWait = false }
                if stalls > 8 { return .done }
                continue
            default:
                return .failed(-r)
            }
        }
    }

    // MARK: Tracking

    // Membership of `tracked` follows the phase (`UringActivation.Phase.isTracked`): a
    // completion joins when it leaves idle or parked for a phase in flight, and leaves
    // when it is parked again or handed off.

    @inline(__always)
    private func track(_ c: Completion) {
        assert(!c.uring.phase.isTracked, "EvLoop: io_uring completion tracked twice")
        st.pointee.tracked.append(c)
    }

    @inline(__always)
    private func untrack(_ c: Completion) {
        st.pointee.tracked.remove(c)
    }
}

/// `UringLoop`'s mutable bookkeeping (see `UringLoop.st`).
private struct UringState {
    /// Completions waiting for a free SQE, in submission order (PITFALLS B1).
    var parked = CompletionQueue()
    /// Operations that need an internal cancel SQE (from `cancelAll`, or a `.close` on a
    /// kernel without IORING_ASYNC_CANCEL_FD) that found no free SQE.
    var killQueue = CompletionQueue()
    /// Every completion with an SQE in the ring or in the kernel, or held for a cancel, or
    /// stored until its last CQE: those whose phase `isTracked`.
    var tracked = IntrusiveList()
    var enterCount = 0
    var eagainRetries = 0
    var overflowFlushes = 0
    var pollFirstReceives = 0
    /// SQEs written per `OperationKind.rawValue`: a fixed array of its own, so counting
    /// one is an indexed add, with no bounds, uniqueness or overflow check (an enum's raw
    /// value is always in range). Deallocated by the loop's deinit.
    let sqeCounts: UnsafeMutablePointer<Int> = {
        let p = UnsafeMutablePointer<Int>.allocate(capacity: OperationKind.allCases.count)
        p.initialize(repeating: 0, count: OperationKind.allCases.count)
        return p
    }()
    #if DEBUG
    var forceNonblocking = false
    var injectedEnterResults: [Int32] = []
    #endif
}
