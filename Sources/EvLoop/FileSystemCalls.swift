#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// The arguments of one file-system operation, copied by value off the loop thread's
/// `Completion` (which a pool thread must never touch) and run with `perform()` in the
/// kernel's raw-result convention (a descriptor or 0, or `-errno`), EINTR retried.
///
/// The paths and the statx buffer stay in the completion's `FileRequestScratch`, at a
/// fixed address that the completion owns until its callback runs, so the pool thread
/// reads and fills them there, as the kernel does for io_uring's opcodes.
package struct FileSystemCall: @unchecked Sendable {
    // @unchecked Sendable: `file` points at memory the loop thread does not touch while the
    // operation is in flight (the completion is active; its callback has not run).
    package let kind: OperationKind
    package let fd: Int32
    package let argument: UInt64
    package let file: UnsafeMutablePointer<FileRequestScratch>

    package init(_ c: Completion) {
        kind = c.kind
        fd = c.fd
        argument = c.offset
        file = c.fileScratch!
    }

    /// open(2)'s flags and mode as `.open` stores them.
    package static func openFlags(_ argument: UInt64) -> Int32 {
        Int32(bitPattern: UInt32(truncatingIfNeeded: argument)) | O_CLOEXEC
    }

    package static func openMode(_ argument: UInt64) -> mode_t { mode_t(truncatingIfNeeded: argument >> 32) }

    /// statx flags as `.stat` stores them: 0 follows a final link, 1 does not, 2 is the
    /// descriptor itself (AT_EMPTY_PATH).
    package static func statFlags(_ argument: UInt64) -> Int32 {
        switch argument {
        case 1: return cevsys_at_symlink_nofollow()
        case 2: return cevsys_at_empty_path()
        default: return 0
        }
    }

    /// The directory descriptor a `.stat` resolves its path against.
    package static func statDirectory(fd: Int32, argument: UInt64) -> Int32 {
        argument == 2 ? fd : cevsys_at_fdcwd()
    }

    /// "" for statx of a descriptor (AT_EMPTY_PATH): a constant in the binary, so its
    /// address outlives any submission.
    package static var emptyPath: UnsafePointer<CChar> {
        let s: StaticString = ""
        return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// Performs the operation now, on the calling thread (a pool thread).
    package func perform() -> Int {
        let f = file
        if f.pointee.pathInvalid { return -Int(EINVAL) }
        let path = f.pointee.path
        let at = cevsys_at_fdcwd()
        switch kind {
        case .open:
            let flags = Self.openFlags(argument)
            let mode = Self.openMode(argument)
            // EINTR: open of a FIFO or a slow device interrupted by a signal; retry.
            return Syscalls.retryingEINTR { Int(openat(at, path!, flags, mode)) }
        case .stat:
            return Syscalls.retryingEINTR {
                let p = argument == 2 ? Self.emptyPath : UnsafePointer(path!)
                return withUnsafeMutablePointer(to: &f.pointee.status) {
                    Int(cevsys_statx_call(Self.statDirectory(fd: fd, argument: argument), p,
                                          Self.statFlags(argument), UInt32(CEVSYS_STATX_MASK), $0))
                }
            }
        case .fsync:
            return Syscalls.retryingEINTR { Int(argument != 0 ? fdatasync(fd) : Glibc.fsync(fd)) }
        case .fallocate:
            return Syscalls.retryingEINTR {
                Int(cevsys_fallocate(fd, f.pointee.mode, Int64(bitPattern: argument),
                                      Int64(bitPattern: f.pointee.length)))
            }
        case .truncate:
            return Syscalls.retryingEINTR { Int(ftruncate(fd, off_t(Int64(bitPattern: argument)))) }
        case .rename:
            return Syscalls.retryingEINTR { Int(renameat(at, path!, at, f.pointee.secondPath!)) }
        case .unlink:
            return Syscalls.retryingEINTR { Int(unlinkat(at, path!, argument != 0 ? cevsys_at_removedir() : 0)) }
        case .mkdir:
            return Syscalls.retryingEINTR { Int(mkdirat(at, path!, mode_t(truncatingIfNeeded: argument))) }
        default:
            preconditionFailure("EvLoop: \(kind) is not a file-system operation")
        }
    }
}
