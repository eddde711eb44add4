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
    @inline(__always)
    package static func raw(_ r: Int) -> Int { r >= 0 ? r : -Int(cevsys_errno()) }

    /// Runs `body` until it does not fail with EINTR; returns its raw result.
    @inline(__always)
    package static func retryingEINTR(_ body: () -> Int) -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = cevsys_errno()
            if e == EINTR { continue }
            return -Int(e)
        }
    }

    /// Performs `c.operation` once, now. Does not handle `.nop`, `.timer`, `.cancel`
    /// (the loop does) and, for `.connect`, only starts the connection
    /// (`-EINPROGRESS` means: wait for writability, then call `finishConnect`).
    package static func perform(_ c: Completion) -> Int {
        let s = c.scratch
        switch c.operation {
        case .nop, .timer, .cancel:
            return 0
        case .accept(let fd):
            return retryingEINTR {
                s.pointee.addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                return Int(cevsys_accept4(fd, CompletionScratch.addressPointer(s), CompletionScratch.addressLengthPointer(s),
                                   Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)))
            }
        case .connect(let fd, let address):
            // EINTR on connect means the connection continues asynchronously (connect(2)),
            // so it is reported like EINPROGRESS, not retried (a retry would give EALREADY).
            let r = address.withSockAddr { Int(Glibc.connect(fd, $0, $1)) }
            if r == 0 { return 0 }
            let e = cevsys_errno()
            return e == EINTR ? -Int(EINPROGRESS) : -Int(e)
        case .read(let fd, let b):
            return retryingEINTR { Glibc.read(fd, b.baseAddress, b.count) }
        case .write(let fd, let b):
            return retryingEINTR { Glibc.write(fd, b.baseAddress, b.count) }
        case .pread(let fd, let b, let off):
            return retryingEINTR { Glibc.pread(fd, b.baseAddress, b.count, off_t(Int64(bitPattern: off))) }
        case .pwrite(let fd, let b, let off):
            return retryingEINTR { Glibc.pwrite(fd, b.baseAddress, b.count, off_t(Int64(bitPattern: off))) }
        case .recv(let fd, let b):
            return retryingEINTR { Glibc.recv(fd, b.baseAddress, b.count, Int32(MSG_DONTWAIT)) }
        case .send(let fd, let b):
            return retryingEINTR { Glibc.send(fd, b.baseAddress, b.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        case .recvmsg(let fd, _):
            return retryingEINTR {
                CompletionScratch.prepare(for: c)
                return Glibc.recvmsg(fd, CompletionScratch.messagePointer(s), Int32(MSG_DONTWAIT))
            }
        case .sendmsg(let fd, _, _):
            return retryingEINTR {
                CompletionScratch.prepare(for: c)
                return Glibc.sendmsg(fd, CompletionScratch.messagePointer(s), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
        case .shutdown(let fd, let how):
            return retryingEINTR { Int(Glibc.shutdown(fd, how.rawValue)) }
        case .close(let fd):
            // Never retry close on EINTR: Linux has already released the descriptor, and a
            // retry could close a number another thread has just been given.
            let r = Glibc.close(fd)
            if r == 0 { return 0 }
            let e = cevsys_errno()
            return e == EINTR ? 0 : -Int(e)
        case .poll(let fd, let events):
            var p = pollfd(fd: fd, events: Int16(truncatingIfNeeded: events.rawValue), revents: 0)
            let r = retryingEINTR { Int(Glibc.poll(&p, 1, 0)) }
            if r < 0 { return r }
            if r == 0 { return -Int(EAGAIN) }
            if p.revents & Int16(POLLNVAL) != 0 { return -Int(EBADF) }
            return Int(UInt16(bitPattern: p.revents))
        }
    }

    /// After a non-blocking connect became writable: 0, or the connection's error.
    package static func finishConnect(_ fd: Int32) -> Int {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return -Int(cevsys_errno()) }
        return err == 0 ? 0 : -Int(err)
    }

    /// Whether `fd` refers to something readiness APIs cannot wait on usefully
    /// (a regular file, directory or block device), so its I/O must go to the thread pool.
    package static func isAlwaysReady(_ fd: Int32) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        let type = st.st_mode & S_IFMT
        return type == S_IFREG || type == S_IFDIR || type == S_IFBLK
    }
}
