#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// Direct system calls for an operation, in the kernel's raw-result convention
/// (a count or descriptor, or `-errno`), with EINTR retried here so no caller sees it.
///
/// The readiness backends call `perform` when a descriptor is ready, and the thread pool
/// calls it for regular files; io_uring submits the same operations to the kernel instead.
/// Socket I/O uses MSG_DONTWAIT (so a blocking socket cannot stall the loop) and sends use
/// MSG_NOSIGNAL (so a closed peer is `.brokenPipe`, never a process-killing SIGPIPE).
package enum Syscalls {
    /// Runs `body`, a CEvSys I/O call in the raw convention (a count, or -errno), until it
    /// does not fail with EINTR; returns its result. The one EINTR retry loop of the library.
    @inline(__always)
    package static func retryingInterrupted(_ body: () -> Int) -> Int {
        while true {
            let r = body()
            if r != -Int(EINTR) { return r }
        }
    }

    /// `retryingInterrupted` for a C library call in the -1-and-errno convention (accept4,
    /// shutdown, poll, the file-system calls): its result is turned into the raw convention
    /// (a count or descriptor, or -errno) first.
    @inline(__always)
    package static func retryingEINTR(_ body: () -> Int) -> Int {
        retryingInterrupted {
            let r = body()
            return r >= 0 ? r : -Int(cevsys_errno())
        }
    }

    /// Whether `fd` is a datagram socket (SO_TYPE): a 0-byte `recvmsg` without a sender
    /// address is an empty datagram there, end of stream on a stream socket.
    // Never inlined: its two locals are passed by address, which gives the function they
    // land in a stack-protector check; inlined into `makeResult`, that was the dispatch
    // loop, and every callback paid for a call made only for an empty datagram.
    @inline(never)
    package static func isDatagramSocket(_ fd: Int32) -> Bool {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == Int32(SOCK_DGRAM.rawValue)
    }

    /// Performs `c`'s operation once, now. Does not handle `.nop`, `.timer`, `.cancel`, `.work`
    /// (the loop does) and, for `.connect`, only starts the connection
    /// (`-EINPROGRESS` means: wait for writability, then call `finishConnect`).
    package static func perform(_ c: Completion) -> Int {
        let fd = c.fd
        let base = c.bufferBase
        let count = c.bufferCount
        switch c.kind {
        case .nop, .timer, .cancel, .work:
            return 0
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            // Blocking calls: the readiness engine sends them to the file pool instead.
            preconditionFailure("EvLoop: \(c.kind) runs on the file pool, not on the loop thread")
        case .accept:
            let s = c.scratch!
            return retryingEINTR {
                s.pointee.addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                return Int(cevsys_accept4(fd, CompletionScratch.addressPointer(s), CompletionScratch.addressLengthPointer(s),
                                   Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)))
            }
        case .connect:
            // EINTR on connect means the connection continues asynchronously (connect(2)),
            // so it is reported like EINPROGRESS, not retried (a retry would give EALREADY).
            let s = c.scratch!
            let r = Int(Glibc.connect(fd, CompletionScratch.addressPointer(s), s.pointee.addressLength))
            if r == 0 { return 0 }
            let e = cevsys_errno()
            return e == EINTR ? -Int(EINPROGRESS) : -Int(e)
        case .read, .write, .pread, .pwrite:
            return fileIO(c.kind, fd: fd, base: base, count: count, offset: c.offset)
        case .recv:
            return retryingInterrupted { cevsys_recv(fd, base, UInt(count), Int32(MSG_DONTWAIT)) }
        case .send:
            return retryingInterrupted { cevsys_send(fd, base, UInt(count), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        case .recvmsg:
            let s = c.scratch!
            return retryingInterrupted {
                CompletionScratch.prepareMessage(for: c)
                return cevsys_recvmsg(fd, CompletionScratch.messagePointer(s), Int32(MSG_DONTWAIT))
            }
        case .sendmsg:
            let s = c.scratch!
            return retryingInterrupted {
                CompletionScratch.prepareMessage(for: c)
                return cevsys_sendmsg(fd, CompletionScratch.messagePointer(s), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
        case .shutdown:
            let how = c.shutdownHow
            return retryingEINTR { Int(Glibc.shutdown(fd, how)) }
        case .close:
            // Never retry close on EINTR: Linux has already released the descriptor, and a
            // retry could close a number another thread has just been given.
            let r = Glibc.close(fd)
            if r == 0 { return 0 }
            let e = cevsys_errno()
            return e == EINTR ? 0 : -Int(e)
        case .poll:
            return pollOnce(fd, events: c.pollEvents)
        }
    }

    /// `.poll`'s readiness, asked without waiting. Out of line: its `pollfd` lives on the
    /// stack, and in `perform` that gave every send and receive a stack-protector check.
    @inline(never)
    private static func pollOnce(_ fd: Int32, events: UInt32) -> Int {
        var p = pollfd(fd: fd, events: Int16(truncatingIfNeeded: events), revents: 0)
        let r = retryingEINTR { Int(Glibc.poll(&p, 1, 0)) }
        if r < 0 { return r }
        if r == 0 { return -Int(EAGAIN) }
        if p.revents & Int16(POLLNVAL) != 0 { return -Int(EBADF) }
        return Int(UInt16(bitPattern: p.revents))
    }

    /// Whether `kind` is one of the four operations `fileIO` performs (and the thread pool
    /// runs).
    @inline(__always)
    package static func isFileIO(_ kind: OperationKind) -> Bool {
        kind == .read || kind == .write || kind == .pread || kind == .pwrite
    }

    /// read(2), write(2), pread(2) or pwrite(2), EINTR retried: what the readiness
    /// backends run on a ready descriptor and the thread pool runs for files.
    @inline(__always)
    package static func fileIO(_ kind: OperationKind, fd: Int32, base: UnsafeMutableRawPointer?, count: Int,
                               offset: UInt64) -> Int {
        let off = off_t(Int64(bitPattern: offset))
        switch kind {
        case .read: return retryingInterrupted { cevsys_read(fd, base, UInt(count)) }
        case .write: return retryingInterrupted { cevsys_write(fd, base, UInt(count)) }
        case .pread: return retryingInterrupted { cevsys_pread(fd, base, UInt(count), Int64(off)) }
        case .pwrite: return retryingInterrupted { cevsys_pwrite(fd, base, UInt(count), Int64(off)) }
        default: preconditionFailure("EvLoop: \(kind) is not file I/O")
        }
    }

    /// After a non-blocking connect became writable: 0, the connection's error, or -EAGAIN
    /// when the socket is writable but not connected. That happens to an AF_UNIX connect
    /// interrupted while it waited for room in a full listener's queue (io_uring cancelling
    /// the blocking connect in its worker for a deadline reports -EINTR, and an unconnected
    /// Unix socket is writable with SO_ERROR 0): no connection is in progress, so the
    /// caller must not report success (seen on Linux 6.18).
    package static func finishConnect(_ fd: Int32) -> Int {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return -Int(cevsys_errno()) }
        if err != 0 { return -Int(err) }
        var peer = sockaddr_storage()
        var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) }
        }
        if r != 0 && cevsys_errno() == ENOTCONN { return -Int(EAGAIN) }
        return 0
    }
}
