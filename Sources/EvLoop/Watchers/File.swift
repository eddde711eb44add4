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
/// - Opening is a synchronous open(2) with O_CLOEXEC (the file never leaks into a child
///   process). It is not a loop operation: opening a local file does not wait on the
///   network, and a program that opens files on a network file system should open them
///   off the loop thread.
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
public struct File: Hashable, Sendable {
    /// The file descriptor.
    public let fd: Int32

    /// Reads and writes: the byte count (may be short) or the error.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction
    /// Close.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction

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

    /// Closes the file through the loop.
    public func close(loop: some EventLoop, completion: Completion,
                      callback: @escaping VoidCallback = { _, _ in .disarm }) throws(EvError) {
        completion.operation = .close(fd: fd)
        completion.callback = { c, result in callback(c, result.voidResult) }
        try loop.add(completion)
    }
}
