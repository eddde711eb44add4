#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// The memory a file-system operation's arguments and result live in while it is in
/// flight: its paths (NUL-terminated copies), the statx buffer the kernel fills, and
/// fallocate's mode and length.
///
/// Why apart from `CompletionScratch`: the kernel (io_uring's OPENAT, STATX, RENAMEAT...)
/// or a pool thread reads a path after the call that started the operation has returned,
/// so the path must sit at a fixed address that the completion owns until its callback;
/// a Swift `String`'s storage gives no such address. The statx buffer is 256 bytes, which
/// every socket's scratch memory would otherwise carry. So it is allocated the first time
/// a completion is configured for a file-system operation (pointed to by
/// `CompletionScratch.file`), and kept for reuse: a completion that opens file after file
/// copies each path into the buffer it already has, and the `Completion` itself stays 136
/// bytes.
package struct FileRequestScratch {
    /// The first path (open, stat, rename's source, unlink, mkdir), NUL-terminated.
    package var path: UnsafeMutablePointer<CChar>? = nil
    package var pathCapacity = 0
    /// rename's destination.
    package var secondPath: UnsafeMutablePointer<CChar>? = nil
    package var secondPathCapacity = 0
    /// A path held a NUL byte: the operation completes with EINVAL without reaching the
    /// kernel (the kernel would read a shorter path, which names another file).
    package var pathInvalid = false
    /// fallocate's mode and length (the completion's count field stays 0: with no buffer,
    /// a count would describe a buffer that does not exist).
    package var mode: Int32 = 0
    package var length: UInt64 = 0
    /// What statx fills (the kernel's layout, with the direct-I/O alignment fields).
    package var status = cevsys_statx()

    package init() {}

    /// Frees the path buffers (the struct itself is freed by its owner).
    package mutating func releasePaths() {
        path?.deallocate()
        secondPath?.deallocate()
        path = nil
        secondPath = nil
        pathCapacity = 0
        secondPathCapacity = 0
    }

    /// Copies `string` NUL-terminated into `buffer` (grown when too small); false when
    /// the string holds a NUL byte.
    package static func copy(_ string: String, into buffer: inout UnsafeMutablePointer<CChar>?,
                             capacity: inout Int) -> Bool {
        var valid = true
        var s = string
        s.withUTF8 { utf8 in
            if utf8.contains(0) { valid = false }
            let needed = utf8.count + 1
            if buffer == nil || capacity < needed {
                buffer?.deallocate()
                let size = max(needed, 64)
                buffer = .allocate(capacity: size)
                capacity = size
            }
            let b = buffer!
            utf8.withMemoryRebound(to: CChar.self) { src in
                if let base = src.baseAddress { b.update(from: base, count: src.count) }
            }
            b[utf8.count] = 0
        }
        return valid
    }

    /// The path as a Swift string (for `Completion.operation`'s getter).
    package static func string(_ buffer: UnsafeMutablePointer<CChar>?) -> String {
        guard let buffer else { return "" }
        return String(cString: buffer)
    }
}

extension Completion {
    /// The completion's file scratch memory, allocated on first use.
    package func fileScratchMemory() -> UnsafeMutablePointer<FileRequestScratch> {
        let s = scratchMemory()
        if let f = s.pointee.file { return f }
        let f = UnsafeMutablePointer<FileRequestScratch>.allocate(capacity: 1)
        f.initialize(to: FileRequestScratch())
        s.pointee.file = f
        return f
    }

    /// The file scratch memory, if the completion has been configured for a file-system
    /// operation (always, for the kinds that name a path or fill a status).
    package var fileScratch: UnsafeMutablePointer<FileRequestScratch>? { _scratch?.pointee.file }

    /// What the last `.stat` or `.statDescriptor` on this completion reported (its result
    /// says only whether statx answered: see `CompletionResult`), until the completion is
    /// added again; all zero when it has run no such operation.
    public var fileStatus: FileStatus {
        guard _kind == .stat, let f = fileScratch else { return FileStatus(cevsys_statx()) }
        return FileStatus(f.pointee.status)
    }

    /// Stores a file-system operation's arguments (`store(_:)` for the kinds from `.open`
    /// on). Out of line: the socket operations' stores stay as small as they were.
    @usableFromInline
    package func storeFileSystem(_ op: Operation) {
        let f = fileScratchMemory()
        f.pointee.pathInvalid = false
        switch op {
        case .open(let path, let flags, let permissions):
            storePath(path, f)
            _argument = UInt64(UInt32(bitPattern: flags)) | (UInt64(permissions) << 32)
        case .stat(let path, let followSymlinks):
            storePath(path, f)
            _argument = followSymlinks ? 0 : 1
        case .statDescriptor(let fd):
            _fd = fd
            _argument = 2
        case .fsync(let fd, let dataOnly):
            _fd = fd
            _argument = dataOnly ? 1 : 0
        case .fallocate(let fd, let mode, let offset, let length):
            _fd = fd
            f.pointee.mode = mode
            f.pointee.length = length
            _argument = offset
        case .truncate(let fd, let length):
            _fd = fd
            _argument = length
        case .rename(let from, let to):
            storePath(from, f)
            if !FileRequestScratch.copy(to, into: &f.pointee.secondPath, capacity: &f.pointee.secondPathCapacity) {
                f.pointee.pathInvalid = true
            }
        case .unlink(let path, let directory):
            storePath(path, f)
            _argument = directory ? 1 : 0
        case .mkdir(let path, let permissions):
            storePath(path, f)
            _argument = UInt64(permissions)
        default:
            preconditionFailure("EvLoop: \(op.kind) is not a file-system operation")
        }
    }

    private func storePath(_ path: String, _ f: UnsafeMutablePointer<FileRequestScratch>) {
        if !FileRequestScratch.copy(path, into: &f.pointee.path, capacity: &f.pointee.pathCapacity) {
            f.pointee.pathInvalid = true
        }
    }

    /// The file-system operation, rebuilt from what `storeFileSystem` kept.
    package func makeFileSystemOperation() -> Operation {
        let f = fileScratch!
        let path = FileRequestScratch.string(f.pointee.path)
        switch _kind {
        case .open:
            return .open(path: path, flags: Int32(bitPattern: UInt32(truncatingIfNeeded: _argument)),
                         permissions: UInt32(truncatingIfNeeded: _argument >> 32))
        case .stat:
            return _argument == 2 ? .statDescriptor(fd: _fd) : .stat(path: path, followSymlinks: _argument == 0)
        case .fsync: return .fsync(fd: _fd, dataOnly: _argument != 0)
        case .fallocate: return .fallocate(fd: _fd, mode: f.pointee.mode, offset: _argument, length: f.pointee.length)
        case .truncate: return .truncate(fd: _fd, length: _argument)
        case .rename: return .rename(from: path, to: FileRequestScratch.string(f.pointee.secondPath))
        case .unlink: return .unlink(path: path, directory: _argument != 0)
        case .mkdir: return .mkdir(path: path, permissions: UInt32(truncatingIfNeeded: _argument))
        default: preconditionFailure("EvLoop: \(_kind) is not a file-system operation")
        }
    }

    /// A file-system completion's result (`makeResult` for the kinds from `.open` on).
    /// Out of line, so the dispatch loop that inlines `makeResult` does not grow for it.
    @inline(never)
    package func fileSystemResult(raw: Int) -> CompletionResult {
        let failure: EvError? = raw < 0 ? EvError(errno: Int32(truncatingIfNeeded: -raw)) : nil
        switch _kind {
        case .open:
            if let failure { return .open(.failure(failure)) }
            return .open(.success(Int32(truncatingIfNeeded: raw)))
        case .stat:
            if let failure { return .stat(.failure(failure)) }
            return .stat(.success(()))
        default:
            if let failure { return .fileSystem(.failure(failure)) }
            return .fileSystem(.success(()))
        }
    }
}
