#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import CLiburing
import CEvSys

/// The io_uring loop's second ring for direct I/O, set up with IORING_SETUP_IOPOLL (io2's
/// polled ring): the kernel does not interrupt the CPU when such a read or write finishes;
/// the loop finds the completion by polling the device's queue, which saves the interrupt
/// and the wake-up per I/O on devices with poll queues (NVMe with `poll_queues`).
///
/// Why a second ring and not a flag on the main one: an IOPOLL ring may only carry polled
/// reads and writes of O_DIRECT files (no sockets, no polls, no timeouts), and it never
/// sleeps waiting for them. Why probed per device: a block driver without poll queues (a
/// virtio disk with ext4, this project's machines) accepts the SQE and then completes it
/// with EOPNOTSUPP, so only an actual read tells. `UringLoop.directIOPath(for:)` probes once
/// per device (st_dev) with a one-block O_DIRECT read at offset 0 and remembers the answer.
///
/// Created on the first probe (a loop that never does direct I/O makes no second ring);
/// exited with the loop. Loop thread only.
final class PolledRing {
    let ring: UnsafeMutablePointer<io_uring>

    /// Creates the ring, or says why it cannot be.
    static func make(entries: UInt32) -> Result<PolledRing, DirectIOProbeFailure> {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        params.flags = UInt32(IORING_SETUP_IOPOLL) | UInt32(IORING_SETUP_CLAMP)
        let r = io_uring_queue_init_params(entries, ring, &params)
        guard r == 0 else {
            ring.deallocate()
            return .failure(DirectIOProbeFailure(
                reason: "io_uring_setup with IORING_SETUP_IOPOLL failed with \(RingSetup.errnoName(-r))"))
        }
        return .success(PolledRing(ring: ring))
    }

    private init(ring: UnsafeMutablePointer<io_uring>) { self.ring = ring }

    deinit {
        io_uring_queue_exit(ring)
        ring.deallocate()
    }

    /// An SQE, or nil when the ring is full.
    func sqe() -> UnsafeMutablePointer<io_uring_sqe>? { io_uring_get_sqe(ring) }

    /// Submits what was written and polls the device once for completions (an IOPOLL
    /// ring's completions are found only by io_uring_enter with GETEVENTS, which polls;
    /// `minimum` 0 never waits), then hands every CQE to `body`.
    func submitAndReap(minimum: UInt32 = 0, _ body: (UInt64, Int32) -> Void) -> Int32 {
        let pending = evuring_publish_sq(ring)
        let r = io_uring_enter2(UInt32(bitPattern: ring.pointee.ring_fd), pending, minimum,
                                UInt32(IORING_ENTER_GETEVENTS), nil, 0)
        let ready = io_uring_cq_ready(ring)
        if ready > 0 {
            let head = evuring_cq_head(ring)
            for i in 0..<ready {
                let cqe = evuring_cqe_at(ring, head &+ i)!
                body(cqe.pointee.user_data, cqe.pointee.res)
            }
            io_uring_cq_advance(ring, ready)
        }
        return r
    }

    /// Reads `length` bytes at offset 0 of `fd` (opened O_DIRECT) into an aligned buffer on
    /// this ring and waits (polling, at most about a second) for the result: the read's
    /// raw result, or nil when it did not complete.
    func probeRead(fd: Int32, length: Int, alignment: Int) -> Int32? {
        guard let buffer = try? AlignedBuffer(byteCount: length, alignment: alignment), let sqe = sqe() else { return nil }
        io_uring_prep_read(sqe, fd, buffer.bytes.baseAddress, UInt32(length), 0)
        sqe.pointee.user_data = Self.probeUserData
        var result: Int32?
        let start = LoopInstant.now()
        while result == nil, LoopInstant.now() - start < .seconds(1) {
            let r = submitAndReap(minimum: 1) { ud, res in if ud == Self.probeUserData { result = res } }
            // EINTR: a signal arrived while polling; poll again. EAGAIN/EBUSY: try again.
            if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY { break }
        }
        if result == nil {
            // Never leave the buffer to the kernel: wait for the read without a limit (an
            // IOPOLL read always completes; it cannot be cancelled).
            while result == nil {
                _ = submitAndReap(minimum: 1) { ud, res in if ud == Self.probeUserData { result = res } }
            }
            return nil
        }
        return result
    }

    /// The probe's user_data (no completion's address is this small).
    private static let probeUserData: UInt64 = 0x10
}

/// Why the polled ring cannot be used (kept with the device's answer).
struct DirectIOProbeFailure: Error {
    var reason: String
}
