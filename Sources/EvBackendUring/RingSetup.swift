#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import CLiburing

/// Creates and probes an io_uring instance for `UringLoop`, or explains why io_uring
/// cannot be used on this machine.
///
/// Why a real probe: setup alone can succeed while `io_uring_enter` is blocked (a seccomp
/// allowlist that has only io_uring_setup, PITFALLS C6), and a kernel may lack an opcode
/// the loop needs (C7). So the probe is: setup (retrying with fewer entries on ENOMEM,
/// C5), a NOP that must complete, the opcode probe, and a test of
/// IORING_ASYNC_CANCEL_FD. Nothing is cached process-wide: each loop probes its own ring
/// (a few system calls), so a failure caused by a passing condition (memory, a
/// descriptor limit) is not remembered forever.
struct RingSetup {
    let ring: UnsafeMutablePointer<io_uring>
    let flags: UringLoop.SetupFlags
    let submitsAll: Bool
    let cancelsByDescriptor: Bool
    /// The file-system operations this kernel's io_uring runs itself (the others run on
    /// the loop's file pool): bit `kind.rawValue - OperationKind.open.rawValue`.
    let nativeFileOperations: UInt16
    /// Whether receives can take IORING_RECVSEND_POLL_FIRST and report
    /// IORING_CQE_F_SOCK_NONEMPTY (Linux 5.19). Neither is probed by itself: a kernel
    /// before 5.19 ignores the send/receive flags in `ioprio` or rejects them, and never
    /// sets the CQE flag, so it is told by an opcode of Linux 6.0, IORING_OP_SEND_ZC,
    /// in the opcode probe.
    let receivesPollFirst: Bool

    /// The opcode of each file-system operation, probed at init without making the ring
    /// unusable when one is missing: Linux 5.6 (OPENAT, STATX, FALLOCATE; FSYNC is 5.1),
    /// 5.11 (RENAMEAT, UNLINKAT), 5.15 (MKDIRAT), 6.9 (FTRUNCATE, which liburing 2.3 does
    /// not name yet: opcode 55).
    static let fileOpcodes: [(kind: OperationKind, code: UInt32, name: String)] = [
        (.open, IORING_OP_OPENAT.rawValue, "IORING_OP_OPENAT"),
        (.stat, IORING_OP_STATX.rawValue, "IORING_OP_STATX"),
        (.fsync, IORING_OP_FSYNC.rawValue, "IORING_OP_FSYNC"),
        (.fallocate, IORING_OP_FALLOCATE.rawValue, "IORING_OP_FALLOCATE"),
        (.truncate, ftruncateOpcode, "IORING_OP_FTRUNCATE"),
        (.rename, IORING_OP_RENAMEAT.rawValue, "IORING_OP_RENAMEAT"),
        (.unlink, IORING_OP_UNLINKAT.rawValue, "IORING_OP_UNLINKAT"),
        (.mkdir, IORING_OP_MKDIRAT.rawValue, "IORING_OP_MKDIRAT"),
    ]

    /// IORING_OP_FTRUNCATE (Linux 6.9; include/uapi/linux/io_uring.h).
    static let ftruncateOpcode: UInt32 = 55

    /// The opcodes `UringLoop` submits; a kernel without any of them is not used.
    static let requiredOpcodes: [(code: io_uring_op, name: String)] = [
        (IORING_OP_NOP, "IORING_OP_NOP"),
        (IORING_OP_ACCEPT, "IORING_OP_ACCEPT"),
        (IORING_OP_CONNECT, "IORING_OP_CONNECT"),
        (IORING_OP_READ, "IORING_OP_READ"),
        (IORING_OP_WRITE, "IORING_OP_WRITE"),
        (IORING_OP_RECV, "IORING_OP_RECV"),
        (IORING_OP_SEND, "IORING_OP_SEND"),
        (IORING_OP_RECVMSG, "IORING_OP_RECVMSG"),
        (IORING_OP_SENDMSG, "IORING_OP_SENDMSG"),
        (IORING_OP_SHUTDOWN, "IORING_OP_SHUTDOWN"),
        (IORING_OP_CLOSE, "IORING_OP_CLOSE"),
        (IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD"),
        (IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"),
    ]

    /// Kernel features the loop relies on: NODROP (5.5; a full CQ never loses a
    /// completion), RW_CUR_POS (5.6; offset -1 reads at the current position), EXT_ARG
    /// (5.11; a wait timeout without a timeout SQE).
    static let requiredFeatures: [(bit: UInt32, name: String)] = [
        (UInt32(IORING_FEAT_NODROP), "IORING_FEAT_NODROP (Linux 5.5)"),
        (UInt32(IORING_FEAT_RW_CUR_POS), "IORING_FEAT_RW_CUR_POS (Linux 5.6)"),
        (UInt32(IORING_FEAT_EXT_ARG), "IORING_FEAT_EXT_ARG (Linux 5.11)"),
    ]

    static func make(entries requested: UInt32, flags requestedFlags: UringLoop.SetupFlags,
                     probeOverride: ((String, Bool) -> Bool)?,
                     probeEnterResult: Int32? = nil) throws(BackendUnavailable) -> RingSetup {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        var initialized = false
        do {
            let (flags, submitsAll) = try createRing(ring, entries: requested, flags: requestedFlags)
            initialized = true
            try checkFeatures(ring)
            try probeNop(ring, injectedResult: probeEnterResult)
            let (native, pollFirst) = try probeOpcodes(ring, override: probeOverride)
            let cancelFd = probeCancelByDescriptor(ring)
            return RingSetup(ring: ring, flags: flags, submitsAll: submitsAll, cancelsByDescriptor: cancelFd,
                             nativeFileOperations: native, receivesPollFirst: pollFirst)
        } catch {
            if initialized { io_uring_queue_exit(ring) }
            ring.deallocate()
            throw error
        }
    }

    private static let submitAll = UInt32(IORING_SETUP_SUBMIT_ALL)
    private static let cqSize = UInt32(IORING_SETUP_CQSIZE)
    private static let clamp = UInt32(IORING_SETUP_CLAMP)
    /// Completion-queue entries per submission-queue entry (see `createRing`).
    static let completionsPerSubmission: UInt32 = 8
    private static let taskrunFlag = UInt32(IORING_SETUP_TASKRUN_FLAG)

    /// io_uring_queue_init_params with the requested flags plus SUBMIT_ALL, dropping flags
    /// the kernel rejects (EINVAL: too old) and halving the size on ENOMEM (kernels before
    /// 5.11 charge rings to RLIMIT_MEMLOCK, 64 KiB by default; PITFALLS C5).
    private static func createRing(_ ring: UnsafeMutablePointer<io_uring>, entries requested: UInt32,
                                   flags requestedFlags: UringLoop.SetupFlags)
        throws(BackendUnavailable) -> (UringLoop.SetupFlags, Bool)
    {
        // COOP_TASKRUN comes with TASKRUN_FLAG (same kernel, 5.19): without it a
        // non-blocking poll could not tell that completions wait for task work.
        var wanted = requestedFlags.rawValue
        if requestedFlags.contains(.coopTaskrun) { wanted |= taskrunFlag }
        var candidates: [UInt32] = []
        for f in [wanted | submitAll, wanted, submitAll, 0] where !candidates.contains(f) {
            candidates.append(f)
        }
        var entries = requested
        var lastError: Int32 = 0
        while true {
            var retryWithFewer = false
            for candidate in candidates {
                var params = io_uring_params()
                // A completion queue of 8 entries per submission entry (IORING_SETUP_CQSIZE,
                // 5.5; the kernel's default is 2): with thousands of connections a tick's
                // completions can far outnumber its submissions, and a full CQ falls back
                // to the kernel's overflow list, which costs an extra io_uring_enter per
                // batch to fetch (PITFALLS B5).
                // IORING_SETUP_CLAMP: sizes beyond the kernel's maximum are clamped to it
                // instead of failing with EINVAL.
                params.flags = candidate | cqSize | clamp
                params.cq_entries = entries &* completionsPerSubmission
                let r = io_uring_queue_init_params(entries, ring, &params)
                if r == 0 {
                    return (UringLoop.SetupFlags(rawValue: candidate & ~(submitAll | taskrunFlag)), candidate & submitAll != 0)
                }
                lastError = -r
                if lastError == EINVAL { continue }   // a flag this kernel does not know
                if lastError == ENOMEM && entries > 8 { retryWithFewer = true }
                break
            }
            if retryWithFewer {
                entries /= 2
                continue
            }
            throw unavailable(setupFailed: lastError, entries: entries)
        }
    }

    private static func checkFeatures(_ ring: UnsafeMutablePointer<io_uring>) throws(BackendUnavailable) {
        let features = ring.pointee.features
        for f in requiredFeatures where features & f.bit == 0 {
            throw BackendUnavailable(backend: .ioUring,
                                     reason: "the kernel's io_uring lacks \(f.name); this loop needs Linux 5.11 or later")
        }
    }

    /// Submits one NOP and waits (at most a second) for its completion.
    private static func probeNop(_ ring: UnsafeMutablePointer<io_uring>, injectedResult: Int32?) throws(BackendUnavailable) {
        guard let sqe = io_uring_get_sqe(ring) else {
            throw BackendUnavailable(backend: .ioUring, reason: "a new ring has no free submission entry")
        }
        io_uring_prep_nop(sqe)
        sqe.pointee.user_data = 0
        let r = injectedResult ?? submitAndWaitOne(ring)
        if r < 0 {
            throw unavailable(step: "io_uring_enter (submitting a NOP)", errno: -r)
        }
        guard let res = takeOneCQE(ring) else {
            throw BackendUnavailable(backend: .ioUring, reason: "a NOP submitted to io_uring did not complete within 1 s")
        }
        if res < 0 {
            throw unavailable(step: "a NOP on io_uring", errno: -res)
        }
    }

    /// Checks the required opcodes and returns which file-system operations the kernel has,
    /// and whether it is Linux 6.0 or later (IORING_OP_SEND_ZC; see `receivesPollFirst`).
    private static func probeOpcodes(_ ring: UnsafeMutablePointer<io_uring>,
                                     override: ((String, Bool) -> Bool)?) throws(BackendUnavailable) -> (UInt16, Bool) {
        // Room for every opcode an 8-bit code can name.
        let size = MemoryLayout<io_uring_probe>.size + 256 * MemoryLayout<io_uring_probe_op>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let probe = raw.bindMemory(to: io_uring_probe.self, capacity: 1)
        let r = io_uring_register_probe(ring, probe, 256)
        if r < 0 {
            throw unavailable(step: "IORING_REGISTER_PROBE", errno: -r)
        }
        var missing: [String] = []
        for op in requiredOpcodes {
            var supported = io_uring_opcode_supported(probe, Int32(op.code.rawValue)) != 0
            if let override { supported = override(op.name, supported) }
            if !supported { missing.append(op.name) }
        }
        if !missing.isEmpty {
            throw BackendUnavailable(
                backend: .ioUring,
                reason: "the kernel's io_uring does not support \(missing.joined(separator: ", ")) (opcode probe; Linux 5.11 or later has them all)")
        }
        var native: UInt16 = 0
        for op in fileOpcodes {
            var supported = io_uring_opcode_supported(probe, Int32(op.code)) != 0
            if let override { supported = override(op.name, supported) }
            if supported { native |= 1 << (op.kind.rawValue - OperationKind.open.rawValue) }
        }
        var sendZeroCopy = io_uring_opcode_supported(probe, Int32(IORING_OP_SEND_ZC.rawValue)) != 0
        if let override { sendZeroCopy = override("IORING_OP_SEND_ZC", sendZeroCopy) }
        return (native, sendZeroCopy)
    }

    /// Whether IORING_ASYNC_CANCEL_FD works (Linux 5.19): a cancel by descriptor aimed at
    /// the ring's own descriptor, on which nothing is pending, completes with 0; older
    /// kernels reject the flag with -EINVAL.
    private static func probeCancelByDescriptor(_ ring: UnsafeMutablePointer<io_uring>) -> Bool {
        guard let sqe = io_uring_get_sqe(ring) else { return false }
        io_uring_prep_cancel_fd(sqe, ring.pointee.ring_fd, UInt32(IORING_ASYNC_CANCEL_ALL))
        sqe.pointee.user_data = 0
        guard submitAndWaitOne(ring) >= 0, let res = takeOneCQE(ring) else { return false }
        return res >= 0
    }

    private static func submitAndWaitOne(_ ring: UnsafeMutablePointer<io_uring>) -> Int32 {
        let pending = evuring_publish_sq(ring)
        var ts = __kernel_timespec(tv_sec: 1, tv_nsec: 0)
        var arg = io_uring_getevents_arg()
        arg.sigmask_sz = UInt32(_NSIG / 8)
        while true {
            let r = withUnsafeMutablePointer(to: &ts) { tsp in
                arg.ts = UInt64(UInt(bitPattern: tsp))
                return withUnsafeMutablePointer(to: &arg) { argp in
                    io_uring_enter2(UInt32(bitPattern: ring.pointee.ring_fd), pending, 1,
                                    UInt32(IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG),
                                    UnsafeMutablePointer<sigset_t>(OpaquePointer(argp)),
                                    MemoryLayout<io_uring_getevents_arg>.size)
                }
            }
            // EINTR: a signal arrived during the probe's wait; the NOP is submitted (or
            // still in the ring) either way, so wait again.
            if r == -EINTR {
                if io_uring_cq_ready(ring) > 0 { return 0 }
                continue
            }
            if r == -ETIME { return 0 }   // reported as "did not complete"
            return r
        }
    }

    private static func takeOneCQE(_ ring: UnsafeMutablePointer<io_uring>) -> Int32? {
        guard io_uring_cq_ready(ring) > 0 else { return nil }
        let cqe = evuring_cqe_at(ring, evuring_cq_head(ring))!
        let res = cqe.pointee.res
        io_uring_cq_advance(ring, 1)
        return res
    }

    // MARK: Reasons

    private static func unavailable(setupFailed e: Int32, entries: UInt32) -> BackendUnavailable {
        var reason = "io_uring_setup failed with \(errnoName(e)) (\(String(cString: strerror(e))))"
        switch e {
        case EPERM, EACCES:
            if let disabled = readDisabledSysctl() {
                switch disabled {
                case "0":
                    reason += "; kernel.io_uring_disabled=0, so a seccomp filter (a container runtime's default profile) blocks it"
                case "1":
                    reason += "; kernel.io_uring_disabled=1: only CAP_SYS_ADMIN or members of kernel.io_uring_group may use io_uring"
                case "2":
                    reason += "; kernel.io_uring_disabled=2: io_uring is disabled for every process"
                default:
                    reason += "; kernel.io_uring_disabled=\(disabled)"
                }
            } else {
                reason += "; a seccomp filter or the kernel.io_uring_disabled sysctl blocks it"
            }
        case ENOSYS:
            reason += ": the kernel has no io_uring (built without CONFIG_IO_URING, or an emulator/sandbox that lacks it)"
        case ENOMEM:
            reason += " even with \(entries) entries: RLIMIT_MEMLOCK is too low for a ring (kernels before 5.11 charge it)"
        default:
            break
        }
        return BackendUnavailable(backend: .ioUring, reason: reason, errno: e)
    }

    private static func unavailable(step: String, errno e: Int32) -> BackendUnavailable {
        var reason = "\(step) failed with \(errnoName(e)) (\(String(cString: strerror(e))))"
        if e == EPERM || e == EACCES || e == ENOSYS {
            reason += "; a seccomp filter allows setting up io_uring but not using it"
        }
        return BackendUnavailable(backend: .ioUring, reason: reason, errno: e)
    }

    /// The value of /proc/sys/kernel/io_uring_disabled (Linux 6.6+), if readable.
    static func readDisabledSysctl() -> String? {
        let fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace()
    }

    static func errnoName(_ e: Int32) -> String {
        switch e {
        case EPERM: return "EPERM"
        case EACCES: return "EACCES"
        case ENOSYS: return "ENOSYS"
        case ENOMEM: return "ENOMEM"
        case EINVAL: return "EINVAL"
        case EFAULT: return "EFAULT"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case EBADF: return "EBADF"
        case EAGAIN: return "EAGAIN"
        case EBUSY: return "EBUSY"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        default: return "errno \(e)"
        }
    }
}

private extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}
