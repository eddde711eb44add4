#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One piece of work for the loop, stored in a `Completion`.
///
/// Buffers are the caller's: the loop keeps the raw pointer and the kernel (or the loop's
/// non-blocking syscall) reads or fills it later, so the memory must stay valid until the
/// completion's callback has run, even after a cancel (the kernel owns it until then).
/// Descriptors are plain `Int32`s owned by the caller; only `.close` closes one.
public enum Operation {
    /// Completes on the next tick without doing anything.
    case nop
    /// Fires once the loop's monotonic clock reaches `deadline`; never early.
    case timer(deadline: LoopInstant)
    /// Cancels the activation of `target` that is current when the cancel is added.
    ///
    /// The completion holds `target` strongly until its operation changes (a rearm or a
    /// later `add` reuses it), except a completion aimed at itself (refused with
    /// `.cannotCancelCancel`), which holds no reference to itself. Two cancels aimed at
    /// each other hold each other: give one of them another operation to let them go.
    case cancel(target: Completion)
    /// Accepts one connection on a listening socket; the result is the new descriptor
    /// (close-on-exec; non-blocking on readiness backends).
    case accept(socket: Int32)
    /// Connects a socket to an address.
    case connect(socket: Int32, address: SocketAddress)
    /// read(2) at the descriptor's current position (regular files go to a thread pool on
    /// readiness backends). A result of 0 into a non-empty buffer is `.endOfFile`.
    case read(fd: Int32, buffer: UnsafeMutableRawBufferPointer)
    /// write(2) at the descriptor's current position (appends in order on regular files).
    case write(fd: Int32, buffer: UnsafeRawBufferPointer)
    /// pread(2) at an absolute offset.
    case pread(fd: Int32, buffer: UnsafeMutableRawBufferPointer, offset: UInt64)
    /// pwrite(2) at an absolute offset.
    case pwrite(fd: Int32, buffer: UnsafeRawBufferPointer, offset: UInt64)
    /// recv(2) on a socket.
    case recv(socket: Int32, buffer: UnsafeMutableRawBufferPointer)
    /// send(2) on a socket, with MSG_NOSIGNAL so a closed peer gives `.brokenPipe`, not SIGPIPE.
    case send(socket: Int32, buffer: UnsafeRawBufferPointer)
    /// recvmsg(2) into one buffer; the sender's address and truncation are reported.
    case recvmsg(socket: Int32, buffer: UnsafeMutableRawBufferPointer)
    /// sendmsg(2) of one buffer, to `address` (or to the connected peer when nil).
    case sendmsg(socket: Int32, buffer: UnsafeRawBufferPointer, address: SocketAddress?)
    /// shutdown(2) of one or both directions.
    case shutdown(socket: Int32, how: ShutdownHow)
    /// Closes the descriptor. Operations still pending on it through this loop are
    /// cancelled first, so the peer sees the close at once.
    case close(fd: Int32)
    /// Waits until the descriptor is ready for `events`, without doing any I/O.
    case poll(fd: Int32, events: PollEvents)
    /// Runs `job`'s closure on its `WorkPool`'s threads, off the loop; the result comes
    /// back on the loop thread. Jobs are made by `WorkPool.run(loop:completion:_:callback:)`
    /// and `Resolver`, which also turn the result into the closure's own type; `.rearm`
    /// runs the closure again.
    case work(job: WorkPool.Job)

    // File-system operations (`File`, `FileSystem`). Paths are relative to the working
    // directory; the loop copies each path into memory the completion owns (NUL-terminated,
    // at a fixed address), because the kernel (io_uring) or a pool thread reads it after
    // the call that starts the operation has returned. A path with a NUL byte in it is
    // refused with `.invalidArgument` (it would name another file). io_uring runs them in
    // the kernel when it has the opcode; otherwise, and on epoll and poll, they run on the
    // loop's file pool (`LoopCore.filePool`).

    /// openat(2) of `path` with open(2) `flags` (O_CLOEXEC is always added) and
    /// `permissions` for a file it creates; the result is the new descriptor.
    case open(path: String, flags: Int32, permissions: UInt32)
    /// statx(2) of `path`, following a final symbolic link when `followSymlinks`.
    case stat(path: String, followSymlinks: Bool)
    /// statx(2) of an open descriptor (AT_EMPTY_PATH).
    case statDescriptor(fd: Int32)
    /// fsync(2), or fdatasync(2) when `dataOnly` (IORING_FSYNC_DATASYNC).
    case fsync(fd: Int32, dataOnly: Bool)
    /// fallocate(2): `mode` 0 allocates (and extends the file), FALLOC_FL_KEEP_SIZE (1)
    /// allocates without changing the size, FALLOC_FL_PUNCH_HOLE | KEEP_SIZE (3) frees.
    case fallocate(fd: Int32, mode: Int32, offset: UInt64, length: UInt64)
    /// ftruncate(2) to `length` bytes.
    case truncate(fd: Int32, length: UInt64)
    /// renameat(2): moves `from` to `to`, replacing a file there.
    case rename(from: String, to: String)
    /// unlinkat(2): removes a file, or an empty directory when `directory` (AT_REMOVEDIR).
    case unlink(path: String, directory: Bool)
    /// mkdirat(2) with `permissions` (less the umask).
    case mkdir(path: String, permissions: UInt32)

    /// The kind of operation, without its arguments.
    @inlinable public var kind: OperationKind {
        switch self {
        case .nop: return .nop
        case .timer: return .timer
        case .cancel: return .cancel
        case .accept: return .accept
        case .connect: return .connect
        case .read: return .read
        case .write: return .write
        case .pread: return .pread
        case .pwrite: return .pwrite
        case .recv: return .recv
        case .send: return .send
        case .recvmsg: return .recvmsg
        case .sendmsg: return .sendmsg
        case .shutdown: return .shutdown
        case .close: return .close
        case .poll: return .poll
        case .work: return .work
        case .open: return .open
        case .stat, .statDescriptor: return .stat
        case .fsync: return .fsync
        case .fallocate: return .fallocate
        case .truncate: return .truncate
        case .rename: return .rename
        case .unlink: return .unlink
        case .mkdir: return .mkdir
        }
    }

    /// The descriptor the operation works on, if any.
    public var fd: Int32? {
        switch self {
        case .nop, .timer, .cancel, .work, .open, .stat, .rename, .unlink, .mkdir: return nil
        case .statDescriptor(let fd), .fsync(let fd, _), .fallocate(let fd, _, _, _), .truncate(let fd, _):
            return fd
        case .accept(let fd), .connect(let fd, _), .read(let fd, _), .write(let fd, _),
             .pread(let fd, _, _), .pwrite(let fd, _, _), .recv(let fd, _), .send(let fd, _),
             .recvmsg(let fd, _), .sendmsg(let fd, _, _), .shutdown(let fd, _), .close(let fd),
             .poll(let fd, _):
            return fd
        }
    }
}

/// The kind of an `Operation`, without its arguments.
public enum OperationKind: UInt8, Sendable, CaseIterable {
    case nop, timer, cancel, accept, connect, read, write, pread, pwrite
    case recv, send, recvmsg, sendmsg, shutdown, close, poll
    /// A closure on a `WorkPool` (handled by the core on every backend, like nop, timer and cancel).
    case work
    /// File-system operations (see `Operation.open` and the cases after it).
    case open, stat, fsync, fallocate, truncate, rename, unlink, mkdir
}

extension OperationKind {
    /// Whether this kind is one of the file-system operations (open, stat, fsync,
    /// fallocate, truncate, rename, unlink, mkdir): they are declared last, so this is
    /// one compare.
    @inlinable package var isFileSystem: Bool { rawValue >= OperationKind.open.rawValue }

    /// Whether the operation names a path (kept in the completion's file scratch memory).
    @inlinable package var namesPath: Bool {
        self == .open || self == .stat || self == .rename || self == .unlink || self == .mkdir
    }
}

extension OperationKind {
    /// The readiness (POLLIN or POLLOUT) an operation of this kind waits for when its
    /// descriptor is not ready yet; 0 for kinds that never wait for readiness. The
    /// readiness engine waits for it before trying, and io_uring polls for it after an
    /// EAGAIN: one mapping for both.
    @inlinable package var readinessNeeded: UInt32 {
        switch self {
        case .accept, .read, .pread, .recv, .recvmsg: return 0x001   // POLLIN
        case .connect, .write, .pwrite, .send, .sendmsg: return 0x004   // POLLOUT
        case .nop, .timer, .cancel, .shutdown, .close, .poll, .work: return 0
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir: return 0
        }
    }
}

/// Which direction(s) `shutdown` closes.
public enum ShutdownHow: Sendable {
    case read, write, both

    public var rawValue: Int32 {
        switch self {
        case .read: return Int32(SHUT_RD)
        case .write: return Int32(SHUT_WR)
        case .both: return Int32(SHUT_RDWR)
        }
    }
}

/// poll(2) event bits, as requested by `.poll` and reported in its result.
public struct PollEvents: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = PollEvents(rawValue: UInt32(POLLIN))
    public static let writable = PollEvents(rawValue: UInt32(POLLOUT))
    public static let error = PollEvents(rawValue: UInt32(POLLERR))
    public static let hangup = PollEvents(rawValue: UInt32(POLLHUP))
    public static let readHangup = PollEvents(rawValue: 0x2000) // POLLRDHUP
    public static let invalid = PollEvents(rawValue: UInt32(POLLNVAL))
}
