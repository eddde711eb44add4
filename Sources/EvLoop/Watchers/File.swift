#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// A file whose reads and writes (sequential or positional) run on an event loop.
///
/// Why: regular files are always "ready" to readiness APIs (epoll refuses them outright),
/// so a read that hits a slow disk would block the whole loop. io_uring performs file
/// I/O natively and asynchronously; the epoll and poll backends route regular-file reads
/// and writes to their small thread pool. The watcher code is the same on every backend:
/// it only describes the operation.
///
/// - `read`/`write` use the descriptor's current offset, in order (sequential writes
///   append one after another, PITFALLS I4); `pread`/`pwrite` take an absolute offset
///   and leave the current offset alone.
/// - Reads and writes may be short (a read near the end of the file, a write to a full
///   disk): the callback gets the count; a read of 0 bytes into a non-empty buffer is
///   `.failure(.endOfFile)`.
/// - Ownership: the value is the descriptor and does not close it on its own (no deinit: it
///   is a `Sendable` value, free to copy); close it once, through the loop, when nothing
///   else uses it.
/// - Opening: `File.open(loop:completion:path:options:permissions:callback:)` opens
///   through the loop (io_uring's OPENAT, or the loop's file pool on epoll and poll), so a
///   slow or network file system never stalls the loop; `File(path:options:permissions:)`
///   is the synchronous open(2) for start-up code. Both add O_CLOEXEC (the file never
///   leaks into a child process).
/// - Beyond reads and writes: `stat`, `sync` (fsync, or fdatasync with `dataOnly`),
///   `truncate` and `allocate` (fallocate) run the same way; path operations without a
///   descriptor (stat by path, rename, unlink, mkdir, rmdir) are `FileSystem`'s.
/// - Close through the loop (`close(loop:completion:callback:)`): the readiness backends
///   remember per descriptor number that it is a file until it is closed through the loop.
///
/// ```swift
/// let file = try File(path: "data.bin", options: [.readWrite, .create, .truncate])
/// try file.write(loop: loop, completion: c, buffer: bytes) { _, result in
///     print("wrote", (try? result.get()) ?? 0, "bytes")
///     return .disarm
/// }
/// try loop.run(.untilDone)
/// ```
public struct File: LoopDescriptor, Hashable {
    /// The file descriptor.
    public let fd: Int32

    /// Reads and writes: the byte count (may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction
    /// Close, sync, truncate, allocate.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction
    /// Open: the new file (the callback owns its descriptor).
    public typealias FileCallback = (Completion, Result<File, EvError>) -> CallbackAction
    /// Stat: the file's status.
    public typealias StatusCallback = (Completion, Result<FileStatus, EvError>) -> CallbackAction

    /// open(2) flags as an option set, so callers need not spell (or get wrong) the C
    /// constants; O_CLOEXEC is always added by `File(path:options:permissions:)` and is
    /// deliberately not an option.
    ///
    /// ```swift
    /// let log = try File(path: "app.log", options: [.writeOnly, .create, .append])
    /// ```
    public struct OpenOptions: OptionSet, Sendable, Hashable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// O_RDONLY (the default when neither `.writeOnly` nor `.readWrite` is given).
        public static let readOnly = OpenOptions([])
        /// O_WRONLY.
        public static let writeOnly = OpenOptions(rawValue: O_WRONLY)
        /// O_RDWR.
        public static let readWrite = OpenOptions(rawValue: O_RDWR)
        /// O_CREAT: create the file if it does not exist (with `permissions`).
        public static let create = OpenOptions(rawValue: O_CREAT)
        /// O_TRUNC: empty an existing file.
        public static let truncate = OpenOptions(rawValue: O_TRUNC)
        /// O_APPEND: every write goes to the end of the file.
        public static let append = OpenOptions(rawValue: O_APPEND)
        /// O_EXCL: with `.create`, fail with EEXIST if the file exists.
        public static let exclusive = OpenOptions(rawValue: O_EXCL)
        /// O_DIRECT: reads and writes bypass the page cache and go straight to the device.
        /// Buffers, offsets and lengths must then be aligned (`AlignedBuffer`,
        /// `FileStatus.directIOMemoryAlignment`); a misaligned one fails with
        /// `.invalidArgument` (EINVAL). Some file systems (tmpfs before Linux 6.6) refuse
        /// O_DIRECT at open with `.invalidArgument`.
        public static let direct = OpenOptions(rawValue: cevsys_o_direct())
    }

    /// Wraps an open file descriptor.
    public init(fd: Int32) { self.fd = fd }

    /// Opens `path` with `options` (always close-on-exec); `permissions` apply when the file
    /// is created. A missing file (or directory on the way) is `.noSuchFile`.
    public init(path: String, options: OpenOptions = .readOnly, permissions: mode_t = 0o644) throws(EvError) {
        var fd: Int32
        repeat {
            fd = Glibc.open(path, options.rawValue | O_CLOEXEC, permissions)
            // EINTR: open of a FIFO or a slow device was interrupted by a signal; retry.
        } while fd < 0 && cevsys_errno() == EINTR
        guard fd >= 0 else { throw EvError(errno: cevsys_errno()) }
        self.fd = fd
    }

    /// Reads at the current offset (which advances by the count read).
    public func read(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                     callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .read(fd: fd, buffer: buffer)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Reads at `offset` without moving the current offset.
    public func pread(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                      offset: UInt64, callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .pread(fd: fd, buffer: buffer, offset: offset)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Writes at the current offset (or at the end, with `.append`).
    public func write(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                      callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .write(fd: fd, buffer: buffer)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Writes at `offset` without moving the current offset.
    public func pwrite(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                       offset: UInt64, callback: @escaping CountCallback) throws(EvError) {
        completion.operation = .pwrite(fd: fd, buffer: buffer, offset: offset)
        completion.callback = { c, result in callback(c, result.countResult) }
        try loop.add(completion)
    }

    /// Opens `path` through the loop (openat: io_uring's IORING_OP_OPENAT, or the loop's
    /// file pool on epoll and poll, or on a kernel without the opcode); always close-on-exec.
    /// The callback owns the new file's descriptor. Errors: `.noSuchFile` (a missing file,
    /// or a missing directory on the way), `.permissionDenied`, `.isDirectory` (opening a
    /// directory for writing), `.notDirectory` (a file used as a directory on the way),
    /// `.fileExists` (`.exclusive` with `.create`), `.invalidArgument` (a path with a NUL
    /// byte; `.direct` on a file system that refuses it).
    public static func open(loop: some EventLoop, completion: Completion, path: String,
                            options: OpenOptions = .readOnly, permissions: mode_t = 0o644,
                            callback: @escaping FileCallback) throws(EvError) {
        try completion.start(.open(path: path, flags: options.rawValue, permissions: UInt32(permissions)),
                             on: loop, viewing: { $1.openResult }, callback: callback)
    }

    /// The file's status (statx of the descriptor): size, kind, times, inode, device,
    /// block size, and direct I/O's alignment where the kernel reports it.
    public func stat(loop: some EventLoop, completion: Completion, callback: @escaping StatusCallback) throws(EvError) {
        try completion.start(.statDescriptor(fd: fd), on: loop, viewing: { $1.status(of: $0) }, callback: callback)
    }

    /// Flushes the file's data and metadata to the device (fsync), or only its data and
    /// the metadata needed to read it back (fdatasync, `dataOnly: true`: skips a journal
    /// write for a changed modification time, which is what makes it cheaper).
    public func sync(loop: some EventLoop, completion: Completion, dataOnly: Bool = false,
                     callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.fsync(fd: fd, dataOnly: dataOnly), on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }

    /// Cuts or extends the file to `length` bytes (ftruncate; an extension reads as zeros).
    /// io_uring runs it in the kernel from Linux 6.9 (IORING_OP_FTRUNCATE), earlier on the
    /// loop's file pool.
    public func truncate(loop: some EventLoop, completion: Completion, length: UInt64,
                         callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.truncate(fd: fd, length: length), on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }

    /// Reserves disk space for `length` bytes at `offset` (fallocate), so later writes there
    /// cannot fail with ENOSPC; extends the file unless `keepSize` (FALLOC_FL_KEEP_SIZE).
    public func allocate(loop: some EventLoop, completion: Completion, offset: UInt64 = 0, length: UInt64,
                         keepSize: Bool = false, callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.fallocate(fd: fd, mode: keepSize ? 1 : 0, offset: offset, length: length),
                             on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }
}
