#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop
import CLiburing
import CEvSys

// Direct I/O on io_uring: which ring a file's reads and writes use, the per-device probe,
// and the polled ring's submissions and reaping (see `PolledRing`).

extension UringLoop {
    /// `directIOPath(for:)` (the override in UringLoop.swift: an extension cannot override):
    /// the polled ring when the file is open with O_DIRECT and its device completes a
    /// polled read (probed once per device, st_dev, by an actual one-block O_DIRECT read on
    /// the IOPOLL ring), else the main ring, with the reason. A file opened through the loop
    /// with `.direct` is asked at its open; one opened otherwise is asked here, and from
    /// then on uses the path this returns until it is closed through the loop.
    ///
    /// Operations with a deadline stay on the main ring (an IOPOLL ring takes no linked
    /// timeout), and so do reads and writes at the current offset (`read`, `write`).
    func probedDirectIOPath(for file: File) -> DirectIOPath {
        let flags = fcntl(file.fd, F_GETFL)
        guard flags >= 0 else {
            return .mainRing(reason: "fcntl(F_GETFL) failed with \(RingSetup.errnoName(cevsys_errno()))")
        }
        guard flags & cevsys_o_direct() != 0 else {
            return .mainRing(reason: "the file is not open with O_DIRECT (File.OpenOptions.direct)")
        }
        var st = stat()
        guard fstat(file.fd, &st) == 0 else {
            return .mainRing(reason: "fstat failed with \(RingSetup.errnoName(cevsys_errno()))")
        }
        let device = UInt64(st.st_dev)
        let path: DirectIOPath
        if let known = directIO.devices[device] {
            path = known
        } else {
            let (probed, remember) = probePolledIO(fd: file.fd, size: Int(st.st_size), device: device)
            if remember { directIO.devices[device] = probed }
            path = probed
        }
        #if DEBUG
        if directIO.forcePolled { directIO.polledDescriptors.insert(file.fd); return .polledRing }
        #endif
        if path == .polledRing { directIO.polledDescriptors.insert(file.fd) }
        return path
    }

    /// The probe: (the answer, whether it holds for the whole device).
    private func probePolledIO(fd: Int32, size: Int, device: UInt64) -> (DirectIOPath, Bool) {
        // glibc's encoding of dev_t (gnu_dev_major, gnu_dev_minor).
        let major = (device >> 8) & 0xfff | (device >> 32) & 0xffff_f000
        let minor = device & 0xff | (device >> 12) & 0xffff_ff00
        let name = "device \(major):\(minor)"
        if directIO.ring == nil {
            switch PolledRing.make(entries: 64) {
            case .success(let ring): directIO.ring = ring
            case .failure(let failure): return (.mainRing(reason: failure.reason), true)
            }
        }
        var status = cevsys_statx()
        let alignment: Int
        if cevsys_statx_call(fd, FileSystemCall.emptyPath, cevsys_at_empty_path(), UInt32(CEVSYS_STATX_DIOALIGN), &status) == 0,
           status.stx_mask & UInt32(CEVSYS_STATX_DIOALIGN) != 0, status.stx_dio_offset_align > 0 {
            alignment = max(Int(status.stx_dio_offset_align), Int(status.stx_dio_mem_align), 512)
        } else {
            alignment = AlignedBuffer.defaultAlignment
        }
        guard size >= alignment else {
            // A read past the end never reaches the device, so it would prove nothing.
            return (.mainRing(reason: "not probed yet: the file is shorter than one \(alignment)-byte block, and a polled read must reach the \(name) to tell; a longer file on it is probed"), false)
        }
        guard let res = directIO.ring!.probeRead(fd: fd, length: alignment, alignment: alignment) else {
            return (.mainRing(reason: "a probing O_DIRECT read on the IORING_SETUP_IOPOLL ring did not complete within 1 s (\(name))"), true)
        }
        if res >= 0 { return (.polledRing, true) }
        if res == -EOPNOTSUPP {
            return (.mainRing(reason: "the \(name) does not support polled I/O: an O_DIRECT read on an IORING_SETUP_IOPOLL ring completed with EOPNOTSUPP (its block driver has no poll queues; a virtio disk, or NVMe without poll_queues)"), true)
        }
        // EBADF (a write-only file), EINVAL...: this file cannot tell; ask again later.
        return (.mainRing(reason: "the probing O_DIRECT read on the IORING_SETUP_IOPOLL ring failed with \(RingSetup.errnoName(-res)) (\(name)); probed again with the next file"), false)
    }

    /// Whether `c` goes to the polled ring: a positional read or write, without a deadline,
    /// of a descriptor `directIOPath(for:)` sent there.
    @inline(__always)
    func goesToPolledRing(_ c: Completion) -> Bool {
        (c.kind == .pread || c.kind == .pwrite) && !directIO.polledDescriptors.isEmpty
            && !c.hasActiveDeadline && directIO.polledDescriptors.contains(c.fd)
    }

    /// Writes `c`'s read or write to the polled ring; false when it is full (the main ring
    /// takes it instead).
    func submitPolled(_ c: Completion, userData: UInt64) -> Bool {
        guard let ring = directIO.ring, let sqe = ring.sqe() else { return false }
        let length = UInt32(clamping: c.bufferCount)
        if c.kind == .pread {
            io_uring_prep_read(sqe, c.fd, c.bufferBase, length, c.offset)
        } else {
            io_uring_prep_write(sqe, c.fd, c.bufferBase, length, c.offset)
        }
        sqe.pointee.user_data = userData
        directIO.polledInFlight += 1
        directIO.polledSubmissions &+= 1
        return true
    }

    /// Polls the polled ring once (submitting what was written) and completes what
    /// finished. Called at the start of every tick while polled I/O is in flight.
    func reapPolled(_ body: (UInt64, Int32) -> Void) {
        guard let ring = directIO.ring else { return }
        _ = ring.submitAndReap { ud, res in
            directIO.polledInFlight -= 1
            body(ud, res)
        }
    }
}

/// `UringLoop`'s direct-I/O state (loop thread only).
final class UringDirectIO {
    /// The IOPOLL ring, made by the first probe.
    @exclusivity(unchecked) var ring: PolledRing?
    /// What each device's probe found (a device whose probe was inconclusive is absent).
    @exclusivity(unchecked) var devices: [UInt64: DirectIOPath] = [:]
    /// Descriptors whose positional reads and writes go to the polled ring (until closed
    /// through the loop).
    @exclusivity(unchecked) var polledDescriptors: Set<Int32> = []
    /// SQEs on the polled ring whose CQE has not been reaped.
    @exclusivity(unchecked) var polledInFlight = 0
    /// For tests: SQEs written to the polled ring.
    @exclusivity(unchecked) var polledSubmissions = 0
    #if DEBUG
    /// For tests (debug builds only): `directIOPath(for:)` sends every O_DIRECT file to the
    /// polled ring whatever its device said, so the polled ring's submission and reaping
    /// run on machines whose devices have no poll queues (the reads then fail with
    /// EOPNOTSUPP, delivered through the polled ring).
    @exclusivity(unchecked) var forcePolled = false
    #endif
}
